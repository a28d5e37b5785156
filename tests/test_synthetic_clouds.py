"""Synthetic clouds and shadows: deterministic, physically placed, detectable, and written as GeoTIFFs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from conftest import data_path
from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_mask_l1c
from topoclear.models.bands import S2_BANDS_L1C
from topoclear.engine.training.synthetic_clouds import (CLOUD_SPECTRUM, CloudParameters, add_synthetic_clouds, fractal_field,
                                               random_parameters, write_synthetic_pair)


@pytest.fixture(scope="module")
def clear_path():
    return data_path("sen12ms-cr", "s2_clear", "ROIs2017_winter_s2_102_p926.tif")


@pytest.fixture(scope="module")
def clear(clear_path):
    with rasterio.open(clear_path) as ds:
        return ds.read()


def test_same_seed_same_clouds_other_seed_other_clouds(clear):
    a = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=7)
    b = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=7)
    c = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=8)
    assert np.array_equal(a.cloudy, b.cloudy) and np.array_equal(a.cloud_mask, b.cloud_mask)
    assert a.parameters == b.parameters
    assert not np.array_equal(a.cloud_mask, c.cloud_mask)
    assert a.cloudy.shape == clear.shape and a.cloudy.dtype == np.float32


def test_fractal_field_is_standardised_and_smooth():
    f = fractal_field((128, 160), np.random.default_rng(0), beta=3.0)
    assert f.shape == (128, 160)
    assert abs(f.mean()) < 1e-9 and abs(f.std() - 1) < 1e-9
    # neighbouring pixels are strongly correlated (a smooth field, not white noise)
    assert np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1] > 0.9


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.6])
def test_coverage_is_respected(clear, coverage):
    r = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=1, kind="thick", coverage=coverage, cloud_height_m=0.0)
    assert abs(float((r.opacity > 0).mean()) - coverage) < 0.02


def test_thick_clouds_are_opaque_and_thin_clouds_show_the_ground(clear):
    thick = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=3, kind="thick", coverage=0.4, brightness_variation=0.0)
    core = thick.opacity == 1.0
    assert core.mean() > 0.1
    b2 = S2_BANDS_L1C.index("B2")
    assert np.allclose(thick.cloudy[b2][core], CLOUD_SPECTRUM["B2"] * 10000, rtol=1e-4)

    thin = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=3, kind="thin", coverage=0.4, thin_opacity=0.4,
                                shadow_strength=0.0, brightness_variation=0.0)
    assert thin.opacity.max() <= 0.4 + 1e-6
    under = thin.cloud_mask
    b8 = S2_BANDS_L1C.index("B8")
    # alpha blending: the ground is still there under thin cloud, with weight 1 - alpha
    a = thin.opacity[under]
    ground = (thin.cloudy[b8][under] - a * CLOUD_SPECTRUM["B8"] * 10000) / (1 - a)
    assert np.allclose(ground, clear[b8][under], rtol=1e-4, atol=0.05)
    assert np.corrcoef(thin.cloudy[b8][under], clear[b8][under])[0, 1] > 0.5
    assert (thin.cloudy[b8][under] > clear[b8][under]).mean() > 0.9  # and brightened


def test_pixels_without_cloud_or_shadow_are_untouched(clear):
    r = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=4, coverage=0.2)
    untouched = (r.opacity == 0) & (r.shadow == 0)
    assert untouched.mean() > 0.2
    assert np.array_equal(r.cloudy[:, untouched], clear[:, untouched].astype(np.float32))


@pytest.mark.parametrize("azimuth, direction", [(180.0, (-1, 0)), (0.0, (1, 0)), (90.0, (0, -1)), (270.0, (0, 1))])
def test_shadows_fall_away_from_the_sun(azimuth, direction):
    p = CloudParameters(sun_azimuth=azimuth, sun_zenith=45.0, cloud_height_m=200.0, pixel_size_m=10.0)
    dy, dx = p.shadow_offset_px
    assert (np.sign(dy), np.sign(dx)) == direction  # sun in the south -> shadows to the north (up)
    assert math.hypot(dy, dx) == pytest.approx(20.0, abs=0.6)


def test_shadow_is_the_cloud_field_displaced_and_darkens_the_ground(clear):
    p = CloudParameters(coverage=0.3, kind="thick", sun_azimuth=135.0, sun_zenith=40.0, cloud_height_m=600.0,
                        shadow_strength=0.6)
    r = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=5, parameters=p)
    dy, dx = p.shadow_offset_px
    h, w = r.opacity.shape
    # inside the frame, shadow(y, x) = strength * opacity(y - dy, x - dx)
    ys, xs = slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx))
    ys0, xs0 = slice(max(0, -dy), h + min(0, -dy)), slice(max(0, -dx), w + min(0, -dx))
    assert np.allclose(r.shadow[ys, xs], 0.6 * r.opacity[ys0, xs0], atol=1e-6)
    assert r.shadow_mask.any() and not (r.shadow_mask & r.cloud_mask).any()
    b8 = S2_BANDS_L1C.index("B8")
    shaded = r.shadow_mask & (r.opacity == 0)
    assert shaded.mean() > 0.05
    assert (r.cloudy[b8][shaded] < clear[b8][shaded]).all()


def test_dsen2cr_detector_finds_the_synthetic_clouds(clear):
    r = add_synthetic_clouds(clear, S2_BANDS_L1C, seed=2, kind="thick", coverage=0.35)
    detected = cloud_mask_l1c(bands_from_stack(r.cloudy))
    assert (detected & r.cloud_mask).sum() / r.cloud_mask.sum() > 0.8
    assert cloud_mask_l1c(bands_from_stack(clear)).mean() < 0.01


def test_random_parameters_are_plausible_and_fixable():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = random_parameters(rng, kind="mixed")
        assert p.kind == "mixed" and 0.1 <= p.coverage <= 0.6 and 20 <= p.sun_zenith <= 50


def test_bad_parameters_and_inputs_are_rejected(clear):
    with pytest.raises(ValueError, match="coverage"):
        CloudParameters(coverage=1.5)
    with pytest.raises(ValueError, match="kind"):
        CloudParameters(kind="fog")
    with pytest.raises(ValueError, match="band names"):
        add_synthetic_clouds(clear, S2_BANDS_L1C[:3])
    with pytest.raises(ValueError, match="bands, H, W"):
        add_synthetic_clouds(clear[0], S2_BANDS_L1C)


def test_write_synthetic_pair(clear_path, tmp_path):
    out = tmp_path / "cloudy.tif", tmp_path / "cloud.tif", tmp_path / "shadow.tif"
    r = write_synthetic_pair(clear_path, S2_BANDS_L1C, *out, seed=11)
    with rasterio.open(clear_path) as src, rasterio.open(out[0]) as cloudy:
        assert cloudy.transform == src.transform and cloudy.crs == src.crs and cloudy.dtypes == src.dtypes
        assert cloudy.tags()["SYNTHETIC_CLOUDS"] == "yes" and cloudy.tags()["SEED"] == "11"
        assert np.array_equal(cloudy.read(), np.clip(np.rint(r.cloudy), 0, 65535).astype(np.uint16))
    with rasterio.open(out[1]) as cm, rasterio.open(out[2]) as sm:
        assert cm.dtypes[0] == "uint8" and np.array_equal(cm.read(1).astype(bool), r.cloud_mask)
        assert np.array_equal(sm.read(1).astype(bool), r.shadow_mask)
    assert r.parameters.pixel_size_m == 10.0
    assert r.describe()["seed"] == 11
