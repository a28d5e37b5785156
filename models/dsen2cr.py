"""DSen2-CR: deep residual network for Sentinel-2 cloud removal with Sentinel-1 SAR.

Meraner, Ebel, Zhu and Schmitt (2020), seed 001, section 3.3 and Fig. 3:

* the cloudy S2 bands and the S1 bands are concatenated along channels (S2 first);
* a 3x3 convolution to ``features`` (F = 256) channels + ReLU;
* ``blocks`` (B = 16) residual blocks: 3x3 conv, ReLU, 3x3 conv, multiply by 0.1 (residual
  scaling), add the block input; no activation after the addition;
* a 3x3 convolution back to the number of S2 bands;
* the long skip: the cloudy S2 input is added to that output, so the network predicts a
  correction (residual) of the cloudy image.

Stride 1 and zero "same" padding everywhere, so any input size works; no normalisation layer.
Weights are He-uniform (``U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))``, Keras ``he_uniform``),
biases zero.

Parameter counts: 18,933,514 with 10 S2 + 2 S1 inputs and 10 outputs (CRT-UNet's Table I:
18.933 M); 18,947,341 with 13 S2 + 2 S1 inputs and 13 outputs (the paper's SEN12MS-CR setup).
``s1_bands=0`` gives the paper's "w/o SAR" variant (optical input only).

Values follow the ``"dsen2cr"`` scaling of :mod:`topoclear.models.scaling` (S2 / 2000, S1
shifted and scaled to [0, 2]); the output is in the S2 input's scaling.

Choice the paper leaves open: the residual scaling 0.1 is a fixed constant (no parameter), and
the long skip needs as many output bands as S2 input bands. ``out_bands`` and ``long_skip=False``
(defaults: the S2 band count and the paper's long skip) serve the fill-prior variant
(:mod:`topoclear.models.fill_prior`), whose optical input holds more channels than it predicts and
whose skip is the fill; the paper's configuration and its parameter counts are unchanged.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> x ``scale`` -> + input."""

    def __init__(self, features: int, scale: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.scale


def he_uniform_(module: nn.Module) -> None:
    """He-uniform weights (bound sqrt(6 / fan_in)) and zero biases for every convolution."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            bound = math.sqrt(6.0 / fan_in)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DSen2CR(nn.Module):
    """DSen2-CR: cloudy S2 (+ S1) -> cloud-free S2 = cloudy S2 + predicted correction.

    Args:
        s2_bands: number of Sentinel-2 bands (input and output).
        s1_bands: number of Sentinel-1 bands; 0 for the "w/o SAR" variant.
        features: feature channels F (256).
        blocks: number of residual blocks B (16).
        residual_scale: residual scaling constant (0.1).
        out_bands: predicted bands (default ``s2_bands``; must equal it with the long skip).
        long_skip: add the cloudy S2 input to the output (the paper's long skip).
    """

    model_name = "dsen2cr"
    size_multiple = 1

    def __init__(
        self,
        s2_bands: int = 13,
        s1_bands: int = 2,
        features: int = 256,
        blocks: int = 16,
        residual_scale: float = 0.1,
        out_bands: Optional[int] = None,
        long_skip: bool = True,
    ) -> None:
        super().__init__()
        if s2_bands < 1 or s1_bands < 0:
            raise ValueError(f"dsen2cr: need s2_bands >= 1 and s1_bands >= 0, got {s2_bands}, {s1_bands}")
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = int(out_bands or s2_bands)
        self.long_skip = bool(long_skip)
        if self.long_skip and self.out_bands != s2_bands:
            raise ValueError("dsen2cr: the long skip needs out_bands == s2_bands")
        self.head = nn.Sequential(
            nn.Conv2d(s2_bands + s1_bands, features, kernel_size=3, padding=1), nn.ReLU(inplace=True)
        )
        self.body = nn.Sequential(*(ResidualBlock(features, residual_scale) for _ in range(blocks)))
        self.tail = nn.Conv2d(features, self.out_bands, kernel_size=3, padding=1)
        he_uniform_(self)

    def forward(
        self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, terrain: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Predict the cloud-free S2 image.

        Args:
            s2: cloudy Sentinel-2, (N, s2_bands, H, W), "dsen2cr" scaling.
            s1: Sentinel-1, (N, s1_bands, H, W), "dsen2cr" scaling; required when ``s1_bands > 0``.
            terrain: ignored (accepted for the uniform calling convention).
        """
        if s2 is None or s2.ndim != 4 or s2.shape[1] != self.s2_bands:
            got = "nothing" if s2 is None else f"shape {tuple(s2.shape)}"
            raise ValueError(f"dsen2cr: input 's2' must be (N, {self.s2_bands}, H, W), got {got}")
        x = s2
        if self.s1_bands:
            if s1 is None or s1.ndim != 4 or s1.shape[1] != self.s1_bands:
                got = "nothing" if s1 is None else f"shape {tuple(s1.shape)}"
                raise ValueError(f"dsen2cr: input 's1' must be (N, {self.s1_bands}, H, W), got {got}")
            x = torch.cat([s2, s1], dim=1)
        out = self.tail(self.body(self.head(x)))
        return s2 + out if self.long_skip else out
