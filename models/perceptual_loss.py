"""The loss of CA-MTCR: L1 plus VGG16 feature-reconstruction and style (Gram) terms.

CA-MTCR (You et al. 2026, seed 003, eq. 13-16 and section 4.1):
    L = 2 * L1 + 1 * L_fr + 250 * L_sr
with VGG16 features at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 for both the feature
reconstruction loss L_fr (mean absolute difference of the features, summed over the layers)
and the style loss L_sr (difference of the Gram matrices, summed over the layers).

Choices the paper leaves open:
* VGG16 sees three bands: the true-colour B4, B3, B2 picked from the S2 stack (``rgb``),
  values in [0, 1] normalised with the ImageNet mean and standard deviation.
* Gram matrix of a (N, C, H, W) feature: F F^T / (C H W). Style distance: the mean absolute
  difference of the Gram matrices, as eq. 15 writes it (the text says squared Frobenius
  norm; ``style_distance="squared_frobenius"`` gives that, summed over the Gram entries and
  averaged over the batch). Eq. 15's sum starts at l = 4 while section 4.1 sets L = 5 for
  both terms; all five layers are used by default (``style_layers`` to change).
* The VGG16 weights come from a file the user gives: a torchvision ``vgg16`` state dict
  (``features.0.weight`` ...), loaded with ``torch.load(weights_only=True)``, or the same
  tensors as ``.safetensors``. Files holding anything but tensors are refused, so loading
  never runs pickled code. The network is frozen and kept in eval mode.
* Without a VGG16 file the loss is ``2 * L1 + 1 * (1 - SSIM)`` (the L1 weight of the paper,
  the SSIM of :func:`ssim_loss` in place of the two perceptual terms); a warning says so.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .losses import check_images, l1_loss, ssim_loss

__all__ = ["VGG16_LAYERS", "VGG16Features", "load_vgg16_state_dict", "gram_matrix", "CAMTCRLoss"]

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
        check_images(pred, target)
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
