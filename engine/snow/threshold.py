"""The single-threshold snow map.

Snow where the pixel is not cloud, NDSI > ``ndsi_threshold`` and (unless disabled) red >
``red_threshold``. The red test removes water, whose NDSI is often high but which is dark in the
red band. Every pixel of the cloud mask (cloud and shadow) is cloud (nothing is released).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..clouds.masks.kinds import DETECTOR
from ..io.windows import run_windows
from ..progress import Monitor
from .classes import CLOUD, NO_SNOW, NODATA, SNOW
from .fsc import fsc_of_map
from .grid import strip_windows
from .output import SnowMapOutput
from .parameters import SnowParameters
from .requests import SnowMapRequest
from .results import SnowResult
from .scene import SnowScene, read_window
from .spectra import Spectra


def threshold_classes(data: Spectra, params: SnowParameters) -> np.ndarray:
    """Snow map classes (uint8) of one window with the single NDSI threshold."""
    all_cloud, _, _ = data.cloud_masks()
    snow = data.ndsi > params.ndsi_threshold
    if params.red_threshold is not None:
        snow &= data.red_above(params.red_threshold)
    classes = np.full(data.ndsi.shape, NO_SNOW, dtype=np.uint8)
    if all_cloud is not None:
        snow &= ~all_cloud
        classes[all_cloud] = CLOUD
    classes[snow] = SNOW
    classes[~data.valid] = NODATA
    return classes


def threshold_snow_map(scene: SnowScene, request: SnowMapRequest, monitor: Monitor) -> SnowResult:
    """Write the single-threshold snow map of ``scene`` (one windowed pass, after the detector's
    whole-scene pass (progress 0-30 %) when it is the cloud mask)."""
    grid = scene.grid
    windows = strip_windows(grid, request.window_rows, scene.reader.dataset("B3"))
    start = 0.0
    if scene.cloud_kind == DETECTOR.key:
        start = 30.0
        scene.prepare_mask(monitor.sub(0, start))
    with SnowMapOutput(request, grid) as output:
        def compute(window, raw) -> Tuple[np.ndarray, Optional[np.ndarray]]:
            data = Spectra(scene, raw)
            classes = threshold_classes(data, request.params)
            fsc = fsc_of_map(classes, data.ndsi, request.fsc_formula) if output.wants_fsc else None
            return classes, fsc

        run_windows(windows, lambda window: read_window(scene, window, False), compute,
                    lambda window, result: output.write(window, *result), monitor.sub(start, 100))
        return output.finish(scene.product)
