"""Cloud removal from several dates: the engine (windows, dates, errors, methods, outputs), the Processing
algorithm, a modeler model and qgis_process, on generated rasters and on the real SEN12MS-CR-TS series."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from conftest import data_path
from topoclear.engine.clouds.timeseries import SOURCE_TAG, TimeSeriesRequest, remove_clouds_timeseries
from topoclear.engine.clouds.timeseries_fill import SOURCE_FALLBACK, SOURCE_NETWORK, SOURCE_OBSERVED
from topoclear.engine.errors import InputError
from topoclear.models.bands import S2_BANDS_10_20M

H, W = 200, 232
CRS = "EPSG:32632"
TRANSFORM = from_origin(600000.0, 5100000.0, 10.0, 10.0)


def _texture(seed: int, c: int = 10, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(c, h, w)), (0, 3, 3))
    noise /= noise.std(axis=(1, 2), keepdims=True)
    levels = np.linspace(0.06, 0.3, c)[:, None, None]
    return (levels + 0.03 * noise).astype(np.float32)


def _disc(cy, cx, r, h=H, w=W):
    y, x = np.mgrid[0:h, 0:w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _write(path, refl, transform=TRANSFORM, crs=CRS, tags=None):
    dn = np.clip(np.rint(refl * 10000), 1, 65535).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=dn.shape[0],
                       dtype="uint16", crs=crs, transform=transform, nodata=0) as ds:
        ds.write(dn)
        if tags:
            ds.update_tags(**tags)
    return str(path)


def _write_mask(path, mask, transform=TRANSFORM, crs=CRS):
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype="uint8",
                       crs=crs, transform=transform, nodata=255) as ds:
        ds.write(mask.astype(np.uint8)[None])
    return str(path)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A generated 10-band target (2020-06-15) with two clouds, three other dates in random order with their own
    clouds and gains, and a mask raster for every date (named with its date)."""
    folder = tmp_path_factory.mktemp("series")
    truth = _texture(0)
    yy, xx = np.mgrid[0:H, 0:W] / W
    cloud = _disc(60, 70, 30) | _disc(140, 170, 40)
    target = truth.copy()
    target[:, cloud] = 0.45  # bright cloud
    dates = {"2020-06-25": (truth * (0.92 + 0.1 * xx) + 0.01, _disc(150, 160, 18)),
             "2020-05-16": (truth * 1.08 - 0.005, np.zeros((H, W), bool)),
             "2020-07-30": (truth * 0.95 + 0.02 * yy, _disc(60, 70, 35))}
    out = {"truth": truth, "cloud": cloud, "folder": folder}
    out["target"] = _write(folder / "S2_20200615_target.tif", target)
    out["target_mask"] = _write_mask(folder / "mask_2020-06-15.tif", cloud)
    out["aux"], out["masks"] = [], []
    for date, (img, m) in dates.items():
        img = img.astype(np.float32).copy()
        img[:, m] = 0.5
        out["aux"].append(_write(folder / f"S2_{date.replace('-', '')}.tif", img))
        out["masks"].append(_write_mask(folder / f"mask_{date}.tif", m))
    return out


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags(), list(ds.descriptions)


def _request(series, tmp_path, name="out", **kw):
    kw.setdefault("mask", series["target_mask"])
    kw.setdefault("masks", series["masks"])
    return TimeSeriesRequest(target=series["target"], auxiliary=series["aux"], output=str(tmp_path / f"{name}.tif"),
                             source_output=str(tmp_path / f"{name}_source.tif"), **kw)


