"""Pixel areas of a grid and the class counts and areas of a snow map.

Areas are pixel counts times pixel areas (:func:`row_areas_m2`, the one pixel-area rule of the
snow tools: snow maps, statistics and snow cover duration alike): on projected grids every pixel
has the area of its width x height (the CRS's linear unit converted to metres, map-plane area); on
geographic grids each row has the exact area of its cell on the CRS's ellipsoid.
"""
from __future__ import annotations

import math
import re
from typing import Dict, Tuple

import numpy as np

from ..io.raster import Grid
from .classes import CLOUD, MAP_CLASSES, NODATA, SNOW

#: WGS 84 (semi-major axis m, inverse flattening): the ellipsoid of CRSs whose own cannot be read.
WGS84 = (6378137.0, 298.257223563)
_ELLIPSOID = re.compile(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",\s*([-+0-9.eE]+),\s*([-+0-9.eE]+)')


def _units_factor(crs, attribute: str, default: float) -> float:
    try:
        return float(getattr(crs, attribute)[1])
    except Exception:  # a CRS without such units
        return default


def row_areas_m2(grid: Grid, row0: int, rows: int) -> np.ndarray:
    """Area (m^2) of one pixel of each of ``rows`` rows of ``grid`` from ``row0``.

    Projected grids: pixel width x height in metres (map-plane area). Geographic grids: the exact
    cell area on the CRS's ellipsoid (WGS 84 when it cannot be read), from the ellipsoid zone
    between two latitudes: ``A = b^2 dlon / 2 [q(lat2) - q(lat1)]`` with
    ``q = sin(lat) / (1 - e^2 sin^2(lat)) + atanh(e sin(lat)) / e``.
    """
    crs = grid.crs
    px, py = grid.pixel_size
    if crs is not None and crs.is_geographic:
        unit = _units_factor(crs, "units_factor", math.pi / 180.0)
        match = _ELLIPSOID.search(crs.to_wkt())
        a, inv_f = (float(match.group(1)), float(match.group(2))) if match else WGS84
        f = 1.0 / inv_f if inv_f > 0 else 0.0
        e = math.sqrt(max(0.0, f * (2.0 - f)))
        edges = grid.transform.f + grid.transform.e * np.arange(row0, row0 + rows + 1, dtype=np.float64)
        s = np.sin(np.clip(edges * unit, -math.pi / 2, math.pi / 2))
        q = s / (1.0 - e * e * s * s) + np.arctanh(e * s) / e if e > 0 else 2.0 * s
        return a * a * (1.0 - e * e) * px * unit / 2.0 * np.abs(q[:-1] - q[1:])
    factor = _units_factor(crs, "linear_units_factor", 1.0) if crs is not None else 1.0
    return np.full(rows, px * py * factor * factor, dtype=np.float64)


def pixel_area_m2(grid: Grid) -> float:
    """Area (m^2) of a pixel of the middle row of ``grid``."""
    return float(row_areas_m2(grid, grid.height // 2, 1)[0])


def pixel_size_m(grid: Grid) -> float:
    """Side (m) of a square with the area of a pixel of the middle row of ``grid``."""
    return math.sqrt(pixel_area_m2(grid))


class ClassAreas:
    """Areas and percentages of the snow classes, from ``areas_m2`` (class code -> m^2)."""

    areas_m2: Dict[int, float]

    @property
    def snow_area_km2(self) -> float:
        return self.areas_m2.get(SNOW, 0.0) / 1e6

    @property
    def valid_area_km2(self) -> float:
        return sum(v for k, v in self.areas_m2.items() if k != NODATA) / 1e6

    @property
    def snow_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.snow_area_km2 / valid if valid > 0 else float("nan")

    @property
    def cloud_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.areas_m2.get(CLOUD, 0.0) / 1e6 / valid if valid > 0 else float("nan")


class ClassTally:
    """Pixel counts (and, on grids whose rows differ in pixel area, areas) of the snow classes,
    added window by window."""

    def __init__(self) -> None:
        self.counts = np.zeros(256, dtype=np.int64)
        self.areas = np.zeros(256, dtype=np.float64)

    def add(self, classes: np.ndarray, row_areas: np.ndarray) -> None:
        """Add a window of ``classes`` (uint8) whose rows have pixel areas ``row_areas`` (m^2)."""
        constant = bool(np.all(row_areas == row_areas[0]))
        for value in MAP_CLASSES:
            hits = classes == value
            if constant:
                self.counts[value] += int(np.count_nonzero(hits))
            else:
                per_row = np.count_nonzero(hits, axis=1)
                self.counts[value] += int(per_row.sum())
                self.areas[value] += float((per_row * row_areas).sum())

    def add_window(self, classes: np.ndarray, grid: Grid, row0: int) -> None:
        """Add the window of ``classes`` whose first row is row ``row0`` of ``grid``."""
        self.add(classes, row_areas_m2(grid, row0, classes.shape[0]))

    def totals(self, grid: Grid) -> Tuple[Dict[int, int], float, Dict[int, float]]:
        """(pixel count per class, pixel area m^2 of the middle row, area m^2 per class) on ``grid``."""
        pixel_area = pixel_area_m2(grid)
        constant = grid.crs is None or not grid.crs.is_geographic
        counts = {k: int(self.counts[k]) for k in MAP_CLASSES}
        areas = {k: (float(self.counts[k]) * pixel_area if constant else float(self.areas[k])) for k in MAP_CLASSES}
        return counts, pixel_area, areas
