"""Snow cover duration from a series of snow maps (the Let It Snow multi-date products).

Input: snow maps of one grid (Theia / Let It Snow coding: **0 no snow, 100 snow, 205 cloud,
254 or 255 nodata**), each with its date, and a period ``start``-``end`` (both included, ``L``
days; day 0 = ``start``). Maps dated outside the period (Let It Snow collects a +-15 day margin)
help the interpolation near the period's ends but are not counted.

Method, per pixel (vectorised over whole windows):

1. *Same-date merge*: maps of one date become one; each pixel takes the first clear observation
   (0 or 100) in the order given; where none is clear, cloud if any says cloud, else nodata.
2. *Clear observations*: 0 or 100. Cloud, 254, 255 and any nodata value a file declares are not.
3. *Daily interpolation*: each day ``d`` is set from the nearest clear observations at or before
   it (day ``tp``, value ``vp``: 1 snow, 0 no snow) and after it (``tn``, ``vn``), linearly
   interpolated in time, snow when the interpolated value is >= 0.5:

   * ``d == tp``: the observation itself;
   * ``tp < d < tn`` and ``g = tn - tp <= max_gap_days``: snow when
     ``vp + (vn - vp) (d - tp) / g >= 0.5``, i.e. the value of the nearer observation, a day
     exactly half-way being snow: snow to no snow, days ``d <= tp + floor(g / 2)`` are snow; no
     snow to snow, days ``d >= tp + ceil(g / 2)`` are snow;
   * ``g > max_gap_days``: the days strictly between are **unknown** (no extrapolation into a
     long gap). The gap is the difference of the dates: days 20 and 35 are 15 days apart;
   * before the first clear observation: ``vn`` while ``tn - d <= max_gap_days / 2``; after the
     last one: ``vp`` while ``d - tp <= max_gap_days / 2``; else unknown (7 days with 15).
4. *Products* (UInt16, days counted from ``start``): **SCD** the number of snow days; **SOD**
   (snow onset) the first day of the longest snow period and **SMOD** (melt-out) its *last* day, as
   Let It Snow defines it (a snow period is a run of consecutive snow days; an unknown day ends a
   run; of equally long runs the earliest counts); first and last snow day; **NOBS** the clear
   observations dated within the period (after the merge); the number of unknown days. **Nodata**
   65535 where a pixel has no clear observation within the period (``NOBS == 0``), on every band
   but NOBS (0 there); SOD, SMOD, first and last snow day are 65535 too where SCD is 0.

Memory is O(dates x window), not O(days x window): between successive map dates (a *segment*)
each pixel's surrounding observations are fixed and its snow days form one range with closed-form
ends, so the kernel loops over map dates, not days; its one stack is each pixel's next clear
observation per date (2 bytes; 4 beyond about 8000 days). Selections are arithmetic, not
``np.where`` (much slower on irregular masks). Whole scenes (:func:`snow_cover_duration`) are
read in windows and written atomically to one DEFLATE GeoTIFF: band 1 SCD, 2 SOD, 3 SMOD, 4 first
snow day, 5 last snow day, 6 NOBS, 7 unknown days, all UInt16 (GeoTIFF bands share one type, and
day counts need more than a byte). :func:`snow_date_statistics` gives per-date snow areas.
"""
from __future__ import annotations

import csv
import math
from collections import namedtuple
from dataclasses import dataclass
from datetime import date, datetime
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import AtomicRasterWriter, atomic_output, check_writable, refuse_inputs_as_outputs
from ..io.raster import DEFAULT_CREATION_OPTIONS, Grid, bounded_gdal_cache, check_band, check_north_up, open_raster
from ..io.windows import iter_windows, run_windows
from ..progress import SILENT, Monitor
from .areas import row_areas_m2