def test_fill_from_the_nearest_clear_date_with_source_codes_and_outputs(series, tmp_path):
    report = remove_clouds_timeseries(_request(series, tmp_path, method="timeseries_fill"))
    image, profile, tags, descriptions = _read(tmp_path / "out.tif")
    source, sprofile, stags, _ = _read(tmp_path / "out_source.tif")
    target, tprofile, _, _ = _read(series["target"])
    cloud, truth = series["cloud"], series["truth"]
    # same bands, grid, data type and nodata as the target; clear pixels copied unchanged
    assert (profile["count"], profile["dtype"], profile["nodata"], profile["transform"], profile["crs"]) == \
           (tprofile["count"], tprofile["dtype"], tprofile["nodata"], tprofile["transform"], tprofile["crs"])
    assert np.array_equal(image[:, ~cloud], target[:, ~cloud])
    assert "time-series fill" in descriptions[0]
    err = np.abs(image[:, cloud] / 10000.0 - truth[:, cloud])
    assert err.mean() < 0.004
    # codes: 0 observed; the nearest clear date (2020-06-25, AUX #1, +10 days) first, 05-16 (AUX #2, -30) where
    # it is cloudy; 07-30 never (further, and cloudy over the first cloud)
    s = source[0]
    assert sprofile["dtype"] == "uint8" and sprofile["nodata"] == 255
    assert np.all(s[~cloud] == SOURCE_OBSERVED)
    aux1_cloud = _disc(150, 160, 18)
    assert np.all(s[cloud & ~aux1_cloud] == 1) and np.all(s[cloud & aux1_cloud] == 2)
    legend = json.loads(stags[SOURCE_TAG])
    assert legend["1"].startswith("2020-06-25") and "+10 days" in legend["1"] and legend["2"].startswith("2020-05-16")
    assert report.real_fraction == pytest.approx(1.0) and report.cloud_pixels == int(cloud.sum())
    assert [d["date"] for d in report.dates] == ["2020-06-25", "2020-05-16", "2020-07-30"]
    assert report.dates[0]["filled_pixels"] == int((cloud & ~aux1_cloud).sum())
    assert report.method_key == "timeseries_fill" and "real observations" in report.summary()
    observed = _read(tmp_path / "out_observed.tif")[0][0]
    assert np.all(observed[~cloud] == 1) and np.all(observed[cloud] == 4)  # observed clear / filled from another date


def test_the_result_does_not_depend_on_the_window_size(series, tmp_path):
    outs = []
    for window in (1024, 96, 64):
        remove_clouds_timeseries(_request(series, tmp_path, name=f"w{window}", method="timeseries_fill",
                                          window=window))
        outs.append((_read(tmp_path / f"w{window}.tif")[0], _read(tmp_path / f"w{window}_source.tif")[0]))
    for image, source in outs[1:]:
        assert np.array_equal(source, outs[0][1])
        assert np.abs(image.astype(int) - outs[0][0].astype(int)).max() <= 1  # float rounding to the DN


def test_pixels_clear_on_no_date_get_the_single_image_fill(series, tmp_path):
    hole = _disc(60, 70, 12)
    masks = []
    for path in series["masks"]:
        with rasterio.open(path) as ds:
            m = ds.read(1).astype(bool) | hole
        masks.append(_write_mask(tmp_path / ("hole_" + path.split("mask_")[-1]), m))
    report = remove_clouds_timeseries(_request(series, tmp_path, method="timeseries_fill", masks=masks))
    source = _read(tmp_path / "out_source.tif")[0][0]
    assert np.all(source[hole] == SOURCE_FALLBACK)
    image = _read(tmp_path / "out.tif")[0]
    assert np.abs(image[:, hole] / 10000.0 - series["truth"][:, hole]).mean() < 0.05
    assert report.fallback_pixels == int(hole.sum())
    observed = _read(tmp_path / "out_observed.tif")[0][0]
    assert np.all(observed[hole] == 2) and np.all(observed[series["cloud"] & ~hole] == 4)
    assert report.real_fraction == pytest.approx(1 - hole.sum() / series["cloud"].sum())


