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

Loading (:func:`load_model`, :func:`load_weights`) checks, in this order and before anything is
allocated: that the weights are a ``.safetensors`` file (never a pickle: ``.pt``, ``.pth``,
``.pkl``... can run code when loaded; a folder is not weights), that the card is a TopoClear card of
a version this plugin reads (``format_version`` a whole number 1..:data:`CARD_VERSION`), that every
architecture option lies within bounds (:data:`OPTION_BOUNDS`), that the file's header is complete
and its tensors are those the card's model has (the model is first built on PyTorch's ``meta``
device, which allocates nothing), then the file hash, and after loading that every tensor is
finite. Each failure raises :class:`~topoclear.engine.errors.InputError` naming the file and what
does not match, so a corrupt, truncated, mismatched or hostile file never loads silently and a card
can never make the plugin allocate more than its weights hold.
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
from .safetensors_file import check_finite, safetensors_header

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
    "jsonable",
]

CARD_FORMAT = "topoclear-model-card"
CARD_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
#: Suffixes of pickle-based checkpoints (``torch.save``, pickle, joblib...): never loaded, they can run code.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar", ".joblib", ".dill", ".npy",
                   ".npz", ".h5", ".hdf5", ".keras", ".onnx", ".pb", ".zip")
#: Bounds of a model card's architecture options: whole numbers (alone or in lists) within
#: ``int_range``, other numbers finite within ``float_range``, lists of at most ``items`` values,
#: texts of at most ``text`` characters; no nested objects.
OPTION_BOUNDS = {"int_range": (-1, 8192), "float_range": (-1e6, 1e6), "items": 64, "text": 256}
#: Most bands a card's input layout may list per source.
MAX_LAYOUT_BANDS = 64


def check_weights_path(path: os.PathLike | str) -> None:
    """Raise :class:`InputError` unless ``path`` can name safetensors weights: not a folder, not a
    pickle-based checkpoint, and (when it exists) a ``.safetensors`` or ``.json`` file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"model weights {p}: this is a folder; expected a .safetensors weights file (with its .json "
                         "model card beside it)")
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise InputError(f"model weights {p}: {suffix} files are PyTorch or pickle checkpoints, which can run code "
                         "when they are loaded; TopoClear loads only .safetensors weights (tensors only) with their "
                         ".json model card: convert them with topoclear.engine.checkpoints.save_model")
    if p.is_file() and suffix not in (WEIGHTS_SUFFIX, ".json"):
        raise InputError(f"model weights {p}: expected a .safetensors weights file (with its .json model card), "
                         f"not a {suffix or 'suffix-less'} file")


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


def jsonable(value: Any) -> Any:
    """Tuples to lists, numpy / torch scalars to Python numbers, NaN and infinities to None
    (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


_jsonable = jsonable  # the name used before it was public


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
        "options": jsonable(getattr(model, "build_options", {}) or {}),
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
        "training": jsonable(dict(training or {})),
        "metrics": jsonable(dict(metrics or {})),
        "software": {"torch": torch.__version__},
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _write_json(path: Path, data: Mapping) -> None:
    write_text_atomic(path, json.dumps(jsonable(data), indent=1, allow_nan=False))


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
    check_weights_path(path)
    weights_path, card_path = checkpoint_paths(path)
    where = f"{card_path} (the model card of {weights_path.name})"
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{where} is not valid JSON ({exc}): the file is corrupt") from exc
    elif weights_path.is_file():
        card = _embedded_card(weights_path)
        where = f"{weights_path} (its embedded model card)"
    else:
        raise InputError(f"model weights not found: {weights_path} (and no model card {card_path})")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else None
        raise InputError(f"{where} is not a TopoClear model card (format {found!r}, expected {CARD_FORMAT!r})")
    version = card.get("format_version", CARD_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{where}: format_version {version!r} is not a whole number; this plugin reads model "
                         f"cards of format_version 1 to {CARD_VERSION}")
    if version < 1:
        raise InputError(f"{where}: format_version {version} is not a card version; this plugin reads model "
                         f"cards of format_version 1 to {CARD_VERSION}")
    if version > CARD_VERSION:
        raise InputError(f"{where}: model card format_version {version} is newer than this plugin reads "
                         f"({CARD_VERSION}); update TopoClear")
    arch = card.get("architecture")
    if not isinstance(arch, dict) or "model" not in arch or "input_layout" not in arch:
        raise InputError(f"{where}: model card has no architecture (model name and input layout)")
    check_architecture(arch, where)
    return card


def _bounded_value(name: str, value: Any, where: str, depth: int = 0) -> None:
    lo, hi = OPTION_BOUNDS["int_range"]
    flo, fhi = OPTION_BOUNDS["float_range"]

    def refuse(why: str) -> None:
        raise InputError(f"{where}: model card option {name} = {_short(value)} is out of bounds: {why}; a card must "
                         "describe the model its weights hold")

    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not lo <= value <= hi:
            refuse(f"whole numbers must lie within {lo}..{hi} (at most {hi})")
    elif isinstance(value, float):
        if not math.isfinite(value) or not flo <= value <= fhi:
            refuse(f"numbers must be finite, within {flo:g}..{fhi:g}")
    elif isinstance(value, str):
        if len(value) > OPTION_BOUNDS["text"]:
            refuse(f"texts hold at most {OPTION_BOUNDS['text']} characters")
    elif isinstance(value, (list, tuple)):
        if depth > 0:
            refuse("lists may not hold lists")
        if len(value) > OPTION_BOUNDS["items"]:
            refuse(f"lists hold at most {OPTION_BOUNDS['items']} values, this one {len(value)}")
        for item in value:
            try:
                _bounded_value(name, item, where, depth + 1)
            except InputError as exc:
                raise InputError(str(exc).replace(f"= {_short(item)} is", f"= {_short(value)} is", 1)) from None
    else:
        refuse(f"a {type(value).__name__} is not an option value (numbers, texts, true/false or lists of them)")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, str, int, float, bool)) or value is None else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_architecture(arch: Mapping[str, Any], where: str) -> None:
    """Raise :class:`InputError` when a card's architecture section is out of bounds: a model name that
    is not a short text, an input layout that is not lists of band names, or an option outside
    :data:`OPTION_BOUNDS`. Checked before anything is built or allocated."""
    name = arch.get("model")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InputError(f"{where}: model card architecture 'model' must be a registered model name, got {_short(name)}")
    layout = arch.get("input_layout")
    if not isinstance(layout, Mapping):
        raise InputError(f"{where}: model card input_layout must be an object of band lists, got {_short(layout)}")
    for key in ("s2", "s1", "terrain", "output", "inputs"):
        bands = layout.get(key, [])
        if not isinstance(bands, (list, tuple)) or len(bands) > MAX_LAYOUT_BANDS or \
                not all(isinstance(b, str) and 0 < len(b) <= 32 for b in bands):
            raise InputError(f"{where}: model card input_layout {key} must be a list of at most {MAX_LAYOUT_BANDS} "
                             f"band names, got {_short(bands)}")
    options = arch.get("options") or {}
    if not isinstance(options, Mapping):
        raise InputError(f"{where}: model card options must be an object, got {_short(options)}")
    for key, value in options.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InputError(f"{where}: model card option name {_short(key)} is not a valid name")
        _bounded_value(key, value, where)


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
    """Tensors of the safetensors file of checkpoint ``path``, checked against the card's hash and
    for NaN / infinite values."""
    from safetensors.torch import load_file

    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        raise InputError(f"model weights not found: {weights_path}")
    safetensors_header(weights_path)
    expected = (card or {}).get("weights", {}).get("sha256") if card else None
    if expected and file_sha256(weights_path) != expected:
        raise InputError(f"{weights_path} does not match its model card (SHA-256 differs): the weights file is "
                         "corrupt or was replaced")
    try:
        tensors = load_file(str(weights_path), device=device)
    except Exception as exc:  # SafetensorError, OSError, ...
        raise InputError(f"{weights_path} is not a readable safetensors file ({exc})") from exc
    check_finite(tensors, str(weights_path))
    return tensors


