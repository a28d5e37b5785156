"""The aligned terrain stack that terrain-aware cloud removal needs.

One GeoTIFF with four Float32 bands: elevation, slope (degrees), aspect (degrees clockwise from
north) and hillshade (0-255), computed on the DEM's own grid (so slopes are not smoothed or
distorted by resampling) and then resampled onto a reference grid: the Sentinel-2 scene's CRS,
extent and pixel size. Aspect is resampled through its sine and cosine, so the 0/360 wrap does
not produce false south-facing values. The hillshade is lit by the scene's sun when its
metadata is given (CRT-UNet computed it that way).

The work goes window by window over the reference grid; each window reads only the DEM cells it
needs (plus a halo), so memory stays bounded whatever the size of either raster.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from ..errors import InputError
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid, bounded_gdal_cache, open_raster, read_with_halo, valid_mask
from ..io.windows import count_windows, iter_windows
from .derivatives import PixelMetrics, TerrainOptions, describe, open_dem, terrain_products

STACK_BANDS = ("elevation", "slope", "aspect", "hillshade")
RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}
#: Extra DEM cells read around each window for the resampling kernel (cubic needs 2).
KERNEL_MARGIN = 3


def reference_grid(path: os.PathLike | str) -> Grid:
    with open_raster(path, "reference raster") as ds:
        if ds.crs is None:
            raise InputError(f"reference raster {path} has no coordinate reference system")
        return Grid.of(ds)


def _overlap_fraction(dem_grid: Grid, ref: Grid) -> float:
    """Fraction of the reference extent covered by the DEM extent."""
    left, bottom, right, top = transform_bounds(dem_grid.crs, ref.crs, *dem_grid.bounds, densify_pts=21)
    rl, rb, rr, rt = ref.bounds
    w = max(0.0, min(right, rr) - max(left, rl))
    h = max(0.0, min(top, rt) - max(bottom, rb))
    area = (rr - rl) * (rt - rb)
    return (w * h) / area if area > 0 else 0.0


def _source_window(dem_grid: Grid, ref: Grid, window: Window) -> Optional[Window]:
    """DEM window covering the reference window, grown by the kernel margin; None if outside the DEM."""
    bounds = transform_bounds(ref.crs, dem_grid.crs, *ref.window_bounds(window), densify_pts=21)
    src = from_bounds(*bounds, transform=dem_grid.transform)
    col0 = int(np.floor(src.col_off)) - KERNEL_MARGIN
    row0 = int(np.floor(src.row_off)) - KERNEL_MARGIN
    col1 = int(np.ceil(src.col_off + src.width)) + KERNEL_MARGIN
    row1 = int(np.ceil(src.row_off + src.height)) + KERNEL_MARGIN
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, dem_grid.width), min(row1, dem_grid.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _warp(array: np.ndarray, src_transform, src_crs, ref: Grid, window: Window, resampling) -> np.ndarray:
    out = np.full((int(window.height), int(window.width)), np.nan, dtype=np.float32)
    reproject(array, out, src_transform=src_transform, src_crs=src_crs, src_nodata=np.nan,
              dst_transform=ref.window_transform(window), dst_crs=ref.crs, dst_nodata=np.nan,
              resampling=resampling)
    return out


def terrain_stack(dem_path: os.PathLike | str, reference_path: os.PathLike | str, output: os.PathLike | str,
                  band: int = 1, options: TerrainOptions = TerrainOptions(), resampling: str = "bilinear",
                  monitor: Monitor = SILENT, window_rows: Optional[int] = None,
                  min_coverage: float = 0.0) -> str:
    """Write the 4-band terrain stack of ``dem_path`` on the grid of ``reference_path``.

    Cells of the reference grid that the DEM does not cover are nodata. ``min_coverage`` (0-1)
    refuses DEMs covering less than that fraction of the reference extent; an empty overlap is
    always an error.
    """
    if resampling not in RESAMPLING:
        raise InputError(f"resampling {resampling!r} is not one of {sorted(RESAMPLING)}")
    options = dataclasses.replace(options, slope_units="degrees")
    ref = reference_grid(reference_path)
    nod = np.float32(options.nodata)
    with bounded_gdal_cache(), open_dem(dem_path, band) as dem:
        dem_grid = Grid.of(dem)
        coverage = _overlap_fraction(dem_grid, ref)
        if coverage <= 0.0:
            raise InputError(f"DEM {dem_path} does not overlap the reference raster {reference_path} "
                             f"(DEM extent {dem_grid.bounds} in {dem_grid.crs}, reference extent {ref.bounds} "
                             f"in {ref.crs})")
        if coverage < min_coverage:
            raise InputError(f"DEM {dem_path} covers only {100 * coverage:.1f} % of the reference raster; "
                             f"at least {100 * min_coverage:.0f} % was required")
        if coverage < 0.999:
            monitor.message(f"The DEM covers {100 * coverage:.1f} % of the reference grid; "
                            "uncovered cells are nodata.")
        metrics = PixelMetrics.of(dem_grid)
        method = RESAMPLING[resampling]
        descriptions = [describe(b, options) for b in STACK_BANDS]
        total = count_windows(ref.width, ref.height, window_rows)
        with AtomicRasterWriter(output, ref, len(STACK_BANDS), "float32", options.nodata, descriptions) as dst:
            for n, window in enumerate(iter_windows(ref.width, ref.height, window_rows)):
                monitor.check()
                bands = _stack_window(dem, band, dem_grid, metrics, ref, window, options, method)
                for i, name in enumerate(STACK_BANDS, start=1):
                    values = bands.get(name)
                    if values is None:
                        values = np.full((int(window.height), int(window.width)), nod, np.float32)
                    dst.write(np.where(np.isfinite(values), values, nod).astype(np.float32), i, window=window)
                monitor.progress(100.0 * (n + 1) / total)
            monitor.check()
    return str(output)


def _stack_window(dem, band: int, dem_grid: Grid, metrics: PixelMetrics, ref: Grid, window: Window,
                  options: TerrainOptions, method) -> dict:
    src = _source_window(dem_grid, ref, window)
    if src is None:
        return {}
    z = read_with_halo(dem, band, src, 1)
    valid = valid_mask(z, dem.nodatavals[band - 1])
    dx, dy = metrics.steps(int(src.row_off), int(src.height))
    nan_options = dataclasses.replace(options, nodata=np.nan)
    products = terrain_products(z, valid, dx, dy, ("elevation", "slope", "aspect_sincos", "hillshade"), nan_options)
    src_transform = dem_grid.window_transform(src)
    warped = {name: _warp(products[name], src_transform, dem_grid.crs, ref, window, method)
              for name in ("elevation", "slope", "aspect_sin", "aspect_cos", "hillshade")}
    aspect = np.degrees(np.arctan2(warped["aspect_sin"], warped["aspect_cos"]))
    aspect = np.where(aspect < 0, aspect + 360.0, aspect)
    return {"elevation": warped["elevation"], "slope": warped["slope"], "aspect": aspect.astype(np.float32),
            "hillshade": warped["hillshade"]}