def test_dates_from_names_metadata_or_dates_text(series, tmp_path):
    # the names hold the dates (YYYYMMDD); DATES overrides them, an empty entry is read
    report = remove_clouds_timeseries(_request(series, tmp_path, method="timeseries_fill",
                                               dates=[None, "2020-06-20", "", None], masks=()))
    assert [d["date"] for d in report.dates] == ["2020-06-20", "2020-05-16", "2020-07-30"]
    assert report.target_date == "2020-06-15"
    tagged = _write(tmp_path / "no_date_in_name.tif", series["truth"], tags={"ACQUISITION_DATE": "2020-06-01"})
    report = remove_clouds_timeseries(TimeSeriesRequest(target=series["target"], auxiliary=[tagged],
                                                        output=str(tmp_path / "t.tif"), mask=series["target_mask"],
                                                        method="timeseries_fill"))
    assert report.dates[0]["date"] == "2020-06-01" and "tags" in report.dates[0]["how"]


def test_bad_inputs_name_the_layer(series, tmp_path):
    def run(**kw):
        req = dict(target=series["target"], auxiliary=series["aux"], output=str(tmp_path / "bad.tif"),
                   mask=series["target_mask"], method="timeseries_fill")
        req.update(kw)
        return remove_clouds_timeseries(TimeSeriesRequest(**req))

    with pytest.raises(InputError, match="AUX: give at least one other"):
        run(auxiliary=[])
    with pytest.raises(InputError, match=r"AUX #2 \(S2_20200516.tif\) and AUX #1 .* both dated 2020-06-25"):
        run(dates=[None, None, "2020-06-25", None])
    with pytest.raises(InputError, match=r"AUX #1 .* and INPUT .* both dated 2020-06-15"):
        run(dates=[None, "2020-06-15", None, None])
    thirteen = np.concatenate([series["truth"][:1]] * 3 + [series["truth"]])[:13]
    other = _write(tmp_path / "S2_20200701_13band.tif", thirteen)
    with pytest.raises(InputError, match=r"AUX #1 \(S2_20200701_13band.tif\): its bands .* are not the target's"):
        run(auxiliary=[other])
    far = _write(tmp_path / "S2_20200705_far.tif", series["truth"], transform=from_origin(700000.0, 5100000.0, 10, 10))
    with pytest.raises(InputError, match=r"AUX #1 \(S2_20200705_far.tif\).*does not cover"):
        run(auxiliary=[far])
    with pytest.raises(InputError, match=r"DATES: 2 date\(s\) for 4 image\(s\)"):
        run(dates=["2020-06-15", None])
    s1 = _write(tmp_path / "S1_20191201.tif", series["truth"][:2])
    with pytest.raises(InputError, match=r"S1 #1 \(S1_20191201.tif\) is dated 2019-12-01 .*more than 6 days"):
        run(s1=[s1])


def _tiny_weights(tmp_path):
    import torch

    from topoclear.engine import checkpoints
    from topoclear.models import build_model

    torch.manual_seed(0)
    options = {"optical_dim": 16, "depth": 1, "heads": 1, "fused_dim": 16, "attention_channels": 16, "ltae_heads": 4,
               "ltae_key_dim": 4, "ltae_model_dim": 16, "decoder_blocks": 1, "decoder_widths": [8, 8]}
    model = build_model("ca_mtcr", s2_bands=list(S2_BANDS_10_20M), s1_bands=0, **options)
    model.build_options = options
    return str(checkpoints.save_model(tmp_path / "tiny_ca_mtcr", model)[0])


def test_ca_mtcr_over_the_scene_in_tiles(series, tmp_path):
    from topoclear.engine.clouds.request import InferenceOptions

    weights = _tiny_weights(tmp_path)
    report = remove_clouds_timeseries(_request(series, tmp_path, method="ca_mtcr", weights=weights,
                                               inference=InferenceOptions(tile=96, overlap=32, device="cpu")))
    image, profile, tags, descriptions = _read(tmp_path / "out.tif")
    source = _read(tmp_path / "out_source.tif")[0][0]
    target = _read(series["target"])[0]
    cloud = series["cloud"]
    assert np.array_equal(image[:, ~cloud], target[:, ~cloud]) and np.all(source[~cloud] == SOURCE_OBSERVED)
    assert np.all(source[cloud] == SOURCE_NETWORK) and report.network_pixels == int(cloud.sum())
    assert tags["TOPOCLEAR_METHOD"] == "ca_mtcr" and "CA-MTCR" in descriptions[0]
    assert report.real_fraction == pytest.approx(1.0) and report.network["tiles"] > 4
    assert any("optical-only" in m for m in report.messages)


