"""Multi-temporal time-series fill of cloudy pixels: date selection, radiometric matching,
seam blending, fallback and source codes, on synthetic series and on a real SEN12MS-CR-TS series."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from conftest import data_path
from topoclear.engine.clouds.timeseries_fill import (SOURCE_FALLBACK, SOURCE_NODATA, SOURCE_OBSERVED, Acquisition,
                                                     FillOptions, required_halo, robust_linear_fit, seam_step,
                                                     timeseries_fill)
from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.progress import Monitor

H = W = 128
TARGET_DATE = "2020-06-15"


def _texture(seed: int, c: int = 3, h: int = H, w: int = W) -> np.ndarray:
    """Smooth random reflectance texture, one level per band (values ~0.1-0.5)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(c, h, w)), (0, 2.5, 2.5))
    noise /= noise.std(axis=(1, 2), keepdims=True)
    levels = np.linspace(0.15, 0.35, c)[:, None, None]
    return (levels + 0.05 * noise).astype(np.float32)


def _disc(cy: float, cx: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _clear(h: int = H, w: int = W) -> np.ndarray:
    return np.zeros((h, w), bool)


def _cloudy(truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = truth.copy()
    out[:, mask] = np.nan
    return out


def test_robust_fit_ignores_outliers():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.05, 0.4, size=(2, 2000))
    y = np.stack([1.3 * x[0] - 0.02, 0.8 * x[1] + 0.05]) + rng.normal(0, 0.002, size=(2, 2000))
    y[:, :400] += rng.uniform(0.1, 0.3, size=(2, 400))  # 20 % changed pixels
    gain, offset = robust_linear_fit(x, y)
    np.testing.assert_allclose(gain, [1.3, 0.8], atol=0.01)
    np.testing.assert_allclose(offset, [-0.02, 0.05], atol=0.003)


def test_known_gain_offset_change_is_undone_locally():
    truth = _texture(0)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32) / (W - 1)
    gain = np.stack([0.8 + 0.45 * x, 1.2 - 0.3 * y, 1.0 + 0.2 * x * y])  # target = gain * aux + offset
    offset = np.stack([-0.02 + 0.05 * y, 0.03 * x, -0.01 + 0.0 * x])
    aux = ((truth - offset) / gain).astype(np.float32)
    mask = _disc(40, 45, 14) | _disc(90, 90, 18)
    cloudy = _cloudy(truth, mask)
    acq = [Acquisition(aux, _clear(), "2020-06-25")]
    opts = FillOptions(block_size=48, block_step=24, min_linear_pixels=400, min_offset_pixels=50)
    res = timeseries_fill(cloudy, mask, TARGET_DATE, acq, opts)
    err_local = np.abs(res.image[:, mask] - truth[:, mask])
    assert err_local.mean() < 0.002 and err_local.max() < 0.015
    assert np.all(res.source[mask] == 1)
    # one fit for the whole window cannot follow the spatially varying change
    glob = timeseries_fill(cloudy, mask, TARGET_DATE, acq, FillOptions(block_size=W, block_step=W))
    err_global = np.abs(glob.image[:, mask] - truth[:, mask]).mean()
    assert err_local.mean() < 0.5 * err_global
    # raw auxiliary values (no matching) are far off
    assert np.abs(aux[:, mask] - truth[:, mask]).mean() > 10 * err_local.mean()


def _dated_series(truth: np.ndarray, mask: np.ndarray):
    """Three auxiliary dates in non-chronological order; each differs from the truth inside the
    cloud by its own offset (so the filled values tell which date they came from)."""
    dates = ["2020-08-14", "2020-05-16", "2020-06-20"]  # +60, -30, +5 days
    marks = [0.03, 0.06, 0.09]
    images = []
    for m in marks:
        img = truth.copy()
        img[:, mask] += m
        images.append(img)
    return dates, marks, images


