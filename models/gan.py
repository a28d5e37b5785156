"""SAR-to-optical GAN and cloud-removal GAN with dilated residual inception blocks (DRIBs).

Darbaghshahi, Mohammadi and Soryani (seed 004). Two pix2pix-style conditional GANs: GAN1
translates SAR into an optical image, GAN2 removes clouds from the cloudy optical image with
the help of GAN1's translation. Both generators share one architecture (Table 1, Table 2,
Fig. 2); notation ``C(filters, kernel, stride[, dilation])``, B = batch norm, L = leaky ReLU,
R = ReLU, D = dropout in the decoder / dilated convolution in the DRIB, T = tanh:

=========  ===========================================================================
encoder    CL(64,4,2)  CBL(128,4,2)  CBL(256,4,2)  CBL(512,4,1)
DRIB x 8   three branches CBR(256,1,1,1) -> CBR(256,3,1,d) with d = 1, 2, 3;
           concatenation (768) -> CB(512,1,1,1); residual addition of the block input
decoder    CBDR(256,4,1)  CBDR(128,4,2)  CBR(64,4,2)  CT(out,4,2)
PatchGAN   CBL(64,4,2)  CBL(128,4,2)  CBL(256,4,2)  CBL(512,4,2)  C(1,3,1)
=========  ===========================================================================

The generator downsamples by 8 (three stride-2 layers); the DRIBs work at 1/8 resolution with
512 channels; the decoder mirrors the encoder with symmetric skip concatenations.

Choices the paper leaves open, and how they are made here:

* Skips (pix2pix convention): the first decoder layer takes the DRIB output alone; each later
  one takes the previous decoder output concatenated with the encoder output of the same
  resolution and width (256 @ 1/8, 128 @ 1/4, 64 @ 1/2), which the table's widths line up with.
* Stride-2 decoder layers are 4x4 transposed convolutions with padding 1 (exact 2x). Stride-1
  4x4 layers (encoder CBL(512,4,1), decoder CBDR(256,4,1)) use TensorFlow-style "same" padding
  (1 before, 2 after); a stride-1 transposed convolution is a convolution with a flipped
  kernel, so both are implemented as :class:`torch.nn.Conv2d` (same function class and
  parameter count).
* "D" in the decoder is dropout with p = 0.5 (the paper's hyper-parameters list dropout 0.5;
  pix2pix uses it in the first decoder layers); "D" in Table 2 is the dilated convolution.
* Leaky ReLU slope 0.2 (pix2pix). Convolutions followed by batch norm have no bias.
* No activation after the DRIB residual addition (Table 2 ends the block with CB, no R).
* The discriminator applies batch norm in its first layer too, as Table 1 lists CBL(64,4,2),
  and outputs logits (no sigmoid), each seeing a 78 x 78 px patch; a 256 px input gives a
  16 x 16 map. It is conditional: it sees the generator's input concatenated with the real or
  generated output (GAN1: 1 SAR + 3 optical channels; GAN2: 6 + 3, the paper's sizes).
* Initialisation N(0, 0.02) for convolution weights and N(1, 0.02) for batch-norm scales
  (pix2pix; the paper writes "sigma^2 = 0.02", read here as pix2pix's standard deviation 0.02).
* GAN2's input: cloudy S2 concatenated with GAN1's translation of the SAR image (the paper's
  6 = 3 + 3 channels in RGB). :class:`CloudRemovalGAN` therefore holds both generators; the
  translator is frozen by default (trained first, as GAN1). ``sar_input="raw"`` feeds the SAR
  bands directly instead (Table 5, the row without SAR-to-optical translation); ``s1_bands=0``
  gives an optical-only variant.
* Height and width must be multiples of 8 (16 for the discriminator); nothing is padded.

Parameter counts (1 SAR band in, 3 optical bands out): generator 26,650,307, roughly half of
pix2pix's eight-level U-Net generator (about 54 M), in line with the paper's remark that DRIBs
halved the generator's parameters; discriminator 2,763,137. The cloud-removal model holds two
generators (53,305,734 parameters with RGB + VV, of which 26,655,427 are trained in GAN2).

Values follow the ``"signed"`` scaling of :mod:`topoclear.models.scaling` ([-1, 1], matched by
the tanh output). The paper used VV only and RGB (B4, B3, B2); the band counts are parameters.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
DROPOUT = 0.5
DILATIONS = (1, 2, 3)


class SamePadConv(nn.Module):
    """Stride-1 convolution with TensorFlow "same" padding (works for even kernels too)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        total = kernel_size - 1
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)  # left, right, top, bottom
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool) -> nn.Module:
    if stride == 1:
        return SamePadConv(in_channels, out_channels, kernel, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, bias=bias)