SNOW, NO_SNOW, CLOUD, NODATA = 100, 0, 205, 255
#: Values a snow map may hold (254 and 255 are both nodata).
SNOW_MAP_CODES = (NO_SNOW, SNOW, CLOUD, 254, 255)
#: Nodata of the duration bands (all but NOBS).
DURATION_NODATA = 65535
#: Let It Snow's reliability limit: clear observations at most this many days apart.
DEFAULT_MAX_GAP_DAYS = 15
#: Longest period (day indices and counts stay below the nodata value) and gap limit handled.
MAX_PERIOD_DAYS, MAX_GAP_LIMIT = 65534, 100_000
BAND_NAMES = ("SCD", "SOD", "SMOD", "FIRST_SNOW_DAY", "LAST_SNOW_DAY", "NOBS", "UNKNOWN_DAYS")
_SINCE = "days since the period start"
BAND_DESCRIPTIONS = (
    "SCD: snow cover duration (snow days in the period)",
    f"SOD: snow onset date (first day of the longest snow period, {_SINCE})",
    f"SMOD: snow melt-out date (last day of the longest snow period, {_SINCE})",
    f"first snow day ({_SINCE})", f"last snow day ({_SINCE})", "NOBS: number of clear observations in the period",
    "unknown days (days in the period that no clear observation within the gap limit covers)")
STATISTICS_FIELDS = ("date", "snow_km2", "snow_percent", "cloud_percent", "clear_percent")
#: Bytes of the per-date arrays of one window (raw reads, codes, the kernel's stack: about 4 bytes
#: per pixel and map); bounds the windows of whole-scene runs.
WINDOW_STACK_BYTES = 64 * 1024 * 1024
#: GDAL block cache (MB) of duration runs (windows follow the inputs' blocks: each is decoded once).
DURATION_GDAL_CACHE_MB = 64
CREATION_OPTIONS: Dict[str, str] = {**DEFAULT_CREATION_OPTIONS, "COMPRESS": "DEFLATE", "PREDICTOR": "2",
                                    "ZLEVEL": "6"}


# -- inputs ------------------------------------------------------------------------------------

def _as_date(value, role: str) -> date:
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    raise InputError(f"{role}: expected a date (datetime.date), got {value!r}")


def period_days(start: date, end: date) -> int:
    """Number of days of the period ``start``-``end`` (both included); raises on a bad period."""
    start, end = _as_date(start, "period start"), _as_date(end, "period end")
    days = (end - start).days + 1
    if days < 1:
        raise InputError(f"period: end {end.isoformat()} is before start {start.isoformat()}")
    if days > MAX_PERIOD_DAYS:
        raise InputError(f"period {start.isoformat()} to {end.isoformat()}: {days} days, at most "
                         f"{MAX_PERIOD_DAYS} are supported")
    return days


def _check_gap(max_gap_days) -> int:
    number = isinstance(max_gap_days, (int, np.integer, float, np.floating)) and not isinstance(max_gap_days, bool)
    if not (number and math.isfinite(max_gap_days) and float(max_gap_days).is_integer()
            and 0 <= max_gap_days <= MAX_GAP_LIMIT):
        raise InputError(f"max_gap_days {max_gap_days!r}: give a whole number of days between 0 and {MAX_GAP_LIMIT}")
    return int(max_gap_days)


_CODE_LUT = np.full(256, NODATA, dtype=np.uint8)
_CODE_LUT[[NO_SNOW, SNOW, CLOUD]] = [NO_SNOW, SNOW, CLOUD]
_VALID_LUT = np.zeros(256, dtype=bool)
_VALID_LUT[list(SNOW_MAP_CODES)] = True


def _codes(values: np.ndarray) -> np.ndarray:
    """Snow map values as uint8 codes 0 / 100 / 205 / 255 (anything else is nodata)."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return _CODE_LUT[values]
    out = np.full(values.shape, NODATA, dtype=np.uint8)
    for code in (NO_SNOW, SNOW, CLOUD):
        out[values == code] = code
    return out


def _clear(codes: np.ndarray) -> np.ndarray:
    return (codes == SNOW) | (codes == NO_SNOW)


def _merge(merged: np.ndarray, other: np.ndarray) -> None:
    """Merge ``other`` into ``merged`` (codes, in place): a clear observation is kept, else
    ``other``'s clear observation, else cloud over nodata."""
    take = ~_clear(merged) & (_clear(other) | ((merged == NODATA) & (other == CLOUD)))
    merged[take] = other[take]


