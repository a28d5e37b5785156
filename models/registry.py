"""The catalogue of cloud-removal networks: every model registered once, with all its facts.

Each network is one :class:`~topoclear.models.spec.ModelSpec` entry below (its module holds the
network): inputs and band sets, value scaling, receptive field, default tile sizes per device,
optical-only variant, whether whole-scene removal offers it, menu order and shipped weights.
The Processing algorithms, the Cloud removal dock and the training choices are generated from
these entries (:func:`removal_models`, :func:`training_models`): adding a model is its module
plus one :func:`register_model` call.

:func:`build_model` resolves the channel counts into an :class:`InputLayout`, builds the network
and attaches a forward pre-hook that checks every call against that layout, so a missing input
fails with a message that names what is missing and what was expected.

Multi-temporal models (CA-MTCR) register with ``multi_temporal=True``: their ``s2`` / ``s1``
tensors are (N, T, C, H, W) instead of (N, C, H, W); everything else is the same.

This module imports no torch: the networks' modules are imported when a model is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

from .bands import S1_BANDS, S2_BANDS_10_20M, S2_BANDS_L1C, S2_BANDS_RGB, TERRAIN_BANDS
from .scaling import SCALINGS
from .spec import (INPUT_NAMES, BandsArg, InputLayout, InputMismatchError, MissingInputError, ModelSpec,
                   TileDefaults)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .gan import PatchDiscriminator

__all__ = ["REGISTRY", "ModelSpec", "InputLayout", "TileDefaults", "UnknownModelError", "InputMismatchError",
           "MissingInputError", "register_model", "unregister_model", "list_models", "get_spec", "removal_models",
           "training_models", "build_model", "build_discriminator", "count_parameters"]


class UnknownModelError(ValueError):
    """No model is registered under the requested name."""


# ---------------------------------------------------------------------------------------------
# input check attached to built models
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputCheck:
    """Forward pre-hook that checks the call against a model's layout (picklable)."""

    model_name: str
    layout: InputLayout

    def __call__(self, module: "nn.Module", args: tuple, kwargs: dict):
        given = dict(kwargs)
        given.update(zip(INPUT_NAMES, args))
        get_spec(self.model_name).check_inputs(self.layout, **given)
        return None


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
REGISTRY: Dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the catalogue (``replace=True`` to overwrite an existing name)."""
    if spec.name in REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    if spec.scaling not in SCALINGS:
        raise ValueError(f"model {spec.name!r}: unknown scaling {spec.scaling!r}; known: {', '.join(SCALINGS)}")
    REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> Optional[ModelSpec]:
    """Remove the model ``name`` from the catalogue; its spec, or None when it was not registered."""
    return REGISTRY.pop(name, None)


def list_models(multi_temporal: Optional[bool] = None) -> List[str]:
    """Registered model names, sorted; optionally only (non-)multi-temporal ones."""
    return sorted(n for n, s in REGISTRY.items() if multi_temporal is None or s.multi_temporal == multi_temporal)


def _menu(specs) -> List[ModelSpec]:
    return sorted(specs, key=lambda s: (s.menu_order, s.name))


def removal_models() -> List[ModelSpec]:
    """The models whole-scene cloud removal offers, in menu order."""
    return _menu(s for s in REGISTRY.values() if s.offered_for_removal)


def training_models() -> List[ModelSpec]:
    """The models the training engine can train (single-image ones), in menu order."""
    return _menu(s for s in REGISTRY.values() if not s.multi_temporal)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; :class:`UnknownModelError` otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available models: {', '.join(list_models())}"
        ) from None


def build_model(
    name: str,
    s2_bands: BandsArg = None,
    s1_bands: BandsArg = None,
    terrain_bands: BandsArg = None,
    **options,
) -> "nn.Module":
    """Build the network registered as ``name``.

    Band arguments take a count (``s2_bands=10``) or band names (``s2_bands=("B4", "B3", "B2")``);
    None uses the spec's defaults. ``s1_bands=0`` builds the variant without SAR where the model
    has one. Extra keyword ``options`` go to the model's constructor (see ``ModelSpec.options``).

    The returned module has ``spec_name`` and ``input_layout`` attributes and checks its inputs
    on every call (see :class:`InputCheck`).
    """
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(spec.options) or 'none'}"
        )
    layout = spec.layout(s2_bands, s1_bands, terrain_bands)
    model = spec.builder(s2_bands=len(layout.s2), s1_bands=len(layout.s1), terrain_bands=len(layout.terrain), **options)
    model.spec_name = name
    model.input_layout = layout
    model.register_forward_pre_hook(InputCheck(name, layout), with_kwargs=True)
    return model


def build_discriminator(model: "nn.Module") -> "PatchDiscriminator":
    """The PatchGAN discriminator matching an adversarial model built by :func:`build_model`."""
    if not hasattr(model, "discriminator"):
        name = getattr(model, "spec_name", type(model).__name__)
        adversarial = [n for n, s in REGISTRY.items() if s.adversarial]
        raise ValueError(
            f"model {name!r} is not trained adversarially; models with a discriminator: {', '.join(adversarial)}"
        )
    return model.discriminator()


def count_parameters(model: "nn.Module", trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases; not batch-norm running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------------
# builders and receptive fields (the networks are imported when built)
# ---------------------------------------------------------------------------------------------
def _build_unet(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .unet import UNet

    return UNet(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_crt_unet(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .crt_unet import CRTUNet

    return CRTUNet(s2_bands=s2_bands, s1_bands=s1_bands, terrain_bands=terrain_bands, **options)


def _build_dsen2cr(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .dsen2cr import DSen2CR

    return DSen2CR(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_unet_fill(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .fill_prior import FillPriorUNet

    return FillPriorUNet(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_crt_unet_fill(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .fill_prior import FillPriorCRTUNet

    return FillPriorCRTUNet(s2_bands=s2_bands, s1_bands=s1_bands, terrain_bands=terrain_bands, **options)


def _build_dsen2cr_fill(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .fill_prior import FillPriorDSen2CR

    return FillPriorDSen2CR(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_sar2opt(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .gan import SarToOpticalGAN

    return SarToOpticalGAN(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_cr_gan(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .gan import CloudRemovalGAN

    return CloudRemovalGAN(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_ca_mtcr(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> "nn.Module":
    from .ca_mtcr import CAMTCR

    return CAMTCR(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def unet_receptive_radius(model) -> Optional[int]:
    """UNet / CRT-UNet with ``L`` levels: ``7 * 2**(L-1) - 5`` px (219 px for 6 levels).

    Measured as the support of the input gradient of one output pixel over all positions modulo
    the pooling grid; it obeys ``r(L) = 2 r(L-1) + 5`` from L = 2 (9 px) on."""
    widths = getattr(model, "widths", None)
    return None if widths is None else 7 * 2 ** (len(widths) - 1) - 5


def dsen2cr_receptive_radius(model) -> Optional[int]:
    """DSen2-CR: ``2 + 2 * blocks`` (one 3x3 convolution in the head, two per residual block, one in
    the tail): 34 px for the paper's 16 blocks."""
    body = getattr(model, "body", None)
    return None if body is None else 2 + 2 * len(body)


