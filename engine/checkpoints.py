"""Model weights as safetensors with a JSON model card beside them; resumable training state.

Files
-----
``<name>.safetensors``
    The model's ``state_dict`` (tensors only; no code, no pickle). Its header metadata repeats
    the card's architecture section (``topoclear_card``), so a weights file separated from its
    card can still be identified.
``<name>.json``
    The model card: architecture (registry name, class, options, band layout, parameter
    count), value scaling, training data and hyper-parameters, epochs, metrics, and the SHA-256
    of the weights file. See :func:`make_card`.
``<name>.state.pt``
    Only for resuming training: optimizer, discriminator, gradient-scaler and RNG states and the
    metric history, a dict of tensors and plain Python values written with ``torch.save`` and
    read back with ``torch.load(weights_only=True)``, which refuses anything but tensors and
    primitive containers.

Loading (:func:`load_model`, :func:`load_weights`) checks the card against the registry and the
weights against the card (file hash, tensor names and shapes) and raises
:class:`~topoclear.engine.errors.InputError` naming what does not match, so a corrupt,
truncated or mismatched file never loads silently.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .errors import InputError, OutputError
from .io.atomic import atomic_output, write_text_atomic

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "checkpoint_paths",
    "make_card",
    "save_model",
    "read_card",
    "read_weights",
    "load_weights",
    "load_model",
    "save_training_state",
    "load_training_state",
    "file_sha256",
]

CARD_FORMAT = "topoclear-model-card"
CARD_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"


def checkpoint_paths(path: os.PathLike | str) -> Tuple[Path, Path]:
    """(weights, card) paths for ``path`` given with or without the ``.safetensors`` suffix."""
    path = Path(path)
    if path.suffix.lower() in (WEIGHTS_SUFFIX, ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + ".json")


def state_path(path: os.PathLike | str) -> Path:
    """Path of the resumable training state belonging to checkpoint ``path``."""
    weights, _ = checkpoint_paths(path)
    return weights.with_name(weights.name[: -len(WEIGHTS_SUFFIX)] + ".state.pt")


def file_sha256(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy / torch scalars to Python numbers, NaN and infinities to None
    (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def architecture_of(model) -> dict:
    """The architecture section of a card for a model built by ``build_model``."""
    from ..models.registry import count_parameters, get_spec

    name = getattr(model, "spec_name", None)
    layout = getattr(model, "input_layout", None)
    if name is None or layout is None:
        raise ValueError("the model was not built by topoclear.models.build_model (no spec_name / input_layout)")
    spec = get_spec(name)
    return {
        "model": name,
        "title": spec.title,
        "class": type(model).__name__,
        "options": _jsonable(getattr(model, "build_options", {}) or {}),
        "input_layout": {
            "s2": list(layout.s2), "s1": list(layout.s1), "terrain": list(layout.terrain),
            "output": list(layout.output), "inputs": list(layout.inputs),
        },
        "parameters": count_parameters(model),
        "size_multiple": spec.size_multiple,
        "predicts_residual": spec.predicts_residual,
        "multi_temporal": spec.multi_temporal,
        "reference": spec.reference,
    }


def make_card(model, training: Optional[Mapping] = None, metrics: Optional[Mapping] = None,
              description: str = "") -> dict:
    """A model card for ``model``: architecture, channels, scaling, training, metrics.

    ``training`` (data, hyper-parameters, epochs, device, time...) and ``metrics`` are copied
    as given (tuples become lists). The weights section is added by :func:`save_model`.
    """
    from ..models.registry import get_spec
    from ..models.scaling import get_scaling

    arch = architecture_of(model)
    spec = get_spec(arch["model"])
    scaling = get_scaling(spec.scaling)
    import torch

    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "description": description or spec.description,
        "architecture": arch,
        "channels": {
            "inputs": {name: arch["input_layout"][name] for name in arch["input_layout"]["inputs"]},
            "output": arch["input_layout"]["output"],
            "units": {
                "s2": "reflectance x 10000 (digital numbers after the processing-baseline offset)",
                "s1": "backscatter sigma0 in dB",
                "terrain": "elevation m, slope deg, aspect deg clockwise from north, hillshade 0-255",
            },
        },
        "scaling": {"name": scaling.name, "description": scaling.description,
                    "module": "topoclear.models.scaling (scale_s2 / scale_s1 / scale_terrain, unscale_s2)"},
        "training": _jsonable(dict(training or {})),
        "metrics": _jsonable(dict(metrics or {})),
        "software": {"torch": torch.__version__},
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _write_json(path: Path, data: Mapping) -> None:
    write_text_atomic(path, json.dumps(_jsonable(data), indent=1, allow_nan=False))


def save_model(path: os.PathLike | str, model, card: Optional[Mapping] = None,
               half: bool = False) -> Tuple[Path, Path]:
    """Write ``model``'s weights to ``<path>.safetensors`` and its card to ``<path>.json``.

    ``card`` defaults to :func:`make_card(model) <make_card>`; its architecture section is
    always regenerated from the model. A model built with constructor options (``widths``,
    ``blocks``...) must carry them as ``model.build_options`` (the training engine and
    :func:`load_model` set it) so that the card can rebuild it. Both files are written to temporary names first and
    moved into place, weights before card. ``half`` stores floating-point tensors as float16 (half the
    file size; they are cast back to the model's float32 when loaded). Returns (weights path, card path).
    """
    from safetensors.torch import save_file

    weights_path, card_path = checkpoint_paths(path)
    card = dict(card) if card is not None else make_card(model)
    card.setdefault("format", CARD_FORMAT)
    card.setdefault("format_version", CARD_VERSION)
    card["architecture"] = architecture_of(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format": "pt", "topoclear_card": json.dumps({"format": CARD_FORMAT,
                                                               "architecture": card["architecture"]})}
    try:
        with atomic_output(weights_path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except OSError as exc:
        raise OutputError(f"cannot write weights {weights_path}: {exc}") from exc
    card["weights"] = {"file": weights_path.name, "format": "safetensors", "sha256": file_sha256(weights_path),
                       "bytes": weights_path.stat().st_size, "tensors": len(tensors),
                       "dtype": "float16" if half else "float32"}
    _write_json(card_path, card)
    return weights_path, card_path


def read_card(path: os.PathLike | str) -> dict:
    """The model card of checkpoint ``path`` (the ``.json`` beside the weights).

    Falls back to the architecture embedded in the weights file when the card is missing.
    Raises :class:`InputError` for a missing, unreadable or malformed card.
    """
    weights_path, card_path = checkpoint_paths(path)
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"model card {card_path} is not valid JSON ({exc}): the file is corrupt") from exc
    elif weights_path.is_file():
        card = _embedded_card(weights_path)
    else:
        raise InputError(f"model weights not found: {weights_path} (and no model card {card_path})")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise InputError(f"{card_path} is not a TopoClear model card (format {card.get('format') if isinstance(card, dict) else None!r})")
    if int(card.get("format_version", 0)) > CARD_VERSION:
        raise InputError(f"{card_path}: model card version {card.get('format_version')} is newer than this plugin "
                         f"reads ({CARD_VERSION}); update TopoClear")
    arch = card.get("architecture")
    if not isinstance(arch, dict) or "model" not in arch or "input_layout" not in arch:
        raise InputError(f"{card_path}: model card has no architecture (model name and input layout)")
    return card


def _embedded_card(weights_path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{weights_path} is not a readable safetensors file ({exc})") from exc
    text = meta.get("topoclear_card")
    if not text:
        raise InputError(f"{weights_path} has no model card beside it and none embedded: cannot tell which model it holds")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{weights_path}: embedded model card is corrupt ({exc})") from exc


def read_weights(path: os.PathLike | str, card: Optional[Mapping] = None, device: str = "cpu") -> Dict[str, Any]:
    """Tensors of the safetensors file of checkpoint ``path``, checked against the card's hash."""
    from safetensors.torch import load_file

    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        raise InputError(f"model weights not found: {weights_path}")
    expected = (card or {}).get("weights", {}).get("sha256") if card else None
    if expected and file_sha256(weights_path) != expected:
        raise InputError(f"{weights_path} does not match its model card (SHA-256 differs): the weights file is "
                         "corrupt or was replaced")
    try:
        return load_file(str(weights_path), device=device)
    except Exception as exc:  # SafetensorError, OSError, ...
        raise InputError(f"{weights_path} is not a readable safetensors file ({exc})") from exc


def _check_state(model, tensors: Mapping[str, Any], where: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [k for k in expected if k in tensors and tuple(expected[k].shape) != tuple(tensors[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} tensor(s) of another shape (e.g. {k}: file {tuple(tensors[k].shape)}, "
                        f"model {tuple(expected[k].shape)})")
    if problems:
        raise InputError(f"{where} does not fit the model: " + "; ".join(problems))


def _check_layout(card: Mapping, model, where: str) -> None:
    arch = card["architecture"]
    name = getattr(model, "spec_name", None)
    if name is not None and arch["model"] != name:
        raise InputError(f"{where} holds a {arch['model']!r} model, not {name!r}")
    layout = getattr(model, "input_layout", None)
    if layout is not None:
        saved = arch["input_layout"]
        for key in ("s2", "s1", "terrain", "output"):
            if list(saved.get(key, [])) != list(layout.bands(key)):
                raise InputError(f"{where}: {key} channels differ: weights trained on "
                                 f"{len(saved.get(key, []))} ({', '.join(saved.get(key, [])) or 'none'}), model built "
                                 f"with {len(layout.bands(key))} ({', '.join(layout.bands(key)) or 'none'})")


def load_weights(model, path: os.PathLike | str, strict: bool = True) -> dict:
    """Load checkpoint ``path`` into ``model`` (built by ``build_model``); returns the card.

    The card's model name and band layout must equal the model's, and (``strict``) the tensor
    names and shapes must match exactly; otherwise :class:`InputError` says what differs.
    """
    card = read_card(path)
    weights_path, _ = checkpoint_paths(path)
    _check_layout(card, model, str(weights_path))
    tensors = read_weights(path, card)
    if strict:
        _check_state(model, tensors, str(weights_path))
    model.load_state_dict(tensors, strict=strict)
    return card


def load_model(path: os.PathLike | str, device: str = "cpu", expect_model: Optional[str] = None,
               expect_bands: Optional[Mapping[str, Sequence[str]]] = None):
    """Build the model a checkpoint's card describes and load its weights.

    ``expect_model`` / ``expect_bands`` (``{"s2": [...], "s1": [...], ...}``) are checked
    against the card before anything is built. Returns ``(model in eval mode on device, card)``.
    """
    from ..models.registry import UnknownModelError, build_model

    card = read_card(path)
    weights_path, _ = checkpoint_paths(path)
    arch = card["architecture"]
    if expect_model is not None and arch["model"] != expect_model:
        raise InputError(f"{weights_path} holds a {arch['model']!r} model, expected {expect_model!r}")
    layout = arch["input_layout"]
    for key, bands in (expect_bands or {}).items():
        if list(layout.get(key, [])) != list(bands):
            raise InputError(f"{weights_path}: {key} channels are {', '.join(layout.get(key, [])) or 'none'}, "
                             f"expected {', '.join(bands) or 'none'}")
    try:
        model = build_model(arch["model"], s2_bands=list(layout.get("s2", [])), s1_bands=list(layout.get("s1", [])),
                            terrain_bands=list(layout.get("terrain", [])), **dict(arch.get("options") or {}))
    except UnknownModelError as exc:
        raise InputError(f"{weights_path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise InputError(f"{weights_path}: the model card's architecture cannot be built ({exc})") from exc
    model.build_options = dict(arch.get("options") or {})
    tensors = read_weights(path, card)
    _check_state(model, tensors, str(weights_path))
    model.load_state_dict(tensors)
    return model.to(device).eval(), card


def save_training_state(path: os.PathLike | str, state: Mapping[str, Any]) -> Path:
    """Write a resumable training state (tensors and plain values only) next to checkpoint ``path``."""
    import torch

    target = state_path(path)
    with atomic_output(target) as tmp:
        torch.save(dict(state), tmp)
    return target


def load_training_state(path: os.PathLike | str, map_location: str = "cpu") -> dict:
    """Read a training state with ``torch.load(weights_only=True)`` (no arbitrary objects)."""
    import torch

    target = state_path(path)
    if not target.is_file():
        raise InputError(f"no training state to resume from: {target}")
    try:
        return torch.load(target, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError for truncated files, ...
        raise InputError(f"training state {target} cannot be read safely ({exc}): the file is corrupt or was not "
                         "written by TopoClear") from exc
