"""Reading the stacks of a training sample window by window, on the grid of its reference image.

Files on the grid itself are read directly; files of another pixel size (same CRS, same ground:
20 m and 60 m band files beside 10 m ones) are read over the same ground and resampled to the
window by nearest neighbour. Declared nodata becomes NaN.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from ..errors import InputError
from ..io.raster import Grid, nodata_to_nan, open_raster
from .manifest import StackRef

__all__ = ["finest_file", "reference_grid", "read_stack"]


def finest_file(paths: Sequence[str]) -> str:
    """The file with the smallest pixel size (the first of them on a tie)."""
    best, best_size = paths[0], math.inf
    for p in paths:
        with open_raster(p) as ds:
            size = abs(ds.transform.a)
        if size < best_size:
            best, best_size = p, size
    return best


def reference_grid(ref: StackRef) -> Grid:
    """Grid of the finest-resolution file of ``ref``."""
    with open_raster(finest_file(ref.paths), "reference image") as ds:
        return Grid.of(ds)


def read_stack(ref: StackRef, grid: Grid, window: Window, role: str = "stack") -> np.ndarray:
    """Bands of ``ref`` over ``window`` of ``grid`` as float32 (C, h, w); nodata becomes NaN.

    Files on ``grid`` itself are read directly; others (another pixel size, same CRS) are read
    over the same ground and resampled to the window by nearest neighbour.
    """
    h, w = int(window.height), int(window.width)
    parts = []
    for path in ref.paths:
        with open_raster(path, role) as ds:
            if grid.crs is not None and ds.crs is not None and ds.crs != grid.crs:
                raise InputError(f"{role}: {path} is in {ds.crs}, the sample's reference image in {grid.crs}; "
                                 "reproject it onto the Sentinel-2 grid first (e.g. with the terrain stack tool "
                                 "or gdalwarp)")
            if ds.transform == grid.transform and ds.width >= window.col_off + w and ds.height >= window.row_off + h:
                data = ds.read(window=window, out_dtype=np.float32)
            else:
                bounds = rasterio.windows.bounds(window, grid.transform)
                src = from_bounds(*bounds, transform=ds.transform)
                eps = 1e-3
                if (src.col_off < -eps or src.row_off < -eps or src.col_off + src.width > ds.width + eps
                        or src.row_off + src.height > ds.height + eps):
                    raise InputError(f"{role}: {path} does not cover the ground of the sample's reference image")
                data = ds.read(window=src, out_shape=(ds.count, h, w), resampling=Resampling.nearest,
                               out_dtype=np.float32)
            parts.append(nodata_to_nan(data, ds.nodata))
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
