"""Training losses for cloud removal (torch).

Shapes: predictions ``P``, targets ``T`` and cloudy inputs ``I`` are (N, C, H, W); masks are
(N, 1, H, W) (broadcast over the bands), (N, H, W) or (N, C, H, W), with 1 on cloud / cloud
shadow pixels (bool or float; float masks act as weights). Every loss is a scalar with
``mean`` reduction over all N * C * H * W elements (the ``N_tot`` of the papers).

* :func:`l1_loss` - L_T of DSen2-CR, the plain target loss.
* :func:`carl_loss` - Cloud-Adaptive Regularized Loss (DSen2-CR, Meraner et al. 2020, eq. 3):
  ``mean(CSM |P - T| + (1 - CSM) |P - I|) + lambda mean(|P - T|)``, lambda = 1.
* :func:`tmarl_loss` - Twin Mask Adaptive Regularized Loss (Oppenhuis & Gijzen, eq. 4-6):
  ``alpha L_cloud + (1 - alpha) L_shadow + lambda mean(|P - T|)`` where L_cloud and L_shadow
  are CARL's cloud-adaptive part with the cloud mask CM and the shadow mask SM respectively.
  The paper tried alpha in {0.2, 0.5, 0.8} with lambda = 1 and found alpha = 0.8 best (lowest
  total MAE); its code defaults to 0.5. Here alpha defaults to 0.8.
* :func:`ssim_loss`, :func:`l1_ssim_loss` - 1 - SSIM with the 11x11 Gaussian window
  (sigma 1.5) of :func:`topoclear.models.metrics.ssim_map`, and its weighted sum with L1.
* :func:`generator_loss`, :func:`discriminator_loss` - conditional-GAN objective of the
  SAR-to-optical / cloud-removal GANs (Darbaghshahi et al., eq. 1-5):
  ``L_G = L_cGAN + 100 L1 + 100 L_ssim``. Adversarial terms use binary cross-entropy on the
  discriminator's logits (PatchGAN maps of any shape): the generator minimises the
  non-saturating ``-log D(x, G(x))`` (pix2pix practice, same fixed point as
  ``log(1 - D(x, G(x)))``), the discriminator ``-log D(x, y) - log(1 - D(x, G(x)))``, halved
  as in pix2pix to slow it relative to the generator.

Every function has an ``nn.Module`` counterpart holding its hyper-parameters; :data:`LOSSES`
maps names to the pixel-loss modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import SSIM_SIGMA, SSIM_WIN_SIZE, ssim_map

__all__ = [
    "l1_loss",
    "cloud_adaptive_l1",
    "carl_loss",
    "tmarl_loss",
    "ssim_loss",
    "l1_ssim_loss",
    "generator_loss",
    "discriminator_loss",
    "L1Loss",
    "CARLLoss",
    "TMARLLoss",
    "SSIMLoss",
    "L1SSIMLoss",
    "CGANGeneratorLoss",
    "CGANDiscriminatorLoss",
    "LOSSES",
]


def check_images(pred: torch.Tensor, *others: torch.Tensor) -> None:
    if pred.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got shape {tuple(pred.shape)}")
    for o in others:
        if o.shape != pred.shape:
            raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(o.shape)}")


def _mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mask as ``like``'s dtype, shaped (N, 1 or C, H, W) for broadcasting."""
    m = torch.as_tensor(mask, device=like.device).to(like.dtype)
    if m.ndim == 3:
        m = m[:, None]
    n, c, h, w = like.shape
    if m.ndim != 4 or m.shape[-2:] != (h, w) or m.shape[1] not in (1, c) or m.shape[0] not in (1, n):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images {tuple(like.shape)}")
    return m


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean(|P - T|) over all elements (DSen2-CR's L_T)."""
    check_images(pred, target)
    return (pred - target).abs().mean()


def cloud_adaptive_l1(
    pred: torch.Tensor, target: torch.Tensor, cloudy: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """mean(M |P - T| + (1 - M) |P - I|): target under the mask, the cloudy input elsewhere."""
    check_images(pred, target, cloudy)
    m = _mask(mask, pred)
    return (m * (pred - target).abs() + (1 - m) * (pred - cloudy).abs()).mean()


def carl_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    cloudy: torch.Tensor,
    csm: torch.Tensor,
    lam: float = 1.0,
) -> torch.Tensor:
    """CARL: ``mean(CSM |P-T| + (1-CSM) |P-I|) + lam * mean(|P-T|)`` (lam = 1 in DSen2-CR).

    ``csm`` is the cloud/cloud-shadow mask (1 = cloud or shadow). With CSM all ones the loss is
    (1 + lam) L1(P, T); with CSM all zeros it is L1(P, I) + lam L1(P, T).
    """
    return cloud_adaptive_l1(pred, target, cloudy, csm) + lam * l1_loss(pred, target)


def tmarl_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    cloudy: torch.Tensor,
    cloud_mask: torch.Tensor,
    shadow_mask: torch.Tensor,
    alpha: float = 0.8,
    lam: float = 1.0,
) -> torch.Tensor:
    """TMARL: ``alpha L_cloud + (1 - alpha) L_shadow + lam * mean(|P - T|)``.

    L_cloud = mean(CM |P-T| + (1-CM) |P-I|), L_shadow the same with SM. ``alpha`` in [0, 1]
    (0.8 best in the paper), ``lam`` = 1. With CM = SM = CSM it equals :func:`carl_loss`
    for any alpha.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    l_cloud = cloud_adaptive_l1(pred, target, cloudy, cloud_mask)
    l_shadow = cloud_adaptive_l1(pred, target, cloudy, shadow_mask)
    return alpha * l_cloud + (1 - alpha) * l_shadow + lam * l1_loss(pred, target)


def ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = SSIM_WIN_SIZE,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """1 - mean SSIM (seed 004's L_ssim = mean over window centres of 1 - SSIM_p).

    ``data_range`` is the span of the image values: 1 for reflectance in [0, 1], 2 for the
    [-1, 1] scaling of pix2pix-style GANs. Images must be at least ``win_size`` px on a side.
    """
    check_images(pred, target)
    return 1.0 - ssim_map(pred, target, data_range=data_range, win_size=win_size, sigma=sigma).mean()


def l1_ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    l1_weight: float = 1.0,
    ssim_weight: float = 1.0,
    data_range: float = 1.0,
) -> torch.Tensor:
    """``l1_weight * mean|P - T| + ssim_weight * (1 - SSIM(P, T))``."""
    return l1_weight * l1_loss(pred, target) + ssim_weight * ssim_loss(pred, target, data_range=data_range)


def generator_loss(
    d_fake_logits: torch.Tensor,
    pred: torch.Tensor,
    target: torch.Tensor,
    adv_weight: float = 1.0,
    l1_weight: float = 100.0,
    ssim_weight: float = 100.0,
    data_range: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator objective ``adv_weight L_adv + l1_weight L1 + ssim_weight (1 - SSIM)``.

    ``d_fake_logits``: discriminator logits for (condition, G(condition)), any shape (a
    PatchGAN map); L_adv = BCE-with-logits against 1 (non-saturating). Weights 1, 100, 100 as
    in seed 004 (pix2pix alone: 1, 100, 0). Returns the total and its parts ``{"adv", "l1",
    "ssim"}`` (unweighted, detached) for logging.
    """
    adv = F.binary_cross_entropy_with_logits(d_fake_logits, torch.ones_like(d_fake_logits))
    l1 = l1_loss(pred, target)
    s = ssim_loss(pred, target, data_range=data_range) if ssim_weight else torch.zeros_like(l1)
    total = adv_weight * adv + l1_weight * l1 + ssim_weight * s
    return total, {"adv": adv.detach(), "l1": l1.detach(), "ssim": s.detach()}


def discriminator_loss(
    d_real_logits: torch.Tensor, d_fake_logits: torch.Tensor, weight: float = 0.5
) -> torch.Tensor:
    """``weight * (BCE(D(x, y), 1) + BCE(D(x, G(x)), 0))`` on logits; weight 0.5 as in pix2pix.

    Detach the generator output before computing ``d_fake_logits`` for this loss.
    """
    real = F.binary_cross_entropy_with_logits(d_real_logits, torch.ones_like(d_real_logits))
    fake = F.binary_cross_entropy_with_logits(d_fake_logits, torch.zeros_like(d_fake_logits))
    return weight * (real + fake)


# --------------------------------------------------------------------------- modules
class L1Loss(nn.Module):
    """Module form of :func:`l1_loss`: ``forward(pred, target)``."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l1_loss(pred, target)


class CARLLoss(nn.Module):
    """Module form of :func:`carl_loss`: ``forward(pred, target, cloudy, csm)``."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = float(lam)

    def forward(self, pred, target, cloudy, csm) -> torch.Tensor:
        return carl_loss(pred, target, cloudy, csm, lam=self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


class TMARLLoss(nn.Module):
    """Module form of :func:`tmarl_loss`: ``forward(pred, target, cloudy, cloud_mask, shadow_mask)``."""

    def __init__(self, alpha: float = 0.8, lam: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.lam = float(lam)

    def forward(self, pred, target, cloudy, cloud_mask, shadow_mask) -> torch.Tensor:
        return tmarl_loss(pred, target, cloudy, cloud_mask, shadow_mask, alpha=self.alpha, lam=self.lam)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, lam={self.lam}"


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`: ``forward(pred, target)``."""

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = float(data_range)

    def forward(self, pred, target) -> torch.Tensor:
        return ssim_loss(pred, target, data_range=self.data_range)


class L1SSIMLoss(nn.Module):
    """Module form of :func:`l1_ssim_loss`: ``forward(pred, target)``."""

    def __init__(self, l1_weight: float = 1.0, ssim_weight: float = 1.0, data_range: float = 1.0) -> None:
        super().__init__()
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)
        self.data_range = float(data_range)

    def forward(self, pred, target) -> torch.Tensor:
        return l1_ssim_loss(pred, target, self.l1_weight, self.ssim_weight, self.data_range)

    def extra_repr(self) -> str:
        return f"l1_weight={self.l1_weight}, ssim_weight={self.ssim_weight}, data_range={self.data_range}"


class CGANGeneratorLoss(nn.Module):
    """Module form of :func:`generator_loss`: ``forward(d_fake_logits, pred, target) -> (total, parts)``."""

    def __init__(
        self, adv_weight: float = 1.0, l1_weight: float = 100.0, ssim_weight: float = 100.0, data_range: float = 1.0
    ) -> None:
        super().__init__()
        self.adv_weight = float(adv_weight)
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)
        self.data_range = float(data_range)

    def forward(self, d_fake_logits, pred, target):
        return generator_loss(
            d_fake_logits, pred, target, self.adv_weight, self.l1_weight, self.ssim_weight, self.data_range
        )


class CGANDiscriminatorLoss(nn.Module):
    """Module form of :func:`discriminator_loss`: ``forward(d_real_logits, d_fake_logits)``."""

    def __init__(self, weight: float = 0.5) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, d_real_logits, d_fake_logits) -> torch.Tensor:
        return discriminator_loss(d_real_logits, d_fake_logits, self.weight)


#: Pixel losses by name (constructors take the hyper-parameters as keywords).
LOSSES: dict[str, type[nn.Module]] = {
    "l1": L1Loss,
    "carl": CARLLoss,
    "tmarl": TMARLLoss,
    "ssim": SSIMLoss,
    "l1_ssim": L1SSIMLoss,
}
