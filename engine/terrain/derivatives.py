"""Slope, aspect and hillshade of a DEM with Horn's 3x3 method, windowed over whole rasters.

Conventions (the same as QGIS ``native:slope/aspect/hillshade`` and ``gdaldem``):

* Gradients by Horn (1981) on the 3x3 window ``a b c / d e f / g h i`` (north up).
* Slope in degrees ``atan(z * |grad|)`` or percent ``100 * z * |grad|``.
* Aspect: azimuth of the downslope direction, degrees clockwise from north in [0, 360).
  Flat cells (zero gradient) have no aspect: nodata unless a value is given.
* Hillshade (Lambert): ``255 * max(0, cos Zs cos S + sin Zs sin S cos(As - A))`` with sun zenith
  ``Zs`` (90 - altitude) and sun azimuth ``As`` (clockwise from north). Multidirectional mode
  blends lights from 225, 270, 315 and 360 deg weighted by how squarely each meets the slope
  (Mark 1992, as ``gdaldem -multidirectional``).
* Geographic CRSs: horizontal distances are converted to metres row by row (meridian and
  prime-vertical radii of the CRS's ellipsoid at each row's latitude), so slopes are true degrees.

Edge and nodata rules (``edge_mode``):

* ``"edges"`` (default): like QGIS, missing neighbours (raster border or nodata) are handled with
  one-sided differences using QGIS's weighting, so the border and cells beside nodata get values;
  a nodata centre cell always gives nodata. (QGIS 3.22 itself drops the left column of the
  north-south derivative where the lower-left neighbour is missing, a slip in its
  ``calcFirstDerY``; TopoClear applies the rule symmetrically, so on the last row and just
  above-right of nodata the two differ.)
* ``"nodata"``: like ``gdaldem`` without ``-compute_edges``: any cell whose 3x3 window touches
  nodata or leaves the raster gives nodata (a 1-pixel nodata border).

Windows are read with a 1-pixel halo, so results do not depend on the window size. Gradients are
computed in float64 (the 3x3 sums of high float elevations lose too much in float32); the products
are written as Float32.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter, refuse_inputs_as_outputs
from ..io.raster import (Grid, band_nodata, bounded_gdal_cache, check_band, check_north_up, open_raster,
                         read_with_halo, valid_mask)
from ..io.windows import DEFAULT_WINDOW_PIXELS, iter_windows, run_windows
from ..sentinel2.metadata import SunAngles

EDGE_MODES = ("edges", "nodata")
SLOPE_UNITS = ("degrees", "percent")
#: Sun position used when none is given: gdaldem's and QGIS's default light (azimuth 315, altitude 45).
DEFAULT_SUN = SunAngles(zenith=45.0, azimuth=315.0, source="default (azimuth 315, altitude 45)")
MULTIDIRECTIONAL_AZIMUTHS = (225.0, 270.0, 315.0, 360.0)
#: Largest z-factor accepted: beyond it squared gradients overflow and the products lose meaning.
MAX_Z_FACTOR = 1e6
#: Pixels of one terrain window: half the usual, as the gradients are computed in float64.
TERRAIN_WINDOW_PIXELS = DEFAULT_WINDOW_PIXELS // 2


def terrain_window_rows(width: int, rows: Optional[int] = None) -> int:
    """Rows of a terrain window over a raster ``width`` pixels wide (``rows`` when given)."""
    return int(rows) if rows else max(1, TERRAIN_WINDOW_PIXELS // max(1, width))


@dataclass(frozen=True)
class TerrainOptions:
    """Parameters shared by every terrain product."""

    z_factor: float = 1.0
    slope_units: str = "degrees"
    edge_mode: str = "edges"
    sun: SunAngles = DEFAULT_SUN
    multidirectional: bool = False
    flat_aspect: Optional[float] = None  # None: flat cells are nodata
    nodata: float = -9999.0

    def __post_init__(self) -> None:
        if self.edge_mode not in EDGE_MODES:
            raise InputError(f"edge mode {self.edge_mode!r} is not one of {EDGE_MODES}")
        if self.slope_units not in SLOPE_UNITS:
            raise InputError(f"slope units {self.slope_units!r} is not one of {SLOPE_UNITS}")
        if not math.isfinite(self.z_factor) or not 0 < self.z_factor <= MAX_Z_FACTOR:
            raise InputError(f"z-factor {self.z_factor:g} is outside the accepted range: a positive number "
                             f"at most {MAX_Z_FACTOR:g}")
        if not 0.0 <= self.sun.zenith <= 90.0:
            raise InputError(f"sun zenith must be within 0-90 degrees, got {self.sun.zenith}")


# --------------------------------------------------------------------------------------------
# Kernels on one padded window
# --------------------------------------------------------------------------------------------

def _one_sided_sum(lo, mid, hi, v_lo, v_mid, v_hi):
    """QGIS's difference of one row (or column) of the window with fallbacks for missing cells.

    Returns (difference hi - lo scaled to two cell steps, weight in half-steps).
    """
    both = v_lo & v_hi
    only_lo = v_lo & ~v_hi & v_mid
    only_hi = v_hi & ~v_lo & v_mid
    diff = np.where(both, hi - lo, np.where(only_lo, mid - lo, np.where(only_hi, hi - mid, 0.0)))
    weight = 2 * both.astype(np.float32) + only_lo + only_hi
    return diff, weight


def _full_windows(valid: np.ndarray) -> np.ndarray:
    """(h, w) mask of interior cells whose whole 3x3 window is valid."""
    h, w = valid.shape[0] - 2, valid.shape[1] - 2
    full = valid[1:-1, 1:-1].copy()
    for r in range(3):
        for s in range(3):
            if r != 1 or s != 1:
                full &= valid[r:r + h, s:s + w]
    return full


def _one_sided_gradients(z, valid, rows, cols, dx, dy):
    """QGIS-style gradients for the listed interior cells (``rows``, ``cols`` index the (h, w) grid)."""
    def cell(dr, dc):
        return z[rows + 1 + dr, cols + 1 + dc], valid[rows + 1 + dr, cols + 1 + dc]

    sum_x = np.zeros(rows.shape, np.float64)
    wt_x = np.zeros(rows.shape, np.float64)
    sum_y = np.zeros(rows.shape, np.float64)
    wt_y = np.zeros(rows.shape, np.float64)
    for k, weight in ((-1, 1.0), (0, 2.0), (1, 1.0)):
        (lo, mid, hi), (v_lo, v_mid, v_hi) = zip(cell(k, -1), cell(k, 0), cell(k, 1))
        diff, wt = _one_sided_sum(lo, mid, hi, v_lo, v_mid, v_hi)
        sum_x += weight * diff
        wt_x += weight * wt
        # north gradient: the top cell (row - 1) minus the bottom cell (row + 1)
        (lo, mid, hi), (v_lo, v_mid, v_hi) = zip(cell(1, k), cell(0, k), cell(-1, k))
        diff, wt = _one_sided_sum(lo, mid, hi, v_lo, v_mid, v_hi)
        sum_y += weight * diff
        wt_y += weight * wt
    dx_cells = dx[rows, 0] if np.ndim(dx) else dx
    dy_cells = dy[rows, 0] if np.ndim(dy) else dy
    with np.errstate(divide="ignore", invalid="ignore"):
        return sum_x / (wt_x * dx_cells), sum_y / (wt_y * dy_cells), (wt_x > 0) & (wt_y > 0)


def horn_gradients(z: np.ndarray, valid: np.ndarray, dx, dy, edge_mode: str = "edges"
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East and north elevation gradients of the interior of a padded window.

    ``z`` and ``valid`` are (h+2, w+2) arrays (1-pixel halo); ``dx`` and ``dy`` are pixel sizes in
    the same unit as z (scalars or (h, 1) per-row arrays). Returns ``(gx_east, gy_north, ok)``,
    each (h, w); ``ok`` is False where the result is nodata.

    Cells with a complete 3x3 window take the plain Horn formula; in ``"edges"`` mode the few
    others (raster border, beside nodata) are then recomputed with one-sided differences.
    """
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, hh, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    with np.errstate(invalid="ignore"):
        # ((c + 2f + i) - (a + 2d + g)) / 8dx and ((a + 2b + c) - (g + 2h + i)) / 8dy, differences first,
        # in place; exact in float64 for float32 or integer elevations
        gx = np.subtract(c, a)
        gx += i
        gx -= g
        step = np.subtract(f, d)
        step += step
        gx += step
        gx *= 1.0 / (8 * np.asarray(dx, dtype=np.float64))
        gy = np.subtract(a, g)
        gy += c
        gy -= i
        np.subtract(b, hh, out=step)
        step += step
        gy += step
        gy *= 1.0 / (8 * np.asarray(dy, dtype=np.float64))
    if valid.all():
        return gx, gy, np.ones(gx.shape, dtype=bool)
    ok = _full_windows(valid)
    if edge_mode == "edges":
        rows, cols = np.nonzero(valid[1:-1, 1:-1] & ~ok)
        if rows.size:
            zf = np.where(valid, z, 0.0)
            sx, sy, good = _one_sided_gradients(zf, valid, rows, cols, dx, dy)
            gx[rows, cols], gy[rows, cols] = sx, sy
            ok[rows, cols] = good
    return gx, gy, ok