def merge_same_dates(maps: Sequence[np.ndarray], dates: Sequence[date]) -> Tuple[List[date], List[np.ndarray]]:
    """The distinct dates (ascending) and one uint8 code map each, maps of one date merged: per
    pixel the first clear observation (0 or 100) in the given order wins; where none is clear,
    cloud (205) if any says cloud, else nodata (255). Values other than 0, 100, 205 are nodata."""
    if len(maps) != len(dates):
        raise InputError(f"{len(maps)} snow maps but {len(dates)} dates: give one date per map")
    if not maps:
        raise InputError("no snow map given")
    dates = [_as_date(d, f"date of snow map {i + 1}") for i, d in enumerate(dates)]
    shape = np.shape(maps[0])
    for i, m in enumerate(maps):
        if np.shape(m) != shape or len(shape) != 2:
            raise InputError(f"snow map {i + 1} ({dates[i].isoformat()}): shape {np.shape(m)}, expected a 2-D "
                             f"array of the first map's shape {shape}")
    groups: Dict[date, List[int]] = {}
    for i, d in enumerate(dates):
        groups.setdefault(d, []).append(i)
    out = []
    for d in sorted(groups):
        merged = _codes(maps[groups[d][0]])
        for i in groups[d][1:]:
            _merge(merged, _codes(maps[i]))
        out.append(merged)
    return sorted(groups), out


# -- the kernel --------------------------------------------------------------------------------

class SnowDuration(namedtuple("SnowDuration", "scd sod smod first_snow last_snow nobs unknown_days")):
    """The per-pixel products of one window (UInt16 arrays; 65535 nodata except NOBS)."""

    def bands(self) -> np.ndarray:
        """The seven bands in product order (SCD, SOD, SMOD, first, last, NOBS, unknown), (7, H, W)."""
        return np.stack(self)


def _encoding_dtype(days: int, max_gap: int):
    """Integer type holding ``2 * day + snow`` of every (clipped) observation day and the kernel's
    day differences, and its "no observation" sentinel (even: it decodes as no snow)."""
    top = 2 * (days + max_gap + 3) + 1
    for dtype in (np.int16, np.int32):
        sentinel = int(np.iinfo(dtype).max) - 1
        if top < sentinel // 2:
            return dtype, dtype(sentinel)
    raise InputError(f"period of {days} days with a gap limit of {max_gap} days is too long")


def _pick(mask: np.ndarray, yes, no):
    """``np.where(mask, yes, no)`` for integers of one type, as arithmetic (no branches; the
    wrap-around of ``yes - no`` cancels exactly)."""
    return no + mask * (yes - no)


def duration_kernel(maps: Sequence[np.ndarray], dates: Sequence[date], start: date, end: date,
                    max_gap_days: int = DEFAULT_MAX_GAP_DAYS) -> SnowDuration:
    """Snow cover duration products of one window from its snow maps (see the module docstring).

    ``maps``: 2-D arrays of snow map codes (0 / 100 / 205 / 254 / 255; other values are nodata),
    one per entry of ``dates``; maps of the same date are merged first.
    """
    days = period_days(start, end)
    start = _as_date(start, "period start")
    gap = _check_gap(max_gap_days)
    merged_dates, merged = merge_same_dates(maps, dates)
    return _kernel(merged, [(d - start).days for d in merged_dates], days, gap)


