"""The snow map of a Sentinel-2 image: single NDSI threshold (:mod:`.threshold`) or Let It Snow (:mod:`.lis`).

Snow map classes (the Theia / Let It Snow coding, :mod:`.classes`): **100 snow, 0 no snow, 205
cloud** (cloud shadow included), **255 nodata**. Pixels are nodata where any of green, red, SWIR1
is nodata (DN 0 for Sentinel-2) or the SCL says no data (class 0). Optionally the fractional snow
cover (:mod:`.fsc`) is written beside it. Whole scenes are processed window by window
(:mod:`.grid`) with bounded memory.
"""
from __future__ import annotations

from ..io.raster import bounded_gdal_cache
from ..progress import SILENT, Monitor
from .grid import SNOW_GDAL_CACHE_MB
from .lis import lis_snow_map
from .requests import SnowMapRequest
from .results import SnowResult
from .scene import open_scene
from .threshold import threshold_snow_map


def snow_map(request: SnowMapRequest, monitor: Monitor = SILENT) -> SnowResult:
    """Write the snow map (uint8 GeoTIFF, classes 100/0/205/255) that ``request`` asks for.

    Returns a :class:`~.results.SnowResult` with the class areas, percentages and (Let It Snow)
    the snowline. The single-threshold method does not read the DEM. Messages (the product read,
    the cloud mask chosen, the DEM coverage, the snowline, the result) go to ``monitor``.
    """
    request = request.validate()
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB):
        scene = open_scene(request.image, request.cloud, request.dem if request.lis else None, request.dem_band)
        with scene:
            monitor.message(scene.product.describe())
            for text in scene.messages:
                monitor.message(text)
            if request.lis and scene.dem_ds is None:
                monitor.message("No DEM given: the snowline and pass 2 of Let It Snow are skipped (pass 1 only).")
            if request.lis:
                result = lis_snow_map(scene, request, monitor)
            else:
                result = threshold_snow_map(scene, request, monitor)
            result.layout = scene.product.layout
            result.messages = list(scene.messages)
            monitor.message(result.summary())
            return result