def slope_from_gradients(gx, gy, z_factor: float = 1.0, units: str = "degrees") -> np.ndarray:
    magnitude = np.multiply(gx, gx)
    magnitude += gy * gy
    np.sqrt(magnitude, out=magnitude)
    if z_factor != 1.0:
        magnitude *= z_factor
    if units == "percent":
        magnitude *= 100.0
        return magnitude
    np.arctan(magnitude, out=magnitude)
    return np.degrees(magnitude, out=magnitude)


def aspect_from_gradients(gx, gy) -> Tuple[np.ndarray, np.ndarray]:
    """Aspect in degrees clockwise from north of the downslope direction, in [0, 360), and the flat-cell
    mask. The downslope azimuth atan2(-gx, -gy) is atan2(gx, gy) + 180 degrees (modulo 360)."""
    aspect = np.arctan2(gx, gy)
    np.degrees(aspect, out=aspect)
    aspect += 180.0
    aspect[aspect >= 360.0] -= 360.0
    return aspect, (gx == 0) & (gy == 0)


def _lambert(gx, gy, z_factor: float, zenith_deg: float, azimuth_deg: float, inv_norm) -> np.ndarray:
    """cos(incidence) for a sun at (zenith, azimuth); no trigonometry per pixel:
    (cos Zs - z sin Zs (sin As gx + cos As gy)) / sqrt(1 + z^2 |grad|^2)."""
    zen, azi = math.radians(zenith_deg), math.radians(azimuth_deg)
    k = math.sin(zen) * z_factor
    light = np.multiply(gx, -k * math.sin(azi))
    light += gy * (-k * math.cos(azi))
    light += math.cos(zen)
    light *= inv_norm
    return light


