"""Reading a raster on another raster's grid, window by window, and how much of it a source covers."""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from ..errors import InputError
from ..progress import SILENT, Monitor
from .raster import Grid, nodata_to_nan

#: How a source covering only part of a scene is handled: an error, or filled and reported.
POLICIES = ("refuse", "fill")
#: Fraction of the scene below which coverage counts as partial (rounding of pixel edges).
FULL_COVERAGE = 0.999


def footprint_coverage(src: Grid, dst: Grid) -> float:
    """Fraction (0-1) of the extent of ``dst`` covered by the extent of ``src`` (any CRSs)."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(src.crs, dst.crs, *src.bounds, densify_pts=21)
    dl, db, dr, dt = dst.bounds
    w = max(0.0, min(right, dr) - max(left, dl))
    h = max(0.0, min(top, dt) - max(bottom, db))
    area = (dr - dl) * (dt - db)
    return (w * h) / area if area > 0 else 0.0


def check_coverage(src: Grid, dst: Grid, role: str, path: str, policy: str, monitor: Monitor = SILENT) -> float:
    """Coverage of the scene by a source; :class:`InputError` for none, or partial under ``"refuse"``."""
    if policy not in POLICIES:
        raise InputError(f"coverage policy {policy!r} is not one of {', '.join(POLICIES)}")
    if src.crs is None:
        raise InputError(f"{role}: {path} has no coordinate reference system")
    fraction = footprint_coverage(src, dst)
    if fraction <= 0.0:
        raise InputError(f"{role}: {os.path.basename(path)} does not cover the Sentinel-2 scene at all "
                         f"(its extent {tuple(round(v, 1) for v in src.bounds)} in {src.crs}; the scene's "
                         f"{tuple(round(v, 1) for v in dst.bounds)} in {dst.crs})")
    if fraction < FULL_COVERAGE:
        if policy == "refuse":
            raise InputError(f"{role}: {os.path.basename(path)} covers only {100 * fraction:.1f} % of the "
                             "Sentinel-2 scene; choose a layer that covers it all, clip the scene to the covered "
                             "part, or choose to fill the uncovered part")
        monitor.message(f"{role} covers {100 * fraction:.1f} % of the scene; the uncovered part is filled "
                        "with neutral values (see the log for the filled fraction)")
    return fraction


def warp_window(src_ds: rasterio.DatasetReader, band: int, dst_grid: Grid, window: Window,
                resampling=None, dtype=np.float32, margin: int = 3,
                nodata: Optional[float] = None) -> np.ndarray:
    """Values of ``band`` of ``src_ds`` on ``window`` of ``dst_grid`` (any CRS, any resolution).

    Reads only the source cells that the window needs (plus ``margin`` cells for the resampling
    kernel). Cells the source does not cover, and source nodata (``nodata``, else the band's
    declared nodata), come back as NaN. ``resampling`` is a ``rasterio.enums.Resampling``
    (default bilinear). Grids that line up need no warping and take fast paths:

    * same CRS and pixel size, whole-pixel offset: a plain windowed read;
    * source finer by a whole factor k, aligned, ``average``: mean of the k x k source cells of
      each destination cell (nodata cells left out);
    * source coarser by a whole factor k, aligned, ``nearest``: each source cell repeated k x k.

    Otherwise ``rasterio.warp.reproject``; a source much finer than the destination is first read
    decimated to about twice the destination density, so memory stays bounded.
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds

    if resampling is None:
        resampling = Resampling.bilinear
    rows, cols = int(window.height), int(window.width)
    if nodata is None:
        nodata = src_ds.nodatavals[band - 1]
    src_grid = Grid.of(src_ds)
    dst_transform = dst_grid.window_transform(window)

    def finish(values: np.ndarray) -> np.ndarray:
        return nodata_to_nan(values, nodata).astype(dtype, copy=False)

    def read_clipped(row0: int, col0: int, height: int, width: int) -> np.ndarray:
        out = np.full((height, width), np.nan, dtype=np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + height, src_ds.height), min(col0 + width, src_ds.width)
        if r1 > r0 and c1 > c0:
            data = finish(src_ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype=np.float32))
            out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = data
        return out

    same_crs = src_grid.crs is not None and dst_grid.crs is not None and src_grid.crs == dst_grid.crs
    st, dt = src_grid.transform, dst_transform
    if same_crs and st.b == 0 and st.d == 0 and dt.b == 0 and dt.d == 0 and st.a > 0 and st.e < 0:
        kx, ky = dt.a / st.a, dt.e / st.e
        col_f, row_f = (dt.c - st.c) / st.a, (dt.f - st.f) / st.e

        def whole(value: float) -> Optional[int]:
            near = round(value)
            return int(near) if abs(value - near) < 1e-6 else None

        k, kc, kr = whole(kx), whole(col_f), whole(row_f)
        if abs(kx - ky) < 1e-9 and kc is not None and kr is not None:
            if k == 1:
                return read_clipped(kr, kc, rows, cols).astype(dtype, copy=False)
            if k is not None and k > 1 and resampling == Resampling.average:
                block = read_clipped(kr, kc, rows * k, cols * k).reshape(rows, k, cols, k)
                valid = np.isfinite(block)
                total = np.where(valid, block, 0.0).sum(axis=(1, 3), dtype=np.float64)
                count = valid.sum(axis=(1, 3))
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
                return mean.astype(dtype)
        inv = st.a / dt.a
        k_up = whole(inv) if abs(st.e / dt.e - inv) < 1e-9 else None
        if k_up is not None and k_up > 1 and resampling == Resampling.nearest:
            col_src, row_src = (dt.c - st.c) / st.a, (dt.f - st.f) / st.e
            c_off, r_off = whole(col_src * k_up), whole(row_src * k_up)
            if c_off is not None and r_off is not None:
                c0, r0 = int(math.floor(c_off / k_up)), int(math.floor(r_off / k_up))
                h = int(math.ceil((r_off + rows) / k_up)) - r0
                w = int(math.ceil((c_off + cols) / k_up)) - c0
                coarse = read_clipped(r0, c0, h, w)
                fine = np.repeat(np.repeat(coarse, k_up, axis=0), k_up, axis=1)
                top, left = r_off - r0 * k_up, c_off - c0 * k_up
                return fine[top:top + rows, left:left + cols].astype(dtype, copy=False)

    out = np.full((rows, cols), np.nan, dtype=np.float32)
    bounds = transform_bounds(dst_grid.crs, src_grid.crs, *dst_grid.window_bounds(window), densify_pts=21)
    src = rasterio.windows.from_bounds(*bounds, transform=src_grid.transform)
    col0 = max(int(math.floor(src.col_off)) - margin, 0)
    row0 = max(int(math.floor(src.row_off)) - margin, 0)
    col1 = min(int(math.ceil(src.col_off + src.width)) + margin, src_grid.width)
    row1 = min(int(math.ceil(src.row_off + src.height)) + margin, src_grid.height)
    if col1 <= col0 or row1 <= row0:
        return out.astype(dtype, copy=False)
    src_window = Window(col0, row0, col1 - col0, row1 - row0)
    src_transform = src_grid.window_transform(src_window)
    height, width = row1 - row0, col1 - col0
    factor = min(width / max(cols, 1), height / max(rows, 1)) / 2.0
    if factor > 1.5:  # decimated read: about twice the destination density is enough
        out_h, out_w = max(1, int(math.ceil(height / factor))), max(1, int(math.ceil(width / factor)))
        read_resampling = Resampling.nearest if resampling == Resampling.nearest else Resampling.average
        data = src_ds.read(band, window=src_window, out_shape=(out_h, out_w), out_dtype=np.float32,
                           resampling=read_resampling)
        src_transform = src_transform * Affine.scale(width / out_w, height / out_h)
    else:
        data = src_ds.read(band, window=src_window, out_dtype=np.float32)
    data = finish(data)
    reproject(data, out, src_transform=src_transform, src_crs=src_grid.crs, src_nodata=np.nan,
              dst_transform=dst_transform, dst_crs=dst_grid.crs, dst_nodata=np.nan, resampling=resampling)
    return out.astype(dtype, copy=False)
