"""The cloud / shadow mask engine and topoclear:cloudmask, measured on real data.

Real data only (../shared/data): the ukis-csmask reference patch (``cloudmask-reference``, 512 x 512 at
about 30 m: its 1-mile road grid is ~54 px apart), the 27 clear and 33 cloudy SEN12MS-CR L1C images
(10 m, UTM), the SEN12MS-CR-TS patch near Rome (EPSG:4326) on its clear dates 02-10, 03-22, 04-26, 05-31,
the BigEarthNet Finland snow patch (L2A band files), and the T22HBD L2A SAFE (SCL).

The reference mask's classes are mapped **0 -> shadow, 4 -> cloud, 1-3 -> clear**, as the ukis-csmask tests
map them (``reclass_value_from [0, 1, 2, 3, 4] -> to [2, 0, 0, 0, 1]``); the data README's "0 -> cloud,
4 -> shadow" is the wrong way round (it gives negative kappas, and class 4 covers the white blobs of the
true-colour image, class 0 the dark patches beside them).

The accuracy table is printed (``pytest -s``) and written to ``test-artifacts/cloudmask_accuracy.md``.
Bounds are the measured values (2 CPU cores, onnxruntime 1.32.0, ukis-csmask 1.0.0) with a margin.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import (HAVE_DETECTOR, REPO_ROOT, SHARED_DATA, data_path, detector_missing_reason, log_feedback,
                      mask_accuracy, model_index, needs_detector, reference_patch, save_weights, stitch)
from topoclear.engine.clouds.masks.choice import (DETECTOR_BANDS_4, choose_method, detector_level, method_bands,
                                                  pixel_size_metres, raster_classes, scl_classes)
from topoclear.engine.clouds.masks.detector import INSTALL_HINT, DetectorUnavailable
from topoclear.engine.clouds.masks.detector_scene import buffer_classes
from topoclear.engine.clouds.masks.engine import CLEAR, CLOUD, NODATA, SHADOW, open_scene_mask
from topoclear.engine.clouds.masks.kinds import MASK_METHODS, mask_methods
from topoclear.engine.clouds.masks.run import CloudMaskRequest, locate_product, run_cloud_mask, scene_grid
from topoclear.engine.errors import InputError
from topoclear.engine.io.raster import Grid
from topoclear.engine.progress import Monitor

CLEAR_DIR = ("sen12ms-cr", "s2_clear")
CLOUDY_DIR = ("sen12ms-cr", "s2_cloudy")
TATARSTAN = ("sen12ms-cr", "s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139.tif")
CONGO = ("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")
FINLAND = ("bigearthnet", "BigEarthNet-S2-Example", "S2B_MSIL2A_20180204T94161_57_38")
TS_CLEAR = ("2018-02-10", "2018-03-22", "2018-04-26", "2018-05-31")
#: (column, method key, detector resolution m or None for native)
METHODS = (("detector 30 m", "detector", 30.0), ("detector native", "detector", None),
           ("DSen2-CR rules", "computed", 30.0))
THREADS = 2


def whole(mask) -> np.ndarray:
    return stitch(mask.windows(), mask.height, mask.width)


def classes_of(path, method, resolution=30.0, detectors=None, **options) -> np.ndarray:
    product = locate_product(str(path))
    grid = scene_grid(product, method_bands(method, product) or DETECTOR_BANDS_4)
    mask = open_scene_mask(product, grid, method, resolution_m=resolution, detectors=detectors, threads=THREADS,
                           **options)
    try:
        return whole(mask)
    finally:
        mask.close()


def fractions(classes: np.ndarray):
    valid = classes != NODATA
    return float(np.mean(classes[valid] == CLOUD)), float(np.mean(classes[valid] == SHADOW))


def write_reference_tif(folder: Path) -> Path:
    """The ukis reference patch as a 6-band float32 GeoTIFF (reflectance, bands named B2..B12), 30 m."""
    img = reference_patch()[0]
    path = folder / "ukis_reference.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=6, dtype="float32",
                       crs="EPSG:32615", transform=from_origin(500000, 4500000, 30, 30)) as ds:
        ds.write(img)
        for i, name in enumerate(("B2", "B3", "B4", "B8", "B11", "B12"), start=1):
            ds.set_band_description(i, name)
    return path


# -- the menus, the reading rules, the choice -------------------------------------------------------

def test_the_detector_is_in_every_menu_and_old_indices_stay():
    from topoclear.qgis_common.cloud_choices import mask_choices

    assert [m.key for m in MASK_METHODS][:5] == ["auto", "scl", "raster", "computed", "none"]  # stored by index
    assert [m.key for m in mask_methods("cloudmask")] == ["auto", "scl", "raster", "computed", "detector"]
    for consumer in ("removal", "snow", "evaluate", "cloudmask"):
        assert "detector" in [m.key for m in mask_methods(consumer)]
    assert [c.key for c in mask_choices("removal")] == ["auto", "scl", "raster", "computed", "none", "detector"]
    assert "pretrained detector" in mask_methods("removal")[0].description
    assert [m.title for m in mask_methods("cloudmask")][3] == "DSen2-CR rules"


def test_reading_rules_of_mask_rasters_and_scl():
    values = np.array([0, 1, 2, 255, 7, np.nan], np.float32)
    assert raster_classes(values).tolist() == [CLEAR, CLOUD, SHADOW, CLOUD, CLOUD, NODATA]
    codes = np.array([0, 3, 4, 8, 9, 10, 11], np.uint8)
    assert scl_classes(codes).tolist() == [NODATA, SHADOW, CLEAR, CLOUD, CLOUD, CLOUD, CLEAR]
    assert scl_classes(codes, cirrus=False, shadow=False).tolist() == [NODATA, CLEAR, CLEAR, CLOUD, CLOUD, CLEAR,
                                                                       CLEAR]
    assert scl_classes(np.array([np.nan, 9.0])).tolist() == [NODATA, CLOUD]


def test_automatic_choice_and_product_level(tmp_path):
    stack = data_path(*TATARSTAN)
    l1c = locate_product(str(stack))
    with rasterio.open(stack) as ds:
        data, profile = ds.read(), ds.profile
    twelve = tmp_path / "l2a_12band.tif"
    with rasterio.open(twelve, "w", **dict(profile, count=12)) as ds:
        ds.write(np.delete(data, 10, axis=0))  # no B10: the L2A stack layout
    l2a = locate_product(str(twelve))
    safe = next(Path(data_path("sentinel2-safe")).glob("esa_*L2A*.SAFE"))
    scl_product = locate_product(str(safe))

    assert detector_level(l1c)[0] == "l1c" and "B10" in detector_level(l1c)[1]
    assert detector_level(l2a)[0] == "l2a" and "12-band" in detector_level(l2a)[1]
    assert detector_level(locate_product(str(data_path(*FINLAND))))[0] == "l2a"  # MSIL2A in the name
    assert detector_level(scl_product)[0] == "l2a"
    assert detector_level(l1c, "L2A") == ("l2a", "as chosen")

    choice = choose_method(scl_product, "auto")
    assert choice.key == "scl" and "SCL" in choice.describe()
    given = choose_method(l1c, "auto", mask=str(tmp_path / "T32_SCL_20m.tif"))
    assert given.key == "scl"
    assert choose_method(l1c, "auto", mask=str(tmp_path / "mine.tif")).key == "raster"
    if HAVE_DETECTOR:
        choice = choose_method(l1c, "auto")
        assert (choice.key, choice.level) == ("detector", "l1c") and "no SCL band" in choice.reason
        assert choose_method(l2a, "auto").level == "l2a"
    # without the detector: the rules where the L1C bands are, else none (removal) or an error (cloudmask)
    choice = choose_method(l1c, "auto", consumer="removal", detector_problem="onnxruntime missing")
    assert choice.key == "computed" and INSTALL_HINT in choice.reason and "Install dependencies" in choice.reason
    choice = choose_method(l2a, "auto", consumer="removal", detector_problem="onnxruntime missing")
    assert choice.key == "none" and "B10" in choice.reason
    with pytest.raises(InputError, match="no cloud mask can be made"):
        choose_method(l2a, "auto", consumer="cloudmask", detector_problem="onnxruntime missing")
    with pytest.raises(DetectorUnavailable, match="onnxruntime==1.32.0"):
        choose_method(l1c, "detector", detector_problem="onnxruntime missing")
    with pytest.raises(InputError, match="lacks B10"):
        choose_method(l2a, "computed")


def test_pixel_size_in_metres_on_a_geographic_grid():
    path = next(Path(data_path("sen12ms-cr-ts")).glob("*2018-02-10*.tif"))
    with rasterio.open(path) as ds:
        size, note = pixel_size_metres(Grid.of(ds))
    assert 8.0 < size < 9.2 and "east-west" in note  # 0.0000898 deg: 7.4 m x 10.0 m at 42 N
    with rasterio.open(data_path(*CONGO)) as ds:
        assert pixel_size_metres(Grid.of(ds))[0] == pytest.approx(10.0)


# -- windows ---------------------------------------------------------------------------------------

def test_any_window_equals_the_whole_scene_pass_and_buffers_are_exact():
    path = data_path(*CONGO)
    product = locate_product(str(path))
    grid = scene_grid(product, method_bands("computed", product))
    with open_scene_mask(product, grid, "computed") as rules:
        full = whole(rules)
        for window in ((0, 0, 256, 256), (37, 81, 90, 100), (200, 150, 80, 200)):  # the last one leaves the scene
            r, c, h, w = window
            got = rules.classes(window)
            inside = full[r:r + h, c:c + w]
            assert np.array_equal(got[:inside.shape[0], :inside.shape[1]], inside)
            assert (got[inside.shape[0]:] == NODATA).all() and (got[:, inside.shape[1]:] == NODATA).all()
    with open_scene_mask(product, grid, "computed", buffer_m=40.0, window_px=64) as buffered:
        assert np.array_equal(whole(buffered), buffer_classes(full, 40.0, 10.0))
        assert np.array_equal(buffered.classes((10, 20, 50, 60)), buffer_classes(full, 40.0, 10.0)[10:60, 20:80])
    assert {CLOUD, SHADOW, CLEAR} <= set(np.unique(full).tolist())


@needs_detector
def test_detector_windows_with_their_halo_and_after_a_whole_scene_pass(tmp_path):
    path = write_reference_tif(tmp_path)
    product = locate_product(str(path))
    grid = scene_grid(product, method_bands("detector", product))
    with open_scene_mask(product, grid, "detector", threads=THREADS, window_px=200) as mask:
        full = whole(mask)
        window = (190, 230, 120, 150)
        halo = mask.classes(window)  # the window grown by 128 detector px, not the whole scene
        same = float(np.mean(halo == full[190:310, 230:380]))
        mask.prepare()
        assert mask.cache_path and Path(mask.cache_path).is_file()
        assert np.array_equal(mask.classes(window), full[190:310, 230:380])
        cache = Path(mask.cache_path)
    assert not cache.exists()  # removed on close
    print(f"\ndetector window with a 128 px halo: {same:.4f} of the pixels as the whole-scene pass")
    assert same >= 0.99


# -- accuracy on real data -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Every method on every real image: the accuracy table's figures."""
    if not HAVE_DETECTOR:
        pytest.skip(detector_missing_reason())
    detectors = {}
    out = {"reference": {}, "clear": {}, "cloudy": {}, "ts": {}, "snow": {}}
    folder = tmp_path_factory.mktemp("reference")
    pred = classes_of(write_reference_tif(folder), "detector", 30.0, detectors)
    out["reference"] = mask_accuracy(reference_patch()[1], pred)
    for group, parts in (("clear", CLEAR_DIR), ("cloudy", CLOUDY_DIR)):
        for path in sorted(Path(data_path(*parts)).glob("*.tif")):
            name = path.stem.split("_s2_")[-1].replace("cloudy_", "")
            out[group][name] = {col: fractions(classes_of(path, key, res, detectors)) for col, key, res in METHODS}
    for date in TS_CLEAR:
        path = next(Path(data_path("sen12ms-cr-ts")).glob(f"*{date}*.tif"))
        out["ts"][date] = {col: fractions(classes_of(path, key, res, detectors)) for col, key, res in METHODS}
    out["snow"]["26_p100 (clear, snow-covered)"] = out["clear"]["26_p100"]
    out["snow"]["BigEarthNet Finland 57_38 (L2A)"] = {col: fractions(classes_of(data_path(*FINLAND), key, res,
                                                                                detectors))
                                                     for col, key, res in METHODS[:2]}
    safe = next(Path(data_path("sentinel2-safe")).glob("esa_*L2A*.SAFE"))
    out["scl"] = fractions(classes_of(safe, "scl"))
    table = accuracy_markdown(out)
    print("\n" + table)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "cloudmask_accuracy.md").write_text(table)
    (artifacts / "cloudmask_accuracy.json").write_text(json.dumps(out, indent=1))
    return out