def hillshade_from_gradients(gx, gy, z_factor: float = 1.0, sun: SunAngles = DEFAULT_SUN,
                             multidirectional: bool = False) -> np.ndarray:
    """Hillshade 0-255 (255 = surface facing the sun)."""
    inv_norm = np.multiply(gx, gx)
    inv_norm += gy * gy
    if z_factor != 1.0:
        inv_norm *= z_factor * z_factor
    inv_norm += 1.0
    np.sqrt(inv_norm, out=inv_norm)
    np.divide(1.0, inv_norm, out=inv_norm)
    if not multidirectional:
        shade = _lambert(gx, gy, z_factor, sun.zenith, sun.azimuth, inv_norm)
        np.maximum(shade, 0.0, out=shade)
        shade *= 255.0
        return shade
    total = np.zeros_like(gx)
    weights = np.zeros_like(gx)
    for azimuth in MULTIDIRECTIONAL_AZIMUTHS:
        azi = math.radians(azimuth)
        weight = (math.sin(azi) * gx + math.cos(azi) * gy) ** 2
        total += weight * np.maximum(_lambert(gx, gy, z_factor, sun.zenith, azimuth, inv_norm), 0.0)
        weights += weight
    flat = weights == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        cang = np.where(flat, math.cos(math.radians(sun.zenith)), total / np.where(flat, 1.0, weights))
    return 255.0 * cang


