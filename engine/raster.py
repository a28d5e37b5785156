"""Windowed raster I/O: opening with clear errors, windows with halos, grids, atomic outputs.

Every whole-raster operation in TopoClear goes through these helpers, so no raster is ever read
whole and no output is ever left half-written.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from .errors import InputError, OutputError
from .atomic import discard, publish, temporary_beside

#: GeoTIFF creation options of every output: tiled, BigTIFF when needed, uncompressed (fast).
DEFAULT_CREATION_OPTIONS: Dict[str, str] = {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512",
                                            "BIGTIFF": "IF_SAFER"}
#: Target number of pixels of one processing window (bounds the memory of every windowed loop).
DEFAULT_WINDOW_PIXELS = 2_097_152
#: GDAL block cache (MB) for whole-raster runs; GDAL's default (5 % of RAM) would hold whole outputs.
GDAL_CACHE_MB = 256


def bounded_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> rasterio.Env:
    """GDAL environment for a whole-raster run: a block cache bounded to ``megabytes`` MB, restored
    afterwards. rasterio hands an integer GDAL_CACHEMAX to ``GDALSetCacheMax`` as **bytes**."""
    return rasterio.Env(GDAL_CACHEMAX=megabytes * 1024 * 1024)


def open_raster(path: os.PathLike | str, role: str = "input raster") -> rasterio.DatasetReader:
    """Open a raster for reading; a missing or unreadable file raises :class:`InputError` naming ``role``."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{role}: file not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"{role}: {path} is a folder, expected a raster file (GeoTIFF, JP2, VRT...)")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"{role}: {path} is not a raster GDAL can read ({exc})") from exc


def check_band(ds: rasterio.DatasetReader, band: int, role: str) -> None:
    """Raise :class:`InputError` if ``band`` (1-based) does not exist in ``ds``."""
    if not 1 <= band <= ds.count:
        raise InputError(f"{role}: band {band} requested but {ds.name} has {ds.count} band(s) (1..{ds.count})")


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (north-up) and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, ds: rasterio.DatasetReader) -> "Grid":
        return cls(ds.crs, ds.transform, ds.width, ds.height)

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        left, top = self.transform * (0, 0)
        right, bottom = self.transform * (self.width, self.height)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)

    @property
    def pixel_size(self) -> Tuple[float, float]:
        """(x, y) pixel size, both positive, in CRS units."""
        return abs(self.transform.a), abs(self.transform.e)

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    def window_bounds(self, window: Window) -> Tuple[float, float, float, float]:
        return rasterio.windows.bounds(window, self.transform)


def check_north_up(ds: rasterio.DatasetReader, role: str) -> None:
    """Raise :class:`InputError` for rotated or south-up grids (not supported by the 3x3 kernels)."""
    t = ds.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise InputError(f"{role}: {ds.name} has a rotated or south-up geotransform {tuple(t)[:6]}; "
                         "warp it to a north-up grid first (e.g. with gdalwarp)")
    if ds.crs is None:
        raise InputError(f"{role}: {ds.name} has no coordinate reference system")


def iter_windows(width: int, height: int, rows: Optional[int] = None, cols: Optional[int] = None
                 ) -> Iterator[Window]:
    """Windows covering a ``width`` x ``height`` raster, row-major.

    By default each window is a strip of whole rows holding about ``DEFAULT_WINDOW_PIXELS`` pixels.
    """
    if cols is None:
        cols = width
    if rows is None:
        rows = max(1, DEFAULT_WINDOW_PIXELS // max(1, cols))
    rows, cols = max(1, int(rows)), max(1, int(cols))
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def count_windows(width: int, height: int, rows: Optional[int] = None, cols: Optional[int] = None) -> int:
    return sum(1 for _ in iter_windows(width, height, rows, cols))


def read_with_halo(ds: rasterio.DatasetReader, band: int, window: Window, halo: int,
                   fill: float = np.nan, dtype=np.float32) -> np.ndarray:
    """Read ``window`` grown by ``halo`` pixels on each side; cells outside the raster get ``fill``."""
    row0, col0 = int(window.row_off) - halo, int(window.col_off) - halo
    h, w = int(window.height) + 2 * halo, int(window.width) + 2 * halo
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + h, ds.height), min(col0 + w, ds.width)
    out = np.full((h, w), fill, dtype=dtype)
    if r1 > r0 and c1 > c0:
        data = ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype=dtype)
        out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = data
    return out


