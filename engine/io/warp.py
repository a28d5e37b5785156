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


class _SourceBand:
    """Reads of one band of a source as float32, its nodata as NaN."""

    def __init__(self, src_ds: rasterio.DatasetReader, band: int, nodata: Optional[float]) -> None:
        self.ds, self.band = src_ds, band
        self.nodata = src_ds.nodatavals[band - 1] if nodata is None else nodata

    def finish(self, values: np.ndarray) -> np.ndarray:
        return nodata_to_nan(values, self.nodata).astype(np.float32, copy=False)

    def clipped(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        """The source rows and columns asked for; NaN where they fall outside the source."""
        out = np.full((height, width), np.nan, dtype=np.float32)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + height, self.ds.height), min(col0 + width, self.ds.width)
        if r1 > r0 and c1 > c0:
            data = self.ds.read(self.band, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype=np.float32)
            out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = self.finish(data)
        return out


def _whole(value: float) -> Optional[int]:
    near = round(value)
    return int(near) if abs(value - near) < 1e-6 else None


def _aligned(reader: _SourceBand, st: Affine, dt: Affine, rows: int, cols: int,
             resampling) -> Optional[np.ndarray]:
    """The window by a plain read, a k x k mean or a k x k repeat when the grids line up; else None."""
    from rasterio.enums import Resampling

    kx, ky = dt.a / st.a, dt.e / st.e
    k, kc, kr = _whole(kx), _whole((dt.c - st.c) / st.a), _whole((dt.f - st.f) / st.e)
    if abs(kx - ky) < 1e-9 and kc is not None and kr is not None:
        if k == 1:
            return reader.clipped(kr, kc, rows, cols)
        if k is not None and k > 1 and resampling == Resampling.average:
            block = reader.clipped(kr, kc, rows * k, cols * k).reshape(rows, k, cols, k)
            valid = np.isfinite(block)
            total = np.where(valid, block, 0.0).sum(axis=(1, 3), dtype=np.float64)
            count = valid.sum(axis=(1, 3))
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    inv = st.a / dt.a
    k_up = _whole(inv) if abs(st.e / dt.e - inv) < 1e-9 else None
    if k_up is None or k_up <= 1 or resampling != Resampling.nearest:
        return None
    c_off = _whole((dt.c - st.c) / st.a * k_up)
    r_off = _whole((dt.f - st.f) / st.e * k_up)
    if c_off is None or r_off is None:
        return None
    c0, r0 = int(math.floor(c_off / k_up)), int(math.floor(r_off / k_up))
    h = int(math.ceil((r_off + rows) / k_up)) - r0
    w = int(math.ceil((c_off + cols) / k_up)) - c0
    fine = np.repeat(np.repeat(reader.clipped(r0, c0, h, w), k_up, axis=0), k_up, axis=1)
    top, left = r_off - r0 * k_up, c_off - c0 * k_up
    return fine[top:top + rows, left:left + cols]


def _reprojected(reader: _SourceBand, src_grid: Grid, dst_grid: Grid, window: Window, resampling,
                 margin: int) -> np.ndarray:
    """The window by ``rasterio.warp.reproject`` from the source cells it needs (decimated when much finer)."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds

    rows, cols = int(window.height), int(window.width)
    out = np.full((rows, cols), np.nan, dtype=np.float32)
    bounds = transform_bounds(dst_grid.crs, src_grid.crs, *dst_grid.window_bounds(window), densify_pts=21)
    src = rasterio.windows.from_bounds(*bounds, transform=src_grid.transform)
    col0 = max(int(math.floor(src.col_off)) - margin, 0)
    row0 = max(int(math.floor(src.row_off)) - margin, 0)
    col1 = min(int(math.ceil(src.col_off + src.width)) + margin, src_grid.width)
    row1 = min(int(math.ceil(src.row_off + src.height)) + margin, src_grid.height)
    if col1 <= col0 or row1 <= row0:
        return out
    src_window = Window(col0, row0, col1 - col0, row1 - row0)
    src_transform = src_grid.window_transform(src_window)
    height, width = row1 - row0, col1 - col0
    factor = min(width / max(cols, 1), height / max(rows, 1)) / 2.0
    if factor > 1.5:  # decimated read: about twice the destination density is enough
        out_h, out_w = max(1, int(math.ceil(height / factor))), max(1, int(math.ceil(width / factor)))
        read_resampling = Resampling.nearest if resampling == Resampling.nearest else Resampling.average
        data = reader.ds.read(reader.band, window=src_window, out_shape=(out_h, out_w), out_dtype=np.float32,
                              resampling=read_resampling)
        src_transform = src_transform * Affine.scale(width / out_w, height / out_h)
    else:
        data = reader.ds.read(reader.band, window=src_window, out_dtype=np.float32)
    reproject(reader.finish(data), out, src_transform=src_transform, src_crs=src_grid.crs, src_nodata=np.nan,
              dst_transform=dst_grid.window_transform(window), dst_crs=dst_grid.crs, dst_nodata=np.nan,
              resampling=resampling)
    return out


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

    if resampling is None:
        resampling = Resampling.bilinear
    reader = _SourceBand(src_ds, band, nodata)
    src_grid = Grid.of(src_ds)
    st, dt = src_grid.transform, dst_grid.window_transform(window)
    same_crs = src_grid.crs is not None and dst_grid.crs is not None and src_grid.crs == dst_grid.crs
    values = None
    if same_crs and st.b == 0 and st.d == 0 and dt.b == 0 and dt.d == 0 and st.a > 0 and st.e < 0:
        values = _aligned(reader, st, dt, int(window.height), int(window.width), resampling)
    if values is None:
        values = _reprojected(reader, src_grid, dst_grid, window, resampling, margin)
    return values.astype(dtype, copy=False)
