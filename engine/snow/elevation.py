"""Elevations of a snow run: the DEM as read, the pixel counts per elevation band, the Let It Snow snowline.

The DEM must be in metres; elevations beyond +-16000 m are nodata (they do not fit the 2-byte
pass-1 codes of :mod:`.lis`, and no terrain on Earth reaches them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..io.raster import Grid, nodata_to_nan
from ..io.warp import warp_window
from .rawvalues import nodata_cells

#: Elevations (m) at or beyond this magnitude are nodata.
ELEVATION_VALID = 16000.0


def elevations(values: np.ndarray, nodata) -> Tuple[np.ndarray, np.ndarray]:
    """(elevations, valid) of DEM ``values`` as read: integer DEMs of up to 2 bytes as int32 (no
    float conversion), others as float32 with NaN for nodata."""
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 2:
        z = values.astype(np.int32)
        ok = np.abs(z) < int(ELEVATION_VALID)
        missing = nodata_cells(values, nodata)
        if missing is not None:
            ok &= ~missing
        return z, ok
    z = nodata_to_nan(values.view(np.ndarray).astype(np.float32), nodata)
    return z, np.abs(z) < ELEVATION_VALID  # NaN compares False


def read_dem(ds: rasterio.DatasetReader, band: int, grid: Grid, window: Window) -> np.ndarray:
    """DEM aligned bilinearly onto ``window`` of ``grid``; elevations beyond the valid range are NaN."""
    z = warp_window(ds, band, grid, window, Resampling.bilinear)
    z[~(np.abs(z) < ELEVATION_VALID)] = np.nan
    return z


@dataclass
class ElevationBand:
    """Pixel counts of one elevation band [z_min, z_max)."""

    z_min: float
    z_max: float
    total: int
    snow: int
    no_snow: int
    cloud: int

    @property
    def centre(self) -> float:
        return 0.5 * (self.z_min + self.z_max)

    @property
    def clear(self) -> int:
        return self.snow + self.no_snow

    @property
    def snow_fraction(self) -> float:
        """Snow fraction of the cloud-free pixels (NaN without any)."""
        return self.snow / self.clear if self.clear else float("nan")


class ElevationCounts:
    """Counts of (no snow, snow, cloud) pixels per 1 m elevation step, grown as values arrive."""

    def __init__(self) -> None:
        self.lo: Optional[int] = None
        self.counts = np.zeros((0, 3), dtype=np.int64)

    def add(self, z: np.ndarray, category: np.ndarray, mask: Optional[np.ndarray] = None) -> None:
        """``z``: elevations; ``category``: 0 no snow, 1 snow, 2 cloud (same shape); only the
        cells where ``mask`` is True (all when None; they must have finite ``z``)."""
        if mask is not None and not mask.all():
            z, category = z[mask], category[mask]
        if z.size == 0:
            return
        zi = z.astype(np.int32) if z.dtype.kind in "iu" else np.floor(z).astype(np.int32)
        lo, hi = int(zi.min()), int(zi.max())
        zi -= np.int32(lo)
        zi *= np.int32(3)
        zi += category
        part = np.bincount(zi.ravel(), minlength=(hi - lo + 1) * 3)
        self.merge_counts(lo, part.reshape(-1, 3))

    def merge_counts(self, lo: int, counts: np.ndarray) -> None:
        """Add ``counts`` (rows of no snow, snow, cloud) of the 1 m steps from elevation ``lo``."""
        if counts.size == 0:
            return
        if self.lo is None:
            self.lo, self.counts = lo, counts.astype(np.int64).copy()
            return
        new_lo = min(self.lo, lo)
        new_hi = max(self.lo + len(self.counts), lo + len(counts))
        if new_lo != self.lo or new_hi != self.lo + len(self.counts):
            grown = np.zeros((new_hi - new_lo, 3), dtype=np.int64)
            grown[self.lo - new_lo:self.lo - new_lo + len(self.counts)] = self.counts
            self.lo, self.counts = new_lo, grown
        self.counts[lo - self.lo:lo - self.lo + len(counts)] += counts

    def merge(self, other: "ElevationCounts") -> None:
        if other.lo is not None:
            self.merge_counts(other.lo, other.counts)

    @property
    def empty(self) -> bool:
        return self.lo is None or int(self.counts.sum()) == 0

    def bands(self, height: int, anchor: str = "minimum") -> List[ElevationBand]:
        """Bands ``height`` m high starting at the lowest elevation (``"minimum"``, LIS) or at a
        multiple of ``height`` (``"round"``: 1200-1300, 1300-1400... comparable between scenes)."""
        if self.empty:
            return []
        nonzero = np.nonzero(self.counts.sum(axis=1))[0]
        first, last = self.lo + int(nonzero[0]), self.lo + int(nonzero[-1])
        z0 = first if anchor == "minimum" else int(math.floor(first / height) * height)
        count = (last - z0) // height + 1
        out = []
        for i in range(count):
            a, b = z0 + i * height - self.lo, z0 + (i + 1) * height - self.lo
            block = self.counts[max(a, 0):max(b, 0)].sum(axis=0)
            no_snow, snow, cloud = (int(v) for v in block)
            out.append(ElevationBand(float(z0 + i * height), float(z0 + (i + 1) * height), no_snow + snow + cloud,
                                     snow, no_snow, cloud))
        return out


def find_snowline(bands: Sequence[ElevationBand], fsnow_lim: float = 0.10, fclear_lim: float = 0.10,
                  offset: int = 2) -> Optional[float]:
    """LIS snowline: lower edge of the band ``offset`` below the first band (scanning upward) whose
    cloud-free fraction > ``fclear_lim`` and snow fraction of the cloud-free pixels > ``fsnow_lim``."""
    for i, band in enumerate(bands):
        if band.total == 0 or band.clear == 0:
            continue
        if band.clear / band.total > fclear_lim and band.snow / band.clear > fsnow_lim:
            return bands[max(i - offset, 0)].z_min
    return None
