"""What a cloud-removal run did: :class:`CloudRemovalReport` (all figures for the log) and the
:class:`TileStats` counted while the output is written."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .observed import ObservedCounts


@dataclass
class TileStats:
    """Pixels and tiles counted over one pass of the tile plan."""

    tiles: int = 0
    tile: Tuple[int, int] = (0, 0)
    overlap: int = 0
    skipped: int = 0
    valid: int = 0
    cloud: int = 0
    kept: int = 0
    blender_peak: int = 0
    counts: Optional[ObservedCounts] = None


@dataclass
class CloudRemovalReport:
    """What a run did (all figures for the log)."""

    output: str
    model: str
    device: str
    amp: bool
    amp_difference: Optional[float]
    tile: Tuple[int, int]
    overlap: int
    mode: str
    batch_size: int
    tiles: int
    tiles_skipped: int
    width: int
    height: int
    valid_pixels: int
    cloud_pixels: Optional[int]
    kept_pixels: int
    seconds: float
    s1_filled: Optional[float] = None
    terrain_filled: Optional[float] = None
    messages: List[str] = field(default_factory=list)
    peak_device_memory: Optional[int] = None
    blender_peak_bytes: int = 0
    observed: Optional[str] = None
    observed_counts: Optional[ObservedCounts] = None
    method: str = ""

    @property
    def no_information_warning(self) -> Optional[str]:
        """The warning of :meth:`ObservedCounts.warning` (a large share of the scene had no information)."""
        return self.observed_counts.warning() if self.observed_counts is not None else None

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)

    @property
    def cloud_percent(self) -> Optional[float]:
        """Cloud and shadow as a percentage of the valid pixels; None without a cloud mask."""
        if self.cloud_pixels is None or not self.valid_pixels:
            return None
        return 100.0 * self.cloud_pixels / self.valid_pixels

    def summary(self) -> str:
        lines = [f"Cloud removal with {self.model} on {self.device}"
                 + (f", mixed precision (float16, within {self.amp_difference:.2g} of float32)" if self.amp else ""),
                 f"  {self.width}x{self.height} px in {self.seconds:.1f} s ({self.megapixels_per_second:.3f} Mpx/s); "
                 f"{self.tiles} tiles of {self.tile[0]}x{self.tile[1]} px ({self.tiles_skipped} all-nodata skipped), "
                 f"overlap {self.overlap} px ({self.mode}), batch {self.batch_size}"]
        if self.cloud_pixels is not None and self.valid_pixels:
            lines.append(f"  cloud/shadow {100 * self.cloud_pixels / self.valid_pixels:.1f} % of the valid pixels; "
                         f"{self.kept_pixels} clear pixels copied from the input")
        if self.s1_filled:
            lines.append(f"  Sentinel-1 missing (filled) on {100 * self.s1_filled:.2f} % of the tile pixels")
        if self.terrain_filled:
            lines.append(f"  DEM missing (filled) on {100 * self.terrain_filled:.2f} % of the tile pixels")
        if self.peak_device_memory:
            lines.append(f"  peak GPU memory {self.peak_device_memory / 2**30:.2f} GiB")
        if self.observed_counts is not None and self.observed_counts.valid:
            lines.append(f"  what was observed: {self.observed_counts.summary()}")
        lines.append(f"  output: {self.output}")
        if self.observed:
            lines.append(f"  observed codes: {self.observed}")
        warning = self.no_information_warning
        if warning:
            lines.append(warning)
        return "\n".join(lines)
