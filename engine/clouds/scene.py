"""The Sentinel-2 scene of a cloud-removal run: its bands, the output grid and band list, windowed reads.

Bands are found by :func:`~topoclear.engine.sentinel2.locate.locate_bands` (a band stack,
separate band files or a SAFE folder; explicit band choices override the detection) and read by
:class:`~topoclear.engine.sentinel2.reader.BandReader`, one reader per thread, converted to
reflectance x 10000 with the product's radiometric offsets. 20 m bands of separate band files
are brought to the 10 m grid by nearest neighbour, as CRT-UNet does.
"""
from __future__ import annotations

import math
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ...models.bands import S2_BANDS_L1C
from ..errors import InputError
from ..io.raster import Grid, nodata_to_nan, open_raster, valid_mask
from ..sentinel2.bands import Override
from ..sentinel2.locate import locate_bands
from ..sentinel2.reader import BandReader

WindowTuple = Tuple[int, int, int, int]  # row0, col0, rows, cols (inside the scene)


def _window(window: WindowTuple) -> Window:
    return Window(window[1], window[0], window[3], window[2])


class S2Scene:
    """The Sentinel-2 input: its bands, the output grid and band list, windowed reads.

    A band stack in one file gives an output with all of that file's bands (those the network
    does not predict are copied). Separate band files or a SAFE folder give an output with the
    network's bands on the finest grid among them.
    """

    def __init__(self, source: str, model_bands: Sequence[str], overrides: Optional[Dict[str, Override]] = None,
                 offset: Optional[float] = None, quantification: Optional[float] = None,
                 model_title: str = "the model", extra_bands: Sequence[str] = ()) -> None:
        self.source = str(source)
        self.model_bands = tuple(model_bands)
        wanted = list(dict.fromkeys(list(self.model_bands) + list(extra_bands)))
        optional = [b for b in S2_BANDS_L1C if b not in wanted]
        try:
            product = locate_bands(source, names=wanted, overrides=overrides, offset=offset,
                                   quantification=quantification, preferred_resolutions=(10, 20, 60),
                                   optional=optional)
        except InputError as exc:
            raise InputError(f"{model_title} needs the Sentinel-2 bands {', '.join(self.model_bands)}"
                             f"{' (and ' + ', '.join(extra_bands) + ' for the cloud mask)' if extra_bands else ''}: "
                             f"{exc}") from exc
        self.product = product
        self.bands = product.bands
        self.stack_path = self._stack_path()
        if self.stack_path is not None:
            self._describe_stack()
        else:
            self._describe_band_files()
        if self.grid.crs is None:
            raise InputError(f"Sentinel-2 input {self.source} has no coordinate reference system")
        # nodata written in invalid pixels: the declared value, else Sentinel-2's DN 0 (NaN for floats, which
        # the outputs then declare: non-finite input pixels are nodata)
        if self.declared_nodata is None and np.dtype(self.dtype).kind == "f":
            self.declared_nodata = float("nan")
        self.fill_value = self.declared_nodata if self.declared_nodata is not None else 0
        self.height, self.width = self.grid.height, self.grid.width
        self._readers: Dict[int, BandReader] = {}
        self._lock = threading.Lock()

    # -- layout ------------------------------------------------------------------------------
    def _stack_path(self) -> Optional[str]:
        """The file holding every band when the input is one band stack, else None."""
        paths = {src.path for src in self.product.bands.values()}
        if len(paths) != 1:
            return None
        path = next(iter(paths))
        with open_raster(path, "Sentinel-2 input") as ds:
            return path if ds.count >= len(self.model_bands) else None

    def _describe_stack(self) -> None:
        with open_raster(self.stack_path, "Sentinel-2 input") as ds:
            self.grid = Grid.of(ds)
            count = ds.count
            self.dtype = np.dtype(ds.dtypes[0]).name
            self.declared_nodata = ds.nodata
            self.input_descriptions = list(ds.descriptions)
            self._file_nodata = list(ds.nodatavals)
        by_index = {src.index: name for name, src in self.bands.items()}
        self.output_names = [by_index.get(i, f"band {i}") for i in range(1, count + 1)]
        self.output_index = list(range(1, count + 1))

    def _describe_band_files(self) -> None:
        names = list(self.model_bands)
        with BandReader(self.product, names, resolution="finest") as reader:
            self.grid = reader.grid
        first = self.bands[names[0]]
        with open_raster(first.path, "Sentinel-2 band") as ds:
            self.dtype = np.dtype(ds.dtypes[first.index - 1]).name
            self.declared_nodata = ds.nodatavals[first.index - 1]
        self.output_names = names
        self.output_index = []
        self.input_descriptions = [None] * len(names)
        self._file_nodata = []

    def describe(self) -> str:
        return self.product.describe()

    def model_band_output_index(self) -> List[int]:
        """Position (0-based) of each network band in the output band list."""
        if self.stack_path is not None:
            return [self.bands[b].index - 1 for b in self.model_bands]
        return [self.output_names.index(b) for b in self.model_bands]

    # -- reads -------------------------------------------------------------------------------
    def _band_reader(self) -> BandReader:
        """This thread's reader (GDAL handles are not shared between threads)."""
        key = threading.get_ident()
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = BandReader(self.product, list(self.bands), grid=self.grid)
            return reader

    def read_reflectance(self, names: Sequence[str], window: WindowTuple) -> np.ndarray:
        """(len(names), rows, cols) float32 reflectance x 10000 (offsets applied); NaN = nodata."""
        win = _window(window)
        out = np.empty((len(names), window[2], window[3]), np.float32)
        reader = self._band_reader()
        for k, name in enumerate(names):
            src = self.bands[name]
            dn, valid = reader.dn_and_valid(name, reader.read_raw(name, win))
            out[k] = dn * np.float32(10000.0 / src.quantification)
            if valid is not None:
                out[k][~valid] = np.nan
        return out

    def read_output_raw(self, window: WindowTuple) -> Tuple[np.ndarray, np.ndarray]:
        """The input's values of every output band ``(n, rows, cols)`` in the output data type, and validity."""
        win = _window(window)
        reader = self._band_reader()
        if self.stack_path is not None:
            # every band of the stack as it is, in one read; nodata as the product (or the file) declares it
            raw = reader.dataset(self.model_bands[0]).read(window=win).astype(self.dtype, copy=False)
            valid = np.empty(raw.shape, bool)
            for k, name in enumerate(self.output_names):
                src = self.bands.get(name)
                valid[k] = valid_mask(raw[k], src.nodata if src is not None else self._file_nodata[k])
            return raw, valid
        raw = np.empty((len(self.output_names), window[2], window[3]), self.dtype)
        valid = np.empty(raw.shape, bool)
        for k, name in enumerate(self.output_names):
            values = reader.read_dn(name, win)
            valid[k] = np.isfinite(values)
            raw[k] = np.where(valid[k], values, 0).astype(self.dtype)
        return raw, valid

    def any_valid(self, names: Sequence[str], max_pixels: int = 256 * 256) -> bool:
        """Whether a decimated look at the bands finds a pixel valid in all of them."""
        valid = None
        for name in names:
            band = np.isfinite(self.overview([name], max_pixels)[name])
            valid = band if valid is None else valid & band
        return bool(valid is not None and valid.any())

    def overview(self, names: Sequence[str], max_pixels: int = 512 * 512) -> Dict[str, np.ndarray]:
        """Decimated reflectance (0-1) of whole bands (nearest) on the scene's shape, for scene statistics."""
        factor = max(1.0, math.sqrt(self.width * self.height / max_pixels))
        shape = (max(1, int(self.height / factor)), max(1, int(self.width / factor)))
        reader = self._band_reader()
        out = {}
        for name in names:
            src = self.bands[name]
            values = reader.dataset(name).read(src.index, out_shape=shape, resampling=Resampling.nearest,
                                               out_dtype=np.float32)
            values = nodata_to_nan(values, src.nodata)
            values[~np.isfinite(values)] = np.nan
            out[name] = (values + np.float32(src.offset)) / np.float32(src.quantification)
        return out

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers = {}
