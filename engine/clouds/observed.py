"""What was observed: the per-pixel codes of every cloud-removal output, defined once.

Every cloud-removal run writes, beside its image, a one-band ``uint8`` GeoTIFF on the same grid
(by default ``<output>_observed.tif``, :func:`observed_path`) saying where each output value
comes from:

====  =========================================================================================
code  meaning
====  =========================================================================================
0     no data: the input has no valid pixel here (the raster's nodata)
1     observed clear: the input pixel, kept (outside the cloud / shadow mask)
2     filled from a neighbourhood: under the mask, from clear pixels of the same image within
      the fill's search distance (the fill, or a network refining it / reading that context)
3     predicted from Sentinel-1 / terrain: under the mask, by a network that reads a valid
      Sentinel-1 observation of the pixel (and the terrain)
4     filled from another date: under the mask, from a clear observation of another
      acquisition (multi-temporal methods)
5     no information: under the mask with no clear pixel within the search distance, no
      Sentinel-1 and no other date: the value is a guess from far away
====  =========================================================================================

Methods write codes with :func:`single_image_codes` (or their own logic for code 4) and count
them with :class:`ObservedCounts`, whose :meth:`~ObservedCounts.warning` the log and the dock
show when a large share of the scene had no information.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

NODATA = 0
OBSERVED_CLEAR = 1
FILLED_NEIGHBOURHOOD = 2
PREDICTED_SAR_TERRAIN = 3
FILLED_OTHER_DATE = 4
NO_INFORMATION = 5

#: code -> (short label, description, RGB colour for the map legend).
CODES: Dict[int, tuple] = {
    NODATA: ("no data", "the input holds no valid pixel", (0, 0, 0)),
    OBSERVED_CLEAR: ("observed clear", "the input pixel, outside the cloud / shadow mask", (60, 160, 60)),
    FILLED_NEIGHBOURHOOD: ("filled from a neighbourhood",
                           "under the mask, from clear pixels of the same image within the search distance",
                           (240, 200, 60)),
    PREDICTED_SAR_TERRAIN: ("predicted from Sentinel-1 / terrain",
                            "under the mask, by a network reading a valid Sentinel-1 observation (and terrain)",
                            (80, 140, 230)),
    FILLED_OTHER_DATE: ("filled from another date", "under the mask, from a clear pixel of another acquisition",
                        (170, 90, 200)),
    NO_INFORMATION: ("no information", "under the mask, nothing observed within reach: a guess", (220, 40, 40)),
}
#: Share of the valid pixels with no information above which the log and the dock warn.
NO_INFORMATION_WARNING = 0.05
#: Suffix of the companion raster's default name.
SUFFIX = "_observed"

__all__ = ["NODATA", "OBSERVED_CLEAR", "FILLED_NEIGHBOURHOOD", "PREDICTED_SAR_TERRAIN", "FILLED_OTHER_DATE",
           "NO_INFORMATION", "CODES", "NO_INFORMATION_WARNING", "observed_path", "legend", "band_description",
           "single_image_codes", "ObservedCounts"]


def observed_path(output: str, observed: Optional[str] = None) -> str:
    """The companion raster of ``output``: ``observed`` when given, else ``<output stem>_observed.tif``."""
    if observed:
        return str(observed)
    stem, _ = os.path.splitext(str(output))
    return stem + SUFFIX + ".tif"


def legend() -> str:
    """``"0 no data, 1 observed clear, ..."`` for band descriptions, tags and help texts."""
    return ", ".join(f"{code} {label}" for code, (label, _, _) in CODES.items())


def band_description() -> str:
    return "what was observed: " + legend()


def single_image_codes(valid: np.ndarray, masked: Optional[np.ndarray], reached: Optional[np.ndarray] = None,
                       sar: Optional[np.ndarray] = None) -> np.ndarray:
    """Codes of a single-image method: ``valid`` input pixels, ``masked`` (cloud / shadow; None: no mask,
    every valid pixel counts as clear), ``reached`` (a clear pixel within the search distance; None: all),
    ``sar`` (a valid Sentinel-1 observation the network read; None: no Sentinel-1). All (H, W) booleans."""
    codes = np.zeros(valid.shape, np.uint8)
    codes[valid] = OBSERVED_CLEAR
    if masked is None:
        return codes
    under = valid & masked
    near = under if reached is None else under & reached
    codes[under] = NO_INFORMATION
    codes[near] = FILLED_NEIGHBOURHOOD
    if sar is not None:
        codes[under & sar] = PREDICTED_SAR_TERRAIN
    return codes


@dataclass
class ObservedCounts:
    """Pixels per code over a run."""

    counts: Dict[int, int] = field(default_factory=lambda: {code: 0 for code in CODES})

    def add(self, codes: np.ndarray) -> None:
        found = np.bincount(np.asarray(codes, np.uint8).ravel(), minlength=max(CODES) + 1)
        for code in CODES:
            self.counts[code] += int(found[code])

    @property
    def valid(self) -> int:
        return sum(v for k, v in self.counts.items() if k != NODATA)

    def share(self, code: int) -> float:
        """Share of the valid pixels with ``code`` (0 without valid pixels)."""
        return self.counts.get(code, 0) / self.valid if self.valid else 0.0

    def summary(self) -> str:
        return "; ".join(f"{CODES[c][0]} {100 * self.share(c):.1f} %" for c in CODES
                         if c != NODATA and self.counts.get(c))

    def warning(self, threshold: float = NO_INFORMATION_WARNING) -> Optional[str]:
        """A warning when more than ``threshold`` of the valid pixels had no information, else None."""
        share = self.share(NO_INFORMATION)
        if share <= threshold:
            return None
        return (f"Warning: {100 * share:.1f} % of the scene had no information: under the cloud mask with no clear "
                "pixel within the fill's search distance, and no Sentinel-1 or other date to look through it. "
                "Those values are guesses from far away (code 5 of the observed raster); add a Sentinel-1 layer or "
                "use another acquisition there.")
