"""Cloud / shadow masks: the rules on hand-made spectra, then the real SEN12MS-CR and SCL rasters.

The bounds on real patches are measured values with a margin. The data README's cover figures
("~28 % cumulus", "~9 %") are visual estimates; the DSen2-CR detector is deliberately
conservative (5x5 closing + 7x7 mean grow every cloud by a few pixels, threshold 0.2), so it
reports more than those estimates on cumulus fields.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from conftest import data_path
from topoclear.engine.clouds.masks.rules import (CLOUD_SCORE_HALO, SHADOW_HALO,
    bands_from_stack, cloud_mask_l1c, cloud_score_l1c, cloud_shadow_masks_l1c, dn_to_reflectance, mask_fraction,
    normalized_difference, rescale, shadow_mask_l1c, shadow_thresholds)
from topoclear.engine.clouds.masks.scl import scl_cloud_shadow_mask, scl_masks
from topoclear.models.bands import S2_BANDS_L1C, S2_BANDS_L2A

SCL_20M = (
    "sentinel2-safe",
    "S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857.SAFE",
    "GRANULE",
    "L2A_T07HFE_A019029_20190212T192646",
    "IMG_DATA",
    "R20m",
    "T07HFE_20190212T192651_SCL_20m.tif",
)


@lru_cache(maxsize=None)
def load_s2(folder: str, name: str) -> dict:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(data_path("sen12ms-cr", folder, name)) as src:
        stack = src.read()
    return bands_from_stack(stack)  # DN / 10000, 13-band L1C order


def cloudy(roi: str, patch: str) -> dict:
    return load_s2("s2_cloudy", f"{roi}_s2_cloudy_{patch}.tif")


def clear(roi: str, patch: str) -> dict:
    return load_s2("s2_clear", f"{roi}_s2_{patch}.tif")


def uniform_bands(shape=(20, 20), **values) -> dict:
    base = {b: 0.05 for b in S2_BANDS_L1C}
    base.update(values)
    return {b: np.full(shape, v, dtype=np.float64) for b, v in base.items()}


# --------------------------------------------------------------------------- rules by hand
def test_helpers():
    assert rescale(np.array([0.1, 0.3, 0.5, 0.7]), (0.1, 0.5)).tolist() == pytest.approx([0, 0.5, 1, 1.5])
    assert rescale(np.array([0.9, 0.7, 0.5]), (0.8, 0.6), clip=True).tolist() == pytest.approx([0, 0.5, 1])
    assert normalized_difference(np.array([0.3, 0.0]), np.array([0.1, 0.0])).tolist() == pytest.approx([0.5, 0.0])
    assert dn_to_reflectance(np.array([1000, 11000]), offset=-1000).tolist() == pytest.approx([0.0, 1.0])
    stack = np.arange(13, dtype=np.uint16)[:, None, None] * np.ones((13, 2, 3), dtype=np.uint16) * 1000
    b = bands_from_stack(stack)
    assert list(b) == list(S2_BANDS_L1C) and b["B10"][0, 0] == pytest.approx(1.0) and b["B8A"][0, 0] == pytest.approx(0.8)
    assert len(S2_BANDS_L2A) == 12 and "B10" not in S2_BANDS_L2A
    with pytest.raises(ValueError):
        bands_from_stack(stack[:12])


def test_cloud_score_rules_on_uniform_spectra():
    # bright, white, cirrus-lit, not snow: every rule >= 1 -> score 1 (reflecting border -> 1 everywhere)
    cloud = uniform_bands(B1=0.35, B2=0.5, B3=0.5, B4=0.5, B10=0.02, B11=0.3)
    s = cloud_score_l1c(cloud, edge_mode="reflect")
    assert np.allclose(s, 1.0)
    # the reference zero padding of the 7x7 mean: a corner pixel sees 4x4 of its 7x7 window
    s0 = cloud_score_l1c(cloud)
    assert s0[10, 10] == pytest.approx(1.0) and s0[0, 0] == pytest.approx(16 / 49)
    # partial brightness: B2 = 0.3 -> r(B2, [0.1, 0.5]) = 0.5 is the minimum
    assert np.allclose(cloud_score_l1c(uniform_bands(B1=0.35, B2=0.3, B3=0.5, B4=0.5, B10=0.02, B11=0.3),
                                       edge_mode="reflect"), 0.5)
    # snow: same brightness but NDSI = (0.8 - 0.05) / 0.85 = 0.88 > 0.8 -> not cloud
    snow = uniform_bands(B1=0.35, B2=0.8, B3=0.8, B4=0.8, B10=0.02, B11=0.05)
    assert cloud_score_l1c(snow).max() == pytest.approx(1e-5)
    # dark vegetation -> floor value 1e-5
    assert cloud_mask_l1c(uniform_bands(B1=0.12, B2=0.08, B3=0.07, B4=0.05, B11=0.15)).sum() == 0


def test_shadow_rule_by_hand():
    b = uniform_bands((10, 10), B2=0.10, B8=0.30, B11=0.20)  # CSI 0.25
    b["B8"][:5, :5] = 0.02  # a dark 5x5 block: CSI 0.11, B2 0.02
    b["B11"][:5, :5] = 0.20
    b["B2"][:5, :5] = 0.02
    T3, T4 = shadow_thresholds(b)
    # CSI: min 0.11, mean 0.25 - 25 * 0.14 / 100 = 0.215 -> T3 = 0.11 + 0.75 * 0.105
    assert T3 == pytest.approx(0.11 + 0.75 * 0.105)
    # B2: min 0.02, mean 0.10 - 25 * 0.08 / 100 = 0.08 -> T4 = 0.02 + 5/6 * 0.06 = 0.07
    assert T4 == pytest.approx(0.07)
    sm = shadow_mask_l1c(b)
    # 5x5 median with zeros outside: a pixel stays shadow when its window holds >= 13 of the
    # raw shadow pixels. Rows (and columns) 0..6 see 3, 4, 5, 4, 3, 2, 1 block rows, so the
    # products >= 13 are the 3x3 core (1..3)^2 (>= 16) and the mid-edge pixels 3 x 5 = 15.
    expected = np.zeros((10, 10), dtype=bool)
    expected[1:4, 1:4] = True
    expected[[0, 4, 2, 2], [2, 2, 0, 4]] = True
    assert np.array_equal(sm, expected)
    # explicit thresholds are used as given
    assert not shadow_mask_l1c(b, thresholds=(0.0, 0.0)).any()


# --------------------------------------------------------------------------- real SEN12MS-CR
# (roi, patch, lower, upper bound of the cloud fraction of the cloudy image, reason)
CLOUDY_BOUNDS = [
    ("ROIs1158_spring", "26_p100", 0.08, 0.30, "N. Canada, a few cumulus (measured 17 %)"),
    ("ROIs1158_spring", "39_p500", 0.25, 0.60, "DR Congo cumulus field (measured 42 %)"),
    ("ROIs1868_summer", "135_p211", 0.0, 0.01, "Chile, almost clear sea (measured 0 %)"),
    ("ROIs1868_summer", "19_p30", 0.15, 0.45, "Nigeria, ~19 % cloud (measured 31 %)"),
    ("ROIs1868_summer", "31_p100", 0.0, 0.05, "thin cloud: too dark in B1+B10 for the rules (measured 0.2 %)"),
    ("ROIs1970_fall", "136_p139", 0.60, 1.0, "Tatarstan, overcast over snow (measured 82 %)"),
    ("ROIs2017_winter", "102_p926", 0.02, 0.15, "UK haze with one cloud bank (measured 6 %)"),
]


@pytest.mark.parametrize("roi,patch,lo,hi,why", CLOUDY_BOUNDS, ids=[c[1] for c in CLOUDY_BOUNDS])
def test_cloud_fraction_of_real_cloudy_patches(roi, patch, lo, hi, why):
    frac = mask_fraction(cloud_mask_l1c(cloudy(roi, patch)))
    assert lo <= frac <= hi, f"{patch}: {frac:.3f} outside [{lo}, {hi}] ({why})"


@pytest.mark.parametrize("roi,patch", [(c[0], c[1]) for c in CLOUDY_BOUNDS if c[1] != "19_p30"])
def test_clear_patches_have_almost_no_cloud(roi, patch):
    # includes 26_p100, whose clear image is entirely snow-covered: the NDSI rule keeps snow out
    frac = mask_fraction(cloud_mask_l1c(clear(roi, patch)))
    assert frac < 0.01, f"{patch}: {frac:.4f} of the clear image flagged as cloud"


@pytest.mark.parametrize("patch", ["26_p100", "39_p500", "31_p100", "136_p139", "102_p926"])
def test_shadow_fraction_higher_on_cloudy_images(patch):
    """Cloud shadows add dark pixels: each cloudy image has more shadow than its clear twin.

    (The test is scene-relative, so dark water and forest are flagged in clear images too.)
    """
    roi = {c[1]: c[0] for c in CLOUDY_BOUNDS}[patch]
    f_cloudy = mask_fraction(shadow_mask_l1c(cloudy(roi, patch)))
    f_clear = mask_fraction(shadow_mask_l1c(clear(roi, patch)))
    assert f_cloudy > f_clear
    assert f_clear < 0.15


def test_clip_terms_variant_is_monotone_and_close():
    for roi, patch, *_ in CLOUDY_BOUNDS:
        b = cloudy(roi, patch)
        s_ref, s_clip = cloud_score_l1c(b), cloud_score_l1c(b, clip_terms=True)
        assert (s_clip >= s_ref - 1e-6).all()  # clipping only removes negative contributions
        assert abs(mask_fraction(s_clip >= 0.2) - mask_fraction(s_ref >= 0.2)) < 0.01


def test_combined_masks():
    out = cloud_shadow_masks_l1c(cloudy("ROIs1158_spring", "39_p500"))
    assert set(out) == {"score", "cloud", "shadow", "csm"}
    assert out["score"].dtype == np.float32 and out["csm"].dtype == bool
    assert np.array_equal(out["csm"], out["cloud"] | out["shadow"])
    assert out["score"].min() >= np.float32(1e-5) and out["score"].max() <= 1.0


def test_windowed_processing_matches_whole_image():
    b = cloudy("ROIs1158_spring", "39_p500")
    whole_score = cloud_score_l1c(b)
    whole_shadow = shadow_mask_l1c(b)
    thresholds = shadow_thresholds(b)
    y0, y1, x0, x1 = 40, 140, 60, 200
    h = CLOUD_SCORE_HALO
    win = {k: v[y0 - h:y1 + h, x0 - h:x1 + h] for k, v in b.items()}
    assert np.allclose(cloud_score_l1c(win)[h:-h, h:-h], whole_score[y0:y1, x0:x1], atol=1e-6)
    h = SHADOW_HALO
    win = {k: v[y0 - h:y1 + h, x0 - h:x1 + h] for k, v in b.items()}
    assert np.array_equal(shadow_mask_l1c(win, thresholds=thresholds)[h:-h, h:-h], whole_shadow[y0:y1, x0:x1])
    # per-window statistics change the answer: the thresholds must come from the whole scene
    assert not np.array_equal(shadow_mask_l1c(win)[h:-h, h:-h], whole_shadow[y0:y1, x0:x1])


# --------------------------------------------------------------------------- real SCL (L2A)
def test_scl_masks_on_real_file():
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(data_path(*SCL_20M)) as src:
        scl = src.read(1)
    m = scl_masks(scl)
    counts = {code: int(np.count_nonzero(scl == code)) for code in range(12)}
    assert m["nodata"].sum() == counts[0] == 9668  # the tile is mostly outside the swath
    assert m["shadow"].sum() == counts[3] == 4
    assert m["cloud"].sum() == counts[8] + counts[9] == 52 + 82
    assert m["cirrus"].sum() == counts[10] == 26
    assert m["valid"].sum() == scl.size - counts[0]
    csm = scl_cloud_shadow_mask(scl)
    assert csm.sum() == 4 + 134 + 26
    assert scl_cloud_shadow_mask(scl, include_cirrus=False, include_shadow=False).sum() == 134
    assert mask_fraction(csm, valid=m["valid"]) == pytest.approx(164 / 332)
