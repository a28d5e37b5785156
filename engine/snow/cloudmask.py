"""A window of the cloud mask as the snow tests need it: every cloud, the "hard" clouds, SCL nodata.

The classes come from the cloud mask engine (:mod:`~topoclear.engine.clouds.masks.engine`: 0 clear,
1 cloud, 2 shadow, 255 nodata); every cloud is cloud or shadow. Let It Snow releases dark clouds
to the snow tests but never its *hard* clouds, which are:

* SCL: shadow (class 3) and cirrus (class 10, from the raw codes: the classes count cirrus as
  cloud), as Let It Snow; SCL class 0 is nodata of the snow map.
* the pretrained detector and mask rasters (0 clear, 2 shadow, other values cloud): shadow. A
  shadow is not a cloud that can turn out to be snow (it is ground in the dark, which the snow
  tests cannot read); a cloud can be: thin or dark cloud over snow, or snow the mask took for
  cloud, so it may be released.

Engine nodata (outside a mask raster, its nodata, detector bands without data) is no cloud and
leaves the snow map's own valid pixels as they are.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..clouds.masks.engine import CLOUD, SHADOW
from ..clouds.masks.scl import SCL_CIRRUS, SCL_NODATA
from ..io.raster import nodata_to_nan

Masks = Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]

_CODES = np.arange(256)
#: Lookup tables over the engine's uint8 classes: every cloud (cloud or shadow), and shadow.
CLOUD_LOOKUP = np.isin(_CODES, (CLOUD, SHADOW))
SHADOW_LOOKUP = _CODES == SHADOW


def cloud_masks(classes: Optional[np.ndarray], scl: Optional[Tuple[np.ndarray, object]] = None) -> Masks:
    """(all clouds, hard clouds, SCL nodata) of a window: ``classes`` (the engine's uint8 classes, None
    without a cloud mask: all None) and, for SCL, ``scl`` = (raw codes aligned on the window, their
    nodata or None; float with NaN where warped) for cirrus and SCL nodata."""
    if classes is None:
        return None, None, None
    all_cloud, hard = CLOUD_LOOKUP[classes], SHADOW_LOOKUP[classes]
    if scl is None:
        return all_cloud, hard, None
    codes, nodata = scl
    if codes.dtype != np.uint8:  # declared nodata is no SCL class (uint8 codes are taken as they are)
        codes = nodata_to_nan(codes.astype(np.float32), nodata)
    hard |= codes == SCL_CIRRUS
    return all_cloud, hard, codes == SCL_NODATA