def _check_state(model, tensors: Mapping[str, Any], where: str) -> None:
    _check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()},
                  {k: tuple(v.shape) for k, v in tensors.items()}, where)


def _check_shapes(expected: Mapping[str, Tuple[int, ...]], found: Mapping[str, Tuple[int, ...]], where: str) -> None:
    """Raise :class:`InputError` when the tensor names or shapes ``found`` in a file are not the model's."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [k for k in expected if k in found and tuple(expected[k]) != tuple(found[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} tensor(s) of another shape (e.g. {k}: file {tuple(found[k])}, "
                        f"model {tuple(expected[k])})")
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
    from ..models.registry import UnknownModelError, build_model, get_spec

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
        get_spec(arch["model"])
    except UnknownModelError as exc:
        raise InputError(f"{weights_path}: {exc}") from exc
    if not weights_path.is_file():
        raise InputError(f"model weights not found: {weights_path}")
    file_shapes = safetensors_header(weights_path)

    def build():
        return build_model(arch["model"], s2_bands=list(layout.get("s2", [])), s1_bands=list(layout.get("s1", [])),
                           terrain_bands=list(layout.get("terrain", [])), **dict(arch.get("options") or {}))

    import torch

    try:
        try:  # on the meta device nothing is allocated: the card is checked against the file's header first
            with torch.device("meta"):
                meta = build()
        except (UnknownModelError, TypeError, ValueError, InputError):
            raise
        except Exception:  # noqa: BLE001 - a model that cannot be built on meta is checked after building
            meta = None
        if meta is not None:
            _check_shapes({k: tuple(v.shape) for k, v in meta.state_dict().items()}, file_shapes,
                          f"{weights_path} (the model its card {checkpoint_paths(path)[1].name} describes)")
            del meta
        model = build()
    except UnknownModelError as exc:
        raise InputError(f"{weights_path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise InputError(f"{weights_path}: the model card's architecture cannot be built: a {arch['model']} with "
                         f"the options {_short(dict(arch.get('options') or {}), 200)} fails ({exc})") from exc
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
