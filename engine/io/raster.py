"""Opening rasters with clear errors, their grids, nodata and valid pixels, reads with halos.

Windows and the windowed loop are in :mod:`.windows`, atomic outputs in :mod:`.atomic`, reading a
raster on another grid and footprint coverage in :mod:`.warp`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from ..errors import InputError

#: GeoTIFF creation options of every output: tiled, BigTIFF when needed, uncompressed (fast).
DEFAULT_CREATION_OPTIONS: Dict[str, str] = {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512",
                                            "BIGTIFF": "IF_SAFER"}
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
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"{role}: {path} is not a raster GDAL can read (the file is of another kind, "
                         f"truncated or corrupt: {exc})") from exc
    try:
        check_complete(ds, role)
    except InputError:
        ds.close()
        raise
    return ds


def check_complete(ds: rasterio.DatasetReader, role: str = "input raster") -> None:
    """Raise :class:`InputError` when a GeoTIFF's data stops early: its header opens but the last block
    of a band cannot be read (a truncated copy or download). Other formats are left to their reads."""
    if ds.driver != "GTiff":
        return
    try:
        block_h, block_w = ds.block_shapes[0]
        row0, col0 = max(0, ds.height - block_h), max(0, ds.width - block_w)
        for band in range(1, ds.count + 1):
            ds.read(band, window=Window(col0, row0, ds.width - col0, ds.height - row0))
    except Exception as exc:  # rasterio raises several types for broken files
        raise InputError(f"{role}: {ds.name} is truncated or corrupt: GDAL cannot read its data ({exc})") from exc


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
    """Raise :class:`InputError` for rotated or south-up grids (not supported by the 3x3 kernels), grids
    without a CRS and geographic grids reaching beyond the poles."""
    t = ds.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise InputError(f"{role}: {ds.name} has a rotated or south-up geotransform {tuple(t)[:6]}; "
                         "warp it to a north-up grid first (e.g. with gdalwarp)")
    if ds.crs is None:
        raise InputError(f"{role}: {ds.name} has no coordinate reference system")
    check_geographic_extent(ds, role)


#: Longitudes a geographic raster may span (degrees): one turn either side of the antimeridian.
LONGITUDE_LIMIT = 360.0


def check_geographic_extent(ds: rasterio.DatasetReader, role: str) -> None:
    """Raise :class:`InputError` when a raster in a geographic CRS reaches beyond a pole (latitude
    outside -90..90) or spans impossible longitudes: its georeferencing is wrong."""
    crs = ds.crs
    if crs is None or not crs.is_geographic:
        return
    left, bottom, right, top = ds.bounds
    tolerance = 1e-9
    for latitude in (bottom, top):
        if not -90.0 - tolerance <= latitude <= 90.0 + tolerance:
            raise InputError(f"{role}: {ds.name} reaches latitude {latitude:.6g} (its extent is {bottom:.6g} to "
                             f"{top:.6g} degrees north), beyond the pole: latitudes lie within -90..90; "
                             "fix its georeferencing")
    for longitude in (left, right):
        if not -LONGITUDE_LIMIT <= longitude <= LONGITUDE_LIMIT:
            raise InputError(f"{role}: {ds.name} reaches longitude {longitude:.6g}, outside "
                             f"-{LONGITUDE_LIMIT:g}..{LONGITUDE_LIMIT:g}: fix its georeferencing")


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


def declared_nodata(nodata) -> Optional[float]:
    """``nodata`` as a value to compare pixels with, or None when there is none (None or NaN: NaN
    cells are caught by the finiteness test of :func:`valid_mask`)."""
    if nodata is None:
        return None
    value = float(nodata)
    return None if math.isnan(value) else value


def nodata_in(dtype, nodata) -> Optional[float]:
    """``nodata`` as a value of ``dtype`` to compare pixels with, or None when no pixel of that type can
    equal it: no nodata, NaN (caught by finiteness tests), or, for integer types, a value outside the
    type's range or with a fraction (nodata 256 on uint8 marks no pixel; cast, it would mark 0)."""
    value = declared_nodata(nodata)
    dtype = np.dtype(dtype)
    if value is None or dtype.kind not in "iu":
        return value
    info = np.iinfo(dtype)
    if not (math.isfinite(value) and value.is_integer() and info.min <= value <= info.max):
        return None
    return value


def band_nodata(ds: rasterio.DatasetReader, band: int) -> Optional[float]:
    """The nodata of ``band`` as its pixels hold it (cast to the band's data type: a float32 band's 0.1 is
    0.100000001...), to compare with values read in any floating-point type; None when no pixel of the
    band can equal it (see :func:`nodata_in`)."""
    dtype = np.dtype(ds.dtypes[band - 1])
    value = nodata_in(dtype, ds.nodatavals[band - 1])
    if value is None:
        return None
    return float(np.asarray(value).astype(dtype))


def nodata_cells(values: np.ndarray, nodata) -> Optional[np.ndarray]:
    """True where ``values`` equals ``nodata`` (compared in the array's own type: a float nodata as the
    array's float type holds it, an integer one only when the type can hold it), or None when none can."""
    value = nodata_in(values.dtype, nodata)
    if value is None:
        return None
    if values.dtype.kind in "iu":
        return values == values.dtype.type(int(value))
    return values == np.asarray(value).astype(values.dtype)


def valid_mask(values: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """True where ``values`` holds data: finite and not equal to ``nodata`` (a nodata the array's type
    cannot hold marks no cell)."""
    valid = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    missing = nodata_cells(values, nodata)
    if missing is not None:
        valid &= ~missing
    return valid


def nodata_to_nan(values: np.ndarray, nodata) -> np.ndarray:
    """``values`` as float32 with the cells equal to ``nodata`` set to NaN (in place when float32); the
    cells are found in the array's own type (see :func:`nodata_cells`)."""
    missing = nodata_cells(values, nodata)
    values = values.astype(np.float32, copy=False)
    if missing is not None:
        values[missing] = np.nan
    return values


def overview(ds: rasterio.DatasetReader, band: int, max_pixels: int = 512 * 512) -> np.ndarray:
    """Decimated read of a whole band (nearest), float32 with nodata as NaN: scene-wide statistics
    without reading the scene."""
    from rasterio.enums import Resampling

    factor = max(1.0, math.sqrt(ds.width * ds.height / max_pixels))
    shape = (max(1, int(ds.height / factor)), max(1, int(ds.width / factor)))
    data = ds.read(band, out_shape=shape, resampling=Resampling.nearest, out_dtype=np.float32)
    return nodata_to_nan(data, ds.nodatavals[band - 1])


class ThreadLocalDatasets:
    """One open dataset per (thread, path): GDAL handles must not be shared between threads."""

    def __init__(self, role: str) -> None:
        import threading

        self._local = threading.local()
        self._all: List[rasterio.DatasetReader] = []
        self._lock = threading.Lock()
        self.role = role

    def get(self, path: str) -> rasterio.DatasetReader:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        ds = cache.get(path)
        if ds is None:
            ds = cache[path] = open_raster(path, self.role)
            with self._lock:
                self._all.append(ds)
        return ds

    def close(self) -> None:
        import threading

        with self._lock:
            for ds in self._all:
                ds.close()
            self._all = []
        self._local = threading.local()