def test_temporally_nearest_clear_date_is_used_then_the_next_nearest():
    truth = _texture(2)
    mask = _disc(64, 64, 25)
    dates, marks, images = _dated_series(truth, mask)
    interior = ndimage.binary_erosion(mask, iterations=6)
    acq = [Acquisition(img, _clear(), d) for img, d in zip(images, dates)]
    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq)
    assert np.all(res.source[mask] == 3)  # 2020-06-20, the nearest, 3rd in the caller's order
    np.testing.assert_allclose(res.image[:, interior], truth[:, interior] + marks[2], atol=1e-4)
    ranks = {s.index: s.rank for s in res.stats.per_date}
    assert ranks == {3: 0, 2: 1, 1: 2}
    assert [s.days for s in res.stats.per_date] == [60.0, -30.0, 5.0]

    # the nearest date is cloudy over the left part of the cloud: those pixels come from the
    # next nearest (-30 days, code 2), not from the +60 days one
    left = np.zeros_like(mask)
    left[:, :60] = True
    acq[2] = Acquisition(images[2], left, dates[2])
    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq)
    assert np.all(res.source[mask & left] == 2)
    assert np.all(res.source[mask & ~left] == 3)
    inner_left = interior & ndimage.binary_erosion(left, iterations=6)
    np.testing.assert_allclose(res.image[:, inner_left], truth[:, inner_left] + marks[1], atol=1e-4)
    counts = {s.index: s.filled_pixels for s in res.stats.per_date}
    assert counts == {1: 0, 2: int((mask & left).sum()), 3: int((mask & ~left).sum())}
    # equally distant dates: the earlier one, whatever the caller's order
    tie = [Acquisition(images[0], _clear(), "2020-06-25"), Acquisition(images[1], _clear(), "2020-06-05")]
    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, tie)
    assert np.all(res.source[mask] == 2)
    # beyond max_days only the +60 days date is left out; where the others are cloudy it still
    # is not used
    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq, FillOptions(max_days=40))
    assert not np.any(res.source == 1)
    assert res.stats.per_date[0].rank == -1


def test_pixels_clear_on_no_date_get_the_fallback_and_code_254():
    truth = _texture(3)
    mask = _disc(64, 64, 30)
    hole = _disc(64, 64, 10)  # cloudy on every auxiliary date
    dates, _, images = _dated_series(truth, mask)
    acq = [Acquisition(img, hole, d) for img, d in zip(images, dates)]
    calls = []

    def constant(image, m):
        calls.append((image.copy(), m.copy()))
        out = image.copy()
        out[:, m] = 0.123
        return out

    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq, fallback=constant)
    assert np.all(res.source[hole] == SOURCE_FALLBACK)
    assert np.all(res.source[mask & ~hole] == 3)
    np.testing.assert_allclose(res.image[:, hole], 0.123)
    image_in, mask_in = calls[0]
    assert np.array_equal(mask_in, hole) and np.isfinite(image_in).all()
    assert res.stats.fallback_pixels == int(hole.sum())
    assert res.stats.filled_from_dates == int((mask & ~hole).sum())
    assert res.stats.real_fraction == pytest.approx((mask & ~hole).sum() / mask.sum())

    default = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq)  # GDAL FillNodata
    assert np.all(default.source[hole] == SOURCE_FALLBACK)
    assert np.isfinite(default.image[:, hole]).all()
    ring = ndimage.binary_dilation(hole, iterations=2) & ~hole
    # interpolated from the time-series filled pixels around it
    assert abs(float(default.image[:, hole].mean()) - float(default.image[:, ring].mean())) < 0.03

    none = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq, fallback=None)
    assert np.all(none.source[hole] == SOURCE_NODATA) and np.isnan(none.image[:, hole]).all()
    assert none.stats.unfilled_pixels == int(hole.sum()) and none.stats.fallback_pixels == 0


def test_source_codes_observed_pixels_and_nodata():
    truth = _texture(4)
    mask = _disc(50, 70, 20)
    target = _cloudy(truth, mask)
    target[:, :, :8] = np.nan  # outside the footprint
    nodata = np.zeros_like(mask)
    nodata[:, :8] = True
    aux_a = truth * 1.1 + 0.01
    aux_a[:, 100:, :] = np.nan  # the auxiliary date's own nodata
    acq = [Acquisition(aux_a, _disc(50, 60, 8), "2020-06-10"), Acquisition(truth, _clear(), "2020-07-30")]
    res = timeseries_fill(target, mask, TARGET_DATE, acq)
    observed = ~mask & ~nodata
    assert np.all(res.source[observed] == SOURCE_OBSERVED)
    assert np.array_equal(res.image[:, observed], target[:, observed])  # never modified
    assert np.all(res.source[nodata] == SOURCE_NODATA) and np.isnan(res.image[:, nodata]).all()
    assert np.all(res.source[mask & ~_disc(50, 60, 8)] == 1)
    assert np.all(res.source[mask & _disc(50, 60, 8)] == 2)
    assert res.source.dtype == np.uint8 and res.image.dtype == np.float32
    st = res.stats
    assert st.pixels == H * W and st.observed_pixels == int(observed.sum())
    assert st.to_fill_pixels == int(mask.sum()) and st.filled_from_dates == int(mask.sum())
    assert st.nodata_pixels == int(nodata.sum()) and st.real_fraction == 1.0
    assert sum(s.filled_pixels for s in st.per_date) == st.filled_from_dates
    assert st.as_dict()["per_date"][0]["date"] == "2020-06-10"

    # with fill_nodata the footprint gap is filled too (from the second date where the first has nodata)
    res = timeseries_fill(target, mask, TARGET_DATE, acq, FillOptions(fill_nodata=True))
    assert np.all(res.source[:100][nodata[:100]] == 1) and np.all(res.source[100:][nodata[100:]] == 2)
    assert np.isfinite(res.image[:, nodata]).all()
    assert res.stats.to_fill_pixels == int((mask | nodata).sum())


