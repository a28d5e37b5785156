"""CA-MTCR: change-aware multi-temporal cloud removal from Sentinel-2 and Sentinel-1 series.

You, Xu, Pan, Dong, Yang, Xia: Change-aware multi-temporal cloud removal, Sci China Inf Sci
69(3) 132306 (2026), doi:10.1007/s11432-025-4669-x (seed 003). Reported: 7.45 M parameters,
456.57 GFLOPs, SEN12MS-CR-TS PSNR 31.79 dB, SAM 5.18 deg, SSIM 0.903, MAE 0.019.

What the paper fixes (section 3, 4.1)
-------------------------------------
Every date t = 1..N is encoded on its own: optical image -> region-selective Transformer
encoder F_opt (eq. 3), SAR image -> SAR encoder F_sar (eq. 4); the two are fused by the
multi-modal fusion block H_mmf = concatenation, one convolution, one MBConv (eq. 5). The
change map of every auxiliary date is the per-pixel cosine similarity of its SAR features
with the target's, and all ones for the target (eq. 6, 10). A convolution of
``change || fused features`` feeds an L-TAE that gives spatial attention weights over the
dates (eq. 11); the weighted sum of the fused features (weights broadcast over channels,
eq. 12) goes to the decoder H_d (eq. 8). The target date is the last one, t = N.

* Optical encoder: L = 9 Transformer blocks. After block j, two maps mark cloudy regions:
  R1 = spatial attention on the block output, R2 = cosine distance between block input and
  output. ``[R1, R2]`` -> channel attention module (CAM) -> convolution -> sigmoid = soft mask
  R, which multiplies the block output before the next block.
* SAR encoder: three convolutions, then two MBConv blocks, pretrained as the encoder of a
  Noise2Noise VQ-VAE (two SAR images of one scene with different speckle) with
  ``L_pre = L2(y2, y1_hat) + alpha |sg[z_e] - e|^2 + beta |z_e - sg[e]|^2``, alpha = 1,
  beta = 0.1 (eq. 9, :class:`SARNoise2NoiseVQVAE`); only the encoder is kept.
* Training (section 4.1, not part of this module): Adam, lr 1e-4, SAR encoder fine-tuned at
  1e-5 (:meth:`CAMTCR.parameter_groups`), batch 6, 30 epochs, lr halved every 5 epochs after
  the first 10; loss 2 L1 + 1 VGG16 feature loss + 250 style loss
  (:class:`topoclear.models.losses.CAMTCRLoss`). Inputs: S2 / 10000 clipped to [0, 1] and
  S1 dB clipped to [-25, 0] and scaled to [0, 1], i.e. the ``"unit"`` scaling.

Choices the paper leaves open (all fixed here)
----------------------------------------------
* **Working resolution 1/4.** The SAR encoder is the classic VQ-VAE encoder (4x4 conv stride
  2, 4x4 conv stride 2, 3x3 conv, then the residual blocks, here MBConv), so its features are
  at 1/4 resolution; the optical encoder starts with a 4x4 stride-4 patch embedding (Swin /
  ViT style) + LayerNorm so that both modalities, the change maps and the temporal fusion
  live on the same 1/4 grid. The decoder upsamples twice by 2 (pixel shuffle). Height and
  width must therefore be multiples of 4 (``size_multiple = 4``). The paper's FLOP count
  (below the parameter count times the 256 x 256 pixels) requires such downsampling.
* **Transformer blocks**: pre-norm, global multi-head self-attention over all 1/4-resolution
  tokens (``F.scaled_dot_product_attention``; the paper stresses propagation "across the
  entire image"), and a feed-forward part with a 3x3 depthwise convolution between its two
  linear layers (Mix-FFN, which also gives the tokens their position; no other positional
  encoding). Width 192, 6 heads of 32, feed-forward ratio 4 (hidden 768), GELU.
* **Region selection** (one per block): R1 = sigmoid(7x7 conv of the channel mean, the
  channel max (CBAM spatial attention) and the cloud mask average-pooled to the 1/4 grid);
  R2 = 1 - cos(F_in, F_out) over channels; CAM = CBAM channel attention (shared 2-2-2 MLP on
  the average- and max-pooled maps); then a 3x3 conv 2 -> 1 and a sigmoid. That conv's bias
  starts at +2 (mask ~0.88) so that the nine products of masks do not shrink the features at
  initialisation. The cloud mask is the only way the given mask enters the network.
* **SAR encoder**: widths 2 -> 64 -> 128 -> 128, ReLU after the two strided convs; z_e has
  128 channels, equal to the codebook dimension. VQ-VAE (pretraining only, not counted in
  CA-MTCR): 512 codes of 128, nearest-neighbour quantisation with the straight-through
  gradient, codebook initialised from the encoder outputs of the first training batch;
  decoder = 3x3 conv, two MBConv, two 4x4 stride-2 transposed convs (128 -> 64 ->
  S1 bands), the mirror of the encoder. Eq. 9's ``|y2 - y1_hat|_2`` is taken as the mean
  squared error (the usual "L2 reconstruction loss"; the unsquared norm would scale with the
  tile size); the two latent terms are mean squared errors too.
* **MBConv** (the block of UnCRtainTS, the multi-temporal baseline the paper compares with):
  pre-norm, 1x1 expansion x4 (UnCRtainTS uses 2, MobileNetV2 6), 3x3 depthwise, squeeze-excitation (to 1/4 of the block
  width), 1x1 projection, residual; GELU; GroupNorm with 4 groups instead of BatchNorm (the
  paper trains with batches of 6; GroupNorm behaves the same for one tile at inference);
  convolutions before a norm have no bias; zero padding.
* **Multi-modal fusion**: 3x3 conv (192 + 128 -> 192), then one MBConv(192).
* **Change-aware fusion**: 3x3 conv (1 + 192 -> 160), then the attention part of L-TAE
  (Garnot & Landrieu 2020) with UnCRtainTS's settings: per-pixel GroupNorm (16 groups, over
  channels and dates), 1x1 projection to d_model = 256, 16 heads with key dimension 4 and a
  learned master query per head, softmax over the dates; no attention dropout. The fused
  features (192 channels) are split into 16 groups of 12 channels, each weighted by its
  head's attention and summed over dates (U-TAE's "att_group"; the broadcast over channels
  of eq. 12). The calling convention carries no acquisition dates, so instead of L-TAE's
  day-of-year encoding a learned 256-vector marks the target date; the auxiliary dates are
  interchangeable (any number, any order).
* **Decoder**: two MBConv(192) at 1/4 resolution, 3x3 conv 192 -> 4x80 + pixel shuffle + GELU
  (1/2), 3x3 conv 80 -> 4x40 + pixel shuffle + GELU (full resolution), 3x3 conv 40 -> S2
  bands. No output activation and no skip from the input (eq. 8: the output depends on F_c
  only); the output is in the input's scaling ("unit", reflectance in [0, 1]).

With 13 S2 + 2 S1 bands (SEN12MS-CR-TS) the network has **7,442,512** parameters
(paper 7.45 M, -0.10 %): optical encoder 4.115 M, SAR encoder 0.624 M, fusion 0.933 M,
change-aware fusion 0.336 M, decoder 1.434 M. The widths the paper does not give (192, 128,
160, 80, 40) were chosen so that the total lands on Table 1. On one 256 x 256 sample with
T = 3 (two auxiliary dates, the paper's setting) it takes about 253 G multiply-accumulates,
174 G of them in the attention products (paper: 456.57 GFLOPs, counting method not stated).
The optical-only variant (s1_bands=0) has 6,597,328 parameters.

Inputs, masks and the modes without SAR
---------------------------------------
``model(s2, s1=None, mask=None)``: ``s2`` (N, T, C_s2, H, W) and ``s1`` (N, T, C_s1, H, W) in
the ``"unit"`` scaling, date T-1 the target, the others auxiliary (T >= 1; T = 1 is mono-
temporal cloud removal). ``mask`` (N, T, 1, H, W) or (N, T, H, W) is the cloud (and shadow)
probability or binary mask, 1 = cloud; values are clipped to [0, 1]. **mask=None means "all
clear"** (a zero mask): the region selection then works from the features alone, as in the
paper, which names no mask input. Returns (N, C_s2, H, W).

Built with ``s1_bands=0`` (optical only, the paper's "w/o SAR" of Table 3), there is no SAR
encoder and the fusion block sees the optical features only. The change map then comes from
the optical features: ``c^t = 1 - w^t (1 - cos(F_opt^t, F_opt^N))`` with the joint clear
weight ``w^t = (1 - m^t)(1 - m^N)`` of the two dates (mask pooled to the 1/4 grid): where both
dates are clear, their optical similarity; where either is cloudy, no evidence of change (1).
Without a mask in this mode clouds themselves read as change, so give masks.
``optical_change="uniform"`` uses all ones instead. ``change_aware=False`` (the paper's
"w/o CA") replaces the change map by ones; ``region_selective=False`` ("w/o RegS") drops the
soft masks and keeps the Transformer blocks. None of these options changes the parameter count
except ``region_selective`` (-179 parameters per block) and ``s1_bands``.

Cost: the encoder's attention grows with the square of the tile area (4096 tokens for 256 x 256
px); 256 px tiles are the paper's size.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CAMTCR",
    "SAREncoder",
    "SARDecoder",
    "VectorQuantizer",
    "SARNoise2NoiseVQVAE",
    "RegionSelectiveOpticalEncoder",
    "RegionSelection",
    "TransformerBlock",
    "MBConv",
    "MultiModalFusion",
    "LightweightTemporalAttention",
    "ChangeAwareTemporalFusion",
    "CAMTCRDecoder",
    "sar_change_map",
    "optical_change_map",
    "PAPER_PARAMETERS",
    "DOWNSAMPLING",
]

#: Parameter count reported by the paper (Table 1) for 13 S2 + 2 S1 bands.
PAPER_PARAMETERS = 7.45e6
#: Resolution factor between the input and the working (feature) grid.
DOWNSAMPLING = 4
#: Small constant in the cosine similarities.
_EPS = 1e-6


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
        r2 = 1.0 - F.cosine_similarity(f_in, f_out, dim=1, eps=_EPS).unsqueeze(1)
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


class SAREncoder(nn.Module):
    """F_sar: 4x4 conv stride 2, 4x4 conv stride 2, 3x3 conv, two MBConv (output z_e at 1/4)."""

    def __init__(self, in_bands: int = 2, dim: int = 128, expansion: int = 4) -> None:
        super().__init__()
        if in_bands < 1:
            raise ValueError(f"SAR encoder needs at least one band, got {in_bands}")
        self.in_bands = in_bands
        self.dim = dim
        self.expansion = expansion
        self.conv1 = nn.Conv2d(in_bands, dim // 2, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(dim // 2, dim, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(dim, dim, 3, padding=1)
        self.blocks = nn.Sequential(MBConv(dim, expansion), MBConv(dim, expansion))

    def forward(self, s1: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(s1))
        x = F.relu(self.conv2(x))
        return self.blocks(self.conv3(x))


class SARDecoder(nn.Module):
    """VQ-VAE decoder of the SAR pretraining: 3x3 conv, two MBConv, two 4x4 stride-2 transposed convs."""

    def __init__(self, out_bands: int = 2, dim: int = 128, expansion: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.blocks = nn.Sequential(MBConv(dim, expansion), MBConv(dim, expansion))
        self.up1 = nn.ConvTranspose2d(dim, dim // 2, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(dim // 2, out_bands, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(z))
        x = F.relu(self.up1(F.relu(x)))
        return self.up2(x)


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation (van den Oord et al. 2017) with the straight-through gradient.

    ``forward(z_e)`` returns ``(z_q, indices, codebook_loss, commitment_loss)`` where
    ``codebook_loss = mean((sg[z_e] - e)^2)`` and ``commitment_loss = mean((z_e - sg[e])^2)``.
    The codebook starts as uniform(-1/K, 1/K) and, at the first call in training mode, is
    replaced by encoder outputs drawn from that batch (data-dependent initialisation), so that
    the codes start at the scale of z_e instead of far from it.
    """

    def __init__(self, num_codes: int = 512, dim: int = 128) -> None:
        super().__init__()
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        k = self.codebook.num_embeddings
        pick = torch.randint(flat.shape[0], (k,), device=flat.device) if flat.shape[0] < k else (
            torch.randperm(flat.shape[0], device=flat.device)[:k]
        )
        self.codebook.weight.copy_(flat[pick].to(self.codebook.weight.dtype))
        self.initialised.fill_(True)

    def forward(self, z: torch.Tensor):
        n, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach())
        codes = self.codebook.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        indices = dist.argmin(dim=1)
        quantised = self.codebook(indices).view(n, h, w, d).permute(0, 3, 1, 2)
        codebook_loss = F.mse_loss(quantised, z.detach())
        commitment_loss = F.mse_loss(z, quantised.detach())
        z_q = z + (quantised - z).detach()
        return z_q, indices.view(n, h, w), codebook_loss, commitment_loss