def _kernel(codes: Sequence[np.ndarray], offsets: Sequence[int], days: int, gap: int) -> SnowDuration:
    """The kernel on merged uint8 code maps at distinct ascending day ``offsets`` (day 0 = start)."""
    shape, n, half = codes[0].shape, len(codes), gap // 2
    # Observations over gap + 1 days outside the period act as if gap + 2 days outside (any gap or
    # extrapolation through them exceeds the limit): clipped, they keep the encoding small. Clipped
    # days may repeat: those before the period only serve as previous observation (the later
    # wins), those after it only as the next one (the earlier wins).
    clipped = [int(min(max(t, -(gap + 2)), days - 1 + gap + 2)) for t in offsets]
    it, none = _encoding_dtype(days, gap)

    # Backward pass: nxt[k] = 2 * day + snow of the first clear observation of map index >= k.
    nxt = np.empty((n + 1,) + shape, dtype=it)
    nxt[n] = none
    for k in range(n - 1, -1, -1):
        nxt[k] = _pick(_clear(codes[k]), (codes[k] == SNOW).astype(it) + it(2 * clipped[k]), nxt[k + 1])

    # Forward pass over the segments, carrying the previous clear observation (tp, vp) and the
    # run state; every per-pixel integer fits ``it``.
    tp, nobs, scd, unknown, cur_start, best_start, best_len = (np.zeros(shape, dtype=it) for _ in range(7))
    first, last = np.full(shape, -1, dtype=it), np.full(shape, -1, dtype=it)
    vp, has_p, run_open = (np.zeros(shape, dtype=bool) for _ in range(3))
    H = it(half)
    starts = sorted({0} | {t for t in clipped if 0 < t <= days - 1})
    k = 0  # next map to fold into (tp, vp)
    for j, a in enumerate(starts):
        b = (starts[j + 1] - 1) if j + 1 < len(starts) else days - 1
        A, B = it(a), it(b)
        while k < n and clipped[k] <= a:
            clear = _clear(codes[k])
            tp = _pick(clear, it(clipped[k]), tp)
            vp = (vp & ~clear) | (codes[k] == SNOW)
            has_p |= clear
            if 0 <= offsets[k] <= days - 1:
                nobs += clear
            k += 1
        ne = nxt[k]
        has_n, tn, vn = ne != none, ne >> 1, (ne & 1) != 0
        g = tn - tp
        fill = (g <= gap) & has_p & has_n
        # ep: last day holding the previous observation's value; sn: first day holding the next
        # one's. An interpolated gap switches at its midpoint, which belongs to the snow side.
        ep = _pick(vp == vn, B, tp + (g >> 1) - (~vp & ((g & 1) == 0)))
        ep = _pick(fill, ep, tp + H * ~has_n)  # a long gap: the observation day only
        ep = _pick(has_p, ep, A - 1)
        sn = _pick(has_n, _pick(fill, ep + 1, _pick(has_p, B + 1, tn - H)), B + 1)
        e, s = np.minimum(ep, B), np.maximum(sn, A)
        pre, suf = np.maximum(e - A + 1, 0), np.maximum(B - s + 1, 0)
        unknown += it(b - a + 1) - pre - suf
        # The snow days of the segment: one range [s0, s1] (the prefix or the suffix).
        sp = vp & (pre > 0)
        has = sp | (vn & (suf > 0))
        s0, s1 = _pick(sp, A, s), _pick(sp, e, B)
        scd += has * (s1 - s0 + 1)
        first = _pick(has & (first < 0), s0, first)
        last = _pick(has, s1, last)
        cur_start = _pick(has & ~(run_open & (s0 == A)), s0, cur_start)
        length = s1 - cur_start + 1
        better = has & (length > best_len)
        best_len = _pick(better, length, best_len)
        best_start = _pick(better, cur_start, best_start)
        run_open = has & (s1 == B)
    # Maps not folded into (tp, vp) by now are dated after the period: they count in no NOBS.
    observed = nobs > 0
    snowed = observed & (scd > 0)
    return SnowDuration(*(np.where(where, values, DURATION_NODATA).astype(np.uint16) for values, where in (
        (scd, observed), (best_start, snowed), (best_start + best_len - 1, snowed), (first, snowed),
        (last, snowed), (nobs, True), (unknown, observed))))


