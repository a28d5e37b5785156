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


def _check_images(pred: torch.Tensor, *others: torch.Tensor) -> None:
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
    _check_images(pred, target)
    return (pred - target).abs().mean()


def cloud_adaptive_l1(
    pred: torch.Tensor, target: torch.Tensor, cloudy: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """mean(M |P - T| + (1 - M) |P - I|): target under the mask, the cloudy input elsewhere."""
    _check_images(pred, target, cloudy)
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
    _check_images(pred, target)
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


# --------------------------------------------------------------------------- CA-MTCR loss
# CA-MTCR (You et al. 2026, seed 003, eq. 13-16 and section 4.1):
#     L = 2 * L1 + 1 * L_fr + 250 * L_sr
# with VGG16 features at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 for both the feature
# reconstruction loss L_fr (mean absolute difference of the features, summed over the layers)
# and the style loss L_sr (difference of the Gram matrices, summed over the layers).
#
# Choices the paper leaves open:
# * VGG16 sees three bands: the true-colour B4, B3, B2 picked from the S2 stack (``rgb``),
#   values in [0, 1] normalised with the ImageNet mean and standard deviation.
# * Gram matrix of a (N, C, H, W) feature: F F^T / (C H W). Style distance: the mean absolute
#   difference of the Gram matrices, as eq. 15 writes it (the text says squared Frobenius
#   norm; ``style_distance="squared_frobenius"`` gives that, summed over the Gram entries and
#   averaged over the batch). Eq. 15's sum starts at l = 4 while section 4.1 sets L = 5 for
#   both terms; all five layers are used by default (``style_layers`` to change).
# * The VGG16 weights come from a file the user gives: a torchvision ``vgg16`` state dict
#   (``features.0.weight`` ...), loaded with ``torch.load(weights_only=True)``, or the same
#   tensors as ``.safetensors``. Files holding anything but tensors are refused, so loading
#   never runs pickled code. The network is frozen and kept in eval mode.
# * Without a VGG16 file the loss is ``2 * L1 + 1 * (1 - SSIM)`` (the L1 weight of the paper,
#   the SSIM of :func:`ssim_loss` in place of the two perceptual terms); a warning says so.
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union  # noqa: E402

#: Index of each named ReLU in torchvision's ``vgg16().features``.
VGG16_LAYERS: Dict[str, int] = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 18, "relu5_1": 25}
#: torchvision's VGG16 configuration ("M" = 2x2 max-pool).
_VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: True-colour (B4, B3, B2) channel indices by number of S2 bands, in the band orders of
#: :mod:`topoclear.models.registry` (13 Level-1C, 12 Level-2A, 10 bands of 10/20 m, 4 bands of 10 m, RGB).
S2_RGB_INDICES: Dict[int, Tuple[int, int, int]] = {
    13: (3, 2, 1), 12: (3, 2, 1), 10: (2, 1, 0), 4: (2, 1, 0), 3: (0, 1, 2)
}
CA_MTCR_LAYERS: Tuple[str, ...] = tuple(VGG16_LAYERS)


