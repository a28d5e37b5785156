"""Multi-modal fusion, change maps, L-TAE change-aware temporal fusion and the decoder of CA-MTCR."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DOWNSAMPLING, EPS, MBConv


class MultiModalFusion(nn.Module):
    """H_mmf: concatenate optical and SAR features, 3x3 convolution, one MBConv."""

    def __init__(self, optical_dim: int, sar_dim: int, dim: int, expansion: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(optical_dim + sar_dim, dim, 3, padding=1)
        self.block = MBConv(dim, expansion)

    def forward(self, optical: torch.Tensor, sar: Optional[torch.Tensor]) -> torch.Tensor:
        x = optical if sar is None else torch.cat([optical, sar], dim=1)
        return self.block(self.conv(x))


def sar_change_map(features: torch.Tensor) -> torch.Tensor:
    """Eq. 10: cosine similarity of each date's SAR features with the target's (last) date.

    ``features`` (N, T, C, h, w) -> (N, T, 1, h, w) in [-1, 1]; the target date is all ones.
    """
    target = features[:, -1:]
    similarity = F.cosine_similarity(features[:, :-1], target.expand_as(features[:, :-1]), dim=2, eps=EPS)
    ones = torch.ones_like(features[:, -1:, :1])
    return torch.cat([similarity.unsqueeze(2), ones], dim=1)


def optical_change_map(features: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
    """Change map without SAR: optical-feature similarity where both dates are clear, 1 elsewhere.

    ``features`` (N, T, C, h, w), ``clear`` (N, T, 1, h, w) clear-sky probability in [0, 1];
    returns ``1 - clear^t clear^N (1 - cos(F^t, F^N))``, all ones for the target.
    """
    change = sar_change_map(features)
    weight = clear * clear[:, -1:]
    return 1.0 - weight * (1.0 - change)


class LightweightTemporalAttention(nn.Module):
    """Attention part of L-TAE (Garnot & Landrieu 2020), shared by all pixels.

    Per pixel: GroupNorm over (channel group, dates), 1x1 projection to ``d_model``, keys
    ``d_model -> heads * d_k``, one learned master query per head, softmax over the dates.
    A learned ``d_model`` vector is added to the target (last) date. ``forward`` maps
    (N, T, C, h, w) to attention weights (N, T, heads, h, w) that sum to 1 over T.
    """

    def __init__(self, in_channels: int, heads: int = 16, d_k: int = 4, d_model: int = 256, eps: float = 1e-5) -> None:
        super().__init__()
        if in_channels % heads:
            raise ValueError(f"L-TAE input width {in_channels} is not a multiple of its {heads} heads")
        self.heads = heads
        self.d_k = d_k
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(in_channels))
        self.norm_bias = nn.Parameter(torch.zeros(in_channels))
        self.inconv = nn.Conv2d(in_channels, d_model, 1)
        self.target_embedding = nn.Parameter(torch.zeros(d_model))
        self.keys = nn.Conv2d(d_model, heads * d_k, 1)
        self.query = nn.Parameter(torch.empty(heads, d_k))
        nn.init.normal_(self.query, mean=0.0, std=math.sqrt(2.0 / d_k))
        nn.init.normal_(self.keys.weight, mean=0.0, std=math.sqrt(2.0 / d_k))

    def _group_norm(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = x.shape
        y = x.view(n, t, self.heads, c // self.heads, h, w)
        mean = y.mean(dim=(1, 3), keepdim=True)
        var = y.var(dim=(1, 3), keepdim=True, unbiased=False)
        y = ((y - mean) / torch.sqrt(var + self.eps)).view(n, t, c, h, w)
        return y * self.norm_weight.view(1, 1, c, 1, 1) + self.norm_bias.view(1, 1, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _, h, w = x.shape
        e = self.inconv(self._group_norm(x).flatten(0, 1)).view(n, t, -1, h, w)
        is_target = torch.zeros(t, device=x.device, dtype=x.dtype)
        is_target[-1] = 1
        e = e + is_target.view(1, t, 1, 1, 1) * self.target_embedding.view(1, 1, -1, 1, 1)
        k = self.keys(e.flatten(0, 1)).view(n, t, self.heads, self.d_k, h, w)
        scores = (k * self.query.view(1, 1, self.heads, self.d_k, 1, 1)).sum(dim=3) / math.sqrt(self.d_k)
        return scores.softmax(dim=1)


class ChangeAwareTemporalFusion(nn.Module):
    """H_CAF (eq. 11-12): ``W = L-TAE(conv(c || F_f))``, ``F_c = sum_t F_f^t * W^t``.

    The fused features are split into one channel group per attention head.
    """

    def __init__(self, dim: int, attention_channels: int = 160, heads: int = 16, d_k: int = 4, d_model: int = 256):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fused width {dim} is not a multiple of the {heads} temporal attention heads")
        self.heads = heads
        self.conv = nn.Conv2d(dim + 1, attention_channels, 3, padding=1)
        self.attention = LightweightTemporalAttention(attention_channels, heads, d_k, d_model)

    def forward(self, features: torch.Tensor, change: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``features`` (N, T, D, h, w), ``change`` (N, T, 1, h, w) -> (N, D, h, w), weights (N, T, heads, h, w)."""
        n, t, d, h, w = features.shape
        a = self.conv(torch.cat([change, features], dim=2).flatten(0, 1)).view(n, t, -1, h, w)
        weights = self.attention(a)
        grouped = features.view(n, t, self.heads, d // self.heads, h, w) * weights.unsqueeze(3)
        return grouped.sum(dim=1).reshape(n, d, h, w), weights


class CAMTCRDecoder(nn.Module):
    """H_d: MBConv blocks at 1/4 resolution, two x2 pixel-shuffle upsamplings, 3x3 conv to the bands."""

    def __init__(
        self, dim: int, out_bands: int, blocks: int = 2, widths: Sequence[int] = (80, 40), expansion: int = 4
    ) -> None:
        super().__init__()
        if 2 ** len(widths) != DOWNSAMPLING:
            raise ValueError(f"the decoder needs {int(math.log2(DOWNSAMPLING))} upsampling widths, got {tuple(widths)}")
        self.blocks = nn.Sequential(*[MBConv(dim, expansion) for _ in range(blocks)])
        layers: List[nn.Module] = []
        channels = dim
        for width in widths:
            layers += [nn.Conv2d(channels, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.GELU()]
            channels = width
        self.up = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, out_bands, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.blocks(x)))