def encoder_layer(in_channels: int, out_channels: int, stride: int, batch_norm: bool = True) -> nn.Sequential:
    """C[B]L(out, 4, stride)."""
    layers: List[nn.Module] = [_conv(in_channels, out_channels, 4, stride, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
    return nn.Sequential(*layers)


def decoder_layer(in_channels: int, out_channels: int, stride: int, dropout: bool) -> nn.Sequential:
    """CB[D]R(out, 4, stride): (transposed) conv, batch norm, [dropout 0.5], ReLU."""
    if stride == 1:
        conv: nn.Module = SamePadConv(in_channels, out_channels, 4, bias=False)
    else:
        conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
    layers: List[nn.Module] = [conv, nn.BatchNorm2d(out_channels)]
    if dropout:
        layers.append(nn.Dropout(DROPOUT))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DilatedResidualInceptionBlock(nn.Module):
    """DRIB (Table 2): three 1x1 -> dilated 3x3 branches, concat, 1x1 back to the input width, + input."""

    def __init__(self, channels: int = 512, branch_channels: int = 256, dilations=DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, branch_channels, 1, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(branch_channels, branch_channels, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
            )
            for d in dilations
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(branch_channels * len(dilations), channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


def init_pix2pix_(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) convolution weights, zero biases, N(1, std) batch-norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class DRIBGenerator(nn.Module):
    """Encoder - 8 DRIBs - decoder generator of both GANs (Tables 1 and 2), tanh output.

    Submodules (for inspection): ``encoder`` (4 layers), ``bottleneck`` (the DRIBs),
    ``decoder`` (4 layers; the last is the output layer CT).
    """

    size_multiple = 8

    def __init__(self, in_channels: int, out_channels: int, blocks: int = 8) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.encoder = nn.ModuleList(
            [
                encoder_layer(in_channels, 64, stride=2, batch_norm=False),  # CL(64,4,2)
                encoder_layer(64, 128, stride=2),  # CBL(128,4,2)
                encoder_layer(128, 256, stride=2),  # CBL(256,4,2)
                encoder_layer(256, 512, stride=1),  # CBL(512,4,1)
            ]
        )
        self.bottleneck = nn.Sequential(*(DilatedResidualInceptionBlock(512, 256) for _ in range(blocks)))
        self.decoder = nn.ModuleList(
            [
                decoder_layer(512, 256, stride=1, dropout=True),  # CBDR(256,4,1)
                decoder_layer(256 + 256, 128, stride=2, dropout=True),  # CBDR(128,4,2)
                decoder_layer(128 + 128, 64, stride=2, dropout=False),  # CBR(64,4,2)
                nn.Sequential(  # CT(out,4,2)
                    nn.ConvTranspose2d(64 + 64, out_channels, 4, stride=2, padding=1), nn.Tanh()
                ),
            ]
        )
        init_pix2pix_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(f"DRIB generator: height and width must be multiples of 8, got {tuple(x.shape[-2:])}")
        skips: List[torch.Tensor] = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        x = self.bottleneck(x)
        # skips[3] (the stride-1 512 layer) feeds the DRIBs; the decoder mirrors skips[2], [1], [0]
        x = self.decoder[0](x)
        for layer, skip in zip(self.decoder[1:], (skips[2], skips[1], skips[0])):
            x = layer(torch.cat([x, skip], dim=1))
        return x


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN (Table 1): logits for (condition, image) pairs.

    Args:
        condition_channels: channels of the generator input (the condition).
        image_channels: channels of the real or generated image.
    """

    size_multiple = 16

    def __init__(self, condition_channels: int, image_channels: int) -> None:
        super().__init__()
        self.condition_channels = condition_channels
        self.image_channels = image_channels
        widths = (64, 128, 256, 512)
        layers: List[nn.Module] = []
        in_channels = condition_channels + image_channels
        for width in widths:  # CBL(w,4,2) x 4
            layers += [
                nn.Conv2d(in_channels, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            ]
            in_channels = width
        layers.append(nn.Conv2d(in_channels, 1, 3, stride=1, padding=1))  # C(1,3,1)
        self.net = nn.Sequential(*layers)
        init_pix2pix_(self)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def _check(tensor: Optional[torch.Tensor], name: str, channels: int, model: str) -> torch.Tensor:
    if tensor is None:
        raise ValueError(f"{model}: input {name!r} is missing; expected a (N, {channels}, H, W) tensor")
    if tensor.ndim != 4 or tensor.shape[1] != channels:
        raise ValueError(f"{model}: input {name!r} has shape {tuple(tensor.shape)}; expected (N, {channels}, H, W)")
    return tensor


class SarToOpticalGAN(nn.Module):
    """GAN1's generator: Sentinel-1 -> optical image with ``s2_bands`` bands ("signed" scaling).

    Follows the uniform calling convention: ``forward(s2=None, s1=..., terrain=None)``; ``s2``
    and ``terrain`` are ignored. :meth:`discriminator` builds the matching PatchGAN.
    """

    model_name = "sar2opt_gan"
    size_multiple = 8

    def __init__(self, s2_bands: int = 3, s1_bands: int = 1, blocks: int = 8) -> None:
        super().__init__()
        if s1_bands < 1:
            raise ValueError("sar2opt_gan: needs at least one Sentinel-1 band")
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = s2_bands
        self.generator = DRIBGenerator(s1_bands, s2_bands, blocks)

    def condition(self, s2: Optional[torch.Tensor] = None, s1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The generator input (what the discriminator is conditioned on)."""
        return _check(s1, "s1", self.s1_bands, self.model_name)

    def forward(
        self,
        s2: Optional[torch.Tensor] = None,
        s1: Optional[torch.Tensor] = None,
        terrain: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return self.generator(self.condition(s2, s1))

    def discriminator(self) -> PatchDiscriminator:
        return PatchDiscriminator(self.s1_bands, self.s2_bands)


class CloudRemovalGAN(nn.Module):
    """GAN2's generator: cloudy S2 (+ SAR translated to optical) -> cloud-free S2.

    Args:
        s2_bands: S2 bands in and out.
        s1_bands: S1 bands; 0 for the optical-only variant.
        sar_input: ``"translated"`` (the paper: SAR goes through a :class:`DRIBGenerator`
            translator first) or ``"raw"`` (SAR bands concatenated directly, Table 5 row 2).
        freeze_translator: keep the translator's weights fixed and its batch norm in eval mode
            (it is trained beforehand as GAN1; load it with :meth:`load_translator`).
        blocks: DRIBs per generator (8).
    """

    model_name = "cr_gan"
    size_multiple = 8

    def __init__(
        self,
        s2_bands: int = 3,
        s1_bands: int = 1,
        sar_input: str = "translated",
        freeze_translator: bool = True,
        blocks: int = 8,
    ) -> None:
        super().__init__()
        if sar_input not in ("translated", "raw"):
            raise ValueError(f"cr_gan: sar_input must be 'translated' or 'raw', got {sar_input!r}")
        self.s2_bands = s2_bands
        self.s1_bands = s1_bands
        self.out_bands = s2_bands
        self.sar_input = sar_input
        self.freeze_translator = freeze_translator
        self.translator: Optional[DRIBGenerator] = None
        extra = 0
        if s1_bands and sar_input == "translated":
            self.translator = DRIBGenerator(s1_bands, s2_bands, blocks)
            if freeze_translator:
                self.translator.requires_grad_(False)
            extra = s2_bands
        elif s1_bands:
            extra = s1_bands
        self.condition_channels = s2_bands + extra
        self.generator = DRIBGenerator(self.condition_channels, s2_bands, blocks)

    def train(self, mode: bool = True) -> "CloudRemovalGAN":
        super().train(mode)
        if self.translator is not None and self.freeze_translator:
            self.translator.eval()
        return self

    def load_translator(self, state_dict) -> None:
        """Load GAN1 weights (a :class:`SarToOpticalGAN` or :class:`DRIBGenerator` state dict)."""
        if self.translator is None:
            raise ValueError("cr_gan: this configuration has no SAR translator")
        prefix = "generator."
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        self.translator.load_state_dict(state_dict)

    def condition(
        self,
        s2: Optional[torch.Tensor],
        s1: Optional[torch.Tensor] = None,
        translated: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The generator input: cloudy S2, then the translated (or raw) SAR channels."""
        s2 = _check(s2, "s2", self.s2_bands, self.model_name)
        if not self.s1_bands:
            return s2
        if self.translator is not None:
            if translated is None:
                translated = self.translator(_check(s1, "s1", self.s1_bands, self.model_name))
            return torch.cat([s2, _check(translated, "translated", self.s2_bands, self.model_name)], dim=1)
        return torch.cat([s2, _check(s1, "s1", self.s1_bands, self.model_name)], dim=1)

    def forward(
        self,
        s2: torch.Tensor,
        s1: Optional[torch.Tensor] = None,
        terrain: Optional[torch.Tensor] = None,
        translated: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict the cloud-free S2 ("signed" scaling).

        ``translated`` may carry a precomputed GAN1 output instead of ``s1`` (training with
        cached translations); ``terrain`` is ignored.
        """
        return self.generator(self.condition(s2, s1, translated))

    def discriminator(self) -> PatchDiscriminator:
        return PatchDiscriminator(self.condition_channels, self.s2_bands)
