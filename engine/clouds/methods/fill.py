"""The fill from the surroundings: GDAL ``FillNodata`` inside the cloud / shadow mask, on blocks with a halo.

:func:`fill_block` fills the masked pixels of one (C, H, W) block from its clear pixels with
GDAL's ``FillNodata`` (for each masked pixel a four-direction conic search up to ``distance``
pixels finds clear pixels, whose values are combined by inverse-distance weighting; then
``smoothing`` 3 x 3 smoothing passes over the filled pixels), band by band with the same mask.
It is the classic method of whole-scene removal (:mod:`.classic`), the ``prior`` of the networks
that start from it (:mod:`topoclear.models.fill_prior`) and the inpainting baseline of training.

**Reach.** A masked pixel with no clear pixel within ``distance`` is not reached by
``FillNodata``. Those pixels get a coarse fill instead: the block is averaged over 8 x 8 px
cells, the cells are filled by ``FillNodata`` without a distance limit and interpolated back
bilinearly. They carry no observation of their own neighbourhood (the nearest clear pixel is
further than ``distance``): :func:`fill_block` returns them as *not reached* and whole-scene
removal codes them "no information" (:mod:`topoclear.engine.clouds.observed`). A block
without any clear pixel keeps its values (nothing to fill from).

**Windows and halo** (whole scenes, bounded memory). The scene is filled window by window, each
window read with a halo of :attr:`FillParameters.halo` = ``distance + smoothing`` pixels (cut at
the scene border: beyond it there is nothing to fill from). ``FillNodata``'s search from a
pixel of the window looks at clear pixels at most ``distance`` away and each smoothing pass
moves values by one pixel, so every value a reached pixel's result depends on lies inside the
window plus its halo: the result is the one of a fill over the whole scene, whatever the
window size (to float rounding). What the halo does not make window-independent are the pixels
*not reached*: their coarse fill sees only the window and its halo, so it changes with the
window layout (they are the "no information" pixels, flagged as such). Without the halo,
pixels near a window border would miss the clear pixels across it: their weights, and
seams along the window grid, would change with the window size.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Tuple

import numpy as np

#: GDAL ``gdal_fillnodata``'s default search distance (px): 1 km on Sentinel-2's 10 m grid.
DEFAULT_DISTANCE = 100
#: Smoothing passes by default (none: the plain inverse-distance fill).
DEFAULT_SMOOTHING = 0
#: Most pixels a fill may search / smoothing passes (the halo of every window is their sum).
MAX_DISTANCE = 2048
MAX_SMOOTHING = 64
#: Cell size (px) of the coarse fill of pixels out of reach.
COARSE_CELL = 8
#: Most bands of a block filled at once (one thread each, at most the CPU count).
BAND_THREADS = 4

__all__ = ["DEFAULT_DISTANCE", "DEFAULT_SMOOTHING", "FillParameters", "fill_block"]


@dataclass(frozen=True)
class FillParameters:
    """``distance``: how far (px) ``FillNodata`` searches for clear pixels; ``smoothing``: 3 x 3
    smoothing passes over the filled pixels."""

    distance: int = DEFAULT_DISTANCE
    smoothing: int = DEFAULT_SMOOTHING

    def __post_init__(self) -> None:
        from ...errors import InputError

        if not 1 <= int(self.distance) <= MAX_DISTANCE:
            raise InputError(f"fill search distance must lie in 1..{MAX_DISTANCE} px, got {self.distance}")
        if not 0 <= int(self.smoothing) <= MAX_SMOOTHING:
            raise InputError(f"fill smoothing iterations must lie in 0..{MAX_SMOOTHING}, got {self.smoothing}")

    @property
    def halo(self) -> int:
        """Context (px) a window needs on each side for a window-independent result."""
        return int(self.distance) + int(self.smoothing)

    def describe(self) -> str:
        return (f"GDAL FillNodata inside the mask, search distance {self.distance} px, {self.smoothing} smoothing "
                f"pass{'es' if self.smoothing != 1 else ''}")


def _fill_band(values: np.ndarray, sources: np.ndarray, source_bytes: np.ndarray, distance: float,
               smoothing: int) -> np.ndarray:
    """``FillNodata`` of one (H, W) band from the pixels where ``sources`` is True (``source_bytes``: the same
    as uint8). Each band gets datasets of its own, so bands can run on threads: GDAL releases the GIL."""
    from osgeo import gdal

    h, w = values.shape
    driver = gdal.GetDriverByName("MEM")
    mask_ds = driver.Create("", w, h, 1, gdal.GDT_Byte)
    mask_ds.GetRasterBand(1).WriteArray(source_bytes)
    ds = driver.Create("", w, h, 1, gdal.GDT_Float32)
    band = ds.GetRasterBand(1)
    band.WriteArray(np.where(sources, values, np.float32(np.nan)).astype(np.float32))
    if gdal.FillNodata(band, mask_ds.GetRasterBand(1), float(distance), int(smoothing)) != 0:
        raise RuntimeError("GDAL FillNodata failed")
    return band.ReadAsArray()


def _fill_nodata(values: np.ndarray, sources: np.ndarray, distance: float, smoothing: int) -> np.ndarray:
    """``FillNodata`` of each band of ``values`` (C, H, W) from the pixels where ``sources`` is True, the bands
    on up to :data:`BAND_THREADS` threads; pixels out of reach stay NaN."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty(values.shape, np.float32)
    source_bytes = sources.astype(np.uint8)
    threads = max(1, min(BAND_THREADS, os.cpu_count() or 1, values.shape[0]))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="topoclear-fill") as pool:
        for b, filled in enumerate(pool.map(lambda b: _fill_band(values[b], sources, source_bytes, distance, smoothing),
                                            range(values.shape[0]))):
            out[b] = filled
    return out


