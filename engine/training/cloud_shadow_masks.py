"""Cloud and cloud-shadow masks for training samples that have none (DSen2-CR's detectors)."""
from __future__ import annotations

import math
import os
from typing import Dict, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..clouds.masks.rules import CLOUD_SCORE_HALO, CLOUD_THRESHOLD, SHADOW_HALO, cloud_score_l1c, shadow_mask_l1c, \
    shadow_thresholds
from ..errors import InputError
from ..io.atomic import AtomicRasterWriter
from ..io.raster import open_raster
from ..io.windows import iter_windows, run_windows
from ..progress import SILENT, Monitor
from .manifest import StackRef
from .sample_stacks import finest_file, read_stack, reference_grid

__all__ = ["MASK_BANDS", "write_cloud_shadow_masks"]

#: Level-1C bands the cloud score and the shadow test read.
MASK_BANDS = ("B1", "B2", "B3", "B4", "B8", "B10", "B11")


def _reflectance_bands(data: np.ndarray, s2_offset: float) -> Dict[str, np.ndarray]:
    """:data:`MASK_BANDS` (digital numbers, NaN as 0) as reflectance, by name."""
    refl = (np.nan_to_num(data, nan=0.0).astype(np.float64) + s2_offset) / 10000.0
    return {b: refl[i] for i, b in enumerate(MASK_BANDS)}


def _scene_thresholds(ref: StackRef, grid, idx: Sequence[int], s2_offset: float, overview_pixels: int) -> dict:
    """Shadow thresholds from a decimated read of the whole image (the image itself when small)."""
    factor = max(1, math.ceil(max(grid.width, grid.height) / overview_pixels))
    over = None
    with open_raster(finest_file(ref.paths), "cloudy image") as ds:
        if len(ref.paths) == 1 and factor > 1:
            over = ds.read([i + 1 for i in idx], out_shape=(len(idx), grid.height // factor, grid.width // factor),
                           resampling=Resampling.nearest, out_dtype=np.float32)
    if over is None:
        over = read_stack(ref, grid, Window(0, 0, grid.width, grid.height), "cloudy image")[idx]
    return shadow_thresholds(_reflectance_bands(over, s2_offset))


def write_cloud_shadow_masks(
    cloudy: StackRef | os.PathLike | str,
    band_names: Sequence[str],
    cloud_path: os.PathLike | str,
    shadow_path: os.PathLike | str,
    s2_offset: float = 0.0,
    monitor: Monitor = SILENT,
    strip_rows: int = 1024,
    overview_pixels: int = 1024,
) -> Tuple[float, float]:
    """Cloud and cloud-shadow masks (uint8 0/1) of a Level-1C stack with DSen2-CR's detectors.

    Works in strips of ``strip_rows`` rows (at most two in memory) with the halos
    :data:`~topoclear.engine.clouds.masks.rules.CLOUD_SCORE_HALO` /
    :data:`~topoclear.engine.clouds.masks.rules.SHADOW_HALO`; the scene-wide shadow thresholds
    come from a decimated read (at most ``overview_pixels`` on a side) of the whole image (the
    whole image itself when it is that small). Needs the bands of :data:`MASK_BANDS`
    (reflectance x 10000). Returns the cloud and shadow fractions.
    """
    ref = cloudy if isinstance(cloudy, StackRef) else StackRef((str(cloudy),))
    missing = [b for b in MASK_BANDS if b not in band_names]
    if missing:
        raise InputError(f"cloud/shadow masks need the Level-1C bands {', '.join(MASK_BANDS)}; the stack lacks "
                         f"{', '.join(missing)} (Level-2A products: build masks from the SCL band instead)")
    idx = [list(band_names).index(b) for b in MASK_BANDS]
    grid = reference_grid(ref)
    thresholds = _scene_thresholds(ref, grid, idx, s2_offset, overview_pixels)
    halo = max(CLOUD_SCORE_HALO, SHADOW_HALO)
    counts = {"cloud": 0.0, "shadow": 0.0}

    def read(window: Window):
        r0 = max(0, int(window.row_off) - halo)
        r1 = min(grid.height, int(window.row_off) + int(window.height) + halo)
        return r0, read_stack(ref, grid, Window(0, r0, grid.width, r1 - r0), "cloudy image")[idx]

    def compute(window: Window, block):
        r0, data = block
        bands = _reflectance_bands(data, s2_offset)
        crop = slice(int(window.row_off) - r0, int(window.row_off) - r0 + int(window.height))
        cloud = (cloud_score_l1c(bands) >= CLOUD_THRESHOLD)[crop]
        shadow = shadow_mask_l1c(bands, thresholds=thresholds)[crop]
        return cloud, shadow

    with AtomicRasterWriter(cloud_path, grid, 1, "uint8", descriptions=["cloud mask (1 = cloud)"]) as c_out, \
            AtomicRasterWriter(shadow_path, grid, 1, "uint8", descriptions=["cloud shadow mask (1 = shadow)"]) as s_out:
        def write(window: Window, masks) -> None:
            cloud, shadow = masks
            c_out.write(cloud.astype(np.uint8)[None], window=window)
            s_out.write(shadow.astype(np.uint8)[None], window=window)
            counts["cloud"] += float(cloud.sum())
            counts["shadow"] += float(shadow.sum())

        run_windows(iter_windows(grid.width, grid.height, strip_rows), read, compute, write, monitor, workers=1)
    total = float(grid.width * grid.height)
    return counts["cloud"] / total, counts["shadow"] / total