def _pct(v) -> str:
    return f"{100 * v:.1f}"


def accuracy_markdown(m) -> str:
    cols = [c for c, _, _ in METHODS]
    r = m["reference"]
    lines = ["Reference patch (ukis-csmask test patch, 512 x 512 at ~30 m; classes 0 -> shadow, 4 -> cloud, 1-3 -> "
             "clear). The patch has 6 bands (no B1, B10): the rules cannot run; at ~30 m both detector columns are "
             "the same run.", "",
             "| method | overall accuracy | cloud OA | cloud kappa | shadow OA | shadow kappa |", "|---|---|---|---|---|---|",
             f"| detector (L1C 6-band) | {r['oa']:.3f} | {r['oa_cloud']:.3f} | {r['k_cloud']:.3f} | "
             f"{r['oa_shadow']:.3f} | {r['k_shadow']:.3f} |", "",
             "Cloud / shadow flagged (% of the valid pixels, cloud + shadow with cloud | shadow):", "",
             "| images | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]

    def cell(v):
        return f"{_pct(v[0] + v[1])} ({_pct(v[0])} \\| {_pct(v[1])})"

    def summary(group, label):
        rows = m[group]
        values = {c: np.array([sum(v[c]) for v in rows.values()]) for c in cols}
        parts = {c: np.array([v[c] for v in rows.values()]).mean(axis=0) for c in cols}
        mean = " | ".join(f"mean {_pct(values[c].mean())} ({_pct(parts[c][0])} \\| {_pct(parts[c][1])}), median "
                          f"{_pct(np.median(values[c]))}, max "
                          f"{_pct(values[c].max())}; {int(np.sum(values[c] < 0.01))}/{len(values[c])} under 1 %"
                          for c in cols)
        return f"| {label} | {mean} |"

    lines.append(summary("clear", f"{len(m['clear'])} clear SEN12MS-CR images (false alarms)"))
    for date, v in m["ts"].items():
        lines.append(f"| SEN12MS-CR-TS Rome, clear {date} (EPSG:4326) | " + " | ".join(cell(v[c]) for c in cols) + " |")
    for name, v in m["snow"].items():
        lines.append(f"| snow: {name} | " + " | ".join(cell(v[c]) if c in v else "n/a (no B10)" for c in cols) + " |")
    lines.append(summary("cloudy", f"{len(m['cloudy'])} cloudy SEN12MS-CR images"))
    for name in ("136_p139", "39_p500", "26_p100", "31_p100", "102_p926", "135_p211", "19_p30"):
        if name in m["cloudy"]:
            lines.append(f"| cloudy {name} | " + " | ".join(cell(m['cloudy'][name][c]) for c in cols) + " |")
    lines += ["", f"SCL (T22HBD L2A SAFE, 100 x 100 px at 1098 m, SCL classes 8/9/10 cloud, 3 shadow): cloud "
                  f"{_pct(m['scl'][0])} %, shadow {_pct(m['scl'][1])} %."]
    return "\n".join(lines) + "\n"


@needs_detector
def test_accuracy_on_the_reference_patch(measured):
    r = measured["reference"]
    # measured: OA 0.903, cloud kappa 0.826, shadow kappa 0.803 (the package's own CSmask: 0.903, 0.827, 0.801)
    assert r["oa"] > 0.88 and r["k_cloud"] > 0.78 and r["k_shadow"] > 0.75


@needs_detector
def test_clear_images_come_out_nearly_clear(measured):
    det = np.array([sum(v["detector 30 m"]) for v in measured["clear"].values()])
    rules = np.array([sum(v["DSen2-CR rules"]) for v in measured["clear"].values()])
    assert len(det) >= 20
    # measured at 30 m: 24 of 27 under 0.5 %, 101_p505 3.4 % cloud, 135_p501 4.5 % shadow; the rules: mean 7.4 %
    assert np.median(det) < 0.005 and np.mean(det < 0.01) >= 0.85 and det.max() < 0.08
    assert rules.mean() > 3 * det.mean()
    for date, v in measured["ts"].items():  # the clear dates of the time series (EPSG:4326)
        assert sum(v["detector 30 m"]) < 0.02, date


@needs_detector
def test_snow_stays_snow(measured):
    for name, v in measured["snow"].items():
        assert v["detector 30 m"][0] < 0.03 and sum(v["detector 30 m"]) < 0.03, name


@needs_detector
def test_cloudy_images_and_the_tatarstan_patch(measured):
    assert measured["cloudy"]["39_p500"]["detector 30 m"][0] > 0.15  # ~28 % cumulus by eye
    tatarstan = measured["cloudy"]["136_p139"]
    assert sum(tatarstan["DSen2-CR rules"]) > 0.99  # the rules flag the snow as cloud
    assert sum(tatarstan["detector 30 m"]) < 0.80  # measured 0.68: the snow-covered clear third stays clear
    assert measured["scl"][0] > 0


# -- cloud removal with the engine's mask ------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model():
    torch = pytest.importorskip("torch")
    from topoclear.models import build_model

    torch.manual_seed(0)
    return build_model("dsen2cr", s1_bands=0, features=8, blocks=2)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    valid = (a != 0).all(axis=0)
    return float(np.mean((a != b).any(axis=0)[valid]))


@needs_detector
def test_removal_on_the_tatarstan_patch_no_longer_repaints_the_snow(small_model, tmp_path):
    from topoclear.engine.clouds.removal import remove_clouds
    from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions

    s2 = str(data_path(*TATARSTAN))
    with rasterio.open(s2) as ds:
        source = ds.read()
    messages = []
    out = {}
    for kind in ("auto", "computed"):
        report = remove_clouds(small_model, CloudRemovalRequest(s2, str(tmp_path / f"{kind}.tif"), mask_kind=kind,
                                                                options=InferenceOptions(tile=128, device="cpu")),
                               Monitor(on_message=messages.append))
        with rasterio.open(report.output) as ds:
            out[kind] = (changed_fraction(source, ds.read()), report)
    text = "\n".join(messages)
    assert "Cloud mask: Automatic -> Pretrained detector" in text and "model_6b_l1c" in text
    default, rules = out["auto"][0], out["computed"][0]
    print(f"\n136_p139 pixels changed by the removal: default mask {default:.3f}, DSen2-CR rules {rules:.3f}")
    assert rules > 0.99 and default < 0.80 and rules - default > 0.25
    assert out["auto"][1].cloud_percent == pytest.approx(100 * default, abs=1.0)
    # the pixels the detector calls clear are copied from the input unchanged
    classes = classes_of(s2, "detector")
    with rasterio.open(out["auto"][1].output) as ds:
        result = ds.read()
    clear = classes == CLEAR
    assert clear.mean() > 0.2 and np.array_equal(result[:, clear], source[:, clear])


# -- Processing: toolbox, no onnxruntime, modeler, qgis_process ----------------------------------------

def method_index(key: str) -> int:
    return [m.key for m in mask_methods("cloudmask")].index(key)


def removal_mask_index(key: str) -> int:
    return [m.key for m in mask_methods("removal")].index(key)


@pytest.fixture(scope="module")
def nosar_weights(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from topoclear.models import build_model

    torch.manual_seed(0)
    model = build_model("dsen2cr", s1_bands=0, features=8, blocks=2)
    return save_weights(tmp_path_factory.mktemp("w") / "dsen2cr_small_nosar", model, features=8, blocks=2)


@needs_detector
def test_cloudmask_from_the_toolbox_styled(run_alg, tmp_path):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer

    from topoclear.qgis_common.styles import apply_style

    feedback = log_feedback()
    out = tmp_path / "mask.tif"
    result = run_alg("topoclear:cloudmask", feedback=feedback, INPUT=str(data_path(*TATARSTAN)), OUTPUT=str(out))
    assert result["METHOD_USED"] == "detector" and 30 < result["CLOUD_PERCENT"] < 60
    assert 10 < result["SHADOW_PERCENT"] < 40
    text = "\n".join(feedback.lines)
    assert "Automatic -> Pretrained detector" in text and "L1C because the input has B10" in text
    assert "CPUExecutionProvider" in text or "CUDAExecutionProvider" in text
    with rasterio.open(out) as ds, rasterio.open(data_path(*TATARSTAN)) as src:
        assert (ds.count, ds.dtypes[0], ds.nodata, ds.crs, ds.transform) == (1, "uint8", 255, src.crs, src.transform)
        assert set(np.unique(ds.read(1)).tolist()) <= {0, 1, 2}
        assert ds.tags()["TOPOCLEAR_MASK_METHOD"] == "detector"
    layer = QgsRasterLayer(str(out), "mask")
    apply_style(layer, "cloudmask")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    colours = {c.value: c.color for c in renderer.classes()}
    assert colours[1].name() == "#ffffff" and colours[0].alpha() == 0 and colours[2].lightness() < 60

    # the rules with a buffer; SCL of a SAFE with cirrus and shadow left out
    buffered = run_alg("topoclear:cloudmask", INPUT=str(data_path(*TATARSTAN)), METHOD=method_index("computed"),
                       BUFFER=50, OUTPUT=str(tmp_path / "rules.tif"))
    assert buffered["METHOD_USED"] == "computed" and buffered["CLOUD_PERCENT"] + buffered["SHADOW_PERCENT"] > 99
    safe = next(Path(data_path("sentinel2-safe")).glob("esa_*L2A*.SAFE"))
    scl = run_alg("topoclear:cloudmask", SAFE=str(safe), SCL_CIRRUS=False, OUTPUT=str(tmp_path / "scl.tif"))
    with_cirrus = run_alg("topoclear:cloudmask", SAFE=str(safe), METHOD=method_index("scl"),
                          OUTPUT=str(tmp_path / "scl2.tif"))
    assert scl["METHOD_USED"] == "scl" and with_cirrus["CLOUD_PERCENT"] > scl["CLOUD_PERCENT"]
    # a cloud mask read back as a mask raster keeps its classes
    again = run_alg("topoclear:cloudmask", INPUT=str(data_path(*TATARSTAN)), METHOD=method_index("raster"),
                    MASK=str(out), OUTPUT=str(tmp_path / "again.tif"))
    assert again["CLOUD_PERCENT"] == pytest.approx(result["CLOUD_PERCENT"])
    assert again["SHADOW_PERCENT"] == pytest.approx(result["SHADOW_PERCENT"])


def test_without_onnxruntime_automatic_falls_back_to_the_rules(run_alg, nosar_weights, tmp_path,
                                                               without_detector_packages):
    from qgis.core import QgsProcessingException

    s2 = str(data_path(*TATARSTAN))
    feedback = log_feedback()
    result = run_alg("topoclear:cloudmask", feedback=feedback, INPUT=s2, OUTPUT=str(tmp_path / "m.tif"))
    text = "\n".join(feedback.lines)
    assert result["METHOD_USED"] == "computed"
    assert INSTALL_HINT in text and "Plugins > TopoClear > Install dependencies..." in text
    with pytest.raises(QgsProcessingException, match="onnxruntime==1.32.0"):
        run_alg("topoclear:cloudmask", INPUT=s2, METHOD=method_index("detector"), OUTPUT=str(tmp_path / "x.tif"))
    with rasterio.open(s2) as ds:
        data, profile = ds.read(), ds.profile
    twelve = tmp_path / "l2a.tif"
    with rasterio.open(twelve, "w", **dict(profile, count=12)) as ds:
        ds.write(np.delete(data, 10, axis=0))
    with pytest.raises(QgsProcessingException, match="no cloud mask can be made.*Install dependencies"):
        run_alg("topoclear:cloudmask", INPUT=str(twelve), OUTPUT=str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()

    feedback = log_feedback()
    result = run_alg("topoclear:removeclouds", feedback=feedback, INPUT=s2, MODEL=model_index("dsen2cr"),
                     WEIGHTS=nosar_weights, TILE_SIZE=128, DEVICE="cpu", OUTPUT=str(tmp_path / "clear.tif"))
    text = "\n".join(feedback.lines)
    assert "Automatic -> DSen2-CR rules" in text and INSTALL_HINT in text and result["CLOUD_PERCENT"] > 99


def test_the_plugin_loads_and_masks_without_onnxruntime(tmp_path):
    """A Python where onnxruntime and ukis-csmask cannot be imported lists topoclear:cloudmask and runs it."""
    s2 = data_path(*TATARSTAN)
    out = tmp_path / "m.tif"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["onnxruntime"] = None
        sys.modules["ukis_csmask"] = None
        import os; os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback
        app = QgsApplication([], False); app.initQgis()
        import importlib.util
        spec = importlib.util.spec_from_file_location("topoclear", {str(REPO_ROOT / "__init__.py")!r},
                                                      submodule_search_locations=[{str(REPO_ROOT)!r}])
        module = importlib.util.module_from_spec(spec); sys.modules["topoclear"] = module; spec.loader.exec_module(module)
        from topoclear.processing_provider.provider import TopoClearProvider
        provider = TopoClearProvider(); QgsApplication.processingRegistry().addProvider(provider)
        alg = provider.algorithm("cloudmask")
        print("RESULT", alg is not None, alg.canExecute()[0])
        sys.path.append("/usr/share/qgis/python/plugins")
        from processing.core.Processing import Processing
        Processing.initialize()
        import processing
        result = processing.run("topoclear:cloudmask", {{"INPUT": {str(s2)!r}, "OUTPUT": {str(out)!r}}},
                                context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
        print("METHOD", result["METHOD_USED"])
        QgsApplication.processingRegistry().removeProvider(provider)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    lines = [line for line in run.stdout.splitlines() if line.startswith(("RESULT", "METHOD"))]
    assert lines == ["RESULT True True", "METHOD computed"], run.stdout + run.stderr
    assert out.exists()


@needs_detector
def test_cloudmask_then_removeclouds_in_a_modeler_model(run_alg, nosar_weights, tmp_path):
    from qgis.core import (QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterRasterLayer)

    source = QgsProcessingModelChildParameterSource
    static = source.fromStaticValue
    model = QgsProcessingModelAlgorithm("Mask then clear clouds", "TopoClear tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("s2", "Sentinel-2"), QgsProcessingModelParameter("s2"))
    mask = QgsProcessingModelChildAlgorithm("topoclear:cloudmask")
    mask.setChildId("mask")
    mask.addParameterSources("INPUT", [source.fromModelParameter("s2")])
    mask.addParameterSources("BUFFER", [static(30)])
    model.addChildAlgorithm(mask)
    clear = QgsProcessingModelChildAlgorithm("topoclear:removeclouds")
    clear.setChildId("clear")
    clear.addParameterSources("INPUT", [source.fromModelParameter("s2")])
    clear.addParameterSources("CLOUD_MASK", [source.fromChildOutput("mask", "OUTPUT")])
    for name, value in (("MASK_TYPE", removal_mask_index("raster")), ("MODEL", model_index("dsen2cr")),
                        ("WEIGHTS", nosar_weights), ("TILE_SIZE", 128), ("DEVICE", "cpu")):
        clear.addParameterSources(name, [static(value)])
    output = QgsProcessingModelOutput("clear image")
    output.setChildId("clear")
    output.setChildOutputName("OUTPUT")
    clear.setModelOutputs({"clear image": output})
    model.addChildAlgorithm(clear)
    assert model.dependsOnChildAlgorithms("clear") == {"mask"}

    s2 = data_path("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_26_p100.tif")
    out = tmp_path / "clear.tif"
    result = run_alg(model, s2=str(s2), **{"clear:clear image": str(out)})
    assert result["clear:clear image"] == str(out)
    with rasterio.open(out) as o, rasterio.open(s2) as i:
        predicted, source_data = o.read(), i.read()
    classes = classes_of(s2, "detector", buffer_m=30.0)
    kept = classes == CLEAR
    assert 0.05 < kept.mean() < 0.6 and np.array_equal(predicted[:, kept], source_data[:, kept])
    assert (predicted[:, ~kept] != source_data[:, ~kept]).any(axis=0).mean() > 0.9


@needs_detector
def test_qgis_process_runs_cloudmask(qgis_process, tmp_path):
    help_text = qgis_process("help", "topoclear:cloudmask").stdout
    assert "CLOUD_PERCENT" in help_text and "BUFFER" in help_text and "0 clear, 1 cloud, 2 cloud shadow" in help_text
    out = tmp_path / "qp_mask.tif"
    run = qgis_process("run", "topoclear:cloudmask", "--json", "--", f"INPUT={data_path(*CONGO)}", "BUFFER=20",
                       f"OUTPUT={out}")
    payload = json.loads(run.stdout[run.stdout.index("{"):])
    results = payload["results"]
    assert results["METHOD_USED"] == "detector" and results["CLOUD_PERCENT"] > 15 and out.exists()


def test_the_cloud_dock_offers_the_detector(qgis_iface):
    from topoclear.ui.cloud_dock import CloudDock

    dock = CloudDock(qgis_iface)
    try:
        keys = [dock.mask_mode.itemData(i) for i in range(dock.mask_mode.count())]
        assert keys == [m.key for m in mask_methods("removal")] and "detector" in keys
        dock.mask_mode.setCurrentIndex(keys.index("detector"))
        assert not dock.mask_combo.isEnabled()  # the detector reads no mask raster
    finally:
        dock.deleteLater()


def test_evaluate_computes_the_mask_from_the_cloudy_input(tmp_path):
    from topoclear.engine.clouds.evaluation import evaluate_rasters

    cloudy = data_path(*CONGO)
    clear = data_path("sen12ms-cr", "s2_clear", "ROIs1158_spring_s2_39_p500.tif")
    kind = "detector" if HAVE_DETECTOR else "auto"
    evaluation = evaluate_rasters(str(clear), str(clear), str(cloudy), mask_kind=kind)
    assert 0.15 < evaluation.values["cloud_fraction"] < 0.99 and "mae_reproduction" in evaluation.values
    # the engine's own class raster as a mask raster: the same cloud fraction
    mask = tmp_path / "m.tif"
    report = run_cloud_mask(CloudMaskRequest(str(cloudy), str(mask), method="detector" if HAVE_DETECTOR else
                                             "computed"))
    given = evaluate_rasters(str(clear), str(clear), str(cloudy), mask=str(mask))
    assert given.values["cloud_fraction"] == pytest.approx((report.cloud_percent + report.shadow_percent) / 100)
    assert given.values["cloud_fraction"] == pytest.approx(evaluation.values["cloud_fraction"])
    assert SHARED_DATA.is_dir()
