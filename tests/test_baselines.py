"""Identity and GDAL FillNodata inpainting baselines, and their evaluation by cloud-cover bin."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from conftest import data_path
from topoclear.engine.training.baselines import BASELINES, EvalSample, evaluate_baselines, identity, inpaint
from topoclear.engine.training.builder_inputs import BuildOptions, SceneInputs
from topoclear.engine.training.dataset_builder import build_dataset
from topoclear.models.bands import S2_BANDS_L1C, S2_BANDS_10_20M
from topoclear.engine.training.synthetic_clouds import add_synthetic_clouds, write_synthetic_pair

INPAINT = "inpainting (GDAL FillNodata)"
IDENTITY = "identity (cloudy input)"


def test_inpaint_fills_only_the_mask_and_interpolates_smooth_fields():
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    image = np.stack([0.1 + 0.002 * x, 0.3 - 0.001 * y])
    cloudy = image.copy()
    mask = np.zeros((64, 64), bool)
    mask[20:40, 25:45] = True
    cloudy[:, mask] = 0.9
    out = inpaint(cloudy, mask)
    assert np.array_equal(out[:, ~mask], cloudy[:, ~mask])
    assert np.abs(out[:, mask] - image[:, mask]).max() < 0.02  # a plane is refilled almost exactly
    assert np.array_equal(inpaint(cloudy, np.ones((64, 64), bool)), cloudy)  # nothing to interpolate from
    assert np.array_equal(inpaint(cloudy, np.zeros((64, 64), bool)), cloudy)
    assert np.array_equal(identity(cloudy, mask), cloudy)


@pytest.fixture(scope="module")
def synthetic_samples():
    """Real clear SEN12MS-CR images (UK, DR Congo) with thick synthetic clouds at several covers."""
    out = []
    idx = [S2_BANDS_L1C.index(b) for b in S2_BANDS_10_20M]
    for name in ("ROIs2017_winter_s2_102_p926.tif", "ROIs1158_spring_s2_39_p500.tif"):
        with rasterio.open(data_path("sen12ms-cr", "s2_clear", name)) as ds:
            clear = ds.read().astype(np.float32)
        for k, cover in enumerate((0.15, 0.45, 0.8)):
            res = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=k, coverage=cover, kind="thick", pixel_size_m=10.0)
            refl = lambda a: np.clip(a[idx] / 10000.0, 0, 1).astype(np.float32)  # noqa: E731
            out.append(EvalSample(f"{name}_{k}", "synthetic", "test", refl(res.cloudy), refl(clear), res.csm,
                                  S2_BANDS_10_20M))
    return out


def test_inpainting_beats_identity_inside_synthetic_clouds(synthetic_samples):
    res = evaluate_baselines(synthetic_samples)
    assert res["samples"] == 6 and set(res["methods"]) == set(BASELINES)
    ident, inp = res["methods"][IDENTITY]["overall"], res["methods"][INPAINT]["overall"]
    assert inp["mae_reconstruction"] < 0.5 * ident["mae_reconstruction"]
    assert inp["psnr_cloudy"] > ident["psnr_cloudy"] + 5
    assert inp["mae_reproduction"] == 0 and ident["mae_reproduction"] == 0  # clear pixels kept as they are
    for row in res["per_sample"]:
        assert row[INPAINT]["mae_reconstruction"] < row[IDENTITY]["mae_reconstruction"]
    bins = res["methods"][INPAINT]["by_cloud_cover"]
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 6
    assert [b["bin"] for b in bins][0] == "0-10%" and bins[-1]["bin"] == "90-100%"


def test_a_model_is_evaluated_beside_the_baselines(synthetic_samples):
    res = evaluate_baselines(synthetic_samples[:2], predictors={"oracle": lambda s: s.target})
    assert res["methods"]["oracle"]["overall"]["mae"] == 0
    assert res["methods"]["oracle"]["overall"]["ssim"] == pytest.approx(1.0)
    only = evaluate_baselines(synthetic_samples[:1], predictors={"oracle": lambda s: s.target},
                              include_baselines=False)
    assert list(only["methods"]) == ["oracle"]


def test_evaluate_a_built_manifest_by_split_and_source(tmp_path):
    clear = data_path("sen12ms-cr", "s2_clear", "ROIs1970_fall_s2_136_p139.tif")
    cloudy_real = data_path("sen12ms-cr", "s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139.tif")
    scenes = []
    for d in range(2):
        cloudy, cm, sm = (tmp_path / f"syn{d}{s}.tif" for s in ("", "_cloud", "_shadow"))
        write_synthetic_pair(clear, S2_BANDS_L1C, cloudy, cm, sm, seed=d, coverage=0.5)
        scenes.append(SceneInputs(f"syn{d}", str(cloudy), str(clear), cloud_mask=str(cm), shadow_mask=str(sm),
                                  source="synthetic clouds", s2_bands=S2_BANDS_L1C))
    scenes.append(SceneInputs("real", str(cloudy_real), str(clear), source="real pair", s2_bands=S2_BANDS_L1C))
    build_dataset(scenes, tmp_path / "ds", BuildOptions(patch_size=128, block_patches=1, seed=0))
    everything = evaluate_baselines(tmp_path / "ds", split=None)
    assert everything["samples"] == 12  # 3 scenes x 4 patches
    synthetic = evaluate_baselines(tmp_path / "ds", split=None, sources=["synthetic"])
    assert synthetic["samples"] == 8
    test = evaluate_baselines(tmp_path / "ds", split="test")
    assert 0 < test["samples"] < 12 and all(r["split"] == "test" for r in test["per_sample"])
    # the real pair has no masks in the manifest: they are computed from its L1C bands
    real = evaluate_baselines(tmp_path / "ds", split=None, sources=["real"])
    assert real["samples"] == 4 and real["methods"][IDENTITY]["overall"]["cloud_fraction"] > 0.3
