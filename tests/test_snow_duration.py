"""Snow cover duration: the per-pixel time-series kernel and the whole-scene run.

Constructed series whose answer follows by hand from the documented rules (day 0 = period start,
snow when the linear interpolation between the clear observations around a day is >= 0.5, gaps
longer than ``max_gap_days`` unknown, extrapolation up to ``max_gap_days / 2``), a per-pixel
reference written with plain loops for random series, and GeoTIFF scenes run in windows.
"""
from __future__ import annotations

import csv
import os
from datetime import date, timedelta

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.io.raster import Grid
from topoclear.engine.progress import Monitor
from topoclear.engine.snow.areas import row_areas_m2
from topoclear.engine.snow.duration import (BAND_DESCRIPTIONS, BAND_NAMES, DURATION_NODATA, SnowDurationRequest,
                                            duration_kernel, merge_same_dates, snow_cover_duration,
                                            snow_date_statistics, write_date_statistics_csv)

START = date(2020, 9, 1)
ND = DURATION_NODATA
UTM = CRS.from_epsg(32632)


def day(n: int) -> date:
    return START + timedelta(days=n)


def pixel_series(observations, shape=(1, 1)):
    """Maps and dates from ``{day: code}`` for one pixel (every pixel of ``shape`` alike)."""
    days = sorted(observations)
    return [np.full(shape, observations[d], dtype=np.uint8) for d in days], [day(d) for d in days]


def run(observations, last_day: int, max_gap: int = 15):
    maps, dates = pixel_series(observations)
    out = duration_kernel(maps, dates, START, day(last_day), max_gap)
    return {name: int(v) for name, v in zip(BAND_NAMES, out.bands()[:, 0, 0])}


def every_5_days(last_obs: int, snow_from: int, snow_to: int, clouds=()):
    return {d: (205 if d in clouds else 100 if snow_from <= d <= snow_to else 0) for d in range(0, last_obs + 1, 5)}


# -- the kernel on constructed series ----------------------------------------------------------

def test_snow_from_day_10_to_60_observed_every_5_days():
    # Observed on days 0, 5, ..., 95: no snow on 5 and snow on 10 put the onset half-way, on day 8
    # (5 + ceil(5 / 2); day 7 interpolates to 0.4, day 8 to 0.6); snow on 60 and none on 65 put the
    # last snow day on 62 (60 + floor(5 / 2); day 62 interpolates to 0.6, day 63 to 0.4).
    r = run(every_5_days(95, 10, 60), last_day=119)
    assert r["SCD"] == 55 and r["SOD"] == 8 and r["SMOD"] == 62
    assert r["FIRST_SNOW_DAY"] == 8 and r["LAST_SNOW_DAY"] == 62
    assert r["NOBS"] == 20
    # after the last observation (day 95) days up to 95 + 7 are extrapolated: 103..119 unknown
    assert r["UNKNOWN_DAYS"] == 17


def test_daily_observations_give_the_snow_period_itself():
    r = run({d: 100 if 10 <= d <= 60 else 0 for d in range(100)}, last_day=99)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["NOBS"], r["UNKNOWN_DAYS"]) == (51, 10, 60, 100, 0)


def test_cloud_gap_up_to_max_gap_is_filled():
    # snow on 20, clouds on 25 and 30, snow on 35: 15 days apart, filled
    r = run(every_5_days(55, 0, 59, clouds=(25, 30)), last_day=59)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["NOBS"], r["UNKNOWN_DAYS"]) == (60, 0, 59, 10, 0)
    # snow on 20, no snow on 35 (15 days apart): snow up to 20 + 7
    r = run(every_5_days(55, 0, 20, clouds=(25, 30)), last_day=59)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["UNKNOWN_DAYS"]) == (28, 0, 27, 0)
    # no snow on 20, snow on 35: snow from 20 + ceil(15 / 2) = 28 (a tie is snow: 27.5 is not a day)
    r = run(every_5_days(55, 35, 59, clouds=(25, 30)), last_day=59)
    assert (r["SCD"], r["SOD"], r["SMOD"]) == (32, 28, 59)
    # an even gap: no snow on 20, snow on 30 (clouds on 25); day 25 is half-way and counts as snow
    r = run(every_5_days(55, 30, 59, clouds=(25,)), last_day=59)
    assert (r["SOD"], r["SCD"]) == (25, 35)
    r = run(every_5_days(55, 0, 20, clouds=(25,)), last_day=59)
    assert (r["SMOD"], r["SCD"]) == (25, 26)