def test_automatic_reads_the_held_out_scores_of_the_cards(monkeypatch, tmp_path):
    from topoclear.engine.clouds import timeseries_methods as tm

    def cards(scores):
        return lambda with_s1: [] if scores is None else [(str(tmp_path / "ca_mtcr_nosar.safetensors"), {
            "architecture": {"input_layout": {"s1": []}},
            "metrics": {"held_out": {tm.BENCHMARK: {"by_auxiliary_dates": {
                k: {"ca_mtcr": {"mask": {"psnr": a}}, "timeseries_fill": {"mask": {"psnr": b}},
                    "auxiliary_dates": n} for k, n, a, b in scores}}}}})]

    monkeypatch.setattr(tm, "series_cards", cards(None))
    choice = tm.choose_series_method("automatic", False, 3)
    assert choice.method is tm.TIMESERIES_FILL and "no CA-MTCR weights" in choice.reason
    monkeypatch.setattr(tm, "series_cards", cards([("1", 1, 30.0, 25.0), ("4", 4, 28.0, 33.0), ("all", 20, 27, 35)]))
    one = tm.choose_series_method("automatic", False, 1)
    assert one.method is tm.CA_MTCR and "30.00 dB" in one.reason and "1 other date" in one.reason
    many = tm.choose_series_method("automatic", False, 12)
    assert many.method is tm.TIMESERIES_FILL and "all" in many.reason
    assert tm.choose_series_method("ca_mtcr", False, 12).method is tm.CA_MTCR


# --------------------------------------------------------------------------------------------
# the real series
# --------------------------------------------------------------------------------------------
REAL_TARGET = "2018-04-26"  # clear
REAL_SHAPE = "2018-07-05"  # partly cloudy: its cloud shape and cloudy values are transplanted


def _real_files():
    folder = data_path("sen12ms-cr-ts")
    files = {re.search(r"\d{4}-\d\d-\d\d", p.name).group(): p for p in sorted(folder.glob("s2_*.tif"))}
    if REAL_TARGET not in files or REAL_SHAPE not in files:
        pytest.skip(f"dates {REAL_TARGET} / {REAL_SHAPE} not in {folder}")
    return files


