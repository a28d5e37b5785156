"""Reading a Sentinel-2 product's bands on one target grid, window by window, as reflectance."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from ..io.raster import Grid, declared_nodata, open_raster
from ..io.warp import warp_window
from ...models.bands import ROLE_LABELS
from .bands import S2Product


class BandReader:
    """Reads windows of a target grid from bands on any grid, as float32 reflectance (NaN = nodata).

    The target grid defaults to the grid of the coarsest band (``resolution="coarsest"``: Let It
    Snow's 20 m) or of the finest (``"finest"``). A band on a finer grid is averaged onto the
    target (area mean of the cells inside each target cell), a band on a coarser grid is
    repeated (nearest neighbour, as CRT-UNet does for its 20 m bands), and any other mismatch is
    warped bilinearly. Use as a context manager.
    """

    def __init__(self, product: S2Product, names: Sequence[str], resolution: str = "coarsest",
                 grid: Optional[Grid] = None) -> None:
        if resolution not in ("coarsest", "finest"):
            raise InputError(f"resolution {resolution!r} is not 'coarsest' or 'finest'")
        self.product = product
        self.names = list(names)
        self._datasets: Dict[str, rasterio.DatasetReader] = {}
        try:
            for path in sorted({product.bands[n].path for n in self.names}):
                self._datasets[path] = open_raster(path, "Sentinel-2 band")
            grids = {n: Grid.of(self._datasets[product.bands[n].path]) for n in self.names}
            for n, g in grids.items():
                if g.crs is None:
                    raise InputError(f"{ROLE_LABELS.get(n, n)}: {product.bands[n].path} has no coordinate "
                                     "reference system")
            if grid is None:
                pick = max if resolution == "coarsest" else min
                grid = pick(grids.values(), key=lambda g: g.pixel_size[0] * g.pixel_size[1])
            self.grid = grid
            self._grids = grids
        except Exception:
            self.close()
            raise

    def __enter__(self) -> "BandReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for ds in self._datasets.values():
            ds.close()
        self._datasets = {}

    def dataset(self, name: str) -> rasterio.DatasetReader:
        return self._datasets[self.product.bands[name].path]

    def resampling_for(self, name: str) -> Resampling:
        src = self._grids[name]
        if src.crs == self.grid.crs and src.transform == self.grid.transform:
            return Resampling.nearest
        src_area = src.pixel_size[0] * src.pixel_size[1]
        dst_area = self.grid.pixel_size[0] * self.grid.pixel_size[1]
        if src.crs == self.grid.crs and src_area < dst_area * 0.999:
            return Resampling.average
        if src.crs == self.grid.crs and src_area > dst_area * 1.001:
            return Resampling.nearest
        return Resampling.bilinear

    def read_dn(self, name: str, window: Window, grid: Optional[Grid] = None) -> np.ndarray:
        """Raw values (float32) of band ``name`` on ``window`` of the target grid; NaN = nodata."""
        src = self.product.bands[name]
        return warp_window(self.dataset(name), src.index, grid or self.grid, window,
                           self.resampling_for(name), nodata=src.nodata)

    def read_raw(self, name: str, window: Window, grid: Optional[Grid] = None) -> np.ndarray:
        """Band ``name`` on ``window`` for :meth:`to_reflectance`: the file's own values (its data type)
        when the band's grid lines up pixel for pixel with the target and the window lies inside it
        (nothing converted on the reading thread), else float32 DN with NaN for nodata."""
        src = self.product.bands[name]
        native = read_native(self.dataset(name), src.index, grid or self.grid, window)
        return native if native is not None else self.read_dn(name, window, grid)

    def to_reflectance(self, name: str, values: np.ndarray) -> np.ndarray:
        """Values from :meth:`read_raw` as float32 reflectance, NaN = nodata (thread-safe: numpy only)."""
        out, valid = self.reflectance_and_valid(name, values)
        if valid is not None:
            out[~valid] = np.nan
        return out

    def reflectance_and_valid(self, name: str, values: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(float32 reflectance, valid mask or None when every cell is valid) of :meth:`read_raw`
        values; nodata cells keep meaningless values: use the mask."""
        src = self.product.bands[name]
        out, valid = self.dn_and_valid(name, values)
        if src.quantification != 1.0:
            out *= np.float32(1.0 / src.quantification)
        return out, valid

    def dn_and_valid(self, name: str, values: np.ndarray, as_float: bool = True
                     ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(DN + offset as float32, valid mask or None when every cell is valid) of :meth:`read_raw`
        values. With ``as_float=False`` the values come back as read (integers untouched, no offset):
        compare them with :meth:`dn_threshold` thresholds."""
        src = self.product.bands[name]
        if values.dtype == np.float32 and not _is_native_float(values):
            out = values  # warped: nodata already NaN
            valid = np.isfinite(out)
        else:
            raw = values.view(np.ndarray)
            valid = None
            nodata = declared_nodata(src.nodata)
            if nodata is not None:
                if raw.dtype.kind == "f" or _holds(raw.dtype, nodata):
                    valid = raw != raw.dtype.type(nodata)
            if raw.dtype.kind == "f":
                finite = np.isfinite(raw)
                valid = finite if valid is None else valid & finite
            if not as_float:
                return raw, (None if valid is None or valid.all() else valid)
            out = raw.astype(np.float32)
        if as_float and src.offset:
            out += np.float32(src.offset)
        if valid is not None and valid.all():
            valid = None
        return out, valid

    def dn_threshold(self, name: str, reflectance: float) -> float:
        """The value of the band's raw numbers (``dn_and_valid(..., as_float=False)``) that means
        ``reflectance``."""
        src = self.product.bands[name]
        return reflectance * src.quantification - src.offset

    def read(self, name: str, window: Window, grid: Optional[Grid] = None) -> np.ndarray:
        """Reflectance (float32) of band ``name`` on ``window`` of the target grid; NaN = nodata."""
        return self.to_reflectance(name, self.read_raw(name, window, grid))


def _holds(dtype: np.dtype, value: float) -> bool:
    """Whether integer ``dtype`` can hold ``value`` exactly."""
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


class _NativeArray(np.ndarray):
    """Marks an array read as-is from a file (its nodata not yet turned into NaN)."""


def _is_native_float(values: np.ndarray) -> bool:
    return isinstance(values, _NativeArray)


def read_native(ds: rasterio.DatasetReader, band: int, grid: Grid, window: Window) -> Optional[np.ndarray]:
    """``window`` of ``grid`` read straight from ``ds`` (the file's data type, no resampling) when
    ``ds`` has the same CRS and pixel size as ``grid``, a whole-pixel offset and the window lies
    inside it; None otherwise (use :func:`~topoclear.engine.io.raster.warp_window`)."""
    st, dt = ds.transform, grid.window_transform(window)
    if ds.crs is None or grid.crs is None or ds.crs != grid.crs or st.b or st.d or dt.b or dt.d:
        return None
    if abs(st.a - dt.a) > 1e-9 * abs(st.a) or abs(st.e - dt.e) > 1e-9 * abs(st.e):
        return None
    col, row = (dt.c - st.c) / st.a, (dt.f - st.f) / st.e
    c0, r0 = int(round(col)), int(round(row))
    if abs(col - c0) > 1e-6 or abs(row - r0) > 1e-6:
        return None
    h, w = int(window.height), int(window.width)
    if c0 < 0 or r0 < 0 or c0 + w > ds.width or r0 + h > ds.height:
        return None
    data = ds.read(band, window=Window(c0, r0, w, h))
    return data.view(_NativeArray) if data.dtype.kind == "f" else data