# ---------------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------------
_GAN_PAPER = (
    "Darbaghshahi, Mohammadi, Soryani: Cloud removal in remote sensing images using generative "
    "adversarial networks and SAR-to-optical image translation"
)

register_model(
    ModelSpec(
        name="crt_unet",
        title="CRT-UNet (S2 + S1 + terrain)",
        description=(
            "UNet that also reads the terrain: elevation, slope, aspect and hillshade (lit by the scene's "
            "sun). Made for mountains, where it separates clouds from snow and recovers relief under "
            "thick cloud better than the plain UNet. Needs a DEM aligned to the Sentinel-2 grid."
        ),
        builder=_build_crt_unet,
        default_s2_bands=S2_BANDS_10_20M,
        default_s1_bands=S1_BANDS,
        default_terrain_bands=TERRAIN_BANDS,
        scaling="unit",
        size_multiple=32,
        reference=(
            "Boumahdi et al., Multisource Topographic-Enhanced Cloud Removal, IEEE JSTARS 2025, "
            "doi:10.1109/JSTARS.2025.3572379"
        ),
        options=("out_bands", "widths", "residual", "terrain_names"),
        optical_variant=True,
        menu_order=10,
        receptive_field=unet_receptive_radius,
        tiles=TileDefaults(cpu=1024, cuda=2048),
        weights=("crt_unet.safetensors",),
    )
)
register_model(
    ModelSpec(
        name="unet",
        title="UNet (S2 + S1)",
        description=(
            "Encoder-decoder network that rebuilds a cloud-free Sentinel-2 image from the cloudy image "
            "and a Sentinel-1 radar image of (nearly) the same date. Baseline of CRT-UNet; use it where "
            "no elevation model is available. Inputs scaled to [0, 1]."
        ),
        builder=_build_unet,
        default_s2_bands=S2_BANDS_10_20M,
        default_s1_bands=S1_BANDS,
        scaling="unit",
        size_multiple=32,
        reference="Boumahdi et al., IEEE JSTARS 2025, doi:10.1109/JSTARS.2025.3572379 (baseline UNet of CRT-UNet)",
        options=("out_bands", "widths", "residual"),
        optical_variant=True,
        menu_order=20,
        receptive_field=unet_receptive_radius,
        tiles=TileDefaults(cpu=1024, cuda=2048),
        weights=("unet.safetensors", "unet_nosar.safetensors"),
    )
)
register_model(
    ModelSpec(
        name="dsen2cr",
        title="DSen2-CR (S2 + S1, residual)",
        description=(
            "Deep residual network that corrects the cloudy Sentinel-2 image with the help of Sentinel-1 "
            "radar; clear pixels are kept almost unchanged. Works on any tile size. Trained on worldwide "
            "SEN12MS-CR (all 13 Level-1C bands). Set s1_bands=0 for the optical-only variant."
        ),
        builder=_build_dsen2cr,
        default_s2_bands=S2_BANDS_L1C,
        default_s1_bands=S1_BANDS,
        scaling="dsen2cr",
        predicts_residual=True,
        size_multiple=1,
        reference=(
            "Meraner et al., ISPRS J. Photogramm. Remote Sens. 166 (2020) 333-346, "
            "doi:10.1016/j.isprsjprs.2020.05.013"
        ),
        options=("features", "blocks", "residual_scale"),
        optical_variant=True,
        menu_order=30,
        receptive_field=dsen2cr_receptive_radius,
        tiles=TileDefaults(cpu=256, cuda=512),
        weights=("dsen2cr.safetensors", "dsen2cr_nosar.safetensors"),
    )
)
_FILL_NOTE = (
    " Starts from the classic fill (GDAL FillNodata inside the cloud / shadow mask, computed first) and "
    "learns a correction of it inside the mask: output = fill + mask x correction, clear pixels kept."
)
register_model(
    ModelSpec(
        name="crt_unet_fill",
        title="CRT-UNet from the fill (S2 + S1 + terrain)",
        description="CRT-UNet (Sentinel-2, Sentinel-1 and the DEM's terrain stack) refining the fill." + _FILL_NOTE
        + " Needs a DEM; without Sentinel-1 its optical-only variant runs where one is shipped.",
        builder=_build_crt_unet_fill,
        default_s2_bands=S2_BANDS_10_20M,
        default_s1_bands=S1_BANDS,
        default_terrain_bands=TERRAIN_BANDS,
        scaling="unit",
        size_multiple=8,
        reference="Boumahdi et al., IEEE JSTARS 2025 (CRT-UNet), started from GDAL FillNodata "
                  "(topoclear.models.fill_prior)",
        options=("widths",),
        optical_variant=True,
        menu_order=5,
        receptive_field=unet_receptive_radius,
        tiles=TileDefaults(cpu=1024, cuda=2048),
        weights=("crt_unet_fill.safetensors",),
        prior="fill",
    )
)
register_model(
    ModelSpec(
        name="unet_fill",
        title="UNet from the fill (S2 + S1)",
        description="UNet (Sentinel-2, and Sentinel-1 where given) refining the fill." + _FILL_NOTE
        + " Without Sentinel-1 its optical-only variant runs.",
        builder=_build_unet_fill,
        default_s2_bands=S2_BANDS_10_20M,
        default_s1_bands=S1_BANDS,
        scaling="unit",
        size_multiple=8,
        reference="Boumahdi et al., IEEE JSTARS 2025 (baseline UNet), started from GDAL FillNodata "
                  "(topoclear.models.fill_prior)",
        options=("widths",),
        optical_variant=True,
        menu_order=6,
        receptive_field=unet_receptive_radius,
        tiles=TileDefaults(cpu=1024, cuda=2048),
        weights=("unet_fill.safetensors", "unet_fill_nosar.safetensors"),
        prior="fill",
    )
)
register_model(
    ModelSpec(
        name="dsen2cr_fill",
        title="DSen2-CR from the fill (S2 + S1)",
        description="DSen2-CR's residual blocks (Sentinel-2, and Sentinel-1 where given) refining the fill."
        + _FILL_NOTE + " Without Sentinel-1 its optical-only variant runs.",
        builder=_build_dsen2cr_fill,
        default_s2_bands=S2_BANDS_10_20M,
        default_s1_bands=S1_BANDS,
        scaling="unit",
        size_multiple=1,
        reference="Meraner et al., ISPRS J. 2020 (DSen2-CR), started from GDAL FillNodata "
                  "(topoclear.models.fill_prior)",
        options=("features", "blocks"),
        optical_variant=True,
        menu_order=7,
        receptive_field=dsen2cr_receptive_radius,
        tiles=TileDefaults(cpu=512, cuda=1024),
        weights=("dsen2cr_fill_nosar.safetensors",),
        prior="fill",
    )
)
register_model(
    ModelSpec(
        name="cr_gan",
        title="Cloud-removal GAN (S2 + translated S1)",
        description=(
            "Generator that removes clouds from the optical image using the SAR-to-optical translation of "
            "the radar image (it contains the SAR-to-optical generator, frozen by default). Default: RGB "
            "bands and VV, values in [-1, 1]. s1_bands=0 gives an optical-only variant."
        ),
        builder=_build_cr_gan,
        default_s2_bands=S2_BANDS_RGB,
        default_s1_bands=("VV",),
        scaling="signed",
        size_multiple=8,
        adversarial=True,
        reference=f"{_GAN_PAPER} (GAN2)",
        options=("sar_input", "freeze_translator", "blocks"),
        substitutes=(("s1", "translated"),),
        optical_variant=True,
        menu_order=40,
    )
)
register_model(
    ModelSpec(
        name="sar2opt_gan",
        title="SAR-to-optical GAN",
        description=(
            "Generator that paints an optical-looking image from Sentinel-1 radar alone (no optical "
            "input). First stage of the two-GAN cloud removal; also a cloud-free preview where no clear "
            "optical image exists. Default: VV in, true-colour (B4, B3, B2) out, values in [-1, 1]."
        ),
        builder=_build_sar2opt,
        default_s2_bands=S2_BANDS_RGB,
        default_s1_bands=("VV",),
        needs_s2=False,
        scaling="signed",
        size_multiple=8,
        adversarial=True,
        reference=f"{_GAN_PAPER} (GAN1)",
        options=("blocks",),
        menu_order=50,
    )
)
register_model(
    ModelSpec(
        name="ca_mtcr",
        title="CA-MTCR (S2 + S1 time series)",
        description=(
            "Multi-temporal cloud removal: rebuilds the last date of a Sentinel-2 series from that date and "
            "earlier ones, using Sentinel-1 radar to detect where the ground changed between dates so that "
            "changed areas are not copied from old images. Inputs are time series (N, T, C, H, W), target "
            "date last, any number of earlier dates; an optional cloud mask (keyword mask=) helps. Tiles must "
            "be multiples of 4 px (256 px as in the paper). Trained on SEN12MS-CR-TS (13 Level-1C bands). "
            "s1_bands=0 gives the optical-only variant."
        ),
        builder=_build_ca_mtcr,
        default_s2_bands=S2_BANDS_L1C,
        default_s1_bands=S1_BANDS,
        scaling="unit",
        size_multiple=4,
        multi_temporal=True,
        reference=(
            "You et al., Change-aware multi-temporal cloud removal, Sci China Inf Sci 69(3) 132306 (2026), "
            "doi:10.1007/s11432-025-4669-x"
        ),
        options=(
            "out_bands", "optical_dim", "depth", "heads", "mlp_ratio", "sar_dim", "fused_dim",
            "attention_channels", "ltae_heads", "ltae_key_dim", "ltae_model_dim", "decoder_blocks",
            "decoder_widths", "expansion", "region_selective", "change_aware", "optical_change",
        ),
        optical_variant=True,
        whole_scene=False,
        menu_order=60,
    )
)
