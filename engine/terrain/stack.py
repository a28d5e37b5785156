"""The aligned terrain stack that terrain-aware cloud removal needs.

One GeoTIFF with four Float32 bands (:data:`topoclear.models.bands.TERRAIN_BANDS`): elevation,
slope (degrees), aspect (degrees clockwise from north) and hillshade (0-255), computed on the
DEM's own grid (so slopes are not smoothed or distorted by resampling) and then resampled onto a
reference grid: the Sentinel-2 scene's CRS, extent and pixel size. Aspect is resampled through
its sine and cosine, so the 0/360 wrap does not produce false south-facing values. The hillshade
is lit by the scene's sun when its metadata is given (CRT-UNet computed it that way).

The work goes window by window over the reference grid; each window reads only the DEM cells it
needs (plus a halo), so memory stays bounded whatever the size of either raster.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from ...models.bands import TERRAIN_BANDS
from ..errors import InputError
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter, refuse_inputs_as_outputs
from ..io.raster import (Grid, band_nodata, bounded_gdal_cache, check_north_up, open_raster, read_with_halo,
                         valid_mask)
from ..io.warp import footprint_coverage
from ..io.windows import iter_windows, run_windows
from .derivatives import (PixelMetrics, TerrainOptions, open_dem, product_description, terrain_products,
                          terrain_window_rows)

#: Resampling of the terrain products onto the reference grid, by name.
RESAMPLING_METHODS = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}
#: Extra DEM cells read around each window for the resampling kernel (cubic needs 2).
KERNEL_MARGIN = 3
#: Products computed on the DEM grid and warped (aspect travels as its sine and cosine).
_WARPED = ("elevation", "slope", "aspect_sin", "aspect_cos", "hillshade")

# Former names, importable until engine/clouds/inputs.py uses the new ones.
RESAMPLING = RESAMPLING_METHODS


def reference_grid(path: os.PathLike | str) -> Grid:
    """The grid (CRS, transform, size) of the raster the stack is aligned to."""
    with open_raster(path, "reference raster") as ds:
        if ds.crs is None:
            raise InputError(f"reference raster {path} has no coordinate reference system")
        check_north_up(ds, "reference raster")
        return Grid.of(ds)


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


#: What one reference window needs from the DEM: its source window, and the DEM values there with
#: a 1-cell halo (None when the window lies outside the DEM).
_DemBlock = Optional[Tuple[Window, np.ndarray]]


def _read_dem_block(dem, band: int, dem_grid: Grid, ref: Grid, window: Window) -> _DemBlock:
    """The DEM cells (with a 1-cell halo, float64, not yet masked) that ``window`` of ``ref`` needs."""
    src = _source_window(dem_grid, ref, window)
    if src is None:
        return None
    return src, read_with_halo(dem, band, src, 1, dtype=np.float64)


def _stack_from_dem_block(block: _DemBlock, nodata, dem_grid: Grid, metrics: PixelMetrics, ref: Grid,
                          window: Window, options: TerrainOptions, resampling) -> Dict[str, np.ndarray]:
    """Elevation, slope, aspect and hillshade (float32, NaN where unknown) on ``window`` of ``ref``.

    ``block`` comes from :func:`_read_dem_block`; ``nodata`` is the DEM band's nodata
    (:func:`~topoclear.engine.io.raster.band_nodata`).
    An empty dict when the window lies outside the DEM.
    """
    if block is None:
        return {}
    src, z = block
    dx, dy = metrics.steps(int(src.row_off), int(src.height))
    nan_options = dataclasses.replace(options, nodata=np.nan)
    products = terrain_products(z, valid_mask(z, nodata), dx, dy, ("elevation", "slope", "aspect_sincos", "hillshade"),
                                nan_options)
    src_transform = dem_grid.window_transform(src)
    warped = {name: _warp(products[name], src_transform, dem_grid.crs, ref, window, resampling) for name in _WARPED}
    aspect = np.degrees(np.arctan2(warped["aspect_sin"], warped["aspect_cos"]))
    aspect = np.where(aspect < 0, aspect + 360.0, aspect)
    return {"elevation": warped["elevation"], "slope": warped["slope"], "aspect": aspect.astype(np.float32),
            "hillshade": warped["hillshade"]}


def terrain_stack_window(dem, band: int, dem_grid: Grid, metrics: PixelMetrics, ref: Grid, window: Window,
                         options: TerrainOptions, resampling) -> Dict[str, np.ndarray]:
    """Terrain stack bands (name -> float32 array, NaN where unknown) on ``window`` of ``ref``.

    ``dem`` is the open DEM (:func:`~topoclear.engine.terrain.derivatives.open_dem`), ``resampling``
    a value of :data:`RESAMPLING_METHODS`. An empty dict when the window lies outside the DEM.
    """
    block = _read_dem_block(dem, band, dem_grid, ref, window)
    return _stack_from_dem_block(block, band_nodata(dem, band), dem_grid, metrics, ref, window, options,
                                 resampling)


# Former private name, importable until engine/clouds/inputs.py uses terrain_stack_window.
_stack_window = terrain_stack_window


def _check_overlap(dem_path, reference_path, dem_grid: Grid, ref: Grid, min_coverage: float,
                   monitor: Monitor) -> None:
    coverage = footprint_coverage(dem_grid, ref)
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


def terrain_stack(dem_path: os.PathLike | str, reference_path: os.PathLike | str, output: os.PathLike | str,
                  band: int = 1, options: TerrainOptions = TerrainOptions(), resampling: str = "bilinear",
                  monitor: Monitor = SILENT, window_rows: Optional[int] = None,
                  min_coverage: float = 0.0) -> str:
    """Write the 4-band terrain stack of ``dem_path`` on the grid of ``reference_path``.

    Cells of the reference grid that the DEM does not cover are nodata. ``min_coverage`` (0-1)
    refuses DEMs covering less than that fraction of the reference extent; an empty overlap is
    always an error.
    """
    if resampling not in RESAMPLING_METHODS:
        raise InputError(f"resampling {resampling!r} is not one of {sorted(RESAMPLING_METHODS)}")
    refuse_inputs_as_outputs({"OUTPUT": output}, {"DEM": dem_path, "REFERENCE": reference_path})
    options = dataclasses.replace(options, slope_units="degrees")
    ref = reference_grid(reference_path)
    nod = np.float32(options.nodata)
    with bounded_gdal_cache(), open_dem(dem_path, band) as dem:
        dem_grid = Grid.of(dem)
        _check_overlap(dem_path, reference_path, dem_grid, ref, min_coverage, monitor)
        metrics = PixelMetrics.of(dem_grid)
        method = RESAMPLING_METHODS[resampling]
        nodata = band_nodata(dem, band)
        descriptions = [product_description(b, options) for b in TERRAIN_BANDS]

        def read(window):
            return _read_dem_block(dem, band, dem_grid, ref, window)

        def compute(window, block):
            bands = _stack_from_dem_block(block, nodata, dem_grid, metrics, ref, window, options, method)
            shape = (int(window.height), int(window.width))
            return [np.where(np.isfinite(v), v, nod).astype(np.float32) if v is not None
                    else np.full(shape, nod, np.float32) for v in (bands.get(name) for name in TERRAIN_BANDS)]

        with AtomicRasterWriter(output, ref, len(TERRAIN_BANDS), "float32", options.nodata, descriptions) as dst:
            def write(window, values):
                for i, v in enumerate(values, start=1):
                    dst.write(v, i, window=window)

            run_windows(iter_windows(ref.width, ref.height, terrain_window_rows(ref.width, window_rows)), read,
                        compute, write, monitor)
    return str(output)