class VGG16Features(nn.Module):
    """VGG16 convolutional layers up to the deepest requested ReLU, named as torchvision's.

    ``features`` is an ``nn.Sequential`` with torchvision's indices, so the ``features.*`` part
    of a torchvision ``vgg16`` state dict loads directly. ``forward(x)`` maps a normalised RGB
    batch to ``{layer name: activation}`` for the requested layers of :data:`VGG16_LAYERS`.
    """

    def __init__(self, layers: Sequence[str] = CA_MTCR_LAYERS) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layers {unknown}; known: {', '.join(VGG16_LAYERS)}")
        self.layers = tuple(layers)
        last = max(VGG16_LAYERS[name] for name in self.layers)
        modules = []
        channels = 3
        for item in _VGG16_CONFIG:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*modules[: last + 1])
        self._taps = {VGG16_LAYERS[name]: name for name in self.layers}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self._taps:
                out[self._taps[index]] = x
        return out

    def load_vgg16(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy the needed ``features.*`` tensors from a VGG16 state dict (other keys ignored).

        Keys may carry a prefix before ``features.`` (``module.``, ``vgg.``). Raises ValueError
        when a needed tensor is missing or has the wrong shape.
        """
        found: Dict[str, torch.Tensor] = {}
        for key, value in state.items():
            at = key.find("features.")
            if at >= 0 and (at == 0 or key[at - 1] == "."):
                found[key[at:]] = value
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        missing = [k for k in own if k not in found]
        if missing:
            more = " ..." if len(missing) > 6 else ""
            raise ValueError(f"not a VGG16 state dict: missing {', '.join(missing[:6])}{more}")
        wrong = [
            f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
            for k, v in own.items()
            if found[k].shape != v.shape
        ]
        if wrong:
            raise ValueError(f"not a VGG16 state dict: wrong shapes {'; '.join(wrong[:4])}")
        self.features.load_state_dict({k[len("features."):]: found[k] for k in own})

    @classmethod
    def from_file(cls, path: Union[str, Path], layers: Sequence[str] = CA_MTCR_LAYERS) -> "VGG16Features":
        """Frozen, eval-mode VGG16 features from a weights file (see :func:`load_vgg16_state_dict`)."""
        vgg = cls(layers)
        vgg.load_vgg16(load_vgg16_state_dict(path))
        vgg.requires_grad_(False)
        return vgg.eval()


def load_vgg16_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Tensors of a weights file: ``.safetensors``, or a PyTorch file read with ``weights_only=True``.

    A checkpoint that nests the tensors under ``"state_dict"`` is accepted. Raises
    FileNotFoundError, or ValueError for a file holding anything but a mapping of tensors
    (pickled objects are refused, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, corrupt file, not a weights file at all
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not a VGG16 weights file (a state dict of tensors, .pth/.pt or .safetensors); "
            f"objects other than tensors are not loaded: {reason}"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): ``F F^T / (C H W)``, in float32 at least."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    if f.dtype in (torch.float16, torch.bfloat16):
        f = f.float()
    return f @ f.transpose(1, 2) / (c * h * w)


class CAMTCRLoss(nn.Module):
    """CA-MTCR training loss: ``2 L1 + 1 L_fr + 250 L_sr`` (VGG16), or ``2 L1 + 1 (1 - SSIM)``.

    ``forward(pred, target)`` on (N, C, H, W) S2 images in [0, 1] returns the scalar loss;
    :meth:`terms` returns the weighted sum and the unweighted terms. See the comment block
    above for the choices the paper leaves open.

    Args:
        vgg_weights: path of a VGG16 state dict (torchvision naming; ``.pth`` / ``.pt`` read with
            ``weights_only=True``, or ``.safetensors``). None: L1 + SSIM instead (warns).
        l1_weight, feature_weight, style_weight: lambda_1, lambda_2, lambda_3 (2, 1, 250).
        ssim_weight: weight of 1 - SSIM when no VGG16 file is given.
        rgb: indices of the B4, B3, B2 channels (default from :data:`S2_RGB_INDICES`).
        feature_layers, style_layers: VGG16 layers of L_fr and L_sr (default all five).
        style_distance: ``"l1"`` (eq. 15) or ``"squared_frobenius"``.
        data_range: value span for SSIM.
    """

    def __init__(
        self,
        vgg_weights: Optional[Union[str, Path]] = None,
        l1_weight: float = 2.0,
        feature_weight: float = 1.0,
        style_weight: float = 250.0,
        ssim_weight: float = 1.0,
        rgb: Optional[Sequence[int]] = None,
        feature_layers: Sequence[str] = CA_MTCR_LAYERS,
        style_layers: Sequence[str] = CA_MTCR_LAYERS,
        style_distance: str = "l1",
        data_range: float = 1.0,
    ) -> None:
        super().__init__()
        if style_distance not in ("l1", "squared_frobenius"):
            raise ValueError(f"style_distance must be 'l1' or 'squared_frobenius', got {style_distance!r}")
        self.l1_weight = float(l1_weight)
        self.feature_weight = float(feature_weight)
        self.style_weight = float(style_weight)
        self.ssim_weight = float(ssim_weight)
        self.rgb = None if rgb is None else tuple(int(i) for i in rgb)
        if self.rgb is not None and len(self.rgb) != 3:
            raise ValueError(f"rgb must give three channel indices (B4, B3, B2), got {self.rgb}")
        self.feature_layers = tuple(feature_layers)
        self.style_layers = tuple(style_layers)
        self.style_distance = style_distance
        self.data_range = float(data_range)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if vgg_weights is None:
            self.vgg: Optional[VGG16Features] = None
            self.mode = "l1_ssim"
            warnings.warn(
                "CA-MTCR loss without VGG16 weights: using 2*L1 + 1*(1 - SSIM) instead of the paper's "
                "2*L1 + 1*VGG16 feature loss + 250*style loss (give vgg_weights= to follow the paper)",
                UserWarning,
                stacklevel=2,
            )
        else:
            layers = tuple(n for n in VGG16_LAYERS if n in set(self.feature_layers) | set(self.style_layers))
            self.vgg = VGG16Features.from_file(vgg_weights, layers)
            self.mode = "vgg"

    def train(self, mode: bool = True) -> "CAMTCRLoss":
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()  # frozen feature extractor
        return self

    def _rgb(self, x: torch.Tensor) -> torch.Tensor:
        indices = self.rgb if self.rgb is not None else S2_RGB_INDICES.get(x.shape[1])
        if indices is None:
            raise ValueError(
                f"CA-MTCR loss: no default true-colour bands for {x.shape[1]} channels; give rgb=(i_B4, i_B3, i_B2)"
            )
        if max(indices) >= x.shape[1]:
            raise ValueError(f"CA-MTCR loss: rgb indices {indices} out of range for {x.shape[1]} channels")
        rgb = x[:, list(indices)]
        return (rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype)

    def _style(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = gram_matrix(a) - gram_matrix(b)
        if self.style_distance == "l1":
            return diff.abs().mean()
        return diff.pow(2).sum(dim=(1, 2)).mean()

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``(loss, {"l1": ..., "feature": ..., "style": ...})`` or ``{"l1", "ssim"}`` (unweighted, detached)."""
        _check_images(pred, target)
        l1 = l1_loss(pred, target)
        if self.vgg is None:
            ssim_term = ssim_loss(pred, target, data_range=self.data_range)
            total = self.l1_weight * l1 + self.ssim_weight * ssim_term
            return total, {"l1": l1.detach(), "ssim": ssim_term.detach()}
        out_features = self.vgg(self._rgb(pred))
        with torch.no_grad():
            ref_features = self.vgg(self._rgb(target))
        feature = sum((out_features[n] - ref_features[n]).abs().mean() for n in self.feature_layers)
        style = sum(self._style(out_features[n], ref_features[n]) for n in self.style_layers)
        total = self.l1_weight * l1 + self.feature_weight * feature + self.style_weight * style
        return total, {"l1": l1.detach(), "feature": feature.detach(), "style": style.detach()}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.terms(pred, target)[0]

    def extra_repr(self) -> str:
        if self.vgg is None:
            return f"mode=l1_ssim: {self.l1_weight}*L1 + {self.ssim_weight}*(1 - SSIM)"
        return (
            f"mode=vgg: {self.l1_weight}*L1 + {self.feature_weight}*L_fr{list(self.feature_layers)} + "
            f"{self.style_weight}*L_sr{list(self.style_layers)} ({self.style_distance})"
        )


__all__ += [
    "VGG16_LAYERS",
    "VGG16Features",
    "load_vgg16_state_dict",
    "gram_matrix",
    "CAMTCRLoss",
]