class SARNoise2NoiseVQVAE(nn.Module):
    """Noise2Noise VQ-VAE that pretrains the CA-MTCR SAR encoder (paper eq. 9).

    ``pretraining_loss(y1, y2)`` with two (N, C_s1, H, W) SAR images of one scene (different
    dates with little change, hence different speckle) returns ``(L_pre, parts)``:
    ``L_pre = mean((y2 - y1_hat)^2) + alpha * codebook + beta * commitment``, alpha = 1,
    beta = 0.1. After pretraining, hand the encoder to :meth:`CAMTCR.load_sar_encoder`; the
    quantiser and decoder are discarded. ``forward(y)`` returns the denoised reconstruction.

    Args:
        s1_bands, dim, expansion: as :class:`SAREncoder` (must match the CA-MTCR model).
        num_codes: codebook size.
        alpha, beta: weights of the codebook and commitment terms.
        encoder: an existing :class:`SAREncoder` to pretrain (e.g. ``model.sar_encoder``),
            trained in place; a new one by default.
    """

    def __init__(
        self,
        s1_bands: int = 2,
        dim: int = 128,
        expansion: int = 4,
        num_codes: int = 512,
        alpha: float = 1.0,
        beta: float = 0.1,
        encoder: Optional[SAREncoder] = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else SAREncoder(s1_bands, dim, expansion)
        dim, s1_bands = self.encoder.dim, self.encoder.in_bands
        self.quantizer = VectorQuantizer(num_codes, dim)
        self.decoder = SARDecoder(s1_bands, dim, self.encoder.expansion)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def _check(self, y: torch.Tensor, name: str) -> None:
        c = self.encoder.in_bands
        if y.ndim != 4 or y.shape[1] != c or y.shape[-1] % DOWNSAMPLING or y.shape[-2] % DOWNSAMPLING:
            raise ValueError(
                f"SAR VQ-VAE: {name} has shape {tuple(y.shape)}; expected (N, {c}, H, W) with H, W multiples of "
                f"{DOWNSAMPLING}"
            )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, "y")
        z_q, _, _, _ = self.quantizer(self.encoder(y))
        return self.decoder(z_q)

    def pretraining_loss(self, y1: torch.Tensor, y2: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        self._check(y1, "y1")
        if y2.shape != y1.shape:
            raise ValueError(f"SAR VQ-VAE: y1 {tuple(y1.shape)} and y2 {tuple(y2.shape)} differ in shape")
        z_q, _, codebook, commitment = self.quantizer(self.encoder(y1))
        reconstruction = F.mse_loss(self.decoder(z_q), y2)
        total = reconstruction + self.alpha * codebook + self.beta * commitment
        return total, {
            "reconstruction": reconstruction.detach(),
            "codebook": codebook.detach(),
            "commitment": commitment.detach(),
        }

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"


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
    similarity = F.cosine_similarity(features[:, :-1], target.expand_as(features[:, :-1]), dim=2, eps=_EPS)
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


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
class CAMTCR(nn.Module):
    """Change-aware multi-temporal cloud removal (S2 + S1 time series -> cloud-free target S2).

    Args:
        s2_bands: Sentinel-2 bands per date (13 on SEN12MS-CR-TS).
        s1_bands: Sentinel-1 bands per date (VV, VH); 0 for the optical-only variant.
        out_bands: predicted S2 bands (default ``s2_bands``).
        optical_dim, depth, heads, mlp_ratio: Transformer width, number of blocks (9), heads,
            feed-forward ratio of the optical encoder.
        sar_dim: SAR encoder width (= VQ-VAE codebook dimension).
        fused_dim: width after the multi-modal fusion block (a multiple of ``ltae_heads``).
        attention_channels, ltae_heads, ltae_key_dim, ltae_model_dim: change-aware fusion.
        decoder_blocks, decoder_widths: decoder MBConv blocks and upsampling widths.
        expansion: MBConv expansion factor.
        region_selective: soft masks in the optical encoder (False = the "w/o RegS" ablation).
        change_aware: change maps in the temporal fusion (False = the "w/o CA" ablation).
        optical_change: change map of the optical-only variant, ``"similarity"`` or ``"uniform"``.
    """

    model_name = "ca_mtcr"
    size_multiple = DOWNSAMPLING

    def __init__(
        self,
        s2_bands: int = 13,
        s1_bands: int = 2,
        out_bands: Optional[int] = None,
        optical_dim: int = 192,
        depth: int = 9,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        sar_dim: int = 128,
        fused_dim: int = 192,
        attention_channels: int = 160,
        ltae_heads: int = 16,
        ltae_key_dim: int = 4,
        ltae_model_dim: int = 256,
        decoder_blocks: int = 2,
        decoder_widths: Sequence[int] = (80, 40),
        expansion: int = 4,
        region_selective: bool = True,
        change_aware: bool = True,
        optical_change: str = "similarity",
    ) -> None:
        super().__init__()
        if s2_bands < 1:
            raise ValueError(f"{self.model_name}: s2_bands must be >= 1, got {s2_bands}")
        if s1_bands < 0:
            raise ValueError(f"{self.model_name}: s1_bands must be >= 0, got {s1_bands}")
        if optical_change not in ("similarity", "uniform"):
            raise ValueError(
                f"{self.model_name}: optical_change must be 'similarity' or 'uniform', got {optical_change!r}"
            )
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = out_bands or s2_bands
        self.change_aware = change_aware
        self.optical_change = optical_change
        self.optical_encoder = RegionSelectiveOpticalEncoder(
            s2_bands, optical_dim, depth, heads, mlp_ratio, region_selective=region_selective
        )
        self.sar_encoder = SAREncoder(s1_bands, sar_dim, expansion) if s1_bands else None
        self.fusion = MultiModalFusion(optical_dim, sar_dim if s1_bands else 0, fused_dim, expansion)
        self.temporal_fusion = ChangeAwareTemporalFusion(
            fused_dim, attention_channels, ltae_heads, ltae_key_dim, ltae_model_dim
        )
        self.decoder = CAMTCRDecoder(fused_dim, self.out_bands, decoder_blocks, decoder_widths, expansion)

    # -- helpers ----------------------------------------------------------------------------
    def parameter_groups(self, lr: float = 1e-4, sar_lr: float = 1e-5) -> List[dict]:
        """Optimiser groups of the paper: everything at ``lr``, the pretrained SAR encoder at ``sar_lr``."""
        sar = list(self.sar_encoder.parameters()) if self.sar_encoder is not None else []
        sar_ids = {id(p) for p in sar}
        groups = [{"params": [p for p in self.parameters() if id(p) not in sar_ids], "lr": lr}]
        if sar:
            groups.append({"params": sar, "lr": sar_lr})
        return groups

    def load_sar_encoder(self, source: Union[nn.Module, Mapping[str, torch.Tensor]]) -> None:
        """Initialise the SAR encoder from a pretrained :class:`SARNoise2NoiseVQVAE`, a
        :class:`SAREncoder`, or a state dict of either (VQ-VAE keys start with ``encoder.``)."""
        if self.sar_encoder is None:
            raise ValueError(f"{self.model_name}: this model was built without SAR (s1_bands=0)")
        if isinstance(source, SARNoise2NoiseVQVAE):
            source = source.encoder
        state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
        if any(k.startswith("encoder.") for k in state):
            state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        self.sar_encoder.load_state_dict(state)

    def _check(self, s2, s1, mask) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        name = self.model_name
        if s2 is None or s2.ndim != 5 or s2.shape[2] != self.s2_bands:
            shape = None if s2 is None else tuple(s2.shape)
            raise ValueError(f"{name}: s2 has shape {shape}; expected (N, T, {self.s2_bands}, H, W)")
        n, t, _, h, w = s2.shape
        if t < 1 or h % DOWNSAMPLING or w % DOWNSAMPLING:
            raise ValueError(f"{name}: s2 is {h}x{w} px with T={t}; need T >= 1 and H, W multiples of {DOWNSAMPLING}")
        if self.s1_bands:
            if s1 is None:
                raise ValueError(f"{name}: input 's1' is missing; expected (N, T, {self.s1_bands}, H, W)")
            if tuple(s1.shape) != (n, t, self.s1_bands, h, w):
                raise ValueError(f"{name}: s1 has shape {tuple(s1.shape)}; expected {(n, t, self.s1_bands, h, w)}")
        else:
            s1 = None
        if mask is None:
            mask = s2.new_zeros(n, t, 1, h, w)
        else:
            mask = torch.as_tensor(mask, device=s2.device).to(s2.dtype)
            if mask.ndim == 4:
                mask = mask.unsqueeze(2)
            if tuple(mask.shape) != (n, t, 1, h, w):
                raise ValueError(f"{name}: mask has shape {tuple(mask.shape)}; expected {(n, t, 1, h, w)}")
            mask = mask.clamp(0.0, 1.0)
        return s2, s1, mask

    def analyse(self, s2: torch.Tensor, s1: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        """The prediction and the intermediate maps, as a dict.

        ``prediction`` (N, C, H, W); ``change`` (N, T, 1, H/4, W/4) change maps (1 = unchanged);
        ``weights`` (N, T, heads, H/4, W/4) temporal attention; ``region_masks`` (N, T, L, 1,
        H/4, W/4) soft masks of the optical encoder (absent without region selection).
        """
        s2, s1, mask = self._check(s2, s1, mask)
        n, t = s2.shape[:2]
        optical, soft = self.optical_encoder(s2.flatten(0, 1), mask.flatten(0, 1))
        grid = optical.shape[-2:]
        if self.sar_encoder is not None:
            sar = self.sar_encoder(s1.flatten(0, 1))
            fused = self.fusion(optical, sar)
            change = sar_change_map(sar.view(n, t, -1, *grid))
        else:
            fused = self.fusion(optical, None)
            if self.optical_change == "similarity":
                clear = 1.0 - F.avg_pool2d(mask.flatten(0, 1), DOWNSAMPLING).view(n, t, 1, *grid)
                change = optical_change_map(optical.view(n, t, -1, *grid), clear)
            else:
                change = optical.new_ones(n, t, 1, *grid)
        if not self.change_aware:
            change = torch.ones_like(change)
        combined, weights = self.temporal_fusion(fused.view(n, t, -1, *grid), change)
        out = {"prediction": self.decoder(combined), "change": change, "weights": weights}
        if soft:
            out["region_masks"] = torch.stack(soft, dim=1).view(n, t, len(soft), 1, *grid)
        return out

    def forward(
        self,
        s2: torch.Tensor,
        s1: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        *,
        terrain: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Cloud-free S2 at the last date.

        Args:
            s2: Sentinel-2 series (N, T, s2_bands, H, W), "unit" scaling; date T-1 is the target.
            s1: Sentinel-1 series (N, T, s1_bands, H, W); required when ``s1_bands > 0``.
            mask: cloud probability / mask (N, T, 1, H, W) or (N, T, H, W), 1 = cloud; None =
                all clear.
            terrain: ignored (accepted for the uniform calling convention).
        """
        return self.analyse(s2, s1, mask)["prediction"]