def test_real_series_time_series_fill_beats_the_single_image_fill(tmp_path, record_property):
    from topoclear.engine.clouds.masks.engine import open_scene_mask
    from topoclear.engine.clouds.methods.fill import fill_block
    from topoclear.engine.sentinel2.locate import locate_bands
    from topoclear.engine.sentinel2.reader import BandReader
    from topoclear.models.metrics import psnr

    files = _real_files()
    masks = {}
    for date, path in files.items():  # the DSen2-CR rules through the mask engine (fast), as mask rasters
        product = locate_bands(str(path), names=["B1", "B2", "B3", "B4", "B8", "B10", "B11"])
        with BandReader(product, ["B2"]) as reader:
            grid = reader.grid
        with open_scene_mask(product, grid, "computed", consumer="removal") as engine:
            masks[date] = engine.cloud_shadow((0, 0, grid.height, grid.width))
    with rasterio.open(files[REAL_TARGET]) as ds:
        clear, profile = ds.read(), ds.profile
    with rasterio.open(files[REAL_SHAPE]) as ds:
        cloudy = ds.read()
    shape = masks[REAL_SHAPE]
    assert 0.1 < shape.mean() < 0.5 and masks[REAL_TARGET].mean() < 0.01
    target = clear.copy()
    target[:, shape] = cloudy[:, shape]  # a real cloud, transplanted onto the clear date
    target_path = tmp_path / f"target_{REAL_TARGET}.tif"
    with rasterio.open(target_path, "w", **profile) as ds:
        ds.write(target)
    mask_paths = [_write_mask(tmp_path / f"mask_{d}.tif", m, profile["transform"], profile["crs"])
                  for d, m in masks.items() if d != REAL_TARGET]
    aux = [str(p) for d, p in files.items() if d != REAL_TARGET]
    report = remove_clouds_timeseries(TimeSeriesRequest(
        target=str(target_path), auxiliary=aux, output=str(tmp_path / "real.tif"),
        source_output=str(tmp_path / "real_source.tif"), mask=_write_mask(tmp_path / "target_mask.tif", shape,
                                                                          profile["transform"], profile["crs"]),
        masks=mask_paths, method="timeseries_fill"))
    with rasterio.open(tmp_path / "real.tif") as ds:
        result = ds.read().astype(np.float32) / 10000.0
    truth = clear.astype(np.float32) / 10000.0
    single, _ = fill_block(target.astype(np.float32) / 10000.0, shape, np.ones(shape.shape, bool))
    ts_psnr = psnr(np.clip(result, 0, 1), truth, shape)
    fill_psnr = psnr(np.clip(single, 0, 1), truth, shape)
    record_property("psnr_timeseries", round(float(ts_psnr), 3))
    record_property("psnr_fill", round(float(fill_psnr), 3))
    print(f"\n{REAL_TARGET} with the {REAL_SHAPE} cloud ({shape.mean():.1%}): PSNR inside the mask, time-series "
          f"fill {ts_psnr:.2f} dB, single-image fill {fill_psnr:.2f} dB; real fraction {report.real_fraction:.3f}")
    assert ts_psnr > fill_psnr + 1.5  # 29.9 vs 27.8 dB here
    assert report.real_fraction > 0.95
    assert np.array_equal(result[:, ~shape], truth[:, ~shape])
    assert len(report.dates) == 20


# --------------------------------------------------------------------------------------------
# Processing, modeler, qgis_process
# --------------------------------------------------------------------------------------------
def test_toolbox_run_outputs_and_errors(run_alg, series, tmp_path):
    from qgis.core import QgsProcessingException

    out, src = tmp_path / "p.tif", tmp_path / "p_source.tif"
    result = run_alg("topoclear:removeclouds_timeseries", INPUT=series["target"], AUX=series["aux"], METHOD=1,
                     CLOUD_MASK=series["target_mask"], CLOUD_MASKS=series["masks"], OUTPUT=str(out),
                     SOURCE=str(src))
    assert result["OUTPUT"] == str(out) and result["SOURCE"] == str(src)
    assert result["REAL_FRACTION"] == pytest.approx(1.0)
    assert result["METHOD_USED"].startswith("Time-series fill")
    with rasterio.open(src) as ds:
        assert json.loads(ds.tags()[SOURCE_TAG])["1"].startswith("2020-06-25")
    with pytest.raises(QgsProcessingException, match="both dated 2020-06-25"):
        run_alg("topoclear:removeclouds_timeseries", INPUT=series["target"], AUX=series["aux"],
                DATES="2020-06-15,2020-06-25,2020-06-25,", CLOUD_MASK=series["target_mask"],
                OUTPUT=str(tmp_path / "e.tif"))


def test_source_style_has_a_class_per_date(qgis_app, series, tmp_path):
    from qgis.core import QgsRasterLayer

    from topoclear.qgis_common.source_style import style_source

    remove_clouds_timeseries(_request(series, tmp_path, method="timeseries_fill"))
    layer = QgsRasterLayer(str(tmp_path / "out_source.tif"), "source")
    style_source(layer)
    labels = [c.label for c in layer.renderer().classes()]
    assert any("2020-06-25" in lab for lab in labels) and any("single-image fill" in lab for lab in labels)
    del layer


