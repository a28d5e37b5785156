"""What one network is: the :class:`ModelSpec` record of the catalogue, and the band layouts it resolves.

A spec holds every fact about a model that the rest of TopoClear needs: how to build it, its
inputs and band sets, its value scaling, its receptive field, its default tile sizes per device,
whether it has an optical-only variant, whether the whole-scene cloud removal offers it, its
place in the menus and the files of its shipped weights. The Processing algorithms, the docks
and the training choices are generated from these records (:mod:`topoclear.models.registry`).

Nothing here imports torch: the catalogue can be read where PyTorch is not installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

from .bands import S1_BANDS, S2_BANDS_10_20M, S2_BANDS_10M, S2_BANDS_L1C, S2_BANDS_L2A, S2_BANDS_RGB, TERRAIN_BANDS

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

#: Band list assumed when only a number of bands is given.
S2_SETS_BY_COUNT = {len(s): s for s in (S2_BANDS_L1C, S2_BANDS_L2A, S2_BANDS_10_20M, S2_BANDS_10M, S2_BANDS_RGB)}
S1_SETS_BY_COUNT = {0: (), 1: ("VV",), 2: S1_BANDS}
TERRAIN_SETS_BY_COUNT = {0: (), 1: ("elevation",), 4: TERRAIN_BANDS}

BandsArg = Union[None, int, Sequence[str]]
INPUT_NAMES = ("s2", "s1", "terrain")


class InputMismatchError(ValueError):
    """A model was called without an input it needs, or with the wrong number of channels."""


class MissingInputError(InputMismatchError):
    """A model was called without an input it needs."""


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
        return "; ".join(f"{n} ({channels(self.bands(n))})" for n in self.inputs)


def channels(bands: Sequence[str]) -> str:
    """``"2 channels: VV, VH"``."""
    return f"{len(bands)} channel{'s' if len(bands) != 1 else ''}: {', '.join(bands)}"


@dataclass(frozen=True)
class TileDefaults:
    """Default tile size (px) of whole-scene inference on each device type."""

    cpu: int = 512
    cuda: int = 1024

    def for_device(self, device_type: str) -> int:
        return self.cuda if device_type == "cuda" else self.cpu


@dataclass(frozen=True)
class ModelSpec:
    """How to build one network, what it expects, and how TopoClear offers it.

    Attributes:
        name: registry key (``build_model(name)``).
        title: display name (menus, logs, reports).
        description: what the model does and when to use it, for a GIS user.
        builder: ``builder(s2_bands=int, s1_bands=int, terrain_bands=int, **options)`` -> module.
        default_s2_bands / default_s1_bands / default_terrain_bands: band names used when the
            caller gives none (or only a count that matches them).
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
        optical_variant: ``s1_bands=0`` builds a variant trained without Sentinel-1, which
            whole-scene removal runs when no Sentinel-1 layer is given.
        whole_scene: offered by the single-image, whole-scene cloud removal (the removeclouds
            algorithm and the Cloud removal dock); never for multi-temporal models.
        menu_order: position in the menus (lower first; ties by name).
        receptive_field: ``receptive_field(model) -> px or None``: how far an output pixel's
            inputs can lie from it in a built network (None: not known). With a tile margin at
            least this wide the result does not depend on the tiling.
        tiles: default tile sizes per device type for whole-scene inference.
        weights: the shipped weights files of the model in ``models/weights/`` (each with its
            JSON model card, which says which inputs and bands the file serves).
        prior: ``"fill"`` for networks that start from the classic fill
            (:mod:`topoclear.models.fill_prior`): besides ``s2`` (and ``s1`` / ``terrain``) their
            forward takes the keywords ``mask`` (N, 1, H, W) and ``prior`` (the fill, like ``s2``),
            which whole-scene removal computes first; None for the others.
    """

    name: str
    title: str
    description: str
    builder: Callable[..., "nn.Module"]
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
    optical_variant: bool = False
    whole_scene: bool = True
    menu_order: int = 1000
    receptive_field: Optional[Callable[[Any], Optional[int]]] = None
    tiles: TileDefaults = TileDefaults()
    weights: Tuple[str, ...] = ()
    prior: Optional[str] = None

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

    @property
    def short_title(self) -> str:
        """The title without its parenthesis: ``"DSen2-CR"``."""
        return self.title.split(" (")[0]

    @property
    def offered_for_removal(self) -> bool:
        """Whether whole-scene, single-image cloud removal offers the model."""
        return self.whole_scene and not self.multi_temporal

    # -- what a run needs -------------------------------------------------------------------
    def runs_with(self, has_s1: bool, has_dem: bool) -> bool:
        """Whether the model can run on a scene with (or without) a Sentinel-1 layer and a DEM."""
        if self.needs_terrain and not has_dem:
            return False
        if self.needs_s1 and not has_s1 and not (self.needs_s2 and self.optical_variant):
            return False
        return True

    def describe_needs(self, s2_bands: Optional[Sequence[str]] = None) -> str:
        """What the model needs, for a user choosing it: ``"Sentinel-2 (10 bands: B2, ...) + Sentinel-1 + DEM"``.

        ``s2_bands``: the Sentinel-2 bands of the weights that will run (default: the spec's)."""
        bands = tuple(s2_bands or self.default_s2_bands)
        parts = []
        if self.needs_s2:
            parts.append(f"Sentinel-2 ({len(bands)} bands: {', '.join(bands)})")
        if self.needs_s1:
            variant = "; without it, the optical-only variant" if self.needs_s2 and self.optical_variant else ""
            parts.append(f"Sentinel-1 ({', '.join(self.default_s1_bands)})" + variant)
        if self.needs_terrain:
            parts.append("DEM (terrain stack)")
        return " + ".join(parts)

    def receptive_radius(self, model) -> Optional[int]:
        """The receptive field radius (px) of ``model``, a network of this spec; None where unknown."""
        return self.receptive_field(model) if self.receptive_field is not None else None

    # -- layouts ----------------------------------------------------------------------------
    def layout(
        self, s2_bands: BandsArg = None, s1_bands: BandsArg = None, terrain_bands: BandsArg = None
    ) -> InputLayout:
        """Resolve band counts or names into an :class:`InputLayout` (defaults where None)."""
        s2 = resolve_bands(self.name, "s2_bands", s2_bands, self.default_s2_bands, S2_SETS_BY_COUNT, "S2_")
        s1 = resolve_bands(self.name, "s1_bands", s1_bands, self.default_s1_bands, S1_SETS_BY_COUNT, "S1_")
        terrain = resolve_bands(self.name, "terrain_bands", terrain_bands, self.default_terrain_bands,
                                TERRAIN_SETS_BY_COUNT, "terrain_")
        if not s2:
            raise ValueError(f"model {self.name!r}: s2_bands must be at least 1")
        if terrain and not self.default_terrain_bands:
            from .registry import REGISTRY

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
        for name in layout.inputs:
            if given[name] is None and name in substituted:
                continue
            self._check_input(layout, name, given[name])

    def _check_input(self, layout: InputLayout, name: str, tensor) -> None:
        bands = layout.bands(name)
        expected = layout.describe()
        temporal = self.multi_temporal and name != "terrain"  # terrain has no time axis
        ndim = 5 if temporal else 4
        shape_text = "(N, T, C, H, W)" if temporal else "(N, C, H, W)"
        if tensor is None:
            raise MissingInputError(
                f"model {self.name!r} needs input {name!r} ({channels(bands)}) "
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


def resolve_bands(
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
