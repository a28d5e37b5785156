"""Networks that start from the classic fill: UNet, CRT-UNet and DSen2-CR refining GDAL FillNodata.

Single-image cloud removal without another date has, under a thick cloud, no observation of the
ground; GDAL ``FillNodata`` (the *fill from the surroundings*, :mod:`topoclear.engine.clouds.methods.fill`)
then spreads the clear pixels around the cloud into it, which is a strong prior on a few hundred
training pairs. These variants take that prior as an input and learn only what the fill misses:

``output = fill + mask * correction``

* **Inputs** (the calling convention of every model plus two keywords): ``s2`` the cloudy image,
  ``mask`` (N, 1, H, W) the cloud / shadow mask (1 = cloud or shadow, 0 = clear; the mask the fill
  used), ``prior`` (N, C, H, W) the fill (the cloudy image outside the mask, the fill inside),
  in the same scaling as ``s2``; ``s1`` and ``terrain`` where the backbone takes them. The
  backbone reads ``cat(s2, prior, mask)``: ``2 C + 1`` optical channels, so under thin cloud it can
  use what the cloudy pixel still shows and under thick cloud fall back on the fill.
* **Output**: the fill plus the backbone's correction, multiplied by the mask: clear pixels are
  the cloudy input (the fill equals it outside the mask), exactly, whatever the weights.
* **Start**: the backbone's last convolution is initialised to zero, so an untrained network
  returns the fill itself: training starts from the classic method's score and the loss only
  sees the masked pixels (elsewhere the output cannot change).
* **Backbones** (the papers' layers; widths are options):

  - :class:`FillPriorUNet` (``unet_fill``): :class:`~topoclear.models.unet.UNet` on the
    ``2 C + 1`` optical channels (+ S1), ``out_bands = C``, no residual. Default widths
    ``(16, 32, 64, 128)``: four levels, receptive radius ``7 * 2**3 - 5 = 51`` px. The fill already
    carries the far context; the network needs the local one (cloud edges, haze, shadows), and
    four levels keep the tile overlap (and so the CPU time over a scene) small.
  - :class:`FillPriorCRTUNet` (``crt_unet_fill``): :class:`~topoclear.models.crt_unet.CRTUNet`
    the same way, terrain injected at the second level as in the paper.
  - :class:`FillPriorDSen2CR` (``dsen2cr_fill``): DSen2-CR's head, residual blocks (scaling 0.1)
    and tail on the ``2 C + 1`` (+ S1) channels, tail to ``C`` bands without the long skip (the
    fill takes its place). Default ``features=32, blocks=8`` (receptive radius 18 px).

The papers' exact configurations stay available as ``unet``, ``crt_unet`` and ``dsen2cr``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .crt_unet import CRTUNet
from .dsen2cr import DSen2CR
from .unet import UNet

#: Default widths of the fill-prior UNets (see the module docstring).
FILL_UNET_WIDTHS = (16, 32, 64, 128)


def _check(name: str, s2: torch.Tensor, mask: Optional[torch.Tensor], prior: Optional[torch.Tensor]) -> None:
    if mask is None or prior is None:
        raise ValueError(f"{name}: needs the keywords mask= (N, 1, H, W) and prior= (N, {s2.shape[1]}, H, W): the "
                         "cloud / shadow mask and the classic fill (topoclear.engine.clouds.methods.fill)")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != s2.shape[-2:]:
        raise ValueError(f"{name}: mask has shape {tuple(mask.shape)}; expected (N, 1, {s2.shape[-2]}, {s2.shape[-1]})")
    if prior.shape != s2.shape:
        raise ValueError(f"{name}: prior has shape {tuple(prior.shape)}; expected the s2 shape {tuple(s2.shape)}")


def _zero(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class FillPriorUNet(nn.Module):
    """UNet correcting the fill inside the mask: ``fill + mask * unet(cat(s2, fill, mask), s1)``."""

    model_name = "unet_fill"

    def __init__(self, s2_bands: int = 10, s1_bands: int = 2, widths: Sequence[int] = FILL_UNET_WIDTHS,
                 terrain_bands: int = 0) -> None:
        super().__init__()
        self.s2_bands, self.s1_bands = int(s2_bands), int(s1_bands)
        if not 2 <= len(widths) <= 4:
            raise ValueError(f"{self.model_name}: 2 to 4 levels (the catalogue's size multiple is 8), got widths "
                             f"{tuple(widths)}")
        self.backbone = self._backbone(widths, terrain_bands)
        self.widths = self.backbone.widths
        _zero(self.backbone.head)

    def _backbone(self, widths, terrain_bands: int) -> nn.Module:
        return UNet(s2_bands=2 * self.s2_bands + 1, s1_bands=self.s1_bands, out_bands=self.s2_bands, widths=widths)

    @property
    def size_multiple(self) -> int:
        return self.backbone.size_multiple

    def correction(self, x: torch.Tensor, s1, terrain) -> torch.Tensor:
        return self.backbone(x, s1)

    def forward(self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, terrain: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, prior: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The cloud-free image: the fill ``prior`` corrected inside ``mask`` (see the module docstring)."""
        _check(self.model_name, s2, mask, prior)
        mask = mask.to(s2.dtype)
        x = torch.cat([s2, prior, mask], dim=1)
        return prior + mask * self.correction(x, s1, terrain)


class FillPriorCRTUNet(FillPriorUNet):
    """CRT-UNet correcting the fill inside the mask (terrain at the second encoder level)."""

    model_name = "crt_unet_fill"

    def __init__(self, s2_bands: int = 10, s1_bands: int = 2, terrain_bands: int = 4,
                 widths: Sequence[int] = FILL_UNET_WIDTHS) -> None:
        super().__init__(s2_bands=s2_bands, s1_bands=s1_bands, widths=widths, terrain_bands=terrain_bands)
        self.terrain_bands = terrain_bands

    def _backbone(self, widths, terrain_bands: int) -> nn.Module:
        return CRTUNet(s2_bands=2 * self.s2_bands + 1, s1_bands=self.s1_bands, terrain_bands=terrain_bands,
                       out_bands=self.s2_bands, widths=widths)

    def correction(self, x: torch.Tensor, s1, terrain) -> torch.Tensor:
        return self.backbone(x, s1, terrain)


class FillPriorDSen2CR(nn.Module):
    """DSen2-CR correcting the fill inside the mask (no long skip: the fill takes its place)."""

    model_name = "dsen2cr_fill"
    size_multiple = 1

    def __init__(self, s2_bands: int = 10, s1_bands: int = 2, features: int = 32, blocks: int = 8) -> None:
        super().__init__()
        self.s2_bands, self.s1_bands = int(s2_bands), int(s1_bands)
        self.backbone = DSen2CR(s2_bands=2 * self.s2_bands + 1, s1_bands=self.s1_bands, features=features,
                                blocks=blocks, out_bands=self.s2_bands, long_skip=False)
        self.body = self.backbone.body  # for the receptive field
        _zero(self.backbone.tail)

    def forward(self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, terrain: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, prior: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The cloud-free image: the fill ``prior`` corrected inside ``mask``."""
        _check(self.model_name, s2, mask, prior)
        mask = mask.to(s2.dtype)
        x = torch.cat([s2, prior, mask], dim=1)
        return prior + mask * self.backbone(x, s1)
