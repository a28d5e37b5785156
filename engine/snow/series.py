"""A snow season from several Sentinel-2 dates: a snow map per date, then snow cover duration over a period.

:func:`snow_series` takes one :class:`SnowSeriesRequest` and

1. **dates** each image (:mod:`.dates`: the date given, else the product metadata, else the
   file name); an image without a date is an error naming it;
2. **grids**: every date is compared with the first date's grid (the image grid at the chosen
   resolution, cut to the extent). A date on another grid is refused (``grids="refuse"``), or
   (``"align"``, the default) its snow map is resampled onto the first date's grid, nearest
   neighbour (classes stay classes; cells it does not cover are nodata);
3. **snow maps**: :func:`~.mapping.snow_map` for each image (or a snow map given as it is),
   written as ``snowmap_<date>.tif`` (``snowmap_<date>_2.tif``... for a second image of one date)
   into the snow-map folder, or into a temporary folder removed afterwards;
4. **snow cover duration** over ``start``-``end`` (default: the first to the last date) with
   :func:`~.duration.snow_cover_duration`: one UInt16 GeoTIFF, band 1 SCD (snow days), 2 SOD,
   3 SMOD (melt-out: the last day of the longest snow period), 4 first and 5 last snow day (days
   since the start), 6 NOBS (clear observations), 7 unknown days. Maps of one date are merged as
   Let It Snow does (per pixel the first clear observation in input order wins); cloudy days are
   filled in time from the nearest clear observations before and after, up to ``max_gap_days``
   apart (see :mod:`.duration`);
5. **per-date figures**: snow area (km^2), snow / cloud / clear % of the valid area, the snowline
   of the Let It Snow run, and whether the date is a clear or a cloudy observation (cloud over
   more than :data:`~.chart.CLOUDY_PERCENT` % of the valid area), as CSV and as a chart
   (:mod:`.chart`: SVG, in a self-contained HTML page when asked for).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling

from ..errors import InputError
from ..io.atomic import (AtomicRasterWriter, check_geotiff_path, check_writable, refuse_inputs_as_outputs,
                         write_text_atomic)
from ..io.raster import Grid, bounded_gdal_cache, open_raster
from ..io.warp import footprint_coverage, warp_window
from ..io.windows import iter_windows, run_windows
from ..progress import SILENT, Monitor
from ..sentinel2.reader import BandReader
from .chart import SeriesRow, chart_html, snow_area_svg, write_series_csv
from .classes import CLASS_COLOURS, NODATA, SNOWMAP_DESCRIPTION
from .dates import acquisition_date
from .duration import DEFAULT_MAX_GAP_DAYS, SnowDurationRequest, SnowDurationResult, snow_cover_duration
from .grid import SNOW_GDAL_CACHE_MB, subgrid
from .mapping import snow_map
from .parameters import CloudInput, SnowParameters
from .requests import Sentinel2Input, SnowMapRequest
from .results import SnowResult
from .scene import SNOW_BANDS
from .statistics import read_snowline_tag

#: What to do with a date on another grid than the first date's.
GRID_POLICIES = ("align", "refuse")


@dataclass(frozen=True)
class SeriesScene:
    """One image of a series: a Sentinel-2 ``image`` or a ``snow_map`` already made (Let It Snow
    classes), its ``date`` (None: from the metadata or the file name) and its ``cloud`` mask (None:
    the request's)."""

    image: Optional[Sentinel2Input] = None
    snow_map: Optional[str] = None
    date: Optional[date] = None
    cloud: Optional[CloudInput] = None

    @property
    def source(self) -> str:
        """The file (or folder) the scene is read from."""
        if self.snow_map:
            return str(self.snow_map)
        image = self.image
        if image is not None and image.source:
            return str(image.source)
        if image is not None and image.product is not None:
            return next(iter(image.product.bands.values())).path
        if image is not None and image.overrides:
            return str(next(iter(image.overrides.values()))[0] or "")
        return ""


@dataclass(frozen=True)
class SnowSeriesRequest:
    """A snow season: ``scenes`` (one per image, any order), the snow cover duration ``output``
    (GeoTIFF), the snow map settings shared by every date (``params``, ``dem``, ``cloud`` kind), the
    period ``start``-``end`` (None: the first / last date), the gap limit, the ``grids`` policy
    (:data:`GRID_POLICIES`), where the per-date snow maps go (None: a temporary folder), and the
    optional per-date table (``statistics_csv``) and chart (``chart_html``)."""

    scenes: Sequence[SeriesScene]
    output: str
    params: SnowParameters = field(default_factory=SnowParameters)
    dem: Optional[str] = None
    dem_band: int = 1
    cloud: CloudInput = field(default_factory=CloudInput)
    start: Optional[date] = None
    end: Optional[date] = None
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS
    grids: str = "align"
    snow_map_folder: Optional[str] = None
    statistics_csv: Optional[str] = None
    chart_html: Optional[str] = None
    window_rows: Optional[int] = None

    def validate(self) -> "SnowSeriesRequest":
        """This request, or :class:`InputError` / :class:`OutputError` for bad parameters or outputs."""
        if not self.scenes:
            raise InputError("no image given: a snow series needs at least one Sentinel-2 image (two or more dates "
                             "for a duration worth the name)")
        for i, scene in enumerate(self.scenes):
            if (scene.image is None) == (not scene.snow_map):
                raise InputError(f"image {i + 1}: give either a Sentinel-2 image or a snow map")
        self.params.validate()
        self.cloud.method  # noqa: B018 - raises for a mask method the snow map does not offer
        if self.grids not in GRID_POLICIES:
            raise InputError(f"grids {self.grids!r} is not one of {', '.join(GRID_POLICIES)}")
        check_geotiff_path(self.output, "snow cover duration")
        outputs = {"snow cover duration": self.output, "table": self.statistics_csv, "chart": self.chart_html}
        for value in outputs.values():
            if value:
                check_writable(value)
        inputs = {f"image {i + 1}": s.source for i, s in enumerate(self.scenes)}
        inputs.update(DEM=self.dem)
        refuse_inputs_as_outputs(outputs, inputs)
        if self.snow_map_folder and os.path.exists(self.snow_map_folder) and not os.path.isdir(self.snow_map_folder):
            raise InputError(f"snow map folder {self.snow_map_folder} is a file, expected a folder")
        return self


@dataclass
class SeriesMap:
    """One image's snow map in the series: its date, where the date came from, the file, and the
    snow map run (None for a snow map given as it is)."""

    date: date
    date_source: str
    source: str
    path: str
    result: Optional[SnowResult] = None
    aligned: bool = False

    @property
    def snowline(self) -> Optional[float]:
        if self.result is not None:
            return self.result.snowline
        return read_snowline_tag(self.path)


@dataclass
class DurationSummary:
    """Whole-scene figures of the duration product: pixels observed (NOBS > 0) and their SCD / NOBS."""

    observed_pixels: int = 0
    mean_scd: float = float("nan")
    max_scd: int = 0
    snow_free_percent: float = float("nan")
    mean_nobs: float = float("nan")


@dataclass
class SnowSeriesReport:
    """What :func:`snow_series` wrote and measured."""

    output: str
    start: date
    end: date
    days: int
    max_gap_days: int
    maps: List[SeriesMap]
    rows: List[SeriesRow]
    duration: SnowDurationResult
    summary: DurationSummary
    svg: str
    snow_map_folder: Optional[str] = None
    statistics_csv: Optional[str] = None
    chart_html: Optional[str] = None
    messages: List[str] = field(default_factory=list)

    def text(self) -> str:
        s = self.summary
        return (f"{len(self.rows)} dates ({len(self.maps)} images), {self.start.isoformat()} to {self.end.isoformat()} "
                f"({self.days} days, gap limit {self.max_gap_days} days): mean snow cover duration "
                f"{s.mean_scd:.1f} days over {s.observed_pixels} observed pixels (max {s.max_scd}), "
                f"{s.snow_free_percent:.1f} % of them snow-free, mean {s.mean_nobs:.1f} clear observations")


# -- dates and grids -----------------------------------------------------------------------------

def _name(scene: SeriesScene) -> str:
    return os.path.basename(scene.source.rstrip(os.sep)) or scene.source


def date_scenes(scenes: Sequence[SeriesScene]) -> List[Tuple[date, str]]:
    """(date, where it came from) of every scene, in input order (:class:`InputError` for one without)."""
    out = []
    for i, scene in enumerate(scenes):
        if scene.date is not None:
            out.append((scene.date, "given"))
        else:
            out.append(acquisition_date(scene.source, f"image {i + 1} ({_name(scene)})"))
    return out


def scene_grid(scene: SeriesScene, resolution_names: Sequence[str] = SNOW_BANDS) -> Tuple[Grid, SeriesScene]:
    """(the grid the scene's snow map is on, the scene with its bands located)."""
    if scene.snow_map:
        with open_raster(scene.snow_map, "snow map") as ds:
            return Grid.of(ds), scene
    image = scene.image.located(resolution_names)
    with BandReader(image.product, resolution_names, image.resolution) as reader:
        grid = subgrid(reader.grid, image.bounds)
    return grid, replace(scene, image=image)


def grid_text(grid: Grid) -> str:
    t = grid.transform
    crs = grid.crs.to_string() if grid.crs is not None else "no CRS"
    return f"{grid.width} x {grid.height} px, origin ({t.c:.6g}, {t.f:.6g}), pixel ({t.a:.6g}, {t.e:.6g}), {crs}"


def same_grid(a: Grid, b: Grid) -> bool:
    """Whether two grids are the same (size, CRS, transform within a millionth of a pixel)."""
    tol = 1e-6 * max(abs(a.transform.a), abs(a.transform.e), 1e-12)
    return ((a.width, a.height) == (b.width, b.height) and a.crs == b.crs
            and all(abs(x - y) <= tol for x, y in zip(tuple(a.transform)[:6], tuple(b.transform)[:6])))


def check_grids(grids: Sequence[Grid], scenes: Sequence[SeriesScene], dates: Sequence[date], policy: str
                ) -> List[bool]:
    """Which scenes need aligning onto the first scene's grid; :class:`InputError` for a grid refused
    (``policy == "refuse"``) or not overlapping the first at all."""
    first = grids[0]
    out = [False]
    for i in range(1, len(grids)):
        if same_grid(grids[i], first):
            out.append(False)
            continue
        what = f"image {i + 1} ({_name(scenes[i])}, {dates[i].isoformat()})"
        if policy == "refuse":
            raise InputError(f"{what} is not on the grid of the first date ({_name(scenes[0])}): {grid_text(grids[i])} "
                             f"instead of {grid_text(first)}; choose to align the dates onto the first date's grid, "
                             "or resample the images onto one grid first")
        if grids[i].crs is None or footprint_coverage(grids[i], first) <= 0.0:
            raise InputError(f"{what} does not overlap the first date ({_name(scenes[0])}): {grid_text(grids[i])} "
                             f"against {grid_text(first)}")
        out.append(True)
    return out


def align_snow_map(source: str, grid: Grid, output: str, window_rows: Optional[int] = None,
                   label: Optional[str] = None) -> str:
    """Resample the snow map ``source`` onto ``grid`` (nearest neighbour; uncovered cells nodata 255)
    into ``output``, with the snow map's colours and tags (``ALIGNED_FROM``: ``label`` or its name)."""
    with open_raster(source, "snow map") as src:
        tags = dict(src.tags())
        tags.update(ALIGNED_FROM=label or os.path.basename(source),
                    ALIGNED_HOW="nearest neighbour onto the first date's grid")
        rows = window_rows or max(1, (1 << 21) // max(1, grid.width))

        def read(window):
            return warp_window(src, 1, grid, window, Resampling.nearest)

        def compute(window, values):
            out = np.full(values.shape, NODATA, dtype=np.uint8)
            finite = np.isfinite(values)
            out[finite] = values[finite].astype(np.uint8)
            return out

        with AtomicRasterWriter(output, grid, 1, "uint8", NODATA, [SNOWMAP_DESCRIPTION]) as dst:
            def write(window, classes):
                dst.write(classes, 1, window=window)

            run_windows(iter_windows(grid.width, grid.height, rows), read, compute, write)
            dst.write_colormap(1, CLASS_COLOURS)
            dst.update_tags(**tags)
    return output


# -- the run ---------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_folder(output: str) -> str:
    """A new temporary folder for the snow maps beside ``output`` (``.snowseries.<pid>.<random>``); those
    of runs whose process is gone (killed) are removed first."""
    parent = os.path.dirname(os.path.abspath(output))
    for name in os.listdir(parent):
        parts = name.split(".")
        if name.startswith(".snowseries.") and len(parts) > 3 and parts[2].isdigit() and not _alive(int(parts[2])):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".snowseries.{os.getpid()}.", dir=parent)


def _map_names(dates: Sequence[date]) -> List[str]:
    seen: dict = {}
    names = []
    for d in dates:
        seen[d] = seen.get(d, 0) + 1
        names.append(f"snowmap_{d.isoformat()}" + (f"_{seen[d]}" if seen[d] > 1 else "") + ".tif")
    return names


def _scene_cloud(scene: SeriesScene, default: CloudInput) -> CloudInput:
    return scene.cloud if scene.cloud is not None else default


def _make_map(request: SnowSeriesRequest, scene: SeriesScene, target: str, grid: Grid, align: bool,
              folder: str, monitor: Monitor) -> Tuple[str, Optional[SnowResult]]:
    """The scene's snow map on ``grid`` at ``target`` (a given map on the grid is used where it is)."""
    if scene.snow_map and not align:
        return str(scene.snow_map), None
    result = None
    native = scene.snow_map
    if not scene.snow_map:
        native = target if not align else os.path.join(folder, "." + os.path.basename(target) + ".native.tif")
        result = snow_map(SnowMapRequest(scene.image, native, request.params, dem=request.dem,
                                         dem_band=request.dem_band, cloud=_scene_cloud(scene, request.cloud),
                                         window_rows=request.window_rows), monitor)
    if align:
        try:
            align_snow_map(native, grid, target, request.window_rows, _name(scene))
        finally:
            if not scene.snow_map and os.path.exists(native):
                os.remove(native)
        if result is not None:
            result.output = target
    return target, result


def summarise_duration(path: str) -> DurationSummary:
    """Observed pixels (NOBS > 0), their mean and largest SCD, the snow-free share and mean NOBS."""
    with open_raster(path, "snow cover duration") as ds:
        count = total = snow_free = nobs_total = 0
        biggest = 0
        for _, window in ds.block_windows(1):
            scd, nobs = ds.read(1, window=window), ds.read(6, window=window)
            seen = nobs > 0
            n = int(np.count_nonzero(seen))
            if n:
                values = scd[seen].astype(np.int64)
                count += n
                total += int(values.sum())
                snow_free += int(np.count_nonzero(values == 0))
                biggest = max(biggest, int(values.max()))
                nobs_total += int(nobs[seen].astype(np.int64).sum())
    if not count:
        return DurationSummary()
    return DurationSummary(count, total / count, biggest, 100.0 * snow_free / count, nobs_total / count)


def _rows(maps: Sequence[SeriesMap], duration: SnowDurationResult, start: date, end: date) -> List[SeriesRow]:
    rows = []
    for stats in duration.statistics:
        same = [m for m in maps if m.date == stats.date]
        snowline = next((s for s in (m.snowline for m in same) if s is not None), None)
        rows.append(SeriesRow.of(stats, snowline, len(same), start <= stats.date <= end))
    return rows


def snow_series(request: SnowSeriesRequest, monitor: Monitor = SILENT) -> SnowSeriesReport:
    """Snow maps of every date, the snow cover duration of the period, the per-date table and chart
    (see the module docstring). Outputs are written atomically; a failure leaves none of the
    duration, table and chart (snow maps already written to the chosen folder stay)."""
    request = request.validate()
    messages: List[str] = []

    def say(text: str) -> None:
        messages.append(text)
        monitor.message(text)

    dated = date_scenes(request.scenes)
    dates = [d for d, _ in dated]
    start = request.start or min(dates)
    end = request.end or max(dates)
    if end < start:
        raise InputError(f"period: end {end.isoformat()} is before start {start.isoformat()}")
    if not any(start <= d <= end for d in dates):
        raise InputError(f"no image is dated within the period {start.isoformat()} to {end.isoformat()} (images from "
                         f"{min(dates).isoformat()} to {max(dates).isoformat()})")
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB):
        located = [scene_grid(s) for s in request.scenes]
    grids, scenes = [g for g, _ in located], [s for _, s in located]
    align = check_grids(grids, scenes, dates, request.grids)
    for i, ((when, where), scene) in enumerate(zip(dated, scenes)):
        say(f"image {i + 1}: {_name(scene)}, {when.isoformat()} (date from {where})"
            + ("; on another grid: its snow map is aligned onto the first date's grid (nearest)" if align[i] else ""))
    repeated = sorted({d for d in dates if dates.count(d) > 1})
    if repeated:
        say("images of the same date are merged, the first clear observation (in input order) winning: "
            + ", ".join(d.isoformat() for d in repeated))

    temporary = request.snow_map_folder is None
    folder = temporary_folder(request.output) if temporary else os.path.abspath(request.snow_map_folder)
    try:
        os.makedirs(folder, exist_ok=True)
        names = _map_names(dates)
        maps: List[SeriesMap] = []
        share = 85.0 / len(scenes)
        for i, scene in enumerate(scenes):
            monitor.check()
            sub = monitor.sub(i * share, (i + 1) * share)
            path, result = _make_map(request, scene, os.path.join(folder, names[i]), grids[0], align[i], folder, sub)
            maps.append(SeriesMap(dates[i], dated[i][1], scene.source, path, result, align[i]))
        monitor.check()
        duration = snow_cover_duration(SnowDurationRequest([(m.path, m.date) for m in maps], str(request.output),
                                                           start, end, request.max_gap_days,
                                                           window_rows=request.window_rows), monitor.sub(85, 97))
        rows = _rows(maps, duration, start, end)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    if temporary:  # the maps made in the temporary folder are gone
        inside = folder.rstrip(os.sep) + os.sep
        maps = [replace(m, path="") if m.path.startswith(inside) else m for m in maps]
    summary = summarise_duration(duration.output)
    svg = snow_area_svg(rows, start, end)
    report = SnowSeriesReport(output=duration.output, start=start, end=end, days=duration.days,
                              max_gap_days=duration.max_gap_days, maps=maps, rows=rows, duration=duration,
                              summary=summary, svg=svg, snow_map_folder=None if temporary else folder,
                              messages=messages)
    if request.statistics_csv:
        report.statistics_csv = write_series_csv(rows, request.statistics_csv)
    if request.chart_html:
        write_text_atomic(request.chart_html, chart_html(report_title(report), svg, rows, report.text()))
        report.chart_html = str(request.chart_html)
    say(report.text())
    monitor.progress(100.0)
    return report


def report_title(report: SnowSeriesReport) -> str:
    return f"Snow area per date, {report.start.isoformat()} to {report.end.isoformat()}"


def finite_or_none(value: float) -> Optional[float]:
    """``value``, or None for NaN (tables and Processing outputs)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
