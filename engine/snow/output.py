"""Writing a snow map (and its fractional snow cover) window by window, with its colours, tags and figures."""
from __future__ import annotations

import contextlib
from typing import Dict, Optional

import numpy as np
from rasterio.windows import Window

from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid
from ..sentinel2.bands import S2Product
from .areas import ClassTally
from .classes import CLASS_COLOURS, CLASSES_TAG, NODATA, SNOWMAP_DESCRIPTION
from .fsc import fsc_writer
from .parameters import SnowParameters
from .requests import SnowMapRequest
from .results import SnowResult


def snow_map_tags(params: SnowParameters, result: SnowResult, product: S2Product) -> Dict[str, str]:
    """The metadata a snow map carries: class names, method, figures, snowline and parameters."""
    tags = {"CLASSES": CLASSES_TAG, "CLASS_100": "snow", "CLASS_0": "no snow", "CLASS_205": "cloud",
            "CLASS_255": "nodata",
            "METHOD": "Let It Snow two-pass" if params.method == "lis" else "single NDSI threshold",
            "SNOW_AREA_KM2": f"{result.snow_area_km2:.6f}", "SNOW_PERCENT": f"{result.snow_percent:.4f}",
            "CLOUD_PERCENT": f"{result.cloud_percent:.4f}", "SOURCE_LAYOUT": product.layout,
            "REFLECTANCE": product.radiometry}
    if params.method == "lis":
        tags["SNOWLINE_M"] = "none" if result.snowline is None else f"{result.snowline:.0f}"
        tags["PARAMETERS"] = (f"ndsi_pass1={params.ndsi_pass1} red_pass1={params.red_pass1} "
                              f"ndsi_pass2={params.ndsi_pass2} red_pass2={params.red_pass2} dz={params.band_height} "
                              f"fsnow_lim={params.fsnow_lim} fclear_lim={params.fclear_lim} "
                              f"fsnow_total_lim={params.fsnow_total_lim} red_darkcloud={params.red_darkcloud} "
                              f"darkcloud_scale={params.darkcloud_scale} red_backtocloud={params.red_backtocloud}")
    else:
        tags["PARAMETERS"] = f"ndsi_threshold={params.ndsi_threshold} red_threshold={params.red_threshold}"
    return tags


class SnowMapOutput:
    """The snow map of ``request`` on ``grid`` being written, with its FSC raster when asked for.

    A context manager: the outputs appear only when the block ends without an error. :meth:`write`
    takes each window's classes (and FSC) and tallies the class areas; :meth:`finish` returns the
    :class:`SnowResult` and writes the colour table and tags.
    """

    def __init__(self, request: SnowMapRequest, grid: Grid) -> None:
        self.request = request
        self.grid = grid
        self.tally = ClassTally()
        self._map_writer = AtomicRasterWriter(request.output, grid, 1, "uint8", NODATA, [SNOWMAP_DESCRIPTION])
        self._fsc_writer = fsc_writer(request.fsc_output, grid, request.fsc_formula) if request.fsc_output else None
        self._stack = contextlib.ExitStack()
        self._map = self._fsc = None

    @property
    def wants_fsc(self) -> bool:
        return self._fsc_writer is not None

    def __enter__(self) -> "SnowMapOutput":
        with contextlib.ExitStack() as stack:
            self._map = stack.enter_context(self._map_writer)
            if self._fsc_writer is not None:
                self._fsc = stack.enter_context(self._fsc_writer)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)

    def write(self, window: Window, classes: np.ndarray, fsc: Optional[np.ndarray] = None) -> None:
        """Write one window of classes (uint8) and FSC (float32, when the FSC raster is written)."""
        self._map.write(classes, 1, window=window)
        if self._fsc is not None:
            self._fsc.write(fsc, 1, window=window)
        self.tally.add_window(classes, self.grid, int(window.row_off))

    def finish(self, product: S2Product, **extra) -> SnowResult:
        """The result of the run (``extra``: the Let It Snow fields), colours and tags written."""
        counts, pixel_area, areas = self.tally.totals(self.grid)
        params = self.request.params
        result = SnowResult(output=str(self.request.output), method=params.method, counts=counts,
                            pixel_area_m2=pixel_area, areas_m2=areas, fsc_output=self.request.fsc_output, **extra)
        self._map.write_colormap(1, CLASS_COLOURS)
        self._map.update_tags(**snow_map_tags(params, result, product))
        return result
