"""Windowed raster I/O: opening with clear errors, windows with halos, grids, atomic outputs.

Every whole-raster operation in TopoClear goes through these helpers, so no raster is ever read
whole and no output is ever left half-written.
"""
from __future__ import annotations

import math
import os
import tempfile
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

#: GeoTIFF creation options of every output: tiled, BigTIFF when needed, uncompressed (fast).
DEFAULT_CREATION_OPTIONS: Dict[str, str] = {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512",
                                            "BIGTIFF": "IF_SAFER"}
#: Target number of pixels of one processing window (bounds the memory of every windowed loop).
DEFAULT_WINDOW_PIXELS = 2_097_152


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
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".partial.tif",
                                         dir=str(self.path.parent))
        os.close(fd)
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
            os.replace(self._tmp, self.path)
        except OSError as err:
            self._discard()
            raise OutputError(f"cannot move the finished output into place at {self.path}: {err}") from err
        return False

    def _discard(self) -> None:
        if self._tmp and os.path.exists(self._tmp):
            os.remove(self._tmp)
        aux = f"{self._tmp}.aux.xml"
        if self._tmp and os.path.exists(aux):
            os.remove(aux)


def band_descriptions(path: os.PathLike | str) -> List[str]:
    with rasterio.open(path) as ds:
        return [d or "" for d in ds.descriptions]
