"""CRT-UNet: the baseline UNet with a terrain stack injected at the second encoder level.

Boumahdi et al. (seed 000) concatenate DEM, slope, aspect and hillshade "in the second layer of
the encoder", after the first low-level features and before deeper semantics, following the
DEM injection of Cresson et al.'s decloud UNet (their reference [30]). Their DEM was resampled
to 20 m, i.e. half the 10 m resolution of the S2/S1 inputs.

Choices the paper leaves open (the rest of the network is :class:`~topoclear.models.unet.UNet`,
whose docstring lists its own):

* The terrain channels are concatenated, unprocessed, to the max-pooled level-1 features at the
  input of the level-2 :class:`~topoclear.models.unet.DoubleConv`; they therefore reach the
  decoder only through that level's features. Cost: ``terrain_bands x 3 x 3 x widths[1]``
  weights, 2,304 with the defaults, so 22,361,146 parameters in all for 10 S2 + 2 S1 inputs,
  4 terrain bands and 10 outputs (Table I: 22.328 M vs 22.325 M for the UNet).
* The terrain tensor may come at full resolution (H, W): it is then 2x2 average-pooled to the
  level-2 grid (an area average, like resampling 10 m to 20 m); or at half resolution
  (H/2, W/2), e.g. a DEM already on a 20 m grid: it is used as is.
* Channel order and names: ``("elevation", "slope", "aspect", "hillshade")`` (the band order of
  ``engine.terrain_stack``; "dem" is accepted as an alias of "elevation"), scaled by
  :func:`topoclear.models.scaling.scale_terrain` to [0, 1].
* Ablation (Table III, "zeroing out DEM/aspect/slope/hillshade"): ``forward(...,
  zero_terrain=...)`` sets the listed channels to 0 in the network's scaled units before use,
  exactly as if a terrain tensor with those channels at 0 had been passed.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .bands import TERRAIN_BANDS
from .scaling import canonical_terrain_name
from .unet import DEFAULT_WIDTHS, UNet, require_input

ZeroSpec = Union[None, bool, str, int, Iterable[Union[str, int]]]


class CRTUNet(UNet):
    """UNet + terrain (DEM, slope, aspect, hillshade) at half resolution on the second level.

    Args:
        s2_bands, s1_bands, out_bands, widths, residual: as for :class:`UNet`.
        terrain_bands: number of terrain channels (4 in the paper).
        terrain_names: name of each terrain channel (used by ``zero_terrain``); defaults to
            :data:`TERRAIN_BANDS` when ``terrain_bands == 4``, else ``terrain_1``...
    """

    model_name = "crt_unet"

    def __init__(
        self,
        s2_bands: int = 10,
        s1_bands: int = 2,
        terrain_bands: int = 4,
        out_bands: Optional[int] = None,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        residual: bool = False,
        terrain_names: Optional[Sequence[str]] = None,
    ) -> None:
        if terrain_bands < 1:
            raise ValueError("crt_unet: terrain_bands must be >= 1 (use 'unet' for a model without terrain)")
        super().__init__(
            s2_bands=s2_bands,
            s1_bands=s1_bands,
            out_bands=out_bands,
            widths=widths,
            residual=residual,
            injected_channels=terrain_bands,
        )
        self.terrain_bands = terrain_bands
        if terrain_names is None:
            terrain_names = TERRAIN_BANDS if terrain_bands == len(TERRAIN_BANDS) else [
                f"terrain_{i + 1}" for i in range(terrain_bands)
            ]
        if len(terrain_names) != terrain_bands:
            raise ValueError(f"crt_unet: {len(terrain_names)} terrain names given for {terrain_bands} terrain bands")
        self.terrain_names = tuple(canonical_terrain_name(n) for n in terrain_names)

    def terrain_indices(self, zero_terrain: ZeroSpec) -> Tuple[int, ...]:
        """Channel indices selected by ``zero_terrain`` (names, indices, ``True``/``"all"``)."""
        if zero_terrain is None or zero_terrain is False:
            return ()
        if zero_terrain is True or (isinstance(zero_terrain, str) and zero_terrain.lower() == "all"):
            return tuple(range(self.terrain_bands))
        items = [zero_terrain] if isinstance(zero_terrain, (str, int)) else list(zero_terrain)
        indices = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                if not 0 <= item < self.terrain_bands:
                    raise ValueError(f"crt_unet: terrain index {item} out of range 0..{self.terrain_bands - 1}")
                indices.append(item)
                continue
            key = canonical_terrain_name(str(item))
            if key not in self.terrain_names:
                raise ValueError(
                    f"crt_unet: unknown terrain channel {item!r}; channels are {', '.join(self.terrain_names)}"
                )
            indices.append(self.terrain_names.index(key))
        return tuple(sorted(set(indices)))

    def prepare_terrain(
        self, terrain: torch.Tensor, height: int, width: int, zero_terrain: ZeroSpec = None
    ) -> torch.Tensor:
        """Zero the selected channels and bring the stack to the level-2 grid (H/2, W/2)."""
        terrain = require_input(terrain, "terrain", self.terrain_bands, self.model_name)
        indices = self.terrain_indices(zero_terrain)
        if indices:
            keep = torch.ones(self.terrain_bands, dtype=terrain.dtype, device=terrain.device)
            keep[list(indices)] = 0
            terrain = terrain * keep.view(1, -1, 1, 1)
        size = tuple(terrain.shape[-2:])
        if size == (height, width):
            return F.avg_pool2d(terrain, kernel_size=2, stride=2)
        if size == (height // 2, width // 2):
            return terrain
        raise ValueError(
            f"crt_unet: terrain is {size[0]}x{size[1]} px; expected the S2 size {height}x{width} "
            f"or half of it {height // 2}x{width // 2}"
        )

    def forward(
        self,
        s2: torch.Tensor,
        s1: Optional[torch.Tensor] = None,
        terrain: Optional[torch.Tensor] = None,
        zero_terrain: ZeroSpec = None,
    ) -> torch.Tensor:
        """Predict the cloud-free S2 image.

        Args:
            s2: cloudy Sentinel-2, (N, s2_bands, H, W), "unit" scaling.
            s1: Sentinel-1, (N, s1_bands, H, W); required when ``s1_bands > 0``.
            terrain: (N, terrain_bands, H, W) or (N, terrain_bands, H/2, W/2), scaled terrain.
            zero_terrain: channels to set to 0 for the ablation: names (``"dem"``, ``"slope"``,
                ...), indices, or ``True``/``"all"``.
        """
        x = self._stack_inputs(s2, s1)
        injected = self.prepare_terrain(terrain, x.shape[-2], x.shape[-1], zero_terrain)
        out = self._run(x, injected)
        return out + s2 if self.residual else out