# --------------------------------------------------------------------------------------------
# Pixel sizes in metres
# --------------------------------------------------------------------------------------------

def _ellipsoid(crs) -> Tuple[float, float]:
    """(semi-major axis, eccentricity squared) of a geographic CRS; WGS 84 if unknown."""
    try:
        from osgeo import osr

        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs.to_wkt())
        a, b = srs.GetSemiMajor(), srs.GetSemiMinor()
        if a > 0 and b > 0:
            return a, 1.0 - (b * b) / (a * a)
    except Exception:  # noqa: BLE001 - fall back to WGS 84 below
        pass
    return 6378137.0, 0.00669437999014


def _linear_unit_metres(crs) -> float:
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return float(factor)


@dataclass(frozen=True)
class PixelMetrics:
    """How to turn a window's pixel steps into ground distances (metres)."""

    geographic: bool
    dx: float  # projected: metres per pixel east; geographic: degrees
    dy: float
    top: float = 0.0  # geographic: latitude of the raster's top edge
    semi_major: float = 6378137.0
    ecc2: float = 0.00669437999014

    @classmethod
    def of(cls, grid: Grid) -> "PixelMetrics":
        dx, dy = grid.pixel_size
        if grid.crs.is_geographic:
            a, e2 = _ellipsoid(grid.crs)
            return cls(True, dx, dy, grid.transform.f, a, e2)
        unit = _linear_unit_metres(grid.crs)
        return cls(False, dx * unit, dy * unit)

    def steps(self, row_off: int, height: int):
        """(dx, dy) in metres for rows ``row_off .. row_off+height-1`` (scalars or (h, 1) arrays)."""
        if not self.geographic:
            return self.dx, self.dy
        rows = np.arange(row_off, row_off + height, dtype=np.float64) + 0.5
        lat = np.radians(self.top - rows * self.dy)
        s2 = np.sin(lat) ** 2
        denom = 1.0 - self.ecc2 * s2
        prime_vertical = self.semi_major / np.sqrt(denom)
        meridian = self.semi_major * (1.0 - self.ecc2) / denom ** 1.5
        dx = (np.radians(self.dx) * prime_vertical * np.cos(lat))[:, None]
        dy = (np.radians(self.dy) * meridian)[:, None]
        return dx, dy


# --------------------------------------------------------------------------------------------
# One window, all products
# --------------------------------------------------------------------------------------------

def _written(values: np.ndarray, ok: np.ndarray, nodata) -> np.ndarray:
    """``values`` as the Float32 an output holds, ``nodata`` where ``ok`` is False."""
    out = values.astype(np.float32)
    out[~ok] = nodata
    return out


def terrain_products(z: np.ndarray, valid: np.ndarray, dx, dy, products: Sequence[str],
                     options: TerrainOptions) -> Dict[str, np.ndarray]:
    """Float32 products of the interior of a padded window (computed in the precision of ``z``: float64
    from :func:`compute_terrain`); nodata cells are ``options.nodata``."""
    gx, gy, ok = horn_gradients(z, valid, dx, dy, options.edge_mode)
    nod = np.float32(options.nodata)
    out: Dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "elevation" in products:
            out["elevation"] = _written(z[1:-1, 1:-1], valid[1:-1, 1:-1], nod)
        if "slope" in products:
            out["slope"] = _written(slope_from_gradients(gx, gy, options.z_factor, options.slope_units), ok, nod)
        if "aspect" in products or "aspect_sincos" in products:
            aspect, flat = aspect_from_gradients(gx, gy)
            if options.flat_aspect is None:
                aspect_ok = ok & ~flat
            else:
                aspect[flat] = options.flat_aspect
                aspect_ok = ok
            if "aspect" in products:
                out["aspect"] = _written(aspect, aspect_ok, nod)
            if "aspect_sincos" in products:
                rad = np.radians(aspect)
                out["aspect_sin"] = _written(np.sin(rad), aspect_ok, np.nan)
                out["aspect_cos"] = _written(np.cos(rad), aspect_ok, np.nan)
        if "hillshade" in products:
            shade = hillshade_from_gradients(gx, gy, options.z_factor, options.sun, options.multidirectional)
            out["hillshade"] = _written(shade, ok, nod)
    return out


