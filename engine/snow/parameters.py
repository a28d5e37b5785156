"""What a snow map run can be asked for: the method and its thresholds, and where the cloud mask comes from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..clouds.masks.kinds import MaskMethod, mask_method
from ..errors import InputError

#: The snow map methods: Let It Snow's two passes, or a single NDSI threshold.
METHODS = ("lis", "threshold")
#: What the automatic cloud mask is for the snow map (the mask engine's choice; never the DSen2-CR rules).
AUTO_CLOUD_DESCRIPTION = ("the mask raster when one is given (read as SCL when its name says SCL), else the "
                          "product's SCL band when one is found beside the bands, else the pretrained detector "
                          "(when installed and B2, B3, B4, B8 are there), else no mask; the log says which and why")


@dataclass(frozen=True)
class SnowParameters:
    """Thresholds of both methods (reflectances 0-1, NDSI -1..1); LIS operational defaults."""

    method: str = "lis"
    ndsi_threshold: float = 0.40
    red_threshold: Optional[float] = 0.20
    ndsi_pass1: float = 0.40
    red_pass1: float = 0.20
    ndsi_pass2: float = 0.15
    red_pass2: float = 0.04
    band_height: int = 100
    fsnow_lim: float = 0.10
    fclear_lim: float = 0.10
    fsnow_total_lim: float = 0.001
    red_darkcloud: float = 0.30
    red_backtocloud: float = 0.10
    darkcloud_scale: float = 240.0

    def validate(self) -> "SnowParameters":
        """These parameters, or :class:`InputError` naming the first one out of its range."""
        if self.method not in METHODS:
            raise InputError(f"snow method {self.method!r} is not one of {METHODS}")
        for name in ("ndsi_threshold", "ndsi_pass1", "ndsi_pass2"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise InputError(f"{name} = {value}: an NDSI threshold must lie in [-1, 1]")
        check_band_height(self.band_height)
        for name in ("fsnow_lim", "fclear_lim", "fsnow_total_lim"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} = {value}: a fraction must lie in [0, 1]")
        if self.darkcloud_scale < 0:
            raise InputError(f"dark-cloud scale {self.darkcloud_scale} m must be >= 0")
        return self


def check_band_height(height: float) -> None:
    """:class:`InputError` unless ``height`` (m) is a whole number of metres >= 1."""
    if int(height) != height or height < 1:
        raise InputError(f"elevation band height {height} m: give a whole number of metres >= 1")


@dataclass(frozen=True)
class CloudInput:
    """Where the cloud mask comes from.

    ``kind``: a key of :func:`~topoclear.engine.clouds.masks.kinds.mask_methods` ``("snow")``:
    ``"auto"`` (see :data:`AUTO_CLOUD_DESCRIPTION`), ``"scl"`` (an L2A scene classification raster:
    3 shadow, 8/9 cloud, 10 cirrus, 0 no data; the product's own when ``path`` is None),
    ``"raster"`` (any raster: 0 clear, 2 shadow, other values cloud, its nodata not cloud),
    ``"detector"`` (the pretrained ukis-csmask detector on the image's bands) or ``"none"``. The
    classes come from the cloud mask engine (:mod:`~topoclear.engine.snow.scene`).
    """

    kind: str = "auto"
    path: Optional[str] = None
    band: int = 1

    @property
    def method(self) -> MaskMethod:
        """The mask method ``kind`` names; :class:`InputError` when the snow map does not offer it."""
        return mask_method(self.kind, "snow")
