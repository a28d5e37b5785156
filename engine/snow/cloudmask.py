"""A window of the cloud mask as the snow tests need it: every cloud, the clouds never released, SCL nodata.

With an SCL raster (:mod:`~topoclear.engine.clouds.masks.scl`) the clouds are shadow, medium and
high probability cloud and cirrus; shadow and cirrus are never released as dark clouds; class 0 is
nodata. Any other mask raster: non-zero = cloud, its nodata = not cloud, nothing held back.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..clouds.masks.scl import SCL_CIRRUS, SCL_CLOUDS, SCL_NODATA, SCL_SHADOW
from ..io.raster import nodata_to_nan
from .rawvalues import nodata_cells

Masks = Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]

_CODES = np.arange(256)
#: Lookup tables over the uint8 SCL codes: every cloud, and the clouds that are never released.
SCL_CLOUD_LOOKUP = np.isin(_CODES, SCL_CLOUDS)
SCL_HELD_LOOKUP = np.isin(_CODES, (SCL_SHADOW, SCL_CIRRUS))


def cloud_masks(cloud: Optional[Tuple[np.ndarray, object]], kind: str) -> Masks:
    """(all clouds, shadow-or-cirrus, SCL nodata) of ``cloud`` = (values aligned on the window, their
    nodata or None) read as ``kind`` (``"scl"`` or ``"raster"``); all None without a cloud mask."""
    if cloud is None:
        return None, None, None
    values, nodata = cloud
    if values.dtype == np.uint8:  # lookup tables: one pass per mask, no conversion
        if kind == "scl":
            return SCL_CLOUD_LOOKUP[values], SCL_HELD_LOOKUP[values], values == SCL_NODATA
        lut = _CODES != 0
        missing = nodata_cells(_CODES.astype(np.uint8), nodata)
        if missing is not None:
            lut &= ~missing
        return lut[values], None, None
    values = nodata_to_nan(values.astype(np.float32), nodata)
    if kind == "scl":
        held = (values == SCL_SHADOW) | (values == SCL_CIRRUS)
        return np.isin(values, SCL_CLOUDS), held, values == SCL_NODATA
    return np.isfinite(values) & (values != 0), None, None