def test_in_a_modeler_model(run_alg, series, tmp_path):
    from qgis.core import (QgsProcessing, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterMultipleLayers,
                           QgsProcessingParameterRasterLayer)

    source = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("Clear one date with the others", "TopoClear tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("target", "Target"), QgsProcessingModelParameter("target"))
    model.addModelParameter(QgsProcessingParameterMultipleLayers("others", "Other dates", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("others"))
    child = QgsProcessingModelChildAlgorithm("topoclear:removeclouds_timeseries")
    child.setChildId("ts")
    child.addParameterSources("INPUT", [source.fromModelParameter("target")])
    child.addParameterSources("AUX", [source.fromModelParameter("others")])
    for name, value in (("METHOD", 1), ("CLOUD_MASK", series["target_mask"]), ("CLOUD_MASKS", series["masks"])):
        child.addParameterSources(name, [source.fromStaticValue(value)])
    output = QgsProcessingModelOutput("cloud-free")
    output.setChildId("ts")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"cloud-free": output})
    model.addChildAlgorithm(child)
    out = tmp_path / "model.tif"
    result = run_alg(model, target=series["target"], others=series["aux"], **{"ts:cloud-free": str(out)})
    assert result["ts:cloud-free"] == str(out)
    image = _read(out)[0]
    assert np.abs(image[:, series["cloud"]] / 10000.0 - series["truth"][:, series["cloud"]]).mean() < 0.004


def test_qgis_process_with_repeated_aux(qgis_process, series, tmp_path):
    help_text = qgis_process("help", "topoclear:removeclouds_timeseries").stdout
    assert "AUX" in help_text and "SOURCE" in help_text
    out, src = tmp_path / "qp.tif", tmp_path / "qp_source.tif"
    args = ["run", "topoclear:removeclouds_timeseries", "--json", "--", f"INPUT={series['target']}",
            *[f"AUX={a}" for a in series["aux"]], *[f"CLOUD_MASKS={m}" for m in series["masks"]],
            f"CLOUD_MASK={series['target_mask']}", "METHOD=1", f"OUTPUT={out}", f"SOURCE={src}"]
    run = qgis_process(*args)
    payload = json.loads(run.stdout[run.stdout.index("{"):])
    assert payload["results"]["REAL_FRACTION"] == pytest.approx(1.0) and out.exists() and src.exists()
    bad = qgis_process("run", "topoclear:removeclouds_timeseries", "--", f"INPUT={series['target']}",
                       f"OUTPUT={tmp_path / 'none.tif'}", check=False)
    assert bad.returncode != 0


@pytest.mark.gui
def test_cloud_dock_clears_a_layer_with_other_dates_of_the_project(qgis_iface, series, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    from conftest import show_dock, wait_for
    from topoclear.ui.cloud_dock import CloudDock

    gen = show_dock(qgis_iface, CloudDock)
    dock = next(gen)
    try:
        target = QgsRasterLayer(series["target"], "target 2020-06-15")
        others = [QgsRasterLayer(p, f"other {k}") for k, p in enumerate(series["aux"])]
        mask = QgsRasterLayer(series["target_mask"], "target mask")
        QgsProject.instance().addMapLayers([target, mask, *others])
        dock.s2_combo.setLayer(target)
        group = dock.dates_group
        listed = [group.layers.item(i).text() for i in range(group.layers.count())]
        assert "other 0" in listed and "target 2020-06-15" not in listed  # the target is not offered
        assert not group.active()
        group.check(others[:2])
        assert group.active() and "2 other date(s)" in group.note.text()
        group.method.setCurrentIndex(group.method.findData("timeseries_fill"))
        dock.mask_mode.setCurrentIndex(dock.mask_mode.findData("auto"))  # the target's raster; the others detected
        dock.mask_combo.setLayer(mask)
        dock.output_widget.setFilePath(str(tmp_path / "dock_ts.tif"))
        dock.run_button.click()
        ok, message = wait_for(dock.runFinished)
        assert ok, message
        report = dock.last_report
        assert len(report.dates) == 2 and report.real_fraction is not None
        names = [layer.name() for layer in QgsProject.instance().mapLayers().values()]
        assert any(n.startswith("Cloud-free") and "target 2020-06-15" in n for n in names)
        assert any(n.startswith("Source of each pixel") for n in names)
        del target, others, mask
    finally:
        next(gen, None)