# -- per-date statistics -----------------------------------------------------------------------

class SnowDateStatistics(namedtuple("SnowDateStatistics",
                                    "date snow_km2 snow_percent cloud_percent clear_percent valid_km2")):
    """Scene-wide figures of one (merged) date; percentages are of the valid (not nodata) area."""

    def row(self) -> Tuple:
        """The CSV row (``STATISTICS_FIELDS``): date (ISO), snow km^2, snow %, cloud %, clear %."""
        values = (self.snow_km2, 6), (self.snow_percent, 4), (self.cloud_percent, 4), (self.clear_percent, 4)
        return (self.date.isoformat(),) + tuple("" if math.isnan(v) else round(v, n) for v, n in values)


def _window_areas(codes: Sequence[np.ndarray], row_areas: np.ndarray) -> np.ndarray:
    """(dates, 3) areas (m^2) of snow, no snow and cloud of one window."""
    out = np.zeros((len(codes), 3), dtype=np.float64)
    constant = bool(np.all(row_areas == row_areas[0]))
    for k, c in enumerate(codes):
        for i, value in enumerate((SNOW, NO_SNOW, CLOUD)):
            out[k, i] = (np.count_nonzero(c == value) * float(row_areas[0]) if constant
                         else float(np.count_nonzero(c == value, axis=1) @ row_areas))
    return out


def _statistics(dates: Sequence[date], areas: np.ndarray) -> List[SnowDateStatistics]:
    out = []
    for d, (snow, no_snow, cloud) in zip(dates, areas):
        valid = snow + no_snow + cloud
        pct = (lambda x: 100.0 * x / valid) if valid > 0 else (lambda x: float("nan"))
        out.append(SnowDateStatistics(date=d, snow_km2=snow / 1e6, snow_percent=pct(snow), cloud_percent=pct(cloud),
                                      clear_percent=pct(snow + no_snow), valid_km2=valid / 1e6))
    return out


def write_date_statistics_csv(rows: Sequence[SnowDateStatistics], path: str) -> str:
    """Write the per-date rows (``STATISTICS_FIELDS`` header) to ``path`` atomically."""
    check_writable(path)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(STATISTICS_FIELDS)
        out.writerows(r.row() for r in rows)
    return str(path)


# -- whole scenes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SnowDurationRequest:
    """A whole-scene run: ``maps`` (snow map GeoTIFF path, date) pairs on one grid (band ``band``
    read), the ``output`` GeoTIFF, the period ``start``-``end`` (both included), the gap limit, and
    the window size (default: from the inputs' tiling and the number of maps)."""

    maps: Sequence[Tuple[str, date]]
    output: str
    start: date
    end: date
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS
    band: int = 1
    window_rows: Optional[int] = None
    window_cols: Optional[int] = None


class SnowDurationResult(namedtuple("SnowDurationResult", "output start end days max_gap_days dates statistics")):
    """What a run wrote (period, gap limit, distinct map dates) and its per-date statistics."""


def _grid_text(grid: Grid) -> str:
    t = grid.transform
    return (f"{grid.width} x {grid.height} pixels, origin ({t.c:g}, {t.f:g}), pixel size ({t.a:g}, {t.e:g}), "
            f"CRS {grid.crs.to_string() if grid.crs is not None else 'none'}")


def _same_grid(a: Grid, b: Grid) -> bool:
    tol = 1e-6 * max(abs(a.transform.a), abs(a.transform.e), 1e-12)
    return ((a.width, a.height) == (b.width, b.height) and a.crs == b.crs
            and all(abs(x - y) <= tol for x, y in zip(tuple(a.transform)[:6], tuple(b.transform)[:6])))


