"""The fill from the surroundings over a whole scene: windows with a halo, the output and what was observed.

:func:`fill_scene` fills the cloud / shadow mask of a Sentinel-2 scene with
:func:`~.fill.fill_block` window by window (square windows of :data:`WINDOW` px read with a halo
of ``distance + smoothing`` px, see :mod:`.fill` for what the halo guarantees), every band of
the output, and writes the image (bands, grid, data type and nodata of the input, clear pixels
copied unchanged) and its observed-codes raster (:mod:`topoclear.engine.clouds.observed`).
Reads and the mask run on the calling thread while the fill of the previous window runs
(:func:`~topoclear.engine.io.windows.run_windows`); memory is a few windows, whatever the scene.

It is the classic method of ``topoclear:removeclouds`` and the first pass of the networks that
start from the fill (:mod:`topoclear.models.fill_prior`), which then read its output as their
prior.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from rasterio.windows import Window

from ...errors import InputError
from ...io.atomic import AtomicRasterWriter, published_together
from ...io.raster import bounded_gdal_cache
from ...io.windows import iter_windows, run_windows
from ...progress import SILENT, Monitor, counting
from ..inputs import MaskSource
from ..observed import ObservedCounts, band_description, legend, single_image_codes
from ..scene import S2Scene
from ..writer import output_options, to_output_dtype
from .fill import FillParameters, fill_block

#: Side (px) of the square windows of the scene fill (each read with its halo; even, see fill_block).
WINDOW = 1536
__all__ = ["WINDOW", "FillPass", "fill_scene", "grown_window", "fill_descriptions"]


@dataclass
class FillPass:
    """What :func:`fill_scene` did."""

    output: str
    observed: str
    windows: int
    window: int
    halo: int
    valid: int
    cloud: int
    counts: ObservedCounts
    seconds: float


def grown_window(window: Window, halo: int, height: int, width: int):
    """The window grown by ``halo`` px (cut at the scene border) and the window's place inside it."""
    r0, c0 = max(0, int(window.row_off) - halo), max(0, int(window.col_off) - halo)
    r1 = min(height, int(window.row_off + window.height) + halo)
    c1 = min(width, int(window.col_off + window.width) + halo)
    inner = (int(window.row_off) - r0, int(window.col_off) - c0, int(window.height), int(window.width))
    return (r0, c0, r1 - r0, c1 - c0), inner


def fill_scene(scene: S2Scene, mask: Optional[MaskSource], output: str, observed: str,
               parameters: FillParameters = FillParameters(), monitor: Monitor = SILENT,
               checked_bands: Optional[Sequence[str]] = None, window: int = WINDOW,
               tags: Optional[dict] = None, creation_options: Optional[dict] = None) -> FillPass:
    """Fill ``scene`` inside ``mask`` and write ``output`` and its ``observed`` codes (module notes).

    ``checked_bands``: the bands that must be valid for a pixel to count as valid (default: the
    scene's model bands); ``creation_options``: given GeoTIFF creation options of the outputs
    (:func:`~topoclear.engine.clouds.writer.output_options`). Without a mask there is nothing to fill: an
    :class:`InputError`.
    """
    if mask is None:
        raise InputError("the fill from the surroundings fills the cloud / shadow mask: choose a cloud mask method "
                         "other than None (or give a mask raster)")
    start = time.perf_counter()
    names = list(checked_bands or scene.model_bands)
    checked = [scene.output_names.index(b) for b in names if b in scene.output_names]
    halo = parameters.halo
    fill_value = np.asarray(scene.fill_value).astype(scene.dtype)
    counts = ObservedCounts()
    totals = {"valid": 0, "cloud": 0}
    windows = list(iter_windows(scene.width, scene.height, window, window))
    monitor = counting(monitor, len(windows), "Window")

    def read(w: Window):
        block, inner = grown_window(w, halo, scene.height, scene.width)
        raw, valid_bands = scene.read_output_raw(block)
        return raw, valid_bands, mask.read(block), inner

    def compute(w: Window, data):
        raw, valid_bands, cloud, (r, c, h, wd) = data
        valid = valid_bands[checked].all(axis=0) if checked else valid_bands.all(axis=0)
        filled, reached = fill_block(raw.astype(np.float32), cloud, valid, parameters)
        sl = (slice(r, r + h), slice(c, c + wd))
        valid_in, cloud_in = valid[sl], cloud[sl] & valid[sl]
        out = np.empty((raw.shape[0], h, wd), scene.dtype)
        for k in range(raw.shape[0]):
            band = np.where(cloud_in, to_output_dtype(filled[k][sl], scene.dtype, scene.fill_value), raw[k][sl])
            out[k] = np.where(valid_in, band, fill_value)
        codes = single_image_codes(valid_in, cloud_in, reached[sl])
        return out, codes, int(valid_in.sum()), int(cloud_in.sum())

    with bounded_gdal_cache(), published_together(), \
            AtomicRasterWriter(output, scene.grid, len(scene.output_names), scene.dtype, scene.declared_nodata,
                               fill_descriptions(scene, parameters),
                               output_options(scene.dtype, creation_options)) as dst, \
            AtomicRasterWriter(observed, scene.grid, 1, "uint8", 0, [band_description()],
                               output_options("uint8", creation_options)) as obs:

        def write(w: Window, result) -> None:
            out, codes, valid, cloud = result
            dst.write(out, window=w)
            obs.write(codes[None], window=w)
            counts.add(codes)
            totals["valid"] += valid
            totals["cloud"] += cloud

        run_windows(windows, read, compute, write, monitor, workers=1)
        if totals["valid"] == 0:
            raise InputError(f"the Sentinel-2 input {os.path.basename(scene.source)} holds no valid pixel (only "
                             "nodata or NaN)")
        dst.update_tags(TOPOCLEAR_METHOD="fill", TOPOCLEAR_FILL=parameters.describe(), **(tags or {}))
        obs.update_tags(TOPOCLEAR_OBSERVED_CODES=legend())
    return FillPass(output=str(output), observed=str(observed), windows=len(windows), window=window, halo=halo,
                    valid=totals["valid"], cloud=totals["cloud"], counts=counts, seconds=time.perf_counter() - start)


def fill_descriptions(scene: S2Scene, parameters: FillParameters) -> List[str]:
    """One description per output band: filled inside the mask (short, as QGIS's band menus are as wide as
    their entries; the parameters are in the TOPOCLEAR_FILL tag)."""
    return [f"{name}, filled from the surroundings" for name in scene.output_names]
