"""The fill from the surroundings as a method, the networks that start from it, the automatic choice and the
observed codes: window independence of the fill, what every output says was observed, defaults that run on a
Sentinel-2 layer alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import data_path
from topoclear.engine.clouds import observed as obs
from topoclear.engine.clouds.methods.catalogue import AUTOMATIC, FILL, get_method, removal_methods
from topoclear.engine.clouds.methods.fill import FillParameters, fill_block

S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")


def _scene(tmp_path, height=420, width=380, cover=0.55, seed=0):
    """A smooth 4-band uint16 scene and a 0/1 cloud mask raster of blobs (written as GeoTIFFs)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    values = ndimage.gaussian_filter(rng.standard_normal((4, height, width)), (0, 6, 6))
    values = (3000 + 2000 * values / np.abs(values).max()).astype(np.uint16)
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), 25)
    cloud = field > np.quantile(field, 1 - cover)
    profile = dict(driver="GTiff", width=width, height=height, crs="EPSG:32633",
                   transform=from_origin(500000, 5000000, 10, 10))
    s2, mask = tmp_path / "s2.tif", tmp_path / "mask.tif"
    with rasterio.open(s2, "w", count=4, dtype="uint16", **profile) as dst:
        dst.write(values)
        for i, b in enumerate(("B2", "B3", "B4", "B8"), start=1):
            dst.set_band_description(i, b)
    with rasterio.open(mask, "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(cloud.astype(np.uint8)[None])
    return s2, mask, values, cloud


def test_the_fill_does_not_depend_on_the_window_size(tmp_path):
    """Windows with a halo of the search distance give the whole-scene fill on every reached pixel."""
    from topoclear.engine.clouds.inputs import scene_mask
    from topoclear.engine.clouds.methods.classic import fill_scene
    from topoclear.engine.clouds.scene import S2Scene

    s2, mask, values, cloud = _scene(tmp_path)
    params = FillParameters(distance=40, smoothing=1)
    outputs = {}
    for window in (96, 160, 1024):
        scene = S2Scene(str(s2), ("B2", "B3", "B4", "B8"))
        source = scene_mask(scene, "raster", str(mask))
        done = fill_scene(scene, source, str(tmp_path / f"fill_{window}.tif"), str(tmp_path / f"codes_{window}.tif"),
                          params, window=window)
        scene.close()
        assert done.halo == 41 and done.cloud == int(cloud.sum())
        with rasterio.open(tmp_path / f"fill_{window}.tif") as a, rasterio.open(tmp_path / f"codes_{window}.tif") as c:
            outputs[window] = (a.read().astype(int), c.read(1))
    whole, codes = outputs[1024]
    assert set(np.unique(codes)) <= {obs.OBSERVED_CLEAR, obs.FILLED_NEIGHBOURHOOD, obs.NO_INFORMATION}
    assert (codes[~cloud] == obs.OBSERVED_CLEAR).all() and (whole[:, ~cloud] == values[:, ~cloud]).all()
    reached = codes == obs.FILLED_NEIGHBOURHOOD
    assert reached.sum() > 0.5 * cloud.sum()
    for window in (96, 160):
        part, part_codes = outputs[window]
        assert (part_codes == codes).all()
        assert np.abs(part[:, reached] - whole[:, reached]).max() <= 1  # to the rounding of one DN


def test_fill_block_reach_and_the_coarse_fill():
    rng = np.random.default_rng(1)
    values = rng.uniform(100, 200, (2, 300, 300)).astype(np.float32)
    mask = np.ones((300, 300), bool)
    mask[:4, :4] = False  # one clear corner: most of the image is out of reach
    filled, reached = fill_block(values, mask, np.ones_like(mask), FillParameters(distance=50))
    assert np.isfinite(filled).all() and (filled[:, ~mask] == values[:, ~mask]).all()
    assert reached[:30, :30][mask[:30, :30]].all() and not reached[100:, 100:].any()
    untouched, none = fill_block(values, np.ones_like(mask), np.ones_like(mask))
    assert (untouched == values).all() and not none.any()  # nothing clear: nothing to fill from


def test_observed_codes_are_defined_once_and_counted():
    valid = np.array([[True, True, True, True, False]])
    masked = np.array([[False, True, True, True, True]])
    reached = np.array([[True, True, False, False, True]])
    sar = np.array([[False, False, False, True, False]])
    codes = obs.single_image_codes(valid, masked, reached, sar)
    assert codes.tolist() == [[obs.OBSERVED_CLEAR, obs.FILLED_NEIGHBOURHOOD, obs.NO_INFORMATION,
                               obs.PREDICTED_SAR_TERRAIN, obs.NODATA]]
    counts = obs.ObservedCounts()
    counts.add(codes)
    assert counts.valid == 4 and counts.share(obs.NO_INFORMATION) == 0.25
    assert "no information" in counts.warning() and counts.warning(threshold=0.5) is None
    assert obs.observed_path("/a/b/clear.tif") == "/a/b/clear_observed.tif"
    assert obs.FILLED_OTHER_DATE == 4 and "4 filled from another date" in obs.legend()


def test_the_catalogue_lists_automatic_the_fill_and_the_networks():
    methods = removal_methods()
    assert [m.key for m in methods[:2]] == [AUTOMATIC.key, FILL.key]
    assert [m.kind for m in methods[:3]] == ["automatic", "classic", "network"]
    assert get_method(None) is AUTOMATIC and get_method("fill").card == "fill.json"
    s2_only = [m.key for m in removal_methods(has_s1=False, has_dem=False)]
    assert "fill" in s2_only and "unet_fill" in s2_only and "crt_unet_fill" not in s2_only
    assert get_method("unet_fill").parameters == ("distance", "smoothing")


@pytest.mark.parametrize("name, kwargs", [("unet_fill", {}), ("crt_unet_fill", {"terrain_bands": 4}),
                                          ("dsen2cr_fill", {})])
def test_networks_from_the_fill_start_at_the_fill_and_keep_clear_pixels(name, kwargs):
    import torch

    from topoclear.models import build_model

    torch.manual_seed(0)
    model = build_model(name, s2_bands=10, s1_bands=2, **kwargs).eval()
    s2, s1 = torch.rand(1, 10, 64, 64), torch.rand(1, 2, 64, 64)
    mask = (torch.rand(1, 1, 64, 64) > 0.5).float()
    prior = torch.where(mask.bool(), torch.rand(1, 10, 64, 64), s2)
    inputs = dict(s2=s2, s1=s1, mask=mask, prior=prior, terrain=torch.rand(1, 4, 64, 64) if kwargs else None)
    assert torch.equal(model(**inputs), prior)  # zero-initialised last layer: the fill itself
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    out = model(**inputs)
    assert torch.equal(out[:, :, ~mask[0, 0].bool()], s2[:, :, ~mask[0, 0].bool()])  # clear pixels kept
    assert not torch.equal(out, prior)
    with pytest.raises(ValueError, match="mask="):
        model(s2=s2, s1=s1, terrain=inputs["terrain"])


def test_automatic_picks_the_best_held_out_score_and_says_why(monkeypatch):
    from topoclear.engine.clouds.methods import selection

    found = selection.candidates(False, False)
    assert found[0].method == "fill" and all(not c.weights or "s1" not in c.label for c in found)
    choice = selection.choose_automatic(False, False)
    scored = [c for c in found if c.mask_psnr is not None]
    fill = found[0]
    if fill.mask_psnr is not None:
        eligible = [c for c in scored if c.whole_psnr >= fill.whole_psnr - selection.WHOLE_IMAGE_TOLERANCE_DB]
        best = max(eligible, key=lambda c: (c.mask_psnr, c is fill))
        assert (choice.method, choice.weights) == (best.method, best.weights)
        assert "dB" in choice.notes[0] and "fill" in choice.notes[0]
    # a fill card that beats everything: automatic runs the fill and says no network beats it
    card = {"metrics": {"held_out": {"real_s2": {"pairs": 3, "whole": {"psnr": 99.0}, "mask": {"psnr": 99.0}}}}}
    monkeypatch.setattr(selection, "fill_card", lambda: card)
    choice = selection.choose_automatic(False, False)
    assert choice.method == "fill" and "No network beats the fill" in choice.notes[0]


def test_fill_method_through_the_engine_on_a_real_patch(tmp_path):
    from topoclear.engine.clouds.removal import run_cloud_removal
    from topoclear.engine.clouds.request import CloudRemovalRequest

    s2 = data_path(*S2)
    out = tmp_path / "filled.tif"
    report = run_cloud_removal(CloudRemovalRequest(str(s2), str(out), model="fill", mask_kind="computed"))
    assert report.method == "fill" and report.observed == str(tmp_path / "filled_observed.tif")
    with rasterio.open(s2) as src, rasterio.open(out) as dst, rasterio.open(report.observed) as codes:
        before, after, code = src.read(), dst.read(), codes.read(1)
        assert (dst.count, dst.dtypes, dst.transform) == (src.count, src.dtypes, src.transform)
    clear = code == obs.OBSERVED_CLEAR
    assert (after[:, clear] == before[:, clear]).all() and (after[:, ~clear] != before[:, ~clear]).any()
    assert report.observed_counts.share(obs.OBSERVED_CLEAR) == pytest.approx(clear.mean())


def test_removeclouds_runs_on_a_sentinel2_layer_alone_with_the_defaults(run_alg, tmp_path):
    """Automatic method, Automatic mask, the observed codes beside the output: nothing else to choose."""
    out = tmp_path / "clear.tif"
    result = run_alg("topoclear:removeclouds", INPUT=str(data_path(*S2)), OUTPUT=str(out))
    assert out.exists() and result["OBSERVED"] == str(tmp_path / "clear_observed.tif")
    with rasterio.open(result["OBSERVED"]) as codes:
        found = set(np.unique(codes.read(1)).tolist())
    assert obs.OBSERVED_CLEAR in found and found <= set(obs.CODES)
    assert 0 <= result["NO_INFORMATION_PERCENT"] <= 100


def test_the_fill_card_records_held_out_scores():
    from topoclear.engine.clouds.weights import WEIGHTS_DIR

    card = json.loads(open(f"{WEIGHTS_DIR}/fill.json").read())
    assert card["method"] == "fill" and card["weights"] is None
    for bench in ("real_s2", "real_s1_dem"):
        entry = card["metrics"]["held_out"][bench]
        assert entry["pairs"] > 0 and entry["mask"]["psnr"] > 0 and entry["whole"]["psnr"] > 0


@pytest.mark.slow
def test_the_gpu_check_script_parses_and_runs_dry(tmp_path):
    """benchmarks/gpu_check.sh: bash syntax, and its CPU-only dry run writes every section."""
    import subprocess

    from conftest import REPO_ROOT

    script = REPO_ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(["bash", str(script), "--dry-run", "--out", str(out)], capture_output=True, text=True,
                          timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    for section in ("### Full tile", "### Mixed precision", "### Training throughput", "DRY RUN"):
        assert section in text
    assert "| crt_unet |" in text and "| fill |" in text and "samples/s" in text
