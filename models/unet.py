"""Baseline UNet for Sentinel-2 cloud removal from cloudy S2 + Sentinel-1 SAR.

The baseline of CRT-UNet (Boumahdi et al., seed 000, Table I: 22.325 M parameters, 10 h of
training). The paper describes the layout (section III-A) but gives no widths, so this module
fixes them as follows; every choice the paper leaves open is listed here.

Layout (Ronneberger et al. 2015, as CRT-UNet section III-A describes it):

* encoder level = two 3x3 convolutions, each followed by ReLU; between levels a 2x2 max-pool
  (stride 2); the number of channels doubles at each downsampling step;
* decoder level = 2x2 transposed convolution, stride 2 ("up-convolution") that halves the
  channels, concatenation with the encoder features of the same level, two 3x3 convolutions
  + ReLU;
* a final 1x1 convolution maps to the Sentinel-2 output bands, with no activation (the target
  is a scaled reflectance, not a class score).

Choices the paper leaves open:

* Padding: zero "same" padding, so no cropping is needed and output size = input size (the
  original UNet used unpadded convolutions and cropped the skips).
* Depth: six levels, i.e. five 2x downsamplings (a 256 px patch reaches an 8 px bottleneck),
  the depth of Cresson et al.'s decloud UNet, the paper's reference [30].
* Widths: ``(32, 64, 128, 256, 512, 616)``. The doubling rule fixes every level from the first
  width (32); the bottleneck width is the one free number and is set to 616 (a multiple of 8)
  so that the total lands on Table I. With 12 inputs (10 S2 + 2 S1) and 10 outputs this UNet
  has **22,358,842** parameters (Table I: 22.325 M, +0.15 %). The first width 32 makes the
  first convolution of the second level 64 filters wide, so the four terrain channels that
  CRT-UNet concatenates there cost 4 x 3 x 3 x 64 = 2,304 weights: 22,361,146 parameters
  (Table I: 22.328 M, +0.15 %), the ~3 k difference of Table I.
  (A textbook 64-1024 five-level UNet has 31.0 M; its base-54 version 22.10 M, -1.0 %.)
* No batch normalisation, no dropout (none is mentioned); biases on every convolution;
  PyTorch's default (Kaiming-uniform) initialisation.
* ``residual=False`` by default: the network predicts the clear image directly. With
  ``residual=True`` the cloudy S2 input is added to the output (the long skip of DSen2-CR and
  of decloud [30]); the parameter count does not change.
* Input height and width must be multiples of 2 ** (levels - 1) = 32; the model does not pad
  (the tiling engine chooses tile sizes, see ``ModelSpec.size_multiple``).

Inputs are concatenated along channels in the order S2 then S1. Values follow the ``"unit"``
scaling of :mod:`topoclear.models.scaling` (CRT-UNet normalised everything to [0, 1]).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

#: Default channel widths per level (see module docstring for the reasoning).
DEFAULT_WIDTHS = (32, 64, 128, 256, 512, 616)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions ("same" padding), each followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )


class UpLevel(nn.Module):
    """Decoder level: 2x2 up-convolution, concatenation with the skip, :class:`DoubleConv`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


def require_input(tensor: Optional[torch.Tensor], name: str, channels: int, model: str) -> torch.Tensor:
    """``tensor`` if it has ``channels`` channels; a ValueError naming what is wrong otherwise."""
    if tensor is None:
        raise ValueError(f"{model}: input {name!r} is missing; expected a (N, {channels}, H, W) tensor")
    if tensor.ndim != 4 or tensor.shape[1] != channels:
        raise ValueError(f"{model}: input {name!r} has shape {tuple(tensor.shape)}; expected (N, {channels}, H, W)")
    return tensor


class UNet(nn.Module):
    """UNet baseline: cloudy S2 (+ S1) -> cloud-free S2, same size and scaling as the S2 input.

    Args:
        s2_bands: number of Sentinel-2 input bands (and default number of output bands).
        s1_bands: number of Sentinel-1 bands (0 for the optical-only variant).
        out_bands: number of predicted S2 bands (default: ``s2_bands``).
        widths: channels per level, shallowest first; each level halves the resolution.
        residual: add the cloudy S2 input to the output (needs ``out_bands == s2_bands``).
        injected_channels: extra channels concatenated at the input of the second level (at
            half resolution). 0 here; :class:`~topoclear.models.crt_unet.CRTUNet` uses it
            for the terrain stack.
    """

    model_name = "unet"

    def __init__(
        self,
        s2_bands: int = 10,
        s1_bands: int = 2,
        out_bands: Optional[int] = None,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        residual: bool = False,
        injected_channels: int = 0,
    ) -> None:
        super().__init__()
        if s2_bands < 1:
            raise ValueError(f"{self.model_name}: s2_bands must be >= 1, got {s2_bands}")
        if s1_bands < 0 or injected_channels < 0:
            raise ValueError(f"{self.model_name}: channel counts must be >= 0")
        if len(widths) < 2:
            raise ValueError(f"{self.model_name}: needs at least two levels, got widths={tuple(widths)}")
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = out_bands or s2_bands
        self.widths = tuple(int(w) for w in widths)
        self.residual = residual
        self.injected_channels = injected_channels
        if residual and self.out_bands != s2_bands:
            raise ValueError(f"{self.model_name}: residual=True needs out_bands == s2_bands")

        self.encoder = nn.ModuleList()
        in_channels = s2_bands + s1_bands
        for level, width in enumerate(self.widths):
            extra = injected_channels if level == 1 else 0
            self.encoder.append(DoubleConv(in_channels + extra, width))
            in_channels = width
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.decoder = nn.ModuleList(
            UpLevel(self.widths[level + 1], self.widths[level], self.widths[level])
            for level in reversed(range(len(self.widths) - 1))
        )
        self.head = nn.Conv2d(self.widths[0], self.out_bands, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def _stack_inputs(self, s2: torch.Tensor, s1: Optional[torch.Tensor]) -> torch.Tensor:
        s2 = require_input(s2, "s2", self.s2_bands, self.model_name)
        if self.s1_bands:
            s1 = require_input(s1, "s1", self.s1_bands, self.model_name)
            return torch.cat([s2, s1], dim=1)
        return s2

    def _check_size(self, x: torch.Tensor) -> None:
        m = self.size_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(
                f"{self.model_name}: height and width must be multiples of {m}, got {tuple(x.shape[-2:])}"
            )

    def _run(self, x: torch.Tensor, injected: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encoder-decoder on the stacked input ``x``; ``injected`` joins at the second level."""
        self._check_size(x)
        skips: List[torch.Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            if level == 1 and injected is not None:
                x = torch.cat([x, injected], dim=1)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)

    def forward(
        self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, terrain: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Predict the cloud-free S2 image.

        Args:
            s2: cloudy Sentinel-2, (N, s2_bands, H, W), "unit" scaling.
            s1: Sentinel-1, (N, s1_bands, H, W); required when ``s1_bands > 0``.
            terrain: ignored (accepted for the uniform calling convention).
        """
        out = self._run(self._stack_inputs(s2, s1))
        return out + s2 if self.residual else out
