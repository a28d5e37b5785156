"""Reading a Sentinel-2 product's bands on one target grid, window by window, as reflectance."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from ..io.raster import Grid, declared_nodata, open_raster
from ..io.warp import FULL_COVERAGE, footprint_coverage, warp_window
from ...models.bands import ROLE_LABELS
from .bands import S2Product


class BandReader:
    """Reads windows of a target grid from bands on any grid, as float32 reflectance (NaN = nodata).

    The target grid defaults to the grid of the coarsest band (``resolution="coarsest"``: Let It
    Snow's 20 m) or of the finest (``"finest"``). A band on a finer grid is averaged onto the
    target (area mean of the cells inside each target cell), a band on a coarser grid is
    repeated (nearest neighbour, as CRT-UNet does for its 20 m bands), and any other mismatch is
    warped bilinearly. Band files that do not overlap the first band's file are refused
    (:class:`InputError` naming the file); :meth:`coverage_messages` tells how much of a grid
    each file covers. Use as a context manager.
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
            self._grids = grids
            self._refuse_disjoint_bands()
            if grid is None:
                pick = max if resolution == "coarsest" else min
                grid = pick(grids.values(), key=lambda g: g.pixel_size[0] * g.pixel_size[1])
            self.grid = grid
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

    def _label(self, name: str) -> str:
        text = ROLE_LABELS.get(name, name)
        return text[:1].upper() + text[1:]

    def _refuse_disjoint_bands(self) -> None:
        """:class:`InputError` for a band file whose extent does not meet the first band file's (a file of
        another place, or declared in another CRS): it would give an image without a single valid pixel."""
        first = self.names[0]
        first_path = self.product.bands[first].path
        for name in self.names[1:]:
            path = self.product.bands[name].path
            if path == first_path:
                continue
            if _coverage(self._grids[name], self._grids[first]) <= 0.0:
                src, ref = self._grids[name], self._grids[first]
                raise InputError(
                    f"{self._label(name)}: {path} does not overlap the {ROLE_LABELS.get(first, first)} band "
                    f"{os.path.basename(first_path)}: its extent {_rounded(src.bounds)} in {src.crs}, the "
                    f"{ROLE_LABELS.get(first, first)} band's {_rounded(ref.bounds)} in {ref.crs}. The bands of one "
                    "image must cover the same place: check the file and its coordinate reference system")

    def coverage_messages(self, grid: Optional[Grid] = None) -> List[str]:
        """Warnings for the band files covering only part of ``grid`` (default: the target grid), with the
        covered percentage; :class:`InputError` naming a file that does not overlap it at all."""
        grid = grid or self.grid
        messages: List[str] = []
        seen = set()
        for name in self.names:
            path = self.product.bands[name].path
            if path in seen:
                continue
            seen.add(path)
            coverage = _coverage(self._grids[name], grid)
            if coverage <= 0.0:
                raise InputError(f"{self._label(name)}: {path} does not overlap the image grid (its extent "
                                 f"{_rounded(self._grids[name].bounds)} in {self._grids[name].crs}; the image's "
                                 f"{_rounded(grid.bounds)} in {grid.crs})")
            if coverage < FULL_COVERAGE:
                messages.append(f"Warning: {ROLE_LABELS.get(name, name)} band {os.path.basename(path)} covers only "
                                f"{100 * coverage:.1f} % of the image; the pixels it does not cover are nodata")
        return messages

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


def _coverage(src: Grid, dst: Grid) -> float:
    """:func:`~topoclear.engine.io.warp.footprint_coverage`, 0 when one extent cannot be expressed in the
    other's CRS (far outside its area of use)."""
    try:
        coverage = footprint_coverage(src, dst)
    except Exception:  # noqa: BLE001 - PROJ refuses coordinates outside a projection's domain
        return 0.0
    return coverage if np.isfinite(coverage) else 0.0


def _rounded(bounds) -> Tuple[float, ...]:
    return tuple(round(float(v), 1) for v in bounds)


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
