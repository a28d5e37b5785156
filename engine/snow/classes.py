"""The snow map's classes (the Theia / Let It Snow coding) and how its outputs name and draw them.

**100 snow, 0 no snow, 205 cloud** (cloud shadow included), **255 nodata**. Fractional snow cover
and NDSI rasters are Float32 with nodata :data:`FLOAT_NODATA`.
"""
from __future__ import annotations

from typing import Dict, Tuple

SNOW, NO_SNOW, CLOUD, NODATA = 100, 0, 205, 255
#: Every class of a snow map.
MAP_CLASSES: Tuple[int, ...] = (SNOW, NO_SNOW, CLOUD, NODATA)
CLASS_NAMES: Dict[int, str] = {SNOW: "snow", NO_SNOW: "no snow", CLOUD: "cloud", NODATA: "nodata"}
CLASS_COLOURS: Dict[int, Tuple[int, int, int, int]] = {
    SNOW: (0, 190, 255, 255), NO_SNOW: (214, 200, 170, 255), CLOUD: (140, 140, 140, 255), NODATA: (0, 0, 0, 0)}
#: The ``CLASSES`` tag of a snow map.
CLASSES_TAG = "100=snow;0=no snow;205=cloud;255=nodata"
#: The band description of a snow map.
SNOWMAP_DESCRIPTION = "snow map (100 = snow)"  # short: QGIS band menus are as wide as it (legend: CLASSES)
#: Nodata of the Float32 outputs (NDSI, fractional snow cover).
FLOAT_NODATA = -9999.0
