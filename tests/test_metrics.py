"""Metrics: hand-computed cases, and agreement with scikit-image on the real SEN12MS-CR patches."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from conftest import data_path
from topoclear.models.metrics import (
    evaluate,
    mae,
    metrics_by_cloud_cover,
    psnr,
    rmse,
    sam,
    sam_map,
    split_metrics,
    ssim,
)

# SEN12MS-CR pairs (clear target, cloudy input): ROI/season and patch id
PAIRS = [
    ("ROIs1158_spring", "26_p100"),
    ("ROIs1158_spring", "39_p500"),
    ("ROIs1868_summer", "135_p211"),
    ("ROIs1868_summer", "31_p100"),
    ("ROIs1970_fall", "136_p139"),
    ("ROIs2017_winter", "102_p926"),
]


@lru_cache(maxsize=None)
def load_pair(roi: str, patch: str) -> tuple[np.ndarray, np.ndarray]:
    """(clear, cloudy) 13-band reflectance, DN / 10000 clipped to [0, 1], float64 (13, 256, 256)."""
    rasterio = pytest.importorskip("rasterio")
    out = []
    for folder, tag in (("s2_clear", "s2"), ("s2_cloudy", "s2_cloudy")):
        path = data_path("sen12ms-cr", folder, f"{roi}_{tag}_{patch}.tif")
        with rasterio.open(path) as src:
            out.append(np.clip(src.read().astype(np.float64) / 10000.0, 0.0, 1.0))
    return out[0], out[1]


# --------------------------------------------------------------------------- hand-computed
def test_mae_rmse_psnr_hand():
    pred = np.zeros((1, 2, 2))
    target = np.array([[[0.1, 0.2], [0.3, 0.4]]])
    assert mae(pred, target) == pytest.approx(0.25)
    assert rmse(pred, target) == pytest.approx(math.sqrt(0.075))  # (0.01+0.04+0.09+0.16)/4
    assert psnr(pred, target) == pytest.approx(-10 * math.log10(0.075))  # 11.249 dB
    assert psnr(target, target) == math.inf


def test_per_sample_then_mean():
    target = np.zeros((2, 1, 4, 4))
    pred = np.stack([np.full((1, 4, 4), 0.1), np.full((1, 4, 4), 0.01)])
    # RMSE 0.1 -> 20 dB and 0.01 -> 40 dB: the mean of per-sample PSNR is 30 dB
    assert psnr(pred, target, reduction="none").tolist() == pytest.approx([20.0, 40.0])
    assert psnr(pred, target) == pytest.approx(30.0)
    assert mae(torch.tensor(pred), torch.tensor(target)) == pytest.approx(0.055)  # tensors accepted
    with pytest.raises(ValueError):
        psnr(pred, target, reduction="sum")


def test_masked_metrics_hand():
    # 2 bands, 2x2 pixels; mask on the first row only
    pred = np.array([[[0.2, 0.4], [0.6, 0.8]], [[0.0, 0.0], [0.0, 0.0]]])
    target = np.array([[[0.0, 0.4], [1.0, 0.5]], [[0.1, 0.1], [0.1, 0.1]]])
    mask = np.array([[1, 1], [0, 0]])
    # first row: |d| = 0.2, 0.0 (band 1), 0.1, 0.1 (band 2) -> 0.4 / (2 px * 2 bands)
    assert mae(pred, target, mask=mask) == pytest.approx(0.1)
    assert mae(pred, target, mask=1 - mask) == pytest.approx((0.4 + 0.3 + 0.2) / 4)
    assert rmse(pred, target, mask=mask) == pytest.approx(math.sqrt((0.04 + 0.01 + 0.01) / 4))
    assert psnr(pred, target, mask=mask) == pytest.approx(-10 * math.log10(0.06 / 4))
    # empty region -> NaN per sample, and NaN as the mean of nothing
    assert math.isnan(mae(pred, target, mask=np.zeros((2, 2))))


def test_sam_hand():
    def pix(*vectors):  # pixels side by side: (C, 1, npix)
        return np.array(vectors, dtype=np.float64).T[:, None, :]

    assert sam(pix([1, 0]), pix([0, 1])) == pytest.approx(90.0)  # orthogonal
    assert sam(pix([1, 0]), pix([1, 1])) == pytest.approx(45.0)
    assert sam(pix([0.1, 0.2, 0.3]), pix([0.2, 0.4, 0.6])) == pytest.approx(0.0, abs=1e-6)  # scaling
    assert sam(pix([1, 0]), pix([0, 1]), degrees=False) == pytest.approx(math.pi / 2)
    # mean over pixels: 90 and 0 deg -> 45
    assert sam(pix([1, 0], [1, 1]), pix([0, 1], [2, 2])) == pytest.approx(45.0)
    # zero vectors: both zero -> 0 deg, one zero -> 90 deg; never NaN
    assert sam_map(pix([0, 0], [0, 0]), pix([0, 0], [3, 4])).flatten().tolist() == pytest.approx([0.0, 90.0])
    # masked: only the second pixel
    assert sam(pix([1, 0], [1, 1]), pix([0, 1], [1, 0]), mask=np.array([[0, 1]])) == pytest.approx(45.0)


def test_ssim_hand():
    x = np.full((1, 16, 16), 0.5)
    y = np.full((1, 16, 16), 0.6)
    assert ssim(x, x) == pytest.approx(1.0)
    c1 = 0.01**2
    assert ssim(x, y) == pytest.approx((2 * 0.3 + c1) / (0.61 + c1))


def test_split_metrics_hand():
    # 1 band: P, T, I as in the loss tests, mask = cloud top-left + shadow bottom-right
    p = np.array([[[0.2, 0.4], [0.6, 0.8]]])
    t = np.array([[[0.0, 0.4], [1.0, 0.5]]])
    i = np.array([[[0.3, 0.1], [0.6, 0.9]]])
    m = np.array([[1, 0], [0, 1]])
    out = split_metrics(p, t, i, m)
    assert out["mae_target"] == pytest.approx(0.225)
    assert out["mae_reproduction"] == pytest.approx((0.3 + 0.0) / 2)  # clear pixels vs input
    assert out["mae_reconstruction"] == pytest.approx((0.2 + 0.3) / 2)  # masked pixels vs target
    # 2 bands for SAM: reproduction pixel orthogonal to the input, reconstruction pixel parallel
    p2 = np.array([[[1.0, 1.0]], [[0.0, 0.0]]])
    t2 = np.array([[[5.0, 1.0]], [[0.0, 1.0]]])
    i2 = np.array([[[0.0, 1.0]], [[1.0, 1.0]]])
    m2 = np.array([[0, 1]])
    out = split_metrics(p2, t2, i2, m2)
    assert out["sam_reproduction"] == pytest.approx(90.0)
    assert out["sam_reconstruction"] == pytest.approx(45.0)
    assert out["sam_target"] == pytest.approx(22.5)


def test_evaluate_identity_and_keys():
    g = np.random.default_rng(0)
    x = g.random((2, 3, 16, 16))
    m = g.random((2, 1, 16, 16)) > 0.5
    out = evaluate(x, x, cloudy=x, mask=m)
    assert out["mae"] == 0 and out["rmse"] == 0 and out["psnr"] == math.inf
    assert out["ssim"] == pytest.approx(1.0) and out["sam"] == pytest.approx(0.0, abs=1e-5)
    assert out["cloud_fraction"] == pytest.approx(m.mean())
    expected = {"mae", "rmse", "psnr", "ssim", "sam", "cloud_fraction", "psnr_cloudy", "psnr_clear",
                "mae_reconstruction", "sam_reconstruction", "mae_reproduction", "sam_reproduction"}
    assert set(out) == expected
    assert set(evaluate(x, x)) == {"mae", "rmse", "psnr", "ssim", "sam"}
    per = evaluate(x, x * 0.9, mask=m, per_sample=True)
    assert len(per["psnr"]) == 2 and all(isinstance(v, float) for v in per["mae"])
    with pytest.raises(ValueError):
        evaluate(x, x, cloudy=x)  # reproduction needs the mask


def test_metrics_by_cloud_cover():
    fractions = [0.0, 0.05, 0.1, 0.15, 0.3, 0.95, 1.0]
    values = {"mae": [1, 3, 5, 7, 9, 11, 13], "psnr": [30, 20, 10, 0, 5, float("nan"), 2]}
    rows = metrics_by_cloud_cover(fractions, values)
    assert [r["bin"] for r in rows][:3] == ["0-10%", "10-20%", "20-30%"] and rows[-1]["bin"] == "90-100%"
    assert [r["count"] for r in rows] == [2, 2, 0, 1, 0, 0, 0, 0, 0, 2]  # 0.3 lands in 30-40 %
    assert rows[0]["mae"] == 2 and rows[1]["mae"] == 6 and rows[3]["mae"] == 9 and rows[9]["mae"] == 12
    assert rows[9]["psnr"] == 2  # NaN left out
    assert math.isnan(rows[2]["mae"])  # empty bin
    assert len(metrics_by_cloud_cover([0.5], {"mae": [1]}, bin_width=0.2)) == 5
    with pytest.raises(ValueError):
        metrics_by_cloud_cover([28.0], {"mae": [1]})  # percent instead of a fraction
    with pytest.raises(ValueError):
        metrics_by_cloud_cover([0.2, 0.3], {"mae": [1]})


def test_ssim_matches_skimage_on_random_sizes():
    skm = pytest.importorskip("skimage.metrics")
    g = np.random.default_rng(1)
    for shape in ((1, 11, 11), (3, 23, 17), (2, 40, 31)):
        a, b = g.random(shape), g.random(shape)
        b = 0.7 * a + 0.3 * b
        ref = skm.structural_similarity(a, b, data_range=1, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, channel_axis=0)
        assert ssim(b, a) == pytest.approx(ref, abs=1e-10)


# --------------------------------------------------------------------------- real patches
@pytest.mark.parametrize("roi,patch", PAIRS)
def test_ssim_psnr_match_skimage_on_real_patches(roi, patch):
    skm = pytest.importorskip("skimage.metrics")
    clear, cloudy = load_pair(roi, patch)
    ref_ssim = skm.structural_similarity(clear, cloudy, data_range=1, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, channel_axis=0)
    ref_psnr = skm.peak_signal_noise_ratio(clear, cloudy, data_range=1)
    assert abs(ssim(cloudy, clear) - ref_ssim) < 1e-4
    assert abs(psnr(cloudy, clear) - ref_psnr) < 1e-4
    # the batched form gives the same per-sample values
    assert abs(ssim(cloudy[None], clear[None], reduction="none")[0].item() - ref_ssim) < 1e-4
    # MAE, RMSE and SAM against direct numpy
    d = cloudy - clear
    assert mae(cloudy, clear) == pytest.approx(np.abs(d).mean())
    assert rmse(cloudy, clear) == pytest.approx(np.sqrt((d**2).mean()))
    cos = (cloudy * clear).sum(0) / (np.linalg.norm(cloudy, axis=0) * np.linalg.norm(clear, axis=0))
    assert sam(cloudy, clear) == pytest.approx(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean(), rel=1e-9)


def test_real_patch_metric_ranges():
    """Cloudy input vs clear target: the nearly clear pair scores far better than the cumulus one."""
    c1, x1 = load_pair("ROIs1868_summer", "135_p211")  # almost clear (measured PSNR 48.4 dB, SSIM 0.996)
    c2, x2 = load_pair("ROIs1158_spring", "39_p500")  # ~30-40 % cumulus (15.7 dB, SSIM 0.60)
    assert psnr(x1, c1) > 40 and ssim(x1, c1) > 0.99
    assert psnr(x2, c2) < 20 and ssim(x2, c2) < 0.7
    assert sam(x1, c1) < sam(x2, c2)


def test_evaluate_identity_baseline_with_real_mask():
    """The 'do nothing' baseline (prediction = cloudy input) on a real pair with the rule-based mask.

    Reproduction error is exactly 0 (the prediction is the input), and the reconstruction
    error inside the clouds exceeds the error on clear pixels.
    """
    from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_mask_l1c

    clear, cloudy = load_pair("ROIs1158_spring", "39_p500")
    m = cloud_mask_l1c(bands_from_stack(cloudy, scale=None))
    out = evaluate(cloudy, clear, cloudy=cloudy, mask=m)
    assert out["mae_reproduction"] == 0 and out["sam_reproduction"] == pytest.approx(0.0, abs=1e-5)
    assert out["mae_reconstruction"] > 3 * mae(cloudy, clear, mask=~m)
    assert out["psnr_cloudy"] < out["psnr_clear"] - 5
    assert 0.25 < out["cloud_fraction"] < 0.6