def test_gap_longer_than_max_gap_is_unknown():
    # snow on 20, clouds on 25, 30, 35, snow on 40: 20 days apart > 15, days 21..39 unknown
    r = run(every_5_days(55, 0, 59, clouds=(25, 30, 35)), last_day=59)
    assert r["UNKNOWN_DAYS"] == 19 and r["SCD"] == 60 - 19 and r["NOBS"] == 9
    # the unknown days split the snow into 0..20 (21 days) and 40..59 (20 days): the longer wins
    assert (r["SOD"], r["SMOD"], r["FIRST_SNOW_DAY"], r["LAST_SNOW_DAY"]) == (0, 20, 0, 59)
    # the limit itself: 16 days apart is unknown, 15 is filled
    assert run({0: 100, 16: 100}, last_day=16)["UNKNOWN_DAYS"] == 15
    assert run({0: 100, 15: 100}, last_day=15)["UNKNOWN_DAYS"] == 0
    assert run({0: 100, 16: 100}, last_day=16, max_gap=16)["UNKNOWN_DAYS"] == 0


def test_longest_period_ties_go_to_the_earliest():
    obs = {d: 100 if (d <= 10 or 30 <= d <= 40) else 0 for d in range(60)}
    r = run(obs, last_day=59)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["FIRST_SNOW_DAY"], r["LAST_SNOW_DAY"]) == (22, 0, 10, 0, 40)


def test_extrapolation_before_first_and_after_last_observation():
    # first clear observation on day 10, last on day 20: days 3..27 are known (max gap 15 -> 7 days)
    r = run({10: 100, 20: 100}, last_day=40)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["UNKNOWN_DAYS"]) == (25, 3, 27, 41 - 25)
    r = run({10: 100, 20: 100}, last_day=40, max_gap=0)  # observation days only
    assert (r["SCD"], r["SOD"], r["SMOD"], r["UNKNOWN_DAYS"]) == (2, 10, 10, 39)


def test_margin_maps_drive_the_interpolation_but_are_not_counted():
    # no snow 4 days before the start, snow on day 6: 10 days apart, snow from day 1
    r = run({-4: 0, 6: 100, 10: 100}, last_day=10)
    assert (r["SCD"], r["SOD"], r["NOBS"]) == (10, 1, 2)
    # without the margin map day 0 is extrapolated from day 6
    r = run({6: 100, 10: 100}, last_day=10)
    assert (r["SCD"], r["SOD"]) == (11, 0)
    # a margin map after the end: no snow 5 days after it
    r = run({0: 100, 10: 100, 15: 0}, last_day=12)
    assert (r["SCD"], r["SMOD"], r["NOBS"]) == (13, 12, 2)


def test_same_date_maps_are_merged_first_clear_wins():
    a = np.array([[205, 0, 255, 255, 100, 254]], dtype=np.uint8)
    b = np.array([[100, 100, 205, 255, 0, 100]], dtype=np.uint8)
    c = np.array([[0, 0, 0, 0, 0, 0]], dtype=np.uint8)
    dates, merged = merge_same_dates([c, a, b], [day(5), day(0), day(0)])
    assert dates == [day(0), day(5)]
    assert merged[0].tolist() == [[100, 0, 205, 255, 100, 100]]
    out = duration_kernel([a, b], [day(0), day(0)], START, day(0))
    assert out.nobs.tolist() == [[1, 1, 0, 0, 1, 1]]
    assert out.scd.tolist() == [[1, 0, ND, ND, 1, 1]]


