"""Tests on pixel values as read (integer DN, class codes, elevations), without converting them to float."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..io.raster import declared_nodata


def nodata_cells(values: np.ndarray, nodata) -> Optional[np.ndarray]:
    """Cells of ``values`` equal to ``nodata``; None when there is no nodata value (None or NaN) or
    the data type cannot hold it."""
    value = declared_nodata(nodata)
    if value is None:
        return None
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        if not (value.is_integer() and info.min <= value <= info.max):
            return None
    return values == values.dtype.type(value)


def above(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values > threshold`` without converting integer ``values`` to floating point."""
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        limit = math.floor(threshold)
        if limit < info.min:
            return np.ones(values.shape, dtype=bool)
        if limit >= info.max:
            return np.zeros(values.shape, dtype=bool)
        return values > values.dtype.type(limit)
    return values > np.float32(threshold)