def _coarse_fill(values: np.ndarray, sources: np.ndarray, cell: int = COARSE_CELL) -> np.ndarray:
    """Every pixel from the cell means of the ``sources`` pixels, the empty cells filled without a limit."""
    from scipy import ndimage

    c, h, w = values.shape
    hh, ww = math.ceil(h / cell), math.ceil(w / cell)
    pad = ((0, 0), (0, hh * cell - h), (0, ww * cell - w))
    weights = np.pad(sources.astype(np.float64), pad[1:]).reshape(hh, cell, ww, cell).sum(axis=(1, 3))
    sums = np.pad(np.where(sources, values, 0.0).astype(np.float64), pad).reshape(c, hh, cell, ww, cell).sum(
        axis=(2, 4))
    have = weights > 0
    means = np.where(have, sums / np.maximum(weights, 1.0), np.nan).astype(np.float32)
    if not have.all():
        means = _fill_nodata(means, have, math.hypot(hh, ww) + 1.0, 0)
    zoom = (1, hh * cell / hh, ww * cell / ww)
    up = ndimage.zoom(means, zoom, order=1, mode="nearest", grid_mode=True)
    return up[:, :h, :w].astype(np.float32)


def fill_block(values: np.ndarray, targets: np.ndarray, valid: np.ndarray,
               parameters: FillParameters = FillParameters()) -> Tuple[np.ndarray, np.ndarray]:
    """Fill the ``targets`` pixels of ``values`` (C, H, W) from the clear ones.

    ``targets``: (H, W) True on cloud / shadow pixels to fill; ``valid``: (H, W) True where the
    input holds data (nodata pixels are neither filled nor used). Returns ``(filled, reached)``:
    float32 values (unchanged outside ``targets``) and (H, W) True on the target pixels that had a
    clear pixel within the search distance (the others got the coarse fill, see the module notes).
    """
    values = np.asarray(values, np.float32)
    targets = np.asarray(targets, bool) & np.asarray(valid, bool)
    sources = np.asarray(valid, bool) & ~targets
    reached = np.zeros(targets.shape, bool)
    if not targets.any() or not sources.any():
        return values.copy(), reached
    filled = _fill_nodata(values, sources, parameters.distance, parameters.smoothing)
    reached = targets & np.isfinite(filled[0])
    out = np.where(targets[None], filled, values)
    far = targets & ~reached
    if far.any():
        coarse = _coarse_fill(np.where(reached[None], filled, values), sources | reached)
        out = np.where(far[None], coarse, out)
    return np.where(np.isfinite(out), out, values).astype(np.float32), reached