def test_never_observed_pixel_is_nodata():
    r = run({d: 205 for d in range(0, 60, 5)} | {3: 255, 4: 254}, last_day=59)
    assert r["NOBS"] == 0
    assert all(r[name] == ND for name in BAND_NAMES if name != "NOBS")
    # clear only in the margin: no observation in the period, nodata too
    r = run({-3: 100, 5: 205}, last_day=10)
    assert r["NOBS"] == 0 and r["SCD"] == ND
    # observed, never snow: SCD 0, no dates
    r = run({0: 0, 10: 0}, last_day=10)
    assert (r["SCD"], r["SOD"], r["SMOD"], r["FIRST_SNOW_DAY"], r["LAST_SNOW_DAY"], r["NOBS"]) == (0, ND, ND, ND, ND, 2)


def test_pixels_of_one_window_keep_their_own_histories():
    histories = [every_5_days(95, 10, 60), every_5_days(95, 0, 119, clouds=(25, 30, 35)),
                 {d: 205 for d in range(0, 100, 5)}, every_5_days(95, 40, 45, clouds=(10, 15, 70))]
    days = sorted(set().union(*histories))
    maps = [np.array([[h.get(d, 255) for h in histories[:2]], [h.get(d, 255) for h in histories[2:]]],
                     dtype=np.uint8) for d in days]
    out = duration_kernel(maps, [day(d) for d in days], START, day(119)).bands()
    for i, h in enumerate(histories):
        single = run(h, last_day=119)
        assert [int(v) for v in out[:, i // 2, i % 2]] == [single[name] for name in BAND_NAMES], i


def reference(codes, offsets, days, max_gap):
    """The documented rules, pixel by pixel and day by day."""
    result = np.zeros((7,) + codes[0].shape, dtype=np.int64)
    for idx in np.ndindex(codes[0].shape):
        obs = [(t, int(c[idx] == 100)) for t, c in zip(offsets, codes) if c[idx] in (0, 100)]
        state = []
        for d in range(days):
            before = [o for o in obs if o[0] <= d]
            after = [o for o in obs if o[0] > d]
            if before and before[-1][0] == d:
                state.append(before[-1][1])
            elif before and after:
                (tp, vp), (tn, vn) = before[-1], after[0]
                g = tn - tp
                state.append(-1 if g > max_gap else int(2 * (vp * g + (vn - vp) * (d - tp)) >= g))
            elif before:
                state.append(before[-1][1] if 2 * (d - before[-1][0]) <= max_gap else -1)
            elif after:
                state.append(after[0][1] if 2 * (after[0][0] - d) <= max_gap else -1)
            else:
                state.append(-1)
        nobs = sum(1 for t, _ in obs if 0 <= t < days)
        snow = [d for d in range(days) if state[d] == 1]
        best_len, best_start, run_start = 0, 0, None
        for d in range(days):
            if state[d] == 1:
                run_start = d if run_start is None else run_start
                if d - run_start + 1 > best_len:
                    best_len, best_start = d - run_start + 1, run_start
            else:
                run_start = None
        if nobs == 0:
            values = [ND] * 5 + [0, ND]
        elif snow:
            values = [len(snow), best_start, best_start + best_len - 1, snow[0], snow[-1], nobs, state.count(-1)]
        else:
            values = [0, ND, ND, ND, ND, nobs, state.count(-1)]
        result[(slice(None),) + idx] = values
    return result


def test_random_series_match_the_day_by_day_reference():
    rng = np.random.default_rng(7)
    for _ in range(12):
        days, max_gap, n = int(rng.integers(1, 90)), int(rng.integers(0, 22)), int(rng.integers(1, 20))
        offsets = rng.integers(-30, days + 30, size=n).tolist()  # same dates and margins included
        maps = [rng.choice([0, 100, 205, 254, 255], p=[.3, .3, .3, .05, .05], size=(3, 9)).astype(np.uint8)
                for _ in offsets]
        out = duration_kernel(maps, [day(t) for t in offsets], START, day(days - 1), max_gap).bands()
        merged_dates, merged = merge_same_dates(maps, [day(t) for t in offsets])
        expected = reference(merged, [(d - START).days for d in merged_dates], days, max_gap)
        np.testing.assert_array_equal(out, expected)


def test_long_period_matches_the_reference():
    # more than 8000 days: the kernel switches to 4-byte day arithmetic
    rng = np.random.default_rng(11)
    days, max_gap = 9000, 300
    offsets = rng.integers(-400, days + 400, size=50).tolist()
    maps = [rng.choice([0, 100, 205], size=(1, 4)).astype(np.uint8) for _ in offsets]
    out = duration_kernel(maps, [day(t) for t in offsets], START, day(days - 1), max_gap).bands()
    merged_dates, merged = merge_same_dates(maps, [day(t) for t in offsets])
    np.testing.assert_array_equal(out, reference(merged, [(d - START).days for d in merged_dates], days, max_gap))


def test_kernel_rejects_bad_arguments():
    maps, dates = pixel_series({0: 100})
    with pytest.raises(InputError, match="before start"):
        duration_kernel(maps, dates, day(5), day(0))
    with pytest.raises(InputError, match="max_gap_days"):
        duration_kernel(maps, dates, START, day(5), -1)
    with pytest.raises(InputError, match="shape"):
        duration_kernel([maps[0], np.zeros((2, 2), np.uint8)], [day(0), day(1)], START, day(5))
    with pytest.raises(InputError, match="one date per map"):
        duration_kernel(maps, [], START, day(5))


# -- areas -------------------------------------------------------------------------------------

def test_row_areas_geographic_on_the_ellipsoid_and_projected():
    globe = Grid(CRS.from_epsg(4326), from_origin(-180, 90, 1, 1), 360, 180)
    rows = row_areas_m2(globe, 0, 180)
    # WGS 84 surface area 510 065 621.724 km^2; rows symmetric about the equator
    assert rows.sum() * 360 / 1e6 == pytest.approx(510_065_621.724, rel=1e-9)
    np.testing.assert_allclose(rows[:90], rows[::-1][:90], rtol=1e-12)
    # a 1 x 1 degree cell at the equator: 12 308.8 km^2 on WGS 84
    assert rows[90] / 1e6 == pytest.approx(12308.8, abs=0.5)
    assert row_areas_m2(globe, 90, 1)[0] == rows[90]
    utm = Grid(UTM, from_origin(500000, 5000000, 20, 20), 10, 10)
    np.testing.assert_array_equal(row_areas_m2(utm, 3, 4), np.full(4, 400.0))


# -- whole scenes ------------------------------------------------------------------------------

H, W = 37, 45
TRANSFORM = from_origin(600000, 5100000, 20, 20)


def write_map(path, values, transform=TRANSFORM, crs=UTM, nodata=255, dtype="uint8", tiled=False):
    profile = dict(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype=dtype, crs=crs,
                   transform=transform, nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values.astype(dtype), 1)
    return str(path)


@pytest.fixture()
def scene(tmp_path):
    """14 snow maps (one date twice, one before and one after the period) with spatially varying series."""
    rng = np.random.default_rng(3)
    offsets = [-6, 0, 4, 9, 9, 15, 22, 30, 41, 47, 52, 58, 66, 75]
    yy, xx = np.mgrid[0:H, 0:W]
    melt = 10 + (yy + xx) % 50  # a melt-out gradient
    maps, entries = [], []
    for i, t in enumerate(offsets):
        values = np.where(t <= melt, 100, 0).astype(np.uint8)
        values[rng.random((H, W)) < 0.3] = 205
        values[rng.random((H, W)) < 0.03] = 254
        values[rng.random((H, W)) < 0.03] = 255
        values[:3, :4] = 205  # never observed
        maps.append(values)
        entries.append((write_map(tmp_path / f"snow_{i:02d}.tif", values), day(t)))
    return tmp_path, maps, entries


def test_whole_scene_run_equals_the_kernel_for_any_window(scene):
    folder, maps, entries = scene
    expected = duration_kernel(maps, [d for _, d in entries], START, day(69), 15).bands()
    messages = []
    for rows, cols in ((16, 16), (7, W), (None, None)):
        out = folder / f"scd_{rows}_{cols}.tif"
        request = SnowDurationRequest(maps=entries, output=str(out), start=START, end=day(69), max_gap_days=15,
                                      window_rows=rows, window_cols=cols)
        result = snow_cover_duration(request, Monitor(on_message=messages.append))
        assert result.output == str(out) and result.days == 70 and len(result.dates) == 13
        with rasterio.open(out) as ds:
            assert ds.count == 7 and set(ds.dtypes) == {"uint16"} and ds.nodata == ND
            assert ds.crs == UTM and ds.transform == TRANSFORM
            assert list(ds.descriptions) == list(BAND_DESCRIPTIONS)
            assert ds.descriptions[0].startswith("SCD") and ds.descriptions[5].startswith("NOBS")
            assert ds.compression is not None and ds.compression.value == "DEFLATE"
            tags = ds.tags()
            period = (tags["PERIOD_START"], tags["PERIOD_END"], tags["MAX_GAP_DAYS"])
            assert period == ("2020-09-01", "2020-11-09", "15")
            assert ds.tags(1)["NAME"] == "SCD" and ds.tags(7)["NAME"] == "UNKNOWN_DAYS"
            data = ds.read()
        np.testing.assert_array_equal(data, expected)
        assert (data[[0, 1, 2, 3, 4, 6], :3, :4] == ND).all() and (data[5, :3, :4] == 0).all()
    assert data[0][data[0] != ND].max() <= 70 and (data[5] <= 11).all()
    assert messages and "14 snow maps" in messages[0]
    assert not [p for p in os.listdir(folder) if "partial" in p]


def test_per_date_statistics(scene, tmp_path):
    folder, maps, entries = scene
    rows = snow_date_statistics(entries, window_rows=10, window_cols=20)
    assert [r.date for r in rows] == sorted({d for _, d in entries})
    merged_dates, merged = merge_same_dates(maps, [d for _, d in entries])
    for r, m in zip(rows, merged):
        valid = np.count_nonzero(m != 255)
        assert r.snow_km2 == pytest.approx(np.count_nonzero(m == 100) * 400 / 1e6)
        assert r.snow_percent == pytest.approx(100 * np.count_nonzero(m == 100) / valid)
        assert r.cloud_percent == pytest.approx(100 * np.count_nonzero(m == 205) / valid)
        assert r.clear_percent == pytest.approx(100 * np.count_nonzero((m == 0) | (m == 100)) / valid)
    result = snow_cover_duration(SnowDurationRequest(entries, str(tmp_path / "scd.tif"), START, day(69)))
    assert [r.row() for r in result.statistics] == [r.row() for r in rows]
    path = write_date_statistics_csv(rows, str(tmp_path / "dates.csv"))
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["date", "snow_km2", "snow_percent", "cloud_percent", "clear_percent"]
    assert table[1][0] == day(-6).isoformat() and len(table) == 14


def test_geographic_scene_statistics_use_row_areas(tmp_path):
    transform = from_origin(10.0, 60.0, 0.5, 0.5)
    values = np.zeros((4, 3), dtype=np.uint8)
    values[1] = 100
    values[3, 0] = 255
    path = write_map(tmp_path / "geo.tif", values, transform=transform, crs=CRS.from_epsg(4326))
    (row,) = snow_date_statistics([(path, START)])
    areas = row_areas_m2(Grid(CRS.from_epsg(4326), transform, 3, 4), 0, 4)
    assert row.snow_km2 == pytest.approx(3 * areas[1] / 1e6)
    assert row.valid_km2 == pytest.approx((3 * areas[:3].sum() + 2 * areas[3]) / 1e6)
    assert row.clear_percent == pytest.approx(100.0)


def test_declared_nodata_and_tiled_inputs(tmp_path):
    a = np.full((20, 20), 100, dtype=np.uint16)
    a[0, 0] = 65535  # declared nodata: not a snow map code, but nodata
    b = np.full((20, 20), 0, dtype=np.uint16)
    paths = [(write_map(tmp_path / "a.tif", a, nodata=65535, dtype="uint16", tiled=True), day(0)),
             (write_map(tmp_path / "b.tif", b, nodata=65535, dtype="uint16", tiled=True), day(10))]
    out = tmp_path / "scd.tif"
    snow_cover_duration(SnowDurationRequest(paths, str(out), START, day(10)))
    with rasterio.open(out) as ds:
        scd, nobs = ds.read(1), ds.read(6)
    assert nobs[0, 0] == 1 and scd[0, 0] == 0  # only the no-snow map observed it: days 3..10
    assert nobs[1, 1] == 2 and scd[1, 1] == 6  # snow on day 0, none on day 10: days 0..5


def test_snow_maps_on_different_grids_are_refused(scene, tmp_path):
    folder, maps, entries = scene
    shifted = write_map(tmp_path / "shifted.tif", maps[0], transform=from_origin(600020, 5100000, 20, 20))
    with pytest.raises(InputError, match="shifted.tif.*not on the grid of the first snow map") as err:
        snow_cover_duration(SnowDurationRequest(entries[:3] + [(shifted, day(5))], str(tmp_path / "o.tif"),
                                                START, day(69)))
    assert "snow_00.tif" in str(err.value) and "gdalwarp" in str(err.value)
    other_crs = write_map(tmp_path / "crs.tif", maps[0], crs=CRS.from_epsg(32633))
    with pytest.raises(InputError, match="crs.tif"):
        snow_date_statistics(entries[:2] + [(other_crs, day(5))])
    small = write_map(tmp_path / "small.tif", maps[0][:10])
    with pytest.raises(InputError, match="small.tif.*45 x 10 pixels"):
        snow_date_statistics(entries[:1] + [(small, day(5))])
    assert not (tmp_path / "o.tif").exists()


def test_other_bad_inputs(scene, tmp_path):
    folder, maps, entries = scene
    odd = maps[1].copy()
    odd[5, 5] = 50
    odd_path = write_map(tmp_path / "odd.tif", odd)
    with pytest.raises(InputError, match=r"odd.tif: values \[50\] are not snow map codes"):
        snow_cover_duration(SnowDurationRequest([entries[0], (odd_path, day(3))], str(tmp_path / "o.tif"),
                                                START, day(10)))
    with pytest.raises(InputError, match="no snow map is dated within the period"):
        snow_cover_duration(SnowDurationRequest(entries[:2], str(tmp_path / "o.tif"), day(100), day(120)))
    with pytest.raises(InputError, match="file not found"):
        snow_cover_duration(SnowDurationRequest([(str(tmp_path / "missing.tif"), START)], str(tmp_path / "o.tif"),
                                                START, day(10)))
    with pytest.raises(InputError, match="never overwrites its inputs"):
        snow_cover_duration(SnowDurationRequest(entries[:2], entries[1][0], START, day(10)))
    assert not (tmp_path / "o.tif").exists()


def test_cancel_leaves_no_output(scene, tmp_path):
    folder, maps, entries = scene
    out = tmp_path / "cancelled.tif"
    with pytest.raises(Cancelled):
        snow_cover_duration(SnowDurationRequest(entries, str(out), START, day(69), window_rows=8, window_cols=8),
                            Monitor(is_cancelled=lambda: True))
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if "cancelled" in p]
