"""Raster reading helpers: which cells a nodata value marks, whatever the data type."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from topoclear.engine.io.raster import band_nodata, nodata_cells, nodata_in, nodata_to_nan, valid_mask


@pytest.mark.parametrize("dtype, nodata", [("uint8", 256), ("uint8", -1), ("uint8", 1e300), ("int8", 128),
                                           ("int16", 32768), ("uint16", 65536), ("int16", 0.5),
                                           ("uint8", float("inf"))])
def test_a_nodata_the_type_cannot_hold_marks_no_cell(dtype, nodata):
    """nodata 256 on uint8 was cast to 0 and took every 0 for nodata (and -1 every 255)."""
    info = np.iinfo(dtype)
    values = np.array([info.min, 0, 1, info.max], dtype=dtype)
    assert nodata_in(dtype, nodata) is None
    assert nodata_cells(values, nodata) is None
    assert valid_mask(values, nodata).all()
    out = nodata_to_nan(values, nodata)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out.tolist() == [float(v) for v in values.tolist()]


@pytest.mark.parametrize("dtype, nodata", [("uint8", 255), ("uint8", 0), ("int16", -32768), ("uint16", 65535),
                                           ("int32", 2 ** 31 - 1), ("int16", -9999.0)])
def test_a_nodata_the_type_holds_marks_its_cells(dtype, nodata):
    values = np.array([nodata, 1, nodata, 2], dtype=dtype)
    assert valid_mask(values, nodata).tolist() == [False, True, False, True]
    assert np.isnan(nodata_to_nan(values, nodata)).tolist() == [True, False, True, False]


def test_large_integers_are_compared_before_the_float32_cast():
    """2**24 + 1 and 2**24 are one float32: only the cell that holds the nodata is nodata."""
    values = np.array([2 ** 24, 2 ** 24 + 1], dtype=np.int32)
    assert valid_mask(values, 2 ** 24 + 1).tolist() == [True, False]
    assert np.isnan(nodata_to_nan(values, 2 ** 24 + 1)).tolist() == [False, True]


def test_float_arrays_nan_and_nodata():
    values = np.array([np.nan, -9999.0, 0.1, np.inf], dtype=np.float32)
    assert valid_mask(values, -9999.0).tolist() == [False, False, True, False]
    assert valid_mask(values, None).tolist() == [False, True, True, False]
    assert valid_mask(values, float("nan")).tolist() == [False, True, True, False]
    # a float32 band's nodata 0.1 is float32(0.1): it matches its cells in float32
    assert valid_mask(values, 0.1).tolist() == [False, True, False, False]


@pytest.mark.parametrize("dtype, nodata, expected", [("float32", 0.1, float(np.float32(0.1))),
                                                     ("int16", -32768, -32768.0), ("uint8", 0, 0.0)])
def test_band_nodata_is_the_value_the_cells_hold(tmp_path, dtype, nodata, expected):
    """Read as float64, a float32 band's cells hold float32(nodata), not the double GDAL declares."""
    path = tmp_path / "band.tif"
    data = np.array([[nodata, 1, 2, 3]], dtype=dtype)
    with rasterio.open(path, "w", driver="GTiff", width=4, height=1, count=1, dtype=dtype, nodata=nodata,
                       crs="EPSG:32611", transform=from_origin(0, 10, 10, 10)) as ds:
        ds.write(data, 1)
    with rasterio.open(path) as ds:
        value = band_nodata(ds, 1)
        read = ds.read(1, out_dtype=np.float64)
    assert value == expected
    assert valid_mask(read, value).tolist() == [[False, True, True, True]]