def valid_mask(values: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """True where ``values`` holds data: finite and not equal to ``nodata``."""
    valid = np.isfinite(values)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= values != np.asarray(nodata, dtype=values.dtype)
    return valid


def check_writable(path: os.PathLike | str) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output {path}: folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, expected a file name ending in .tif")
    return path


class AtomicRasterWriter:
    """Write a GeoTIFF to a temporary file beside ``path`` and move it into place on success.

    Use as a context manager: if the block raises (error or cancel), the temporary file is deleted
    and any existing file at ``path`` is left untouched.
    """

    def __init__(self, path: os.PathLike | str, grid: Grid, count: int, dtype: str,
                 nodata: Optional[float] = None, descriptions: Optional[Sequence[str]] = None,
                 creation_options: Optional[Dict[str, str]] = None, driver: str = "GTiff") -> None:
        self.path = check_writable(path)
        self.grid = grid
        self._profile = dict(driver=driver, width=grid.width, height=grid.height, count=count, dtype=dtype,
                             crs=grid.crs, transform=grid.transform, nodata=nodata)
        self._profile.update(DEFAULT_CREATION_OPTIONS if creation_options is None else creation_options)
        self._descriptions = list(descriptions or [])
        self._tmp: Optional[str] = None
        self.dataset: Optional[rasterio.io.DatasetWriter] = None

    def __enter__(self) -> rasterio.io.DatasetWriter:
        self._tmp = temporary_beside(self.path, ".partial.tif")
        try:
            self.dataset = rasterio.open(self._tmp, "w", **self._profile)
        except Exception as exc:  # rasterio raises several types for bad profiles or full disks
            self._discard()
            raise OutputError(f"cannot create output {self.path}: {exc}") from exc
        for i, text in enumerate(self._descriptions, start=1):
            self.dataset.set_band_description(i, text)
        return self.dataset

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.dataset is not None:
                self.dataset.close()
        finally:
            if exc_type is not None:
                self._discard()
                return False
        try:
            publish(self._tmp, self.path)
        except OSError as err:
            self._discard()
            raise OutputError(f"cannot move the finished output into place at {self.path}: {err}") from err
        return False

    def _discard(self) -> None:
        if self._tmp:
            discard(self._tmp)


def band_descriptions(path: os.PathLike | str) -> List[str]:
    with rasterio.open(path) as ds:
        return [d or "" for d in ds.descriptions]


def default_workers() -> int:
    """Threads for windowed numpy work: the CPU count, at most 4 (numpy releases the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def run_windows(windows, read, compute, write, monitor=None, workers: Optional[int] = None) -> None:
    """Read, compute and write windows with ``workers`` threads computing while I/O goes on.

    ``read(window)`` and ``write(window, result)`` run on the calling thread, in window order
    (GDAL datasets are not thread-safe); ``compute(window, data)`` runs on worker threads. At most
    ``workers + 1`` windows are in memory at once. ``monitor`` (a Monitor) gets progress and is
    checked for cancellation before each read.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    windows = list(windows)
    workers = workers or default_workers()
    total = max(1, len(windows))
    pending: deque = deque()
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for window in windows:
                if monitor is not None:
                    monitor.check()
                pending.append((window, pool.submit(compute, window, read(window))))
                while len(pending) > workers:
                    w, future = pending.popleft()
                    write(w, future.result())
                    done += 1
                    if monitor is not None:
                        monitor.progress(100.0 * done / total)
            while pending:
                w, future = pending.popleft()
                write(w, future.result())
                done += 1
                if monitor is not None:
                    monitor.progress(100.0 * done / total)
        finally:
            for _, future in pending:
                future.cancel()
    if monitor is not None:
        monitor.check()


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
        values = values.astype(np.float32, copy=False)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            values[values == np.float32(nodata)] = np.nan
        return values.astype(dtype, copy=False)

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
