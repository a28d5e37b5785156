"""The grid a snow run works on (the image grid, cut to an extent) and its windows.

Whole scenes are processed in windows: strips of whole rows, as many as the inputs' tile height
allows (so that no compressed tile is decoded twice), each read once and computed by worker
threads while the main thread reads and writes (:func:`~topoclear.engine.io.windows.run_windows`).
Memory is bounded by the window size, not the scene size.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import rasterio
from rasterio.windows import Window

from ..errors import InputError
from ..io.raster import Grid
from ..io.windows import DEFAULT_WINDOW_PIXELS, iter_windows

#: GDAL block cache (MB) of snow runs: a few rows of tiles of every input.
SNOW_GDAL_CACHE_MB = 128


def subgrid(grid: Grid, bounds: Optional[Tuple[float, float, float, float]]) -> Grid:
    """The part of ``grid`` covering ``bounds`` (left, bottom, right, top in the grid's CRS), snapped
    outward to whole pixels; the whole grid when ``bounds`` is None."""
    if bounds is None:
        return grid
    left, bottom, right, top = bounds
    inv = ~grid.transform
    cols, rows = zip(*(inv * (x, y) for x, y in ((left, top), (right, bottom), (left, bottom), (right, top))))
    col0, col1 = max(int(math.floor(min(cols) + 1e-9)), 0), min(int(math.ceil(max(cols) - 1e-9)), grid.width)
    row0, row1 = max(int(math.floor(min(rows) + 1e-9)), 0), min(int(math.ceil(max(rows) - 1e-9)), grid.height)
    if col1 <= col0 or row1 <= row0:
        raise InputError(f"the chosen extent {tuple(round(v, 3) for v in bounds)} does not overlap the image "
                         f"(image extent {tuple(round(v, 3) for v in grid.bounds)} in {grid.crs})")
    window = Window(col0, row0, col1 - col0, row1 - row0)
    return Grid(grid.crs, grid.window_transform(window), col1 - col0, row1 - row0)


def strip_rows(width: int, window_rows: Optional[int], ds: Optional[rasterio.DatasetReader] = None) -> int:
    """Rows per window: ``window_rows``, else about ``DEFAULT_WINDOW_PIXELS`` pixels rounded to a
    multiple of the block (tile) height of ``ds`` so that no compressed tile is decoded twice."""
    if window_rows:
        return max(1, int(window_rows))
    rows = max(1, DEFAULT_WINDOW_PIXELS // max(1, width))
    if ds is not None:
        block_height = ds.block_shapes[0][0]
        if 1 < block_height <= 2 * rows:
            rows = max(1, int(round(rows / block_height))) * block_height
    return rows


def strip_windows(grid: Grid, window_rows: Optional[int], ds: Optional[rasterio.DatasetReader] = None
                  ) -> List[Window]:
    """The windows (strips of :func:`strip_rows` whole rows) covering ``grid``, top to bottom."""
    return list(iter_windows(grid.width, grid.height, strip_rows(grid.width, window_rows, ds)))
