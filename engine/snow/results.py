"""What a snow map run produced and measured."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .areas import ClassAreas
from .classes import NODATA
from .elevation import ElevationBand


@dataclass
class SnowResult(ClassAreas):
    """The snow map written, its class counts and areas and (Let It Snow) the snowline."""

    output: str
    method: str
    counts: Dict[int, int]
    pixel_area_m2: float
    areas_m2: Dict[int, float]
    snowline: Optional[float] = None
    snowline_note: str = ""
    pass1_bands: List[ElevationBand] = field(default_factory=list)
    pass1_snow_fraction: float = 0.0
    fsc_output: Optional[str] = None
    layout: str = ""
    messages: List[str] = field(default_factory=list)

    @property
    def valid_pixels(self) -> int:
        return sum(v for k, v in self.counts.items() if k != NODATA)

    def summary(self) -> str:
        line = (f"snow {self.snow_area_km2:.3f} km2 ({self.snow_percent:.2f} % of the valid area), "
                f"cloud {self.cloud_percent:.2f} %")
        if self.method == "lis":
            line += ", snowline " + (f"{self.snowline:.0f} m" if self.snowline is not None
                                     else f"none ({self.snowline_note or 'not found'})")
        return line