def _biased_case():
    """An auxiliary date with a local haze-like bump over the cloud that the block fit cannot
    remove: without blending the filled area shows a step at its border."""
    rough = _texture(5)
    levels = rough.mean(axis=(1, 2), keepdims=True)
    truth = (levels + 0.3 * (rough - levels)).astype(np.float32)  # gentle texture, natural steps small
    mask = _disc(64, 64, 22)
    bump = 0.04 * np.exp(-(((np.mgrid[0:H, 0:W] - 64.0) ** 2).sum(axis=0)) / (2 * 18.0 ** 2))
    aux = (truth + bump[None]).astype(np.float32)
    return truth, mask, [Acquisition(aux, _clear(), "2020-06-18")]


def test_feathering_removes_the_border_step():
    truth, mask, acq = _biased_case()
    cloudy = _cloudy(truth, mask)
    blended = timeseries_fill(cloudy, mask, TARGET_DATE, acq)
    plain = timeseries_fill(cloudy, mask, TARGET_DATE, acq, FillOptions(feather_px=0))
    natural = seam_step(truth, mask)  # the texture's own step across the same pairs
    step_blended = seam_step(blended.image, mask)
    step_plain = seam_step(plain.image, mask)
    assert step_plain > natural + 0.005  # the step the bump leaves without blending
    assert step_blended < 0.5 * step_plain
    assert step_blended < natural + 0.0005  # no larger than the texture's own steps
    # blending acts on a few pixels only: deeper inside, the matched values are untouched
    deep = ndimage.binary_erosion(mask, iterations=FillOptions().feather_px + 1)
    np.testing.assert_array_equal(blended.image[:, deep], plain.image[:, deep])
    # and it brings the filled border closer to the truth
    edge = mask & ~deep
    assert (np.abs(blended.image[:, edge] - truth[:, edge]).mean()
            < 0.6 * np.abs(plain.image[:, edge] - truth[:, edge]).mean())


def test_window_with_required_halo_matches_the_whole_array():
    size = 176
    truth = _texture(6, h=size, w=size)
    mask = _disc(60, 70, 15, size, size) | _disc(110, 100, 20, size, size) | _disc(88, 40, 9, size, size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    aux1 = (truth * (0.9 + 0.2 * xx) + 0.02 * yy).astype(np.float32)
    aux2 = (truth * 1.05 - 0.01).astype(np.float32)
    m1 = _disc(100, 95, 12, size, size)
    acq = [Acquisition(aux1, m1, "2020-06-12"), Acquisition(aux2, _clear(size, size), "2020-05-01")]
    opts = FillOptions(block_size=32, block_step=16, min_linear_pixels=200, min_offset_pixels=50)
    whole = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, acq, opts, fallback=None)
    halo = required_halo(opts)
    r0, r1, c0, c1 = 64, 120, 56, 128  # core window
    win = (slice(r0 - halo, r1 + halo), slice(c0 - halo, c1 + halo))
    part = timeseries_fill(_cloudy(truth, mask)[(slice(None),) + win], mask[win], TARGET_DATE,
                           [Acquisition(a.image[(slice(None),) + win], a.mask[win], a.date) for a in acq],
                           opts, fallback=None, halo=halo, origin=(r0 - halo, c0 - halo))
    assert part.image.shape == (3, r1 - r0, c1 - c0)
    assert np.array_equal(part.source, whole.source[r0:r1, c0:c1])
    np.testing.assert_allclose(part.image, whole.image[:, r0:r1, c0:c1], atol=1e-5)
    assert part.stats.pixels == (r1 - r0) * (c1 - c0)


