"""One window ready for the snow tests: NDSI, valid pixels, the red band, the cloud mask and elevations."""
from __future__ import annotations

import numpy as np

from .cloudmask import cloud_masks
from .darkclouds import dark_clouds
from .elevation import elevations
from .ndsi import window_ndsi
from .rawvalues import above
from .scene import SnowScene


class Spectra:
    """A window of :func:`~.scene.read_window` converted on a worker thread.

    ``ndsi`` (float32, NaN = nodata), ``valid`` (green, red and SWIR1 hold data), the red band kept
    in its own units (integer DN are tested against thresholds converted to DN, never converted),
    ``classes`` (the cloud mask engine's classes) or None, ``scl`` (raw SCL codes, nodata) or None,
    and ``dem`` / ``dem_valid`` (elevations: int32 for integer DEMs read as they are, else float32)
    or None.
    """

    def __init__(self, scene: SnowScene, data: dict) -> None:
        reader = scene.reader
        self._reader = reader
        self.ndsi, valid = window_ndsi(reader, data["B3"], data["B11"])
        self._red, r_valid = reader.dn_and_valid("B4", data["B4"], as_float=False)
        if r_valid is not None:
            valid = r_valid if valid is None else valid & r_valid
        self.valid = valid if valid is not None else np.ones(self.ndsi.shape, dtype=bool)
        self.classes = data.get("classes")
        self.scl = data.get("scl")
        self._red_block = data.get("red_block") or (data["B4"], 0)
        self.dem = self.dem_valid = None
        if "dem" in data:
            self.dem, self.dem_valid = elevations(*data["dem"])

    def red_above(self, reflectance: float) -> np.ndarray:
        """Where red reflectance > ``reflectance``."""
        return above(self._red, self._reader.dn_threshold("B4", reflectance))

    def dark_clouds(self, clouds: np.ndarray, block: int, limit: float) -> np.ndarray:
        """Which of the ``clouds`` cells have a mean red reflectance below ``limit`` over their
        ``block`` x ``block`` block (:func:`~.darkclouds.dark_clouds`)."""
        return dark_clouds(self._reader, self._red_block, clouds, block, limit)

    def cloud_masks(self):
        """(all clouds, hard clouds, SCL nodata) of the window (:func:`~.cloudmask.cloud_masks`);
        SCL nodata is also removed from :attr:`valid`."""
        all_cloud, held, scl_nodata = cloud_masks(self.classes, self.scl)
        if scl_nodata is not None:
            self.valid &= ~scl_nodata
        return all_cloud, held, scl_nodata
