"""The scenes of a dataset build from a list file, and the masks of scenes that have none.

A scene's name becomes part of file names (``<name>_r<row>_c<col>.tif``, ``<name>_cloud.tif``):
every name of a list is checked with :func:`~topoclear.engine.io.atomic.contained_path` when the
list is read, before anything is written, and a name that is empty, absolute, holds a path
separator or ``..`` is refused naming the list and its row.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import List, Sequence

from ..errors import InputError
from ..io.atomic import contained_path
from ..progress import SILENT, Monitor
from .builder_inputs import SceneInputs
from .cloud_shadow_masks import write_cloud_shadow_masks
from .scene_patches import s2_band_names

__all__ = ["load_scene_list", "check_scene_name", "add_missing_masks"]

_SCENE_FIELDS = ("name", "cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask", "land_mask", "group",
                 "source", "split", "s2_bands", "s2_offset", "notes")
_ALIASES = {"clear": "target", "s2_clear": "target", "s2_cloudy": "cloudy", "id": "name"}


def _rows(path: Path) -> List[dict]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return [dict(r) for r in csv.DictReader(handle)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"scene list {path} is neither CSV nor valid JSON: {exc}") from exc
    rows = data.get("scenes") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise InputError(f"scene list {path}: expected a list of scenes")
    return rows


def check_scene_name(name: str, where: str) -> str:
    """``name`` if it can be used in file names inside an output folder; :class:`InputError` naming
    ``where`` (the list and its row, or the parameter) otherwise."""
    try:
        contained_path(Path("the output folder"), name, "scene name")
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return name


def _row_label(path: Path, position: int) -> str:
    """Where scene ``position`` (0-based) is in its list: the line of a CSV file, the item of a JSON one."""
    if path.suffix.lower() == ".csv":
        return f"scene list {path}, row {position + 2} (scene {position + 1})"
    return f"scene list {path}, scene {position + 1}"


def _scene_from_row(row: dict, position: int, path: Path, base: Path) -> SceneInputs:
    if not isinstance(row, dict):
        raise InputError(f"{_row_label(path, position)}: expected an object with 'name', 'cloudy', 'target'..., "
                         f"got {type(row).__name__}")
    row = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in row.items()}
    unknown = set(row) - set(_SCENE_FIELDS)
    if unknown:
        raise InputError(f"scene list {path}: unknown field(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(_SCENE_FIELDS)}")
    if not row.get("cloudy") or not row.get("target"):
        raise InputError(f"{_row_label(path, position)}: 'cloudy' and 'target' are required")
    kwargs = {}
    for key in ("cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask", "land_mask"):
        value = row.get(key)
        if value not in (None, ""):
            p = Path(str(value).strip()).expanduser()
            kwargs[key] = str(p if p.is_absolute() else base / p)
    name = check_scene_name(str(row.get("name") or Path(kwargs["cloudy"]).stem), _row_label(path, position))
    bands = row.get("s2_bands")
    if isinstance(bands, str):
        bands = [b for b in bands.replace(";", ",").split(",") if b.strip()]
    return SceneInputs(
        name=name, group=(row.get("group") or None), source=str(row.get("source") or "custom"),
        split=(str(row["split"]).strip().lower() if row.get("split") else None), s2_bands=bands or None,
        s2_offset=_number(row.get("s2_offset"), "s2_offset", path, position), notes=str(row.get("notes") or ""),
        **kwargs)


def _number(value, key: str, path: Path, position: int) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        raise InputError(f"{_row_label(path, position)}: {key} must be a number, got {value!r}") from None


def load_scene_list(path: os.PathLike | str) -> List[SceneInputs]:
    """Scenes from a CSV (header: ``name,cloudy,target,s1,terrain,cloud_mask,shadow_mask,land_mask,
    group,source,split``, any subset with ``cloudy`` and ``target``) or a JSON list of objects with
    those keys (or ``{"scenes": [...]}``). Relative paths are relative to the list's folder. Every
    scene name is checked (:func:`check_scene_name`) before anything is written."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene list {path} does not exist")
    base = path.parent.resolve()
    scenes = [_scene_from_row(row, i, path, base) for i, row in enumerate(_rows(path))]
    if not scenes:
        raise InputError(f"scene list {path} lists no scene")
    return scenes


def add_missing_masks(scenes: Sequence[SceneInputs], folder: os.PathLike | str,
                      monitor: Monitor = SILENT) -> List[str]:
    """Compute cloud and shadow masks (DSen2-CR's detectors) for scenes that have neither.

    Only Level-1C stacks (with B1 and B10) can be masked this way; other scenes are left without
    masks. The masks are written to ``folder`` as ``<scene>_cloud.tif`` / ``<scene>_shadow.tif``
    and set on the scenes. Returns the names of the scenes that got masks.
    """
    out = Path(folder)
    done = []
    todo = [s for s in scenes if not s.cloud_mask and not s.shadow_mask]
    for n, scene in enumerate(todo):
        names = s2_band_names(scene.cloudy, scene.s2_bands)
        if "B1" not in names or "B10" not in names:
            monitor.message(f"scene {scene.name}: no cloud/shadow masks (they can be computed from Level-1C "
                            "stacks with B1 and B10 only)")
            continue
        cloud = contained_path(out, f"{scene.name}_cloud.tif", "scene name")
        shadow = contained_path(out, f"{scene.name}_shadow.tif", "scene name")
        out.mkdir(parents=True, exist_ok=True)
        fc, fs = write_cloud_shadow_masks(scene.cloudy, names, cloud, shadow, scene.s2_offset,
                                          monitor.sub(100.0 * n / len(todo), 100.0 * (n + 1) / len(todo)))
        scene.cloud_mask, scene.shadow_mask = str(cloud), str(shadow)
        monitor.message(f"scene {scene.name}: masks computed (cloud {100 * fc:.1f} %, shadow {100 * fs:.1f} %)")
        done.append(scene.name)
    return done
