"""The Sen2Cor scene classification (SCL) of Level-2A products: its classes and the masks drawn from it.

Classes: 0 nodata, 1 saturated or defective, 2 dark area, 3 cloud shadow, 4 vegetation, 5 bare
soil, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high probability, 10 thin
cirrus, 11 snow or ice. The one definition of these codes in TopoClear.
"""
from __future__ import annotations

import numpy as np

SCL_NODATA = 0
SCL_SHADOW = 3
SCL_CLOUD_MEDIUM = 8
SCL_CLOUD_HIGH = 9
SCL_CIRRUS = 10
SCL_SNOW = 11
#: Every class that hides the ground: shadow, medium and high probability cloud, cirrus.
SCL_CLOUDS = (SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS)


def scl_masks(scl: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks from a Sen2Cor SCL array (any shape, integer codes).

    Keys: ``nodata`` (0), ``shadow`` (3), ``cloud`` (8 or 9: medium and high probability),
    ``cirrus`` (10), ``valid`` (not nodata).
    """
    scl = np.asarray(scl)
    return {
        "nodata": scl == SCL_NODATA,
        "shadow": scl == SCL_SHADOW,
        "cloud": (scl == SCL_CLOUD_MEDIUM) | (scl == SCL_CLOUD_HIGH),
        "cirrus": scl == SCL_CIRRUS,
        "valid": scl != SCL_NODATA,
    }


def scl_cloud_shadow_mask(
    scl: np.ndarray, include_cirrus: bool = True, include_shadow: bool = True
) -> np.ndarray:
    """Boolean CSM from SCL: classes 8, 9, plus 10 (cirrus) and 3 (shadow) when asked."""
    m = scl_masks(scl)
    out = m["cloud"].copy()
    if include_cirrus:
        out |= m["cirrus"]
    if include_shadow:
        out |= m["shadow"]
    return out
