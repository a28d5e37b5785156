"""Registry of the cloud-removal networks: build any model by name and know what it expects.

Each network is described by a :class:`ModelSpec`: which inputs it needs (Sentinel-2,
Sentinel-1, terrain), the default band lists, the value scaling its inputs and outputs use
(a name from :mod:`topoclear.models.scaling`), its output bands, whether it predicts a
correction of the cloudy image, the tile-size multiple it needs, and a description a GIS user
can act on. :func:`build_model` resolves the channel counts into an :class:`InputLayout`,
builds the network and attaches a forward pre-hook that checks every call against that layout,
so a missing input fails with a message that names what is missing and what was expected.

Multi-temporal models (a later CA-MTCR) register with ``multi_temporal=True``: their ``s2`` /
``s1`` tensors are (N, T, C, H, W) instead of (N, C, H, W); everything else is the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from .bands import S1_BANDS, S2_BANDS_10_20M, S2_BANDS_10M, S2_BANDS_L1C, S2_BANDS_L2A, S2_BANDS_RGB, TERRAIN_BANDS
from .crt_unet import CRTUNet
from .dsen2cr import DSen2CR
from .gan import CloudRemovalGAN, PatchDiscriminator, SarToOpticalGAN
from .scaling import SCALINGS
from .unet import UNet

# ---------------------------------------------------------------------------------------------
# band lists
# ---------------------------------------------------------------------------------------------
#: Band list assumed when only a number of S2 bands is given.
_S2_SETS_BY_COUNT = {len(s): s for s in (S2_BANDS_L1C, S2_BANDS_L2A, S2_BANDS_10_20M, S2_BANDS_10M, S2_BANDS_RGB)}
_S1_SETS_BY_COUNT = {0: (), 1: ("VV",), 2: S1_BANDS}
_TERRAIN_SETS_BY_COUNT = {0: (), 1: ("elevation",), 4: TERRAIN_BANDS}

BandsArg = Union[None, int, Sequence[str]]
INPUT_NAMES = ("s2", "s1", "terrain")


class UnknownModelError(ValueError):
    """No model is registered under the requested name."""


class InputMismatchError(ValueError):
    """A model was called without an input it needs, or with the wrong number of channels."""


class MissingInputError(InputMismatchError):
    """A model was called without an input it needs."""


# ---------------------------------------------------------------------------------------------
# layouts and specs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputLayout:
    """The bands, by name and in channel order, of one built model's inputs and output.

    ``inputs`` lists the tensors a call must provide, in the order of the calling convention.
    For a SAR-to-optical model ``s2`` names the *output* optical bands and is not an input.
    """

    s2: Tuple[str, ...]
    s1: Tuple[str, ...]
    terrain: Tuple[str, ...]
    output: Tuple[str, ...]
    inputs: Tuple[str, ...]

    def bands(self, name: str) -> Tuple[str, ...]:
        return {"s2": self.s2, "s1": self.s1, "terrain": self.terrain, "output": self.output}[name]

    def describe(self) -> str:
        """E.g. ``s2 (10 channels: B2, ...); s1 (2 channels: VV, VH)``."""
        return "; ".join(f"{n} ({_channels(self.bands(n))})" for n in self.inputs)


def _channels(bands: Sequence[str]) -> str:
    """``"2 channels: VV, VH"``."""
    return f"{len(bands)} channel{'s' if len(bands) != 1 else ''}: {', '.join(bands)}"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one network and what it expects.

    Attributes:
        name: registry key (``build_model(name)``).
        title: display name.
        description: what the model does and when to use it, for a GIS user.
        builder: ``builder(s2_bands=int, s1_bands=int, terrain_bands=int, **options)`` -> module.
        default_s2_bands / default_s1_bands / default_terrain_bands: band names used when the
            caller gives none (or only a count that matches them).
        needs_s1 / needs_terrain: whether the default configuration needs those inputs.
        needs_s2: False for models that read no optical input (SAR-to-optical); their S2 band
            list then names the output bands only.
        scaling: name of the value scaling (:data:`topoclear.models.scaling.SCALINGS`) for
            inputs and output.
        predicts_residual: the network predicts a correction added to the cloudy S2 input.
        size_multiple: tile height and width must be multiples of this.
        multi_temporal: inputs carry a time axis, (N, T, C, H, W).
        adversarial: the model has a discriminator for GAN training (``model.discriminator()``).
        reference: the paper the implementation follows.
        options: keyword options the builder accepts besides the band counts.
        substitutes: ``(input, keyword)`` pairs: a forward keyword that may stand in for a
            required input (the cloud-removal GAN's ``translated`` for ``s1``).
    """

    name: str
    title: str
    description: str
    builder: Callable[..., nn.Module]
    default_s2_bands: Tuple[str, ...]
    default_s1_bands: Tuple[str, ...]
    default_terrain_bands: Tuple[str, ...] = ()
    needs_s2: bool = True
    scaling: str = "unit"
    predicts_residual: bool = False
    size_multiple: int = 1
    multi_temporal: bool = False
    adversarial: bool = False
    reference: str = ""
    options: Tuple[str, ...] = field(default_factory=tuple)
    substitutes: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def needs_s1(self) -> bool:
        return bool(self.default_s1_bands)

    @property
    def needs_terrain(self) -> bool:
        return bool(self.default_terrain_bands)

    @property
    def output_bands(self) -> Tuple[str, ...]:
        """Default output bands (the S2 bands)."""
        return self.default_s2_bands

    # -- layouts ----------------------------------------------------------------------------
    def layout(
        self, s2_bands: BandsArg = None, s1_bands: BandsArg = None, terrain_bands: BandsArg = None
    ) -> InputLayout:
        """Resolve band counts or names into an :class:`InputLayout` (defaults where None)."""
        s2 = _resolve(self.name, "s2_bands", s2_bands, self.default_s2_bands, _S2_SETS_BY_COUNT, "S2_")
        s1 = _resolve(self.name, "s1_bands", s1_bands, self.default_s1_bands, _S1_SETS_BY_COUNT, "S1_")
        terrain = _resolve(
            self.name, "terrain_bands", terrain_bands, self.default_terrain_bands, _TERRAIN_SETS_BY_COUNT, "terrain_"
        )
        if not s2:
            raise ValueError(f"model {self.name!r}: s2_bands must be at least 1")
        if terrain and not self.default_terrain_bands:
            raise ValueError(
                f"model {self.name!r} takes no terrain input (got terrain_bands={len(terrain)}); "
                f"models with terrain: {', '.join(n for n, s in REGISTRY.items() if s.needs_terrain)}"
            )
        if not terrain and self.default_terrain_bands:
            raise ValueError(f"model {self.name!r} needs at least one terrain band (use 'unet' for no terrain)")
        if not s1 and not self.needs_s2:
            raise ValueError(f"model {self.name!r} needs at least one Sentinel-1 band")
        candidates = (("s2", s2 if self.needs_s2 else ()), ("s1", s1), ("terrain", terrain))
        inputs = tuple(name for name, bands in candidates if bands)
        return InputLayout(s2=s2, s1=s1, terrain=terrain, output=s2, inputs=inputs)

    def check_inputs(self, layout: InputLayout, s2=None, s1=None, terrain=None, **extras) -> None:
        """Raise :class:`MissingInputError` / :class:`InputMismatchError` unless the tensors fit.

        ``extras`` are the call's other keyword arguments (checked only as ``substitutes``).
        """
        given = {"s2": s2, "s1": s1, "terrain": terrain}
        substituted = {name for name, keyword in self.substitutes if extras.get(keyword) is not None}
        expected = layout.describe()
        for name in layout.inputs:
            tensor = given[name]
            bands = layout.bands(name)
            temporal = self.multi_temporal and name != "terrain"  # terrain has no time axis
            ndim = 5 if temporal else 4
            shape_text = "(N, T, C, H, W)" if temporal else "(N, C, H, W)"
            if tensor is None and name in substituted:
                continue
            if tensor is None:
                raise MissingInputError(
                    f"model {self.name!r} needs input {name!r} ({_channels(bands)}) "
                    f"but none was given; expected inputs: {expected}"
                )
            shape = tuple(getattr(tensor, "shape", ()))
            channel_axis = ndim - 3
            if len(shape) != ndim or shape[channel_axis] != len(bands):
                raise InputMismatchError(
                    f"model {self.name!r}: input {name!r} has shape {shape}, expected {shape_text} with "
                    f"C = {len(bands)} ({', '.join(bands)}); expected inputs: {expected}"
                )
            multiple = self.size_multiple
            if name != "terrain" and multiple > 1 and (shape[-1] % multiple or shape[-2] % multiple):
                raise InputMismatchError(
                    f"model {self.name!r}: input {name!r} is {shape[-2]}x{shape[-1]} px; height and width "
                    f"must be multiples of {multiple}"
                )