def test_bad_inputs_and_cancellation():
    truth = _texture(7)
    mask = _disc(64, 64, 10)
    ok = Acquisition(truth, _clear(), "2020-06-01")
    with pytest.raises(InputError, match="auxiliary date 1"):
        timeseries_fill(truth, mask, TARGET_DATE, [Acquisition(truth[:2], _clear(), "2020-06-01")])
    with pytest.raises(InputError, match="mask"):
        timeseries_fill(truth, mask[:10], TARGET_DATE, [ok])
    with pytest.raises(InputError, match="date"):
        timeseries_fill(truth, mask, "June the 15th", [ok])
    with pytest.raises(InputError, match="at most 252"):
        timeseries_fill(truth, mask, TARGET_DATE, [ok] * 253)
    with pytest.raises(InputError, match="halo"):
        timeseries_fill(truth, mask, TARGET_DATE, [ok], halo=64)
    with pytest.raises(Cancelled):
        timeseries_fill(truth, mask, TARGET_DATE, [ok], monitor=Monitor(is_cancelled=lambda: True))
    # no auxiliary date at all: everything goes to the fallback
    res = timeseries_fill(_cloudy(truth, mask), mask, TARGET_DATE, [])
    assert np.all(res.source[mask] == SOURCE_FALLBACK) and res.stats.real_fraction == 0.0


# --------------------------------------------------------------------------- real series
REAL_TARGET = "2018-04-26"  # clear by the DSen2-CR rules (0.03 % flagged)
REAL_MASK_FROM = "2018-07-05"  # partly cloudy: its cloud + shadow mask (23 %) is transplanted


def _real_series():
    from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c
    import rasterio

    folder = data_path("sen12ms-cr-ts")
    series = {}
    for path in sorted(folder.glob("s2_*.tif")):
        date = re.search(r"\d{4}-\d\d-\d\d", path.name).group()
        with rasterio.open(path) as ds:
            dn = ds.read().astype(np.float32)
        series[date] = (dn / 10000.0, cloud_shadow_masks_l1c(bands_from_stack(dn))["csm"])
    if REAL_TARGET not in series or REAL_MASK_FROM not in series:
        pytest.skip(f"dates {REAL_TARGET} / {REAL_MASK_FROM} not in {folder}")
    return series


def test_real_series_beats_single_image_fill(record_property):
    from topoclear.engine.training.baselines import inpaint
    from topoclear.models.metrics import mae, psnr

    series = _real_series()
    truth, own_mask = series[REAL_TARGET]
    assert own_mask.mean() < 0.005  # the target really is clear
    mask = series[REAL_MASK_FROM][1]
    assert 0.1 < mask.mean() < 0.5
    cloudy = _cloudy(truth, mask)
    aux = [Acquisition(img, m, d) for d, (img, m) in sorted(series.items()) if d != REAL_TARGET]
    res = timeseries_fill(cloudy, mask, REAL_TARGET, aux)
    single = inpaint(np.nan_to_num(cloudy), mask)
    plain = timeseries_fill(cloudy, mask, REAL_TARGET, aux, FillOptions(feather_px=0))

    ts = np.clip(res.image, 0, 1)
    fill = np.clip(single, 0, 1)
    figures = {
        "psnr_timeseries": psnr(ts, truth, mask), "mae_timeseries": mae(ts, truth, mask),
        "psnr_fillnodata": psnr(fill, truth, mask), "mae_fillnodata": mae(fill, truth, mask),
        "seam_timeseries": seam_step(res.image, mask), "seam_no_blending": seam_step(plain.image, mask),
        "seam_truth": seam_step(truth, mask), "real_fraction": res.stats.real_fraction,
    }
    for k, v in figures.items():
        record_property(k, round(float(v), 5))
    print(f"\n{REAL_TARGET} with the {REAL_MASK_FROM} mask ({mask.mean():.1%}), 13 bands, inside the mask: "
          + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    used = {s.date: s.filled_pixels for s in res.stats.per_date if s.filled_pixels}
    print("pixels filled per date:", used)

    assert np.array_equal(res.image[:, ~mask], truth[:, ~mask])
    assert res.stats.real_fraction > 0.95
    assert np.isfinite(res.image).all()
    assert figures["psnr_timeseries"] > figures["psnr_fillnodata"] + 1.0
    assert figures["mae_timeseries"] < figures["mae_fillnodata"]
    assert figures["seam_timeseries"] < 0.7 * figures["seam_no_blending"]
    # the two clear dates 35 days away (03-22 before, 05-31 after) do most of the work
    assert used.get("2018-03-22", 0) + used.get("2018-05-31", 0) > 0.9 * mask.sum()
