"""The NDSI of Sentinel-2 windows and the NDSI raster, both through :func:`~topoclear.engine.snow.indices.ndsi`.

NDSI = (green - SWIR1) / (green + SWIR1) with green = B3 (560 nm) and SWIR1 = B11 (1610 nm).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..io.atomic import AtomicRasterWriter, check_writable
from ..io.raster import bounded_gdal_cache
from ..io.windows import run_windows
from ..progress import SILENT, Monitor
from ..sentinel2.bands import S2Product
from ..sentinel2.reader import BandReader
from .classes import FLOAT_NODATA
from .grid import SNOW_GDAL_CACHE_MB, strip_windows, subgrid
from .indices import ndsi
from .requests import NdsiRequest

#: The bands of the NDSI.
NDSI_BANDS = ("B3", "B11")


def window_ndsi(reader: BandReader, green: np.ndarray, swir: np.ndarray
                ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(NDSI as float32, valid mask or None when every cell is valid) of B3 and B11 values as
    :meth:`~topoclear.engine.sentinel2.reader.BandReader.read_raw` gives them.

    Works on DN + offset (the quantification cancels out; B11 is rescaled when the two bands have
    different quantification values); NaN where either band is nodata or the sum is not positive.
    """
    bands = reader.product.bands
    g, g_valid = reader.dn_and_valid("B3", green)
    s, s_valid = reader.dn_and_valid("B11", swir)
    valid = g_valid if s_valid is None else (s_valid if g_valid is None else g_valid & s_valid)
    if bands["B3"].quantification != bands["B11"].quantification:
        s *= np.float32(bands["B3"].quantification / bands["B11"].quantification)
    # unsigned DN without a negative offset: the sum is 0 (0 / 0 = NaN) or positive
    unsigned = all(np.asarray(raw).dtype.kind == "u" and bands[n].offset >= 0
                   for n, raw in (("B3", green), ("B11", swir)))
    return ndsi(g, s, reuse_green=True, nonnegative=unsigned), valid


def compute_ndsi(request: NdsiRequest, monitor: Monitor = SILENT) -> Tuple[str, S2Product]:
    """Write NDSI (Float32, nodata -9999) of a Sentinel-2 image; returns (output path, the product read)."""
    output = request.output
    check_writable(output)
    product = request.image.locate(NDSI_BANDS)
    monitor.message(product.describe())
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB), BandReader(product, NDSI_BANDS, request.image.resolution) as reader:
        grid = subgrid(reader.grid, request.image.bounds)
        for text in reader.coverage_messages(grid):
            monitor.message(text)
        windows = strip_windows(grid, request.window_rows, reader.dataset("B3"))
        with AtomicRasterWriter(output, grid, 1, "float32", FLOAT_NODATA,
                                ["NDSI = (B3 - B11) / (B3 + B11)"]) as dst:
            def read(window):
                return reader.read("B3", window, grid), reader.read("B11", window, grid)

            def compute(window, data):
                out = ndsi(*data)
                out[~np.isfinite(out)] = FLOAT_NODATA
                return out

            run_windows(windows, read, compute, lambda window, out: dst.write(out, 1, window=window), monitor)
            dst.update_tags(SOURCE_LAYOUT=product.layout, REFLECTANCE=product.radiometry)
    return str(output), product