class _Series:
    """The open snow maps of a run on one grid, grouped by date (given order kept within a date)."""

    def __init__(self, maps: Sequence[Tuple[str, date]], band: int) -> None:
        if not maps:
            raise InputError("no snow map given: give (path, date) pairs")
        self.band, self.datasets, self.paths = band, [], []
        try:
            entries = []
            for i, entry in enumerate(maps):
                if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                    raise InputError(f"snow map {i + 1}: expected a (path, date) pair, got {entry!r}")
                entries.append((str(entry[0]), _as_date(entry[1], f"date of snow map {entry[0]}")))
            for path, when in entries:
                role = f"snow map {path} ({when.isoformat()})"
                self.datasets.append(open_raster(path, role))
                self.paths.append(path)
                check_band(self.datasets[-1], band, role)
                if not np.issubdtype(np.dtype(self.datasets[-1].dtypes[band - 1]), np.integer):
                    raise InputError(f"{role}: expected an integer snow map (0 no snow, 100 snow, 205 cloud, "
                                     f"254/255 nodata), got {self.datasets[-1].dtypes[band - 1]}")
            check_north_up(self.datasets[0], f"snow map {self.paths[0]}")
            self.grid = Grid.of(self.datasets[0])
            for (path, when), ds in zip(entries[1:], self.datasets[1:]):
                if not _same_grid(Grid.of(ds), self.grid):
                    raise InputError(f"snow map {path} ({when.isoformat()}) is not on the grid of the first snow map "
                                     f"{self.paths[0]}: {_grid_text(Grid.of(ds))} instead of "
                                     f"{_grid_text(self.grid)}; resample all snow maps onto one grid first "
                                     "(e.g. gdalwarp with -te, -tr and -r near)")
        except BaseException:
            self.close()
            raise
        self.nodata = [ds.nodatavals[band - 1] for ds in self.datasets]
        groups: Dict[date, List[int]] = {}
        for i, (_, when) in enumerate(entries):
            groups.setdefault(when, []).append(i)
        self.dates = sorted(groups)
        self.groups = [groups[d] for d in self.dates]

    def close(self) -> None:
        for ds in self.datasets:
            ds.close()
        self.datasets = []

    def windows(self, rows: Optional[int], cols: Optional[int]) -> List[Window]:
        """Windows of ``rows`` x ``cols``, by default aligned on the first map's blocks (tiles, about
        square, or strips of whole rows) within ``WINDOW_STACK_BYTES``."""
        width, height = self.grid.width, self.grid.height
        budget = max(4096, WINDOW_STACK_BYTES // (4 * len(self.paths) + 64))
        bh, bw = self.datasets[0].block_shapes[self.band - 1]
        tiled = bw < width
        if cols is None:
            cols = min(width, max(bw, int(math.sqrt(budget)) // bw * bw)) if tiled else width
        if rows is None:
            rows = max(1, budget // max(1, cols))
            rows = min(height, max(bh, rows // bh * bh) if tiled or rows >= bh else rows)
        return list(iter_windows(width, height, max(1, int(rows)), max(1, int(cols))))

    def read(self, window: Window) -> List[np.ndarray]:
        return [ds.read(self.band, window=window) for ds in self.datasets]

    def codes(self, raw: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Validated, nodata-masked, same-date-merged uint8 code maps of one window, in date order."""
        out = []
        for group in self.groups:
            merged = None
            for i in group:
                values, nodata = raw[i], self.nodata[i]
                bad = ~(_VALID_LUT[values] if values.dtype == np.uint8 else np.isin(values, SNOW_MAP_CODES))
                declared = np.zeros(values.shape, bool) if nodata is None or math.isnan(nodata) else values == nodata
                bad &= ~declared
                if bad.any():
                    raise InputError(f"snow map {self.paths[i]}: values {np.unique(values[bad])[:5].tolist()} are "
                                     "not snow map codes (0 no snow, 100 snow, 205 cloud, 254/255 nodata)")
                c = _codes(values)
                c[declared] = NODATA
                if merged is None:
                    merged = c
                else:
                    _merge(merged, c)
            out.append(merged)
        return out


def snow_cover_duration(request: SnowDurationRequest, monitor: Monitor = SILENT) -> SnowDurationResult:
    """SCD, SOD, SMOD, first / last snow day, NOBS and unknown days of a scene, in one UInt16
    GeoTIFF (nodata 65535, bands described and tagged with the period and the gap limit) written
    atomically; returns the per-date statistics gathered on the way."""
    days = period_days(request.start, request.end)
    start, end = _as_date(request.start, "period start"), _as_date(request.end, "period end")
    gap = _check_gap(request.max_gap_days)
    out_path = check_writable(request.output)
    with bounded_gdal_cache(DURATION_GDAL_CACHE_MB):
        series = _Series(request.maps, request.band)
        try:
            refuse_inputs_as_outputs({"output": str(out_path)},
                                     {f"snow map {i + 1}": p for i, p in enumerate(series.paths)})
            offsets = [(d - start).days for d in series.dates]
            inside = sum(1 for t in offsets if 0 <= t < days)
            if not inside:
                raise InputError(f"no snow map is dated within the period {start.isoformat()} to {end.isoformat()} "
                                 f"(maps from {series.dates[0].isoformat()} to {series.dates[-1].isoformat()})")
            grid = series.grid
            windows = series.windows(request.window_rows, request.window_cols)
            monitor.message(f"snow cover duration: {len(series.paths)} snow maps, {len(series.dates)} dates "
                            f"({inside} in the period), {days} days, {len(windows)} windows")
            areas = np.zeros((len(series.dates), 3), dtype=np.float64)

            def compute(window: Window, raw):
                codes = series.codes(raw)
                row_areas = row_areas_m2(grid, int(window.row_off), int(window.height))
                return _kernel(codes, offsets, days, gap).bands(), _window_areas(codes, row_areas)

            with AtomicRasterWriter(out_path, grid, len(BAND_NAMES), "uint16", nodata=DURATION_NODATA,
                                    descriptions=BAND_DESCRIPTIONS, creation_options=CREATION_OPTIONS) as dst:
                dst.update_tags(PRODUCT="snow cover duration", PERIOD_START=start.isoformat(),
                                PERIOD_END=end.isoformat(), PERIOD_DAYS=str(days), MAX_GAP_DAYS=str(gap),
                                NODATA=str(DURATION_NODATA), BANDS=";".join(BAND_NAMES),
                                SNOW_MAP_DATES=";".join(d.isoformat() for d in series.dates))
                for i, name in enumerate(BAND_NAMES, start=1):
                    dst.update_tags(i, NAME=name)

                def write(window: Window, result) -> None:
                    dst.write(result[0], window=window)
                    areas[...] += result[1]

                run_windows(windows, series.read, compute, write, monitor)
        finally:
            series.close()
    return SnowDurationResult(output=str(out_path), start=start, end=end, days=days, max_gap_days=gap,
                              dates=list(series.dates), statistics=_statistics(series.dates, areas))


def snow_date_statistics(maps: Sequence[Tuple[str, date]], monitor: Monitor = SILENT, band: int = 1,
                         window_rows: Optional[int] = None, window_cols: Optional[int] = None
                         ) -> List[SnowDateStatistics]:
    """Per-date statistics of snow maps on one grid (snow km^2, snow / cloud / clear % of the valid
    area; one row per distinct date, maps of one date merged as for the duration; pixel areas from
    :func:`~.areas.row_areas_m2`), for :func:`write_date_statistics_csv`."""
    with bounded_gdal_cache(DURATION_GDAL_CACHE_MB):
        series = _Series(maps, band)
        try:
            grid, areas = series.grid, np.zeros((len(series.dates), 3), dtype=np.float64)

            def compute(window: Window, raw):
                row_areas = row_areas_m2(grid, int(window.row_off), int(window.height))
                return _window_areas(series.codes(raw), row_areas)

            def write(window: Window, result) -> None:
                areas[...] += result

            run_windows(series.windows(window_rows, window_cols), series.read, compute, write, monitor)
        finally:
            series.close()
    return _statistics(series.dates, areas)
