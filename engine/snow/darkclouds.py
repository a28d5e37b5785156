"""Dark clouds of Let It Snow: cloud pixels whose red reflectance, averaged over blocks, is low.

The dark-cloud red is the mean red reflectance of the ``darkcloud_scale`` block (240 m, i.e.
12 x 12 pixels at 20 m; aligned on the processing grid, cells without red data left out) holding
the pixel (LIS: bilinear down-sampling then nearest up-sampling). Windows read the red band over
whole blocks, so the block means do not depend on where windows start.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..io.raster import Grid
from ..sentinel2.reader import BandReader
from .areas import pixel_size_m
from .rawvalues import nodata_cells


def darkcloud_block(grid: Grid, scale_m: float) -> int:
    """Side (pixels) of the dark-cloud blocks of ``scale_m`` metres on ``grid``; 1 for ``scale_m`` 0."""
    return max(1, int(round(scale_m / pixel_size_m(grid)))) if scale_m > 0 else 1


def block_sums(values: np.ndarray, valid: Optional[np.ndarray], block: int) -> Tuple[np.ndarray, np.ndarray]:
    """(sum, count) of each ``block`` x ``block`` block of ``values`` (cells outside ``valid`` must
    hold 0; ``valid`` None: all valid); partial blocks at the right and bottom edges."""
    h, w = values.shape
    pad = (-h) % block
    if pad:
        values = np.concatenate([values, np.zeros((pad, w), values.dtype)])
        if valid is not None:
            valid = np.concatenate([valid, np.zeros((pad, w), bool)])
    rows = (h + pad) // block
    starts = np.arange(0, w, block)
    total = np.add.reduceat(values.reshape(rows, block, w).sum(axis=1, dtype=np.float64), starts, axis=1)
    if valid is None:
        row_count = np.full((rows, w), block, dtype=np.int32)
        if pad:
            row_count[-1] = block - pad
    else:
        row_count = valid.reshape(rows, block, w).sum(axis=1, dtype=np.int32)
    return total, np.add.reduceat(row_count, starts, axis=1)


def block_means(values: np.ndarray, block: int) -> np.ndarray:
    """Mean of each ``block`` x ``block`` block (NaN left out; NaN for an empty block); blocks at
    the right and bottom edges may be partial. Shape: ceil(h / block) x ceil(w / block)."""
    valid = np.isfinite(values)
    total, count = block_sums(np.where(valid, values, np.float32(0)), valid, block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Mean over ``block`` x ``block`` blocks (NaN left out), spread back to every pixel of its block."""
    if block <= 1:
        return values
    h, w = values.shape
    return np.repeat(np.repeat(block_means(values, block), block, axis=0), block, axis=1)[:h, :w]


def dark_clouds(reader: BandReader, red_block: Tuple[np.ndarray, int], clouds: np.ndarray, block: int,
                limit: float) -> np.ndarray:
    """Which of the ``clouds`` cells are dark: the mean red reflectance of their ``block`` x ``block``
    block of the processing grid (cells without red data left out) is below ``limit``.

    ``red_block``: (red as read over the window grown to whole blocks, rows above the window).
    """
    values, offset = red_block
    h, w = clouds.shape
    src = reader.product.bands["B4"]
    if values.dtype.kind in "iu" and block > 1:  # integer DN: block means of the DN themselves
        raw = values.view(np.ndarray)
        missing = nodata_cells(raw, src.nodata)
        valid = None if missing is None or not missing.any() else ~missing
        if valid is not None and src.nodata != 0:
            raw = np.where(valid, raw, raw.dtype.type(0))
        total, count = block_sums(raw, valid, block)
        with np.errstate(invalid="ignore", divide="ignore"):
            dark_blocks = (count > 0) & (total < reader.dn_threshold("B4", limit) * count)
    else:
        if values.dtype == np.float32:
            values = values.copy()  # converted in place: keep the window's own red intact
        red = reader.to_reflectance("B4", values)
        if block <= 1:
            return clouds & (red[offset:offset + h] < limit)
        dark_blocks = block_means(red, block) < limit  # NaN (no red at all) is not dark
    rows = (np.arange(h) + offset) // block
    cols = np.arange(w) // block
    return clouds & dark_blocks[rows][:, cols]