# --------------------------------------------------------------------------------------------
# Whole rasters
# --------------------------------------------------------------------------------------------

DESCRIPTIONS = {
    "elevation": "elevation",
    "slope": "slope ({units})",
    "aspect": "aspect (degrees from north)",
    "hillshade": "hillshade (sun {zenith:.2f}/{azimuth:.2f} deg)",  # zenith/azimuth; short for band menus
}


def product_description(product: str, options: TerrainOptions) -> str:
    """Band description of a terrain product written with ``options``."""
    text = DESCRIPTIONS[product].format(units=options.slope_units, zenith=options.sun.zenith,
                                        azimuth=options.sun.azimuth)
    if product == "hillshade" and options.multidirectional:
        text = f"hillshade (4 suns at {options.sun.zenith:.1f} deg)"
    return text


def open_dem(path, band: int = 1):
    """Open a DEM for terrain work, checking band, grid orientation and CRS."""
    ds = open_raster(path, "DEM")
    try:
        check_band(ds, band, "DEM")
        check_north_up(ds, "DEM")
    except InputError:
        ds.close()
        raise
    return ds


def compute_terrain(dem_path: os.PathLike | str, outputs: Dict[str, os.PathLike | str], band: int = 1,
                    options: TerrainOptions = TerrainOptions(), monitor: Monitor = SILENT,
                    window_rows: Optional[int] = None, window_cols: Optional[int] = None,
                    workers: Optional[int] = None) -> Dict[str, str]:
    """Write slope / aspect / hillshade (any subset, one GeoTIFF each) of a DEM in one windowed pass.

    ``outputs`` maps a product name to its output path. All outputs appear together at the end,
    or none does (error or cancel). Windows are strips of whole rows by default; ``workers``
    threads compute while the main thread reads and writes. Returns the product -> path mapping.
    """
    unknown = set(outputs) - {"slope", "aspect", "hillshade"}
    if unknown or not outputs:
        raise InputError(f"terrain outputs must be among slope, aspect, hillshade; got {sorted(outputs)}")
    refuse_inputs_as_outputs(outputs, {"DEM": dem_path})
    products = list(outputs)
    with bounded_gdal_cache(), open_dem(dem_path, band) as dem:
        grid = Grid.of(dem)
        metrics = PixelMetrics.of(grid)
        nodata = band_nodata(dem, band)  # as the cells hold it, to compare with the float64 reads

        def read(window):
            return read_with_halo(dem, band, window, 1, dtype=np.float64)

        def compute(window, z):
            dx, dy = metrics.steps(int(window.row_off), int(window.height))
            return terrain_products(z, valid_mask(z, nodata), dx, dy, products, options)

        with contextlib.ExitStack() as stack:
            writers = {p: stack.enter_context(AtomicRasterWriter(outputs[p], grid, 1, "float32", options.nodata,
                                                                 [product_description(p, options)]))
                       for p in products}

            def write(window, result):
                for p in products:
                    writers[p].write(result[p], 1, window=window)

            rows = terrain_window_rows(window_cols or grid.width, window_rows)
            run_windows(iter_windows(grid.width, grid.height, rows, window_cols), read, compute, write,
                        monitor, workers)
    return {p: str(path) for p, path in outputs.items()}
