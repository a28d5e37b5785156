"""The SAR encoder of CA-MTCR and the Noise2Noise VQ-VAE that pretrains it (see the package docstring)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DOWNSAMPLING, MBConv


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
