"""The outputs of a multi-temporal cloud removal besides the image: the SOURCE raster (which date or method
filled each pixel, its legend in the metadata) and the "what was observed" codes (:mod:`.observed`)."""
from __future__ import annotations

import json
from typing import Dict, Optional, Sequence

import numpy as np

from ..io.atomic import AtomicRasterWriter
from .observed import FILLED_NEIGHBOURHOOD, FILLED_OTHER_DATE, NO_INFORMATION, OBSERVED_CLEAR
from .observed import NODATA as OBSERVED_NODATA
from .timeseries_fill import MAX_AUXILIARY, SOURCE_FALLBACK, SOURCE_NETWORK, SOURCE_NODATA, SOURCE_OBSERVED
from .timeseries_inputs import DatedPath

__all__ = ["SOURCE_TAG", "source_legend", "observed_codes", "SourceWriter"]

#: Metadata tag of the SOURCE raster holding its codes and labels (JSON).
SOURCE_TAG = "TOPOCLEAR_SOURCE_CODES"


def source_legend(target: DatedPath, aux: Sequence[DatedPath], network_title: Optional[str] = None) -> Dict[int, str]:
    """{code: label} of a SOURCE raster."""
    legend = {SOURCE_OBSERVED: f"observed clear ({target.date}, the target)"}
    for k, a in enumerate(aux, start=1):
        legend[k] = f"{a.date} ({a.role}, {(a.date - target.date).days:+d} days)"
    if network_title:
        legend[SOURCE_NETWORK] = f"predicted by {network_title}"
    legend[SOURCE_FALLBACK] = "single-image fill (clear on no other date)"
    legend[SOURCE_NODATA] = "nodata, or cloudy and not filled (nothing clear to fill from)"
    return legend


def observed_codes(code: np.ndarray, valid: np.ndarray, cloudy: np.ndarray, unreached: Optional[np.ndarray]
                   ) -> np.ndarray:
    """The "what was observed" codes (:mod:`.observed`) of a window from its SOURCE codes of the time-series
    fill: clear on another date (4), the single-image fill within reach (2) or not (5), observed (1), no data (0).
    A network's pixels take the codes of what it could see there, the time-series fill's."""
    out = np.full(code.shape, OBSERVED_NODATA, np.uint8)
    out[valid] = OBSERVED_CLEAR
    under = valid & cloudy
    out[under] = NO_INFORMATION
    out[under & (code >= 1) & (code <= MAX_AUXILIARY)] = FILLED_OTHER_DATE
    near = under & (code == SOURCE_FALLBACK)
    if unreached is not None:
        near &= ~unreached
    out[near] = FILLED_NEIGHBOURHOOD
    return out


class SourceWriter:
    """The SOURCE GeoTIFF (Byte, nodata 255) with its legend in the metadata; a no-op without a path."""

    def __init__(self, path: Optional[str], grid, legend: Dict[int, str]) -> None:
        self.path = path
        self.legend = legend
        self._writer = None
        if path:
            text = "source of each pixel: " + "; ".join(f"{k} {v}" for k, v in sorted(legend.items()))
            self._writer = AtomicRasterWriter(path, grid, 1, "uint8", SOURCE_NODATA, [text[:1000]])

    def __enter__(self):
        if self._writer is None:
            return None
        dst = self._writer.__enter__()
        dst.update_tags(**{SOURCE_TAG: json.dumps({str(k): v for k, v in sorted(self.legend.items())})})
        return dst

    def __exit__(self, *exc):
        if self._writer is not None:
            return self._writer.__exit__(*exc)
        return False
