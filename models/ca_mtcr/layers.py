"""Building blocks of CA-MTCR: normalisation, MBConv, Transformer blocks and the region-selective
optical encoder (see the package docstring for the choices).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

#: Resolution factor between the input and the working (feature) grid.
DOWNSAMPLING = 4
#: Small constant in the cosine similarities.
EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel of an (N, C, H, W) tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SqueezeExcitation(nn.Module):
    """Channel re-weighting from the global average (Hu et al.): C -> squeeze -> C, sigmoid."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.gelu(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual block with squeeze-excitation (MobileNetV2 / EfficientNet), pre-norm.

    ``x + norm(pw(se(gelu(norm(dw(gelu(norm(pw(norm(x))))))))))``, width ``channels``, hidden
    width ``channels * expansion``.
    """

    def __init__(self, channels: int, expansion: int = 4, se_ratio: float = 0.25, groups: int = 4) -> None:
        super().__init__()
        hidden = channels * expansion
        self.pre_norm = nn.GroupNorm(groups, channels)
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.norm2 = nn.GroupNorm(groups, hidden)
        self.se = SqueezeExcitation(hidden, max(1, int(channels * se_ratio)))
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm3 = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm1(self.expand(self.pre_norm(x))))
        y = F.gelu(self.norm2(self.depthwise(y)))
        return x + self.norm3(self.project(self.se(y)))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block on an (N, C, h, w) map: global MHSA, then Mix-FFN.

    Attention runs over all h * w tokens. The feed-forward part is 1x1 conv C -> r C, 3x3
    depthwise conv, GELU, 1x1 conv r C -> C.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Transformer width {dim} is not a multiple of the {heads} heads")
        hidden = int(round(dim * mlp_ratio))
        self.heads = heads
        self.norm1 = LayerNorm2d(dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.norm2 = LayerNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        q, k, v = qkv.unbind(dim=1)  # each (n, heads, h*w, c/heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(-1, -2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.dwconv(self.fc1(self.norm2(x)))))


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avg-pool) + MLP(max-pool)) re-weights the channels."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class RegionSelection(nn.Module):
    """Soft mask R after one Transformer block (paper section 3.2, Figure 3).

    R1 = spatial attention on the block output (channel mean and max, plus the cloud mask);
    R2 = cosine distance between block input and output; R = sigmoid(conv(CAM([R1, R2]))).
    Returns the masked block output and R, both on the working grid.
    """

    def __init__(self, kernel_size: int = 7, open_bias: float = 2.0) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(3, 1, kernel_size, padding=kernel_size // 2)
        self.channel = ChannelAttention(2, 2)
        self.fuse = nn.Conv2d(2, 1, 3, padding=1)
        nn.init.constant_(self.fuse.bias, open_bias)

    def forward(
        self, f_in: torch.Tensor, f_out: torch.Tensor, cloud: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([f_out.mean(dim=1, keepdim=True), f_out.amax(dim=1, keepdim=True), cloud], dim=1)
        r1 = torch.sigmoid(self.spatial(pooled))
        r2 = 1.0 - F.cosine_similarity(f_in, f_out, dim=1, eps=EPS).unsqueeze(1)
        soft = torch.sigmoid(self.fuse(self.channel(torch.cat([r1, r2], dim=1))))
        return f_out * soft, soft


class RegionSelectiveOpticalEncoder(nn.Module):
    """F_opt: 4x4 patch embedding, then ``depth`` Transformer blocks each followed by a soft mask."""

    def __init__(
        self,
        in_bands: int,
        dim: int = 192,
        depth: int = 9,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        region_selective: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_bands, dim, DOWNSAMPLING, stride=DOWNSAMPLING)
        self.embed_norm = LayerNorm2d(dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.selectors = nn.ModuleList(RegionSelection() for _ in range(depth)) if region_selective else None

    def forward(self, s2: torch.Tensor, cloud: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``s2`` (B, C, H, W), ``cloud`` (B, 1, H, W) -> features (B, dim, H/4, W/4), soft masks."""
        x = self.embed_norm(self.embed(s2))
        cloud = F.avg_pool2d(cloud, DOWNSAMPLING)
        masks: List[torch.Tensor] = []
        for j, block in enumerate(self.blocks):
            y = block(x)
            if self.selectors is not None:
                y, soft = self.selectors[j](x, y, cloud)
                masks.append(soft)
            x = y
        return x, masks
