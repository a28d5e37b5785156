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

from .fusion import (CAMTCRDecoder, ChangeAwareTemporalFusion, LightweightTemporalAttention, MultiModalFusion,
                     optical_change_map, sar_change_map)
from .layers import DOWNSAMPLING, MBConv, RegionSelection, RegionSelectiveOpticalEncoder, TransformerBlock
from .network import CAMTCR, PAPER_PARAMETERS
from .sar import SARDecoder, SAREncoder, SARNoise2NoiseVQVAE, VectorQuantizer

__all__ = ["CAMTCR", "SAREncoder", "SARDecoder", "VectorQuantizer", "SARNoise2NoiseVQVAE",
           "RegionSelectiveOpticalEncoder", "RegionSelection", "TransformerBlock", "MBConv", "MultiModalFusion",
           "LightweightTemporalAttention", "ChangeAwareTemporalFusion", "CAMTCRDecoder", "sar_change_map",
           "optical_change_map", "PAPER_PARAMETERS", "DOWNSAMPLING"]
