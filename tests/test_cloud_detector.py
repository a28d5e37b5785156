"""The ukis-csmask cloud / shadow detector run by :mod:`topoclear.engine.clouds.masks.detector` (tiles) and
:mod:`topoclear.engine.clouds.masks.detector_scene` (whole scenes).

Real data only (../shared/data):

* ``cloudmask-reference/ukis_sentinel2.npz``: a 512 x 512 Sentinel-2 TOA patch with a reference
  mask. Its classes are mapped as the ukis-csmask tests map them (``reclass_value_from [0, 1, 2,
  3, 4] -> to [2, 0, 0, 0, 1]``): **0 -> shadow, 4 -> cloud**, 1-3 -> clear. (The opposite
  mapping gives kappa < 0 for both classes with the package's own ``CSmask``.)
* the 27 clear SEN12MS-CR L1C images (13 bands, 10 m), masked at 30 m;
* one cloudy SEN12MS-CR image for the windowed 10 m path.

Bounds are measured values with a margin (measured on 2 CPU cores, onnxruntime 1.32.0,
ukis-csmask 1.0.0): on the reference patch overall accuracy 0.903, cloud kappa 0.826, shadow
kappa 0.803 (``CSmask`` itself: 0.903, 0.827, 0.801), 98.7 % same class as ``CSmask``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import (HAVE_DETECTOR, data_path, detector_missing_reason, mask_accuracy, needs_detector,
                      reference_patch, stitch)
from topoclear.engine.clouds.masks.detector import (
    CLEAR,
    CLOUD,
    INSTALL_HINT,
    NODATA,
    S2_L1C_BANDS,
    SHADOW,
    SIX_BANDS,
    CloudDetector,
    DetectorUnavailable,
)
from topoclear.engine.clouds.masks.detector_scene import block_factor, buffer_classes, detect_scene, plan_scene
from topoclear.engine.errors import Cancelled, InputError, TopoClearError
from topoclear.engine.progress import Monitor

THREADS = 2


@pytest.fixture(scope="module")
def detector():
    if not HAVE_DETECTOR:
        pytest.skip(detector_missing_reason())
    return CloudDetector("l1c", SIX_BANDS, threads=THREADS)


@pytest.fixture(scope="module")
def ukis():
    """(6, 512, 512) reflectance and the reference classes (0 clear, 1 cloud, 2 shadow)."""
    return reference_patch()


@pytest.fixture(scope="module")
def ukis_classes(detector, ukis):
    return detector.predict_classes(ukis[0])


# -- without the network ------------------------------------------------------------------------

def test_missing_packages_raise_a_clear_error(without_detector_packages):
    with pytest.raises(DetectorUnavailable) as info:
        CloudDetector()
    assert isinstance(info.value, ImportError) and isinstance(info.value, TopoClearError)
    message = str(info.value)
    assert INSTALL_HINT in message and "onnxruntime" in message and "ukis_csmask" in message
    with pytest.raises(DetectorUnavailable):
        detect_scene(lambda *a: None, 10, 10, 10.0)


def test_block_factor_is_the_nearest_integer_ties_to_the_finer_grid():
    assert [block_factor(p) for p in (10, 20, 15, 30, 60, 5, 12)] == [3, 1, 2, 1, 1, 6, 2]
    plan = plan_scene(10980, 10980, 10.0)
    assert plan.factor == 3 and plan.coarse_shape == (3660, 3660) and plan.detector_pixel_m == 30
    assert plan.tiles == (19, 19) and plan.window_px == 3072 and len(plan.windows) == 16
    assert "3x3" in plan.describe()
    assert plan_scene(5490, 5490, 20.0).factor == 1
    with pytest.raises(InputError):
        block_factor(0)


def test_buffer_classes_grows_clear_pixels_only_cloud_over_shadow():
    c = np.zeros((21, 21), np.uint8)
    c[10, 5] = CLOUD
    c[10, 9] = SHADOW
    c[0, :] = NODATA
    out = buffer_classes(c, 20.0, 10.0)  # 2 px
    yy, xx = np.mgrid[:21, :21]
    near_cloud = np.hypot(yy - 10, xx - 5) <= 2
    near_shadow = np.hypot(yy - 10, xx - 9) <= 2
    assert out[10, 5] == CLOUD and out[10, 9] == SHADOW  # detected classes keep their class
    assert (out[near_cloud & (c == CLEAR)] == CLOUD).all()  # cloud wins where both buffers meet
    assert (out[near_shadow & ~near_cloud & (c == CLEAR)] == SHADOW).all()
    assert (out[~near_cloud & ~near_shadow & (c == CLEAR)] == CLEAR).all()
    assert (out[0] == NODATA).all()
    assert np.array_equal(buffer_classes(c, 4.0, 10.0), c)  # under half a pixel: unchanged
    assert buffer_classes(c, 0.0, 10.0) is not c


# -- the models ---------------------------------------------------------------------------------

@needs_detector
def test_model_choice_provider_and_errors(detector):
    assert detector.model_path.name == "model_6b_l1c.onnx" and detector.model_bands == SIX_BANDS
    assert detector.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert detector.threads == THREADS
    thirteen = CloudDetector("L1C", S2_L1C_BANDS, threads=1)
    assert thirteen.model_path.name == "model_6b_l1c.onnx"
    assert list(thirteen.band_index) == [1, 2, 3, 7, 11, 12]  # B2 B3 B4 B8 B11 B12
    four = CloudDetector("l2a", ["B04", "B03", "B02", "B08"], threads=1)
    assert four.model_path.name == "model_4b_l2a.onnx" and list(four.band_index) == [2, 1, 0, 3]
    with pytest.raises(InputError):
        CloudDetector("l3")
    with pytest.raises(InputError):
        CloudDetector(bands=["red", "green", "nir"])


@needs_detector
def test_accuracy_on_the_reference_patch(ukis, ukis_classes):
    r = mask_accuracy(ukis[1], ukis_classes)
    print(f"\nreference patch: OA {r['oa']:.3f}, cloud OA {r['oa_cloud']:.3f} kappa {r['k_cloud']:.3f}, "
          f"shadow OA {r['oa_shadow']:.3f} kappa {r['k_shadow']:.3f}")
    assert r["oa"] > 0.88
    assert r["oa_cloud"] > 0.92 and r["k_cloud"] > 0.78
    assert r["oa_shadow"] > 0.93 and r["k_shadow"] > 0.75


@needs_detector
def test_agrees_with_the_packages_own_csmask(ukis, ukis_classes):
    from ukis_csmask.mask import CSmask

    img = np.ascontiguousarray(np.moveaxis(ukis[0], 0, -1))
    theirs = CSmask(img.copy(), band_order=list(SIX_BANDS), product_level="l1c",
                    intra_op_num_threads=THREADS).csm[..., 0]
    same = float(np.mean(theirs == ukis_classes))
    print(f"\nsame class as CSmask: {same:.4f}")
    assert same >= 0.97


@needs_detector
def test_probabilities_and_nodata(detector, ukis):
    x = ukis[0][:, :150, :150].copy()
    x[:, :40, :60] = np.nan
    x[3, 100, 100] = np.inf  # one bad band makes the pixel nodata
    p = detector.predict_probabilities(x)
    assert p.shape == (3, 150, 150) and p.dtype == np.float32
    bad = np.zeros((150, 150), bool)
    bad[:40, :60] = True
    bad[100, 100] = True
    assert np.isnan(p[:, bad]).all() and np.isfinite(p[:, ~bad]).all()
    np.testing.assert_allclose(p[:, ~bad].sum(axis=0), 1.0, atol=1e-4)
    classes = detector.predict_classes(x)
    assert (classes[bad] == NODATA).all() and set(np.unique(classes[~bad])) <= {CLEAR, CLOUD, SHADOW}
    with pytest.raises(InputError):
        detector.predict_probabilities(x[:4])


@needs_detector
def test_result_does_not_depend_on_the_window_size(detector, ukis, ukis_classes):
    img = ukis[0]
    reads = []
    progress = []

    def read(row0, col0, rows, cols):
        reads.append((row0, col0, rows, cols))
        return img[:, row0:row0 + rows, col0:col0 + cols]

    run = detect_scene(read, 512, 512, 30.0, Monitor(on_progress=progress.append), window_px=128, detector=detector)
    small = stitch(run, 512, 512)
    assert run.plan.factor == 1 and len(run.plan.windows) == 16
    assert run.tiles_run == run.plan.tile_count == 9  # every tile runs once, whatever the windows
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert all(r >= 0 and c >= 0 and r + h <= 512 and c + w <= 512 and h <= 512 for r, c, h, w in reads)
    same_small = float(np.mean(small == ukis_classes))

    limited = detect_scene(lambda *a: read(*a), 512, 512, 30.0, window_px=300, halo_px=96, detector=detector)
    big = stitch(limited, 512, 512)
    same_big = float(np.mean(big == ukis_classes))
    print(f"\nwindow 128 px, full context: {same_small:.5f}; window 300 px, halo 96 px: {same_big:.5f} "
          f"of the whole-image classes")
    assert same_small >= 0.9999  # exact, up to float rounding
    assert same_big >= 0.99 and float(np.mean(small == big)) >= 0.99


@needs_detector
def test_cancel_stops_before_any_tile(detector, ukis):
    run = detect_scene(lambda r, c, h, w: ukis[0][:, r:r + h, c:c + w], 512, 512, 30.0,
                       Monitor(is_cancelled=lambda: True), detector=detector)
    with pytest.raises(Cancelled):
        next(iter(run))
    assert run.tiles_run == 0


@needs_detector
def test_windowed_10m_scene_with_nodata_and_buffer():
    import rasterio

    path = data_path("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")
    with rasterio.open(path) as ds:
        x = ds.read().astype(np.float32) / 10000.0
        pixel = float(ds.res[0])
    yy, xx = np.mgrid[:256, :256]
    nodata = xx + 0.6 * yy < 60  # a swath edge
    x[:, nodata] = np.nan
    det = CloudDetector("l1c", S2_L1C_BANDS, threads=THREADS)

    def read(r, c, h, w):
        return x[:, r:r + h, c:c + w]

    whole = stitch(detect_scene(read, 256, 256, pixel, detector=det), 256, 256)
    buffered = stitch(detect_scene(read, 256, 256, pixel, detector=det, buffer_m=60.0), 256, 256)
    windowed = stitch(detect_scene(read, 256, 256, pixel, window_px=50, detector=det, buffer_m=60.0), 256, 256)
    assert (whole[nodata] == NODATA).all() and not (whole[~nodata] == NODATA).any()
    cloud = float(np.mean(whole[~nodata] == CLOUD))
    print(f"\n39_p500 cloudy at 30 m: cloud {cloud:.3f}, shadow {np.mean(whole[~nodata] == SHADOW):.3f}")
    assert cloud > 0.15  # ~28 % cumulus by eye
    # 3x3 blocks: nearest-neighbour back to 10 m keeps the blocks (away from the nodata edge)
    inner = whole[90:252:3, 90:252:3]
    assert np.array_equal(np.repeat(np.repeat(inner, 3, 0), 3, 1), whole[90:252, 90:252])
    assert np.array_equal(buffered, buffer_classes(whole, 60.0, pixel))
    assert np.array_equal(windowed, buffered)  # windows of 51 px (17 blocks), 6 px buffer: exact


@pytest.fixture(scope="module")
def clear_results():
    """Fraction of cloud and shadow on each clear SEN12MS-CR image, masked at 30 m."""
    if not HAVE_DETECTOR:
        pytest.skip(detector_missing_reason())
    import rasterio

    folder = data_path("sen12ms-cr", "s2_clear")
    det = CloudDetector("l1c", S2_L1C_BANDS, threads=THREADS)
    out = {}
    for path in sorted(Path(folder).glob("*.tif")):
        with rasterio.open(path) as ds:
            x = ds.read().astype(np.float32) / 10000.0
            pixel = float(ds.res[0])
        classes = stitch(detect_scene(lambda r, c, h, w: x[:, r:r + h, c:c + w], x.shape[1], x.shape[2], pixel,
                                      detector=det), x.shape[1], x.shape[2])
        name = path.stem.split("_s2_")[-1]
        out[name] = (float(np.mean(classes == CLOUD)), float(np.mean(classes == SHADOW)))
    return out


def test_clear_images_are_mostly_clear(clear_results):
    print("\nimage       cloud   shadow")
    for name, (cloud, shadow) in clear_results.items():
        print(f"{name:10s} {cloud:7.4f} {shadow:7.4f}")
    flagged = np.array([c + s for c, s in clear_results.values()])
    assert len(flagged) >= 20
    # measured: 24 of 27 flag < 0.5 %, 101_p505 3.4 % cloud, 135_p501 4.5 % shadow
    assert np.mean(flagged < 0.01) >= 0.85
    assert np.median(flagged) < 0.005 and flagged.max() < 0.08


def test_snow_covered_clear_image_is_not_cloud(clear_results):
    if "26_p100" not in clear_results:
        pytest.skip("ROIs1158_spring_s2_26_p100.tif not in the sample data")
    cloud, shadow = clear_results["26_p100"]
    assert cloud < 0.03 and shadow < 0.03