def _resolve(
    model: str,
    arg: str,
    value: BandsArg,
    default: Tuple[str, ...],
    by_count: Dict[int, Tuple[str, ...]],
    prefix: str,
) -> Tuple[str, ...]:
    """Band names from None (defaults), a count, or a sequence of names."""
    if value is None:
        return tuple(default)
    if isinstance(value, bool):
        raise ValueError(f"model {model!r}: {arg} must be a count or a list of band names, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"model {model!r}: {arg} must be >= 0, got {value}")
        if value == len(default):
            return tuple(default)
        if value in by_count:
            return by_count[value]
        return tuple(f"{prefix}{i + 1}" for i in range(value))
    if isinstance(value, str):
        raise ValueError(f"model {model!r}: {arg} must be a list of band names, not the string {value!r}")
    return tuple(str(v) for v in value)


# ---------------------------------------------------------------------------------------------
# input check attached to built models
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputCheck:
    """Forward pre-hook that checks the call against a model's layout (picklable)."""

    model_name: str
    layout: InputLayout

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        given = dict(kwargs)
        given.update(zip(INPUT_NAMES, args))
        get_spec(self.model_name).check_inputs(self.layout, **given)
        return None


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------
def _build_unet(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    return UNet(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_crt_unet(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    return CRTUNet(s2_bands=s2_bands, s1_bands=s1_bands, terrain_bands=terrain_bands, **options)


def _build_dsen2cr(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    return DSen2CR(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_sar2opt(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    return SarToOpticalGAN(s2_bands=s2_bands, s1_bands=s1_bands, **options)


def _build_cr_gan(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    return CloudRemovalGAN(s2_bands=s2_bands, s1_bands=s1_bands, **options)


REGISTRY: Dict[str, ModelSpec] = {}
_GAN_PAPER = (
    "Darbaghshahi, Mohammadi, Soryani: Cloud removal in remote sensing images using generative "
    "adversarial networks and SAR-to-optical image translation"
)


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry (``replace=True`` to overwrite an existing name)."""
    if spec.name in REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    if spec.scaling not in SCALINGS:
        raise ValueError(f"model {spec.name!r}: unknown scaling {spec.scaling!r}; known: {', '.join(SCALINGS)}")
    REGISTRY[spec.name] = spec
    return spec


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
    )
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
    )
)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def list_models(multi_temporal: Optional[bool] = None) -> List[str]:
    """Registered model names, sorted; optionally only (non-)multi-temporal ones."""
    return sorted(n for n, s in REGISTRY.items() if multi_temporal is None or s.multi_temporal == multi_temporal)


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
) -> nn.Module:
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


def build_discriminator(model: nn.Module) -> PatchDiscriminator:
    """The PatchGAN discriminator matching an adversarial model built by :func:`build_model`."""
    if not hasattr(model, "discriminator"):
        name = getattr(model, "spec_name", type(model).__name__)
        adversarial = [n for n, s in REGISTRY.items() if s.adversarial]
        raise ValueError(
            f"model {name!r} is not trained adversarially; models with a discriminator: {', '.join(adversarial)}"
        )
    return model.discriminator()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases; not batch-norm running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------------
# CA-MTCR (multi-temporal)
# ---------------------------------------------------------------------------------------------
def _build_ca_mtcr(s2_bands: int, s1_bands: int, terrain_bands: int, **options) -> nn.Module:
    from .ca_mtcr import CAMTCR

    return CAMTCR(s2_bands=s2_bands, s1_bands=s1_bands, **options)


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
    )
)
