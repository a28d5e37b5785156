"""The network a run uses: shipped weights of the catalogue's models, and :func:`resolve_model`.

Each :class:`~topoclear.models.spec.ModelSpec` names its shipped weights files (``spec.weights``,
in :data:`WEIGHTS_DIR`); the JSON model card beside each file says which inputs and bands it was
trained on. A card whose input layout has no Sentinel-1 bands is the model's optical-only
variant: it serves runs without a Sentinel-1 layer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputError

#: Folder of the shipped weights (``.safetensors`` with its ``.json`` model card).
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models",
                           "weights")


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped weights file and the inputs its model card says it was trained on."""

    path: str
    s2: Tuple[str, ...]
    s1: Tuple[str, ...]
    terrain: Tuple[str, ...]

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def uses_s1(self) -> bool:
        return bool(self.s1)


def _spec(model: str):
    from ...models.registry import UnknownModelError, get_spec

    try:
        return get_spec(model)
    except UnknownModelError as exc:
        raise InputError(str(exc)) from None


def shipped_weights_of(model: str) -> List[ShippedWeights]:
    """The shipped weights of ``model`` that are present in :data:`WEIGHTS_DIR`, in the spec's order."""
    from .. import checkpoints

    out = []
    for name in _spec(model).weights:
        path = os.path.join(WEIGHTS_DIR, name)
        if os.path.isfile(path):
            layout = checkpoints.read_card(path)["architecture"]["input_layout"]
            out.append(ShippedWeights(path, tuple(layout.get("s2", ())), tuple(layout.get("s1", ())),
                                      tuple(layout.get("terrain", ()))))
    return out


def shipped_weights(model: str, with_s1: bool = True) -> Optional[str]:
    """Path of the shipped weights of ``model`` for a run with (or without) Sentinel-1, or None.

    Without Sentinel-1 the weights of the optical-only variant (a card without Sentinel-1 bands)
    serve; models that take no Sentinel-1 ignore ``with_s1``."""
    uses_s1 = with_s1 and _spec(model).needs_s1
    return next((w.path for w in shipped_weights_of(model) if w.uses_s1 == uses_s1), None)


def describe_needs(model: str) -> str:
    """What a model needs, for a user choosing it: ``"Sentinel-2 (10 bands: B2, ...) + Sentinel-1 + DEM"``.

    The Sentinel-2 bands are those of the shipped weights when there are any, else the model's defaults.
    """
    shipped = shipped_weights_of(model)
    return _spec(model).describe_needs(shipped[0].s2 if shipped else None)


@dataclass
class ModelChoice:
    """The network chosen for a run, its weights and card, and what the user should be told about it."""

    model: Any
    name: str
    weights: Optional[str]
    card: Optional[dict]
    notes: List[str]


def resolve_model(name: str, weights: Optional[str] = None, has_s1: bool = True, has_dem: bool = True,
                  allow_untrained: bool = False, options: Optional[Dict[str, Any]] = None) -> ModelChoice:
    """The network to run: registry ``name`` with ``weights`` (default: the shipped ones).

    Without a Sentinel-1 layer, a model that has an optical-only variant runs as that variant
    (with its own weights), and the notes say so. Raises :class:`InputError` for models whose
    inputs are missing, weights of another model or band set, and missing default weights
    (unless ``allow_untrained``: then the network keeps its random initial weights, for
    benchmarks and tests only).
    """
    spec = _spec(name)
    _check_inputs_for(spec, has_s1, has_dem)
    if weights:
        return _load_given(spec, str(weights), has_s1, has_dem)
    return _load_shipped(spec, has_s1, allow_untrained, options)


def _check_inputs_for(spec, has_s1: bool, has_dem: bool) -> None:
    if spec.multi_temporal:
        raise InputError(f"{spec.title} is multi-temporal; whole-scene cloud removal takes one acquisition")
    if not spec.whole_scene:
        raise InputError(f"{spec.title} is not offered for whole-scene cloud removal")
    if spec.needs_terrain and not has_dem:
        raise InputError(f"{spec.title} needs a DEM (its terrain stack is an input); give one, or choose a model "
                         "without terrain (UNet, DSen2-CR)")
    if not spec.needs_s2 and not has_s1:
        raise InputError(f"{spec.title} paints the optical image from Sentinel-1 alone: give a Sentinel-1 layer")
    if not spec.runs_with(has_s1, has_dem):
        raise InputError(f"{spec.title} needs a Sentinel-1 layer ({', '.join(spec.default_s1_bands)}) and has no "
                         "optical-only variant: give one")


def _load_given(spec, weights: str, has_s1: bool, has_dem: bool) -> ModelChoice:
    from .. import checkpoints

    card = checkpoints.read_card(weights)
    arch = card["architecture"]
    layout = arch["input_layout"]
    file = os.path.basename(weights)
    if arch["model"] != spec.name:
        raise InputError(f"the weights file {file} holds a {arch['model']!r} model, not {spec.name!r}: choose the "
                         "matching model or weights")
    if layout.get("s1") and not has_s1:
        raise InputError(f"the weights {file} were trained with Sentinel-1 ({', '.join(layout['s1'])}): give a "
                         "Sentinel-1 layer, or weights of the optical-only variant")
    if layout.get("terrain") and not has_dem:
        raise InputError(f"the weights {file} need a DEM (terrain input)")
    notes = []
    if has_s1 and spec.needs_s1 and not layout.get("s1"):
        notes.append("The weights were trained without Sentinel-1: the Sentinel-1 layer is not used")
    model, card = checkpoints.load_model(weights, expect_model=spec.name)
    notes.append(f"Weights: {weights} ({checkpoints.checkpoint_paths(weights)[1].name})")
    return ModelChoice(model, spec.name, weights, card, notes)


def _load_shipped(spec, has_s1: bool, allow_untrained: bool, options: Optional[Dict[str, Any]]) -> ModelChoice:
    from .. import checkpoints

    notes: List[str] = []
    with_s1 = has_s1 or not spec.needs_s1
    if spec.needs_s1 and not has_s1:
        notes.append(f"No Sentinel-1 layer: {spec.title} runs as its optical-only variant (trained without SAR)")
    path = shipped_weights(spec.name, with_s1)
    if path is None and with_s1 and spec.needs_s1 and spec.needs_s2 and spec.optical_variant:
        path = shipped_weights(spec.name, False)
        if path is not None:
            notes.append(f"Only the optical-only weights of {spec.title} are shipped: the Sentinel-1 layer is not "
                         "used")
    if path is not None:
        model, card = checkpoints.load_model(path, expect_model=spec.name)
        notes.append(f"Weights: shipped default {os.path.basename(path)}")
        return ModelChoice(model, spec.name, path, card, notes)
    if not allow_untrained:
        variant = "" if with_s1 else " (optical-only variant)"
        listed = ", ".join(spec.weights) or "none listed"
        raise InputError(f"no trained weights are shipped for {spec.title}{variant} yet (looked in {WEIGHTS_DIR} "
                         f"for {listed}); give a weights file (.safetensors with its .json model card)")
    return _untrained(spec, with_s1, options, notes)


def _untrained(spec, with_s1: bool, options: Optional[Dict[str, Any]], notes: List[str]) -> ModelChoice:
    from ...models.registry import build_model

    model = build_model(spec.name, s1_bands=None if with_s1 else 0, **dict(options or {}))
    model.build_options = dict(options or {})
    notes.append(f"UNTRAINED {spec.title}: random initial weights (for benchmarks and tests; the image is not "
                 "cloud-free)")
    return ModelChoice(model, spec.name, None, None, notes)
