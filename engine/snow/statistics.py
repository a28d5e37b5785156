"""Figures of a snow map: class areas and percentages, the snowline and the per-elevation-band table."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import rasterio

from ..errors import InputError
from ..io.atomic import atomic_output, check_writable
from ..io.raster import Grid, bounded_gdal_cache, check_band, open_raster
from ..io.windows import run_windows
from ..progress import SILENT, Monitor
from .areas import ClassAreas, ClassTally
from .classes import CLOUD, MAP_CLASSES, NO_SNOW, NODATA, SNOW
from .elevation import ElevationBand, ElevationCounts, find_snowline, read_dem
from .grid import SNOW_GDAL_CACHE_MB, strip_windows
from .requests import SnowStatisticsRequest
from .scene import open_overlapping

CLASSES_TEXT = "(100 snow, 0 no snow, 205 cloud, 255 nodata)"


@dataclass
class SnowStatistics(ClassAreas):
    """Areas and percentages of a snow map, and its per-elevation-band table."""

    counts: Dict[int, int]
    areas_m2: Dict[int, float]
    bands: List[ElevationBand]
    band_height: int
    snowline: Optional[float]
    snowline_source: str

    @property
    def no_snow_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.areas_m2.get(NO_SNOW, 0.0) / 1e6 / valid if valid > 0 else float("nan")

    #: Columns of the elevation-band table (after the ``band`` label column).
    TABLE_FIELDS = ("band_min_m", "band_max_m", "band_centre_m", "total", "snow", "no_snow", "cloud",
                    "snow_fraction")

    def rows(self) -> List[Tuple]:
        """One row per elevation band, then an ``all`` row for the whole map:
        (label, min, max, centre, total, snow, no snow, cloud, snow fraction of the cloud-free pixels)."""
        def fraction(snow: int, clear: int) -> Optional[float]:
            return round(snow / clear, 6) if clear else None

        out = [(f"{b.z_min:.0f}-{b.z_max:.0f} m", b.z_min, b.z_max, b.centre, b.total, b.snow, b.no_snow, b.cloud,
                fraction(b.snow, b.clear)) for b in self.bands]
        snow, no_snow, cloud = self.counts[SNOW], self.counts[NO_SNOW], self.counts[CLOUD]
        out.append(("all", None, None, None, snow + no_snow + cloud, snow, no_snow, cloud,
                    fraction(snow, snow + no_snow)))
        return out

    def write_csv(self, path: str) -> str:
        """Write the table as CSV (a header row, then :meth:`rows`); returns ``path``."""
        check_writable(path)
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(("band",) + self.TABLE_FIELDS)
            for row in self.rows():
                out.writerow(["" if v is None else v for v in row])
        return path


def read_snowline_tag(path: str) -> Optional[float]:
    """The snowline a LIS run stored in its snow map (``SNOWLINE_M`` tag), or None."""
    with open_raster(path, "snow map") as ds:
        value = ds.tags().get("SNOWLINE_M")
    try:
        return float(value) if value not in (None, "", "none") else None
    except ValueError:
        return None


def _tally_map(ds: rasterio.DatasetReader, dem_ds: Optional[rasterio.DatasetReader], request: SnowStatisticsRequest,
               grid: Grid, monitor: Monitor) -> Tuple[ClassTally, ElevationCounts]:
    """One windowed pass over the snow map (and the DEM aligned onto it): class tally, elevation counts."""
    tally, elevation = ClassTally(), ElevationCounts()

    def read(window):
        classes = ds.read(request.band, window=window)
        return classes, (read_dem(dem_ds, request.dem_band, grid, window) if dem_ds is not None else None)

    def compute(window, data):
        classes, z = data
        unknown = ~np.isin(classes, MAP_CLASSES)
        if unknown.any():
            values = np.unique(classes[unknown])[:5]
            raise InputError(f"snow map {request.snow_map}: values {values.tolist()} are not snow map classes "
                             f"{CLASSES_TEXT}")
        classes = classes.astype(np.uint8)
        counts = ElevationCounts()
        if z is not None:
            use = np.isfinite(z) & (classes != NODATA)
            category = np.select([classes == SNOW, classes == CLOUD], [1, 2], 0).astype(np.uint8)
            counts.add(z, category, use)
        return classes, counts

    def write(window, result):
        classes, counts = result
        tally.add_window(classes, grid, int(window.row_off))
        elevation.merge(counts)

    run_windows(strip_windows(grid, request.window_rows, ds), read, compute, write, monitor)
    return tally, elevation


def _snowline(tag: Optional[str], bands: List[ElevationBand], request: SnowStatisticsRequest
              ) -> Tuple[Optional[float], str]:
    """(snowline, where it comes from): the one a LIS run stored, else the LIS rule on ``bands``."""
    if tag not in (None, "", "none"):
        return float(tag), "stored by the Let It Snow run"
    if tag == "none":
        return None, "the Let It Snow run found no snowline"
    if bands:
        snowline = find_snowline(bands, request.fsnow_lim, request.fclear_lim)
        return snowline, "from this map's elevation bands (Let It Snow rule)" if snowline is not None else "not found"
    return None, "no DEM given"


def snow_statistics(request: SnowStatisticsRequest, monitor: Monitor = SILENT) -> SnowStatistics:
    """Snow area (km^2), snow / cloud percentages of the valid area, snowline and elevation-band table.

    The table has bands ``band_height`` m high at multiples of it (1200-1300 m, ...), so tables of
    different dates line up. The snowline is the one the LIS run stored in the map (``SNOWLINE_M``);
    for other maps it is derived from this table with the LIS rule (first band with cloud-free
    fraction > ``fclear_lim`` and snow fraction > ``fsnow_lim``, lower edge two bands below).
    """
    request = request.validate()
    path = request.snow_map
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB), open_raster(path, "snow map") as ds:
        check_band(ds, request.band, "snow map")
        if ds.dtypes[request.band - 1] not in ("uint8", "int16", "uint16", "int32"):
            raise InputError(f"snow map {path}: expected an integer class raster {CLASSES_TEXT}, got "
                             f"{ds.dtypes[request.band - 1]}")
        grid = Grid.of(ds)
        tag = ds.tags().get("SNOWLINE_M")
        dem_ds = open_overlapping(request.dem, request.dem_band, grid, "DEM")[0] if request.dem else None
        try:
            tally, elevation = _tally_map(ds, dem_ds, request, grid, monitor)
        finally:
            if dem_ds is not None:
                dem_ds.close()
    bands = elevation.bands(int(request.band_height), "round")
    snowline, source = _snowline(tag, bands, request)
    counts, _, areas = tally.totals(grid)
    return SnowStatistics(counts=counts, areas_m2=areas, bands=bands, band_height=int(request.band_height),
                          snowline=snowline, snowline_source=source)
