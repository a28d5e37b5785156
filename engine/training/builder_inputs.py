"""What the dataset builder takes and returns: the scenes, the build options and the summary.

See :mod:`topoclear.engine.training.dataset_builder` for the rules these options drive.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

from ...models.bands import S1_BANDS, TERRAIN_BANDS
from ..errors import InputError
from .manifest import SPLITS

__all__ = ["ROLES", "DEFAULT_FRACTIONS", "SceneInputs", "BuildOptions", "DatasetSummary"]

#: Raster roles of a scene, and the folder (and file suffix) of each in the output.
ROLES: Dict[str, Tuple[str, str]] = OrderedDict([
    ("cloudy", ("s2_cloudy", "")),
    ("target", ("s2_clear", "")),
    ("s1", ("s1", "")),
    ("terrain", ("terrain", "")),
    ("cloud_mask", ("masks", "_cloud")),
    ("shadow_mask", ("masks", "_shadow")),
])
#: Train / validation / test fractions of CRT-UNet.
DEFAULT_FRACTIONS: Tuple[float, float, float] = (0.80, 0.15, 0.05)


@dataclass
class SceneInputs:
    """The rasters of one scene, all on the grid of ``cloudy`` (the Sentinel-2 grid).

    Attributes:
        name: unique scene name (prefix of its patch ids; letters, digits, ``-`` and ``_``).
        cloudy, target: cloudy and cloud-free Sentinel-2 stacks (reflectance x 10000).
        s1, terrain, cloud_mask, shadow_mask: optional aligned stacks (S1 in dB; terrain as
            written by the terrain stack tool; masks 1 on cloud / shadow).
        land_mask: optional raster, non-zero on land; patches must be all land.
        group: scenes of the same ground; scenes whose footprints intersect are grouped anyway.
        source: stratum of the split and ``source`` of the manifest (e.g. ``"real"``).
        split: force every patch of the scene into ``train``, ``val``, ``test`` or ``exclude``.
        s2_bands: band names of the S2 stacks (default: from descriptions or band count).
        s1_bands, terrain_bands: band names (default VV, VH and the terrain stack's four).
        s2_offset: added to S2 values by the reader (-1000 from processing baseline 04.00).
        notes: free text copied into every sample of the scene.
        max_water_fraction: the water test of this scene (None: the build option's); 1 disables it.
    """

    name: str
    cloudy: str
    target: str
    s1: Optional[str] = None
    terrain: Optional[str] = None
    cloud_mask: Optional[str] = None
    shadow_mask: Optional[str] = None
    land_mask: Optional[str] = None
    group: Optional[str] = None
    source: str = "custom"
    split: Optional[str] = None
    s2_bands: Optional[Sequence[str]] = None
    s1_bands: Sequence[str] = S1_BANDS
    terrain_bands: Sequence[str] = TERRAIN_BANDS
    s2_offset: float = 0.0
    notes: str = ""
    max_water_fraction: Optional[float] = None

    def rasters(self) -> Dict[str, str]:
        """Role -> path of the stacks given (without the land mask)."""
        return {r: str(getattr(self, r)) for r in ROLES if getattr(self, r)}


@dataclass(frozen=True)
class BuildOptions:
    """How patches are cut and split (see the module docstring)."""

    patch_size: int = 256
    fractions: Tuple[float, float, float] = DEFAULT_FRACTIONS
    block_patches: int = 2
    seed: int = 0
    max_water_fraction: Optional[float] = None
    compress: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise InputError(f"patch size must be at least 8 px, got {self.patch_size}")
        if self.block_patches < 1:
            raise InputError(f"block size must be at least 1 patch, got {self.block_patches}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or sum(self.fractions) <= 0:
            raise InputError(f"fractions must be three non-negative numbers (train, val, test), got {self.fractions}")
        if self.max_water_fraction is not None and not 0.0 <= self.max_water_fraction <= 1.0:
            raise InputError(f"max water fraction must lie in [0, 1], got {self.max_water_fraction}")

    @property
    def normalised_fractions(self) -> Tuple[float, float, float]:
        total = float(sum(self.fractions))
        return tuple(f / total for f in self.fractions)  # type: ignore[return-value]


@dataclass
class DatasetSummary:
    """What :func:`build_dataset` wrote."""

    manifest: str
    counts: Dict[str, Dict[str, int]]  # source -> split -> patches
    rejected: Dict[str, int]  # reason -> patches
    scenes: int
    groups: int
    blocks: int
    bytes_written: int

    @property
    def total(self) -> int:
        return sum(sum(v.values()) for v in self.counts.values())

    def as_dict(self) -> dict:
        out = asdict(self)
        out["total"] = self.total
        return out

    def text(self) -> str:
        lines = [f"{self.total} patches from {self.scenes} scenes ({self.groups} ground groups, {self.blocks} "
                 f"spatial blocks), {self.bytes_written / 2 ** 20:.1f} MiB -> {self.manifest}"]
        for source, splits in self.counts.items():
            parts = ", ".join(f"{s} {splits.get(s, 0)}" for s in SPLITS if splits.get(s, 0))
            lines.append(f"  {source}: {parts}")
        if self.rejected:
            lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())))
        return "\n".join(lines)
