"""The list of training samples: what a sample is, and the manifest files that list them.

A **sample** is one location: a cloudy Sentinel-2 image, its cloud-free target, and optionally
Sentinel-1, a terrain stack and cloud / cloud-shadow masks, all covering the same ground. A
**manifest** lists the samples; :class:`~topoclear.engine.training.patch_dataset.PatchDataset`
cuts training crops from them.

Manifest (JSON)
---------------
::

    {"format": "topoclear-patch-manifest", "version": 1,
     "description": "what the data is and where it comes from",
     "s2_bands": ["B1", "B2", ...],            # bands of the cloudy and target stacks
     "s1_bands": ["VV", "VH"],                 # bands of the S1 stacks (dB)
     "terrain_bands": ["elevation", "slope", "aspect", "hillshade"],
     "external_data_roots": ["/data/shared"],  # optional: folders outside this one files may lie in
     "samples": [
        {"id": "alps_0001", "split": "train",  # train | val | test | exclude
         "source": "real",                     # free text: real | synthetic | ...
         "cloudy": "s2_cloudy/alps_0001.tif",  # a path, or a list of paths (bands concatenated)
         "target": "s2_clear/alps_0001.tif",
         "s1": ["s1/alps_0001_VV.tif", "s1/alps_0001_VH.tif"],
         "terrain": "terrain/alps_0001.tif",
         "cloud_mask": "masks/alps_0001_cloud.tif", "shadow_mask": "masks/alps_0001_shadow.tif",
         "s2_offset": 0,                       # added to S2 values first (-1000 from baseline 04.00)
         "notes": "..."}]}

Relative paths are relative to the manifest's folder. Every file must lie inside that folder
(after links and ``..`` are resolved), unless the manifest names, in a top-level
``"external_data_roots": ["/data/sen12ms-cr", ...]`` list, the other folders its files may live
in (absolute, or relative to the manifest's folder): a manifest then reads files outside its
folder only where it says so. A path anywhere else is refused, naming the manifest, the sample
and the file. Writers that reference shared data in place record the opt-in themselves
(:func:`~topoclear.engine.training.sample_manifests.build_sample_manifests` names the sample data
folder; :meth:`Manifest.save` names the folders of the files outside its own). Manifests without
the list load as before when all their files are inside their folder.

A stack given as a list of files is the concatenation of their bands (e.g. one file per band);
every file is checked before a training run (:func:`check_sample_files`: complete, band counts
as the band lists say). Files of one sample must share the CRS
and cover the same ground; they may have different pixel sizes (20 m and 60 m bands are read
onto the grid of the cloudy image by nearest neighbour). Band lists may be overridden per
sample. Masks are single-band rasters, 1 (or any non-zero value) on cloud / shadow.

A **CSV** manifest has a header ``id,split,cloudy,target,s1,terrain,cloud_mask,shadow_mask``
(any subset with ``cloudy`` or ``target``); several files in one cell are separated by ``;``. It
has no ``external_data_roots``: all its files must lie inside its folder.
S2 band names then come from the file's band descriptions or its band count (13: L1C order,
12: L2A order, 10: B2-B8A + B11, B12).

A **folder** with ``manifest.json`` or ``manifest.csv`` is read through it; otherwise its
sub-folders ``cloudy/``, ``target/`` (or ``clear/``), ``s1/``, ``terrain/``, ``cloud_mask/``,
``shadow_mask/`` are matched by file name.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ...models.bands import S1_BANDS, TERRAIN_BANDS
from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..io.raster import open_raster
from ..sentinel2.bands import RASTER_SUFFIXES, STACK_LAYOUTS, band_from_filename, canonical_band

__all__ = [
    "MANIFEST_FORMAT",
    "STACK_KEYS",
    "SPLITS",
    "StackRef",
    "PatchSample",
    "Manifest",
    "load_manifest",
    "manifest_from_folder",
    "check_sample_files",
]

MANIFEST_FORMAT = "topoclear-patch-manifest"
#: Stack roles of a sample, in a fixed order.
STACK_KEYS: Tuple[str, ...] = ("cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask")
SPLITS: Tuple[str, ...] = ("train", "val", "test", "exclude")
_FOLDER_ROLES = {"cloudy": ("cloudy", "s2_cloudy"), "target": ("target", "clear", "s2_clear"), "s1": ("s1",),
                 "terrain": ("terrain",), "cloud_mask": ("cloud_mask", "cloud_masks"),
                 "shadow_mask": ("shadow_mask", "shadow_masks")}


@dataclass(frozen=True)
class StackRef:
    """One stack of a sample: the bands of ``paths`` concatenated in order."""

    paths: Tuple[str, ...]

    @classmethod
    def parse(cls, value, base: Optional[Path], role: str, sample_id: str) -> "StackRef":
        if isinstance(value, str):
            items = [v for v in value.split(";") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise InputError(f"sample {sample_id!r}: {role} must be a path or a list of paths, got {value!r}")
        if not items:
            raise InputError(f"sample {sample_id!r}: {role} lists no file")
        paths = []
        for item in items:
            p = Path(str(item).strip()).expanduser()
            if not p.is_absolute() and base is not None:
                p = base / p
            paths.append(os.path.normpath(str(p)))
        return cls(tuple(paths))

    def to_json(self, base: Optional[Path] = None):
        paths = [_relative(p, base) for p in self.paths]
        return paths[0] if len(paths) == 1 else paths


def _real(path: os.PathLike | str) -> str:
    return os.path.realpath(str(path))


def _within(real: str, folder_real: str) -> bool:
    """Whether the resolved path ``real`` is ``folder_real`` or lies inside it."""
    return real == folder_real or real.startswith(folder_real.rstrip(os.sep) + os.sep)


def _relative(path: str, base: Optional[Path]) -> str:
    if base is None:
        return path
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return path


@dataclass(frozen=True)
class PatchSample:
    """One location of a training set (see the module docstring for the roles)."""

    id: str
    stacks: Mapping[str, StackRef]
    split: str = "train"
    source: str = ""
    s2_bands: Tuple[str, ...] = ()
    s1_bands: Tuple[str, ...] = S1_BANDS
    terrain_bands: Tuple[str, ...] = TERRAIN_BANDS
    s2_offset: float = 0.0
    notes: str = ""

    def has(self, role: str) -> bool:
        return role in self.stacks

    @property
    def reference(self) -> StackRef:
        """The stack whose grid the crops are cut on (cloudy image, else target)."""
        return self.stacks["cloudy"] if "cloudy" in self.stacks else self.stacks["target"]


@dataclass
class Manifest:
    """A list of samples and where they come from."""

    samples: List[PatchSample]
    description: str = ""
    path: Optional[str] = None
    #: Folders outside the manifest's own that its files may lie in (absolute paths).
    external_roots: Tuple[str, ...] = ()

    def split(self, *names: str) -> List[PatchSample]:
        """Samples whose split is one of ``names``."""
        return [s for s in self.samples if s.split in names]

    def to_dict(self, base: Optional[Path] = None) -> dict:
        samples = []
        for s in self.samples:
            entry = {"id": s.id, "split": s.split}
            if s.source:
                entry["source"] = s.source
            for role in STACK_KEYS:
                if role in s.stacks:
                    entry[role] = s.stacks[role].to_json(base)
            entry["s2_bands"] = list(s.s2_bands)
            if s.has("s1"):
                entry["s1_bands"] = list(s.s1_bands)
            if s.has("terrain"):
                entry["terrain_bands"] = list(s.terrain_bands)
            if s.s2_offset:
                entry["s2_offset"] = s.s2_offset
            if s.notes:
                entry["notes"] = s.notes
            samples.append(entry)
        document = {"format": MANIFEST_FORMAT, "version": 1, "description": self.description}
        roots = self._roots_outside(base)
        if roots:
            document["external_data_roots"] = roots
        document["samples"] = samples
        return document

    def _roots_outside(self, base: Optional[Path]) -> List[str]:
        """The folders outside ``base`` that the samples' files lie in: the manifest's own
        :attr:`external_roots` holding them, else each file's folder; with no ``base`` (absolute
        paths), the manifest's roots."""
        if base is None:
            return list(self.external_roots)
        known = [_real(r) for r in self.external_roots]
        inside = _real(base)
        roots: List[str] = []
        for s in self.samples:
            for ref in s.stacks.values():
                for p in ref.paths:
                    real = _real(p)
                    if _within(real, inside):
                        continue
                    root = next((k for k in known if _within(real, k)), os.path.dirname(real))
                    if root not in roots:
                        roots.append(root)
        return [r for r in roots if not any(o != r and _within(r, o) for o in roots)]

    def save(self, path: os.PathLike | str) -> Path:
        """Write the manifest as JSON (paths relative to its folder; the folders of files outside it
        are recorded as ``external_data_roots``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(path.parent.resolve()), indent=1))
        self.path = str(path)
        return path


# ---------------------------------------------------------------------------------------------
# band names of a stack
# ---------------------------------------------------------------------------------------------
def _band_names_from_file(path: str) -> Tuple[str, ...]:
    """S2 band names of a stack file: from its descriptions, else from its band count."""
    with open_raster(path, "Sentinel-2 stack") as ds:
        names = [canonical_band(d or "") for d in ds.descriptions]
        count = ds.count
    if all(names) and len(set(names)) == count:
        return tuple(names)  # type: ignore[arg-type]
    if count in STACK_LAYOUTS:
        return STACK_LAYOUTS[count][1]
    return tuple(f"S2_{i + 1}" for i in range(count))


def _stack_names(ref: StackRef) -> Tuple[str, ...]:
    if len(ref.paths) == 1:
        return _band_names_from_file(ref.paths[0])
    names = []
    for p in ref.paths:
        with open_raster(p, "Sentinel-2 band file") as ds:
            count = ds.count
        band = band_from_filename(p)
        if count != 1 or band is None:
            return tuple(f"S2_{i + 1}" for i in range(_count_bands(ref)))
        names.append(band)
    return tuple(names)


def _count_bands(ref: StackRef) -> int:
    total = 0
    for p in ref.paths:
        with open_raster(p) as ds:
            total += ds.count
    return total


# ---------------------------------------------------------------------------------------------
# reading manifests
# ---------------------------------------------------------------------------------------------
def _sample_from_entry(entry: Mapping, base: Optional[Path], defaults: Mapping, position: int) -> PatchSample:
    sample_id = str(entry.get("id") or f"sample_{position:05d}")
    stacks: Dict[str, StackRef] = {}
    for role in STACK_KEYS:
        value = entry.get(role)
        if value not in (None, "", []):
            stacks[role] = StackRef.parse(value, base, role, sample_id)
    if "target" not in stacks:
        raise InputError(f"sample {sample_id!r}: no 'target' (the cloud-free image) is given")
    split = str(entry.get("split") or "train").strip().lower()
    if split not in SPLITS:
        raise InputError(f"sample {sample_id!r}: split {split!r} is not one of {', '.join(SPLITS)}")

    def names(key: str, fallback) -> Tuple[str, ...]:
        value = entry.get(key) or defaults.get(key)
        if isinstance(value, str):
            value = [v for v in value.replace(";", ",").split(",") if v.strip()]
        return tuple(str(v).strip() for v in value) if value else tuple(fallback() if callable(fallback) else fallback)

    ref = stacks.get("cloudy", stacks["target"])
    s2 = names("s2_bands", lambda: _stack_names(ref))
    try:
        offset = float(entry.get("s2_offset", defaults.get("s2_offset", 0.0)) or 0.0)
    except (TypeError, ValueError):
        raise InputError(f"sample {sample_id!r}: s2_offset must be a number, got {entry.get('s2_offset')!r}") from None
    return PatchSample(
        id=sample_id, stacks=stacks, split=split, source=str(entry.get("source", "")),
        s2_bands=s2, s1_bands=names("s1_bands", S1_BANDS),
        terrain_bands=names("terrain_bands", TERRAIN_BANDS), s2_offset=offset,
        notes=str(entry.get("notes", "")),
    )


def _csv_entries(path: Path) -> List[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise InputError(f"manifest {path}: no rows")
    if "target" not in rows[0]:
        raise InputError(f"manifest {path}: the header needs a 'target' column (has {', '.join(rows[0])})")
    return rows


def _json_document(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest {path} is not valid JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"samples": data}
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        raise InputError(f"manifest {path}: expected an object with a 'samples' list")
    return data


def load_manifest(source: os.PathLike | str) -> Manifest:
    """Read a JSON or CSV manifest, or a folder (see the module docstring)."""
    path = Path(source).expanduser()
    if path.is_dir():
        for name in ("manifest.json", "manifest.csv"):
            if (path / name).is_file():
                return load_manifest(path / name)
        return manifest_from_folder(path)
    if not path.is_file():
        raise InputError(f"training data: {path} does not exist (expected a manifest .json/.csv or a folder)")
    base = path.parent.resolve()
    roots: Tuple[str, ...] = ()
    if path.suffix.lower() == ".csv":
        entries, defaults, description = _csv_entries(path), {}, ""
    else:
        data = _json_document(path)
        entries = data["samples"]
        defaults = {k: data[k] for k in ("s2_bands", "s1_bands", "terrain_bands", "s2_offset") if k in data}
        description = str(data.get("description", ""))
        roots = _external_roots(data, path, base)
    samples = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"manifest {path}: sample {i + 1} is not an object with 'target', 'cloudy'... "
                             f"(got {type(e).__name__})")
        _check_paths_inside(e, path, base, roots, i)
        samples.append(_sample_from_entry(e, base, defaults, i))
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"manifest {path}: duplicate sample ids {', '.join(dup[:5])}")
    if not samples:
        raise InputError(f"manifest {path}: no samples")
    return Manifest(samples, description, str(path), roots)


def _external_roots(data: Mapping, path: Path, base: Path) -> Tuple[str, ...]:
    """The ``external_data_roots`` of a JSON manifest, as absolute folders (relative ones from ``base``)."""
    value = data.get("external_data_roots")
    if value in (None, []):
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"manifest {path}: 'external_data_roots' must be a list of folder paths, got {value!r}")
    roots = []
    for v in value:
        p = Path(v.strip()).expanduser()
        roots.append(os.path.normpath(str(p if p.is_absolute() else base / p)))
    return tuple(roots)


def _check_paths_inside(entry: Mapping, path: Path, base: Path, roots: Tuple[str, ...], position: int) -> None:
    """Refuse a sample file outside the manifest's folder and its ``external_data_roots`` (links and ``..``
    resolved)."""
    allowed = [_real(base)] + [_real(r) for r in roots]
    sample_id = str(entry.get("id") or f"sample_{position:05d}")
    for role in STACK_KEYS:
        value = entry.get(role)
        if value in (None, "", []):
            continue
        items = value.split(";") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            p = Path(text).expanduser()
            real = _real(p if p.is_absolute() else base / p)
            if not any(_within(real, folder) for folder in allowed):
                where = "the dataset folder" + (" and its external_data_roots" if roots else "")
                raise InputError(
                    f"manifest {path}, sample {sample_id}: {text} lies outside {where} ({base}); a manifest reads "
                    "files inside its own folder, or in the folders its 'external_data_roots' list names: move "
                    "the file into the dataset, or add its folder to that list")


def manifest_from_folder(folder: os.PathLike | str) -> Manifest:
    """Samples from sub-folders ``cloudy/``, ``target/`` ... matched by file name."""
    folder = Path(folder)
    found: Dict[str, Path] = {}
    for role, names in _FOLDER_ROLES.items():
        for name in names:
            if (folder / name).is_dir():
                found[role] = folder / name
                break
    if "target" not in found:
        raise InputError(f"training data folder {folder}: no manifest.json / manifest.csv and no 'target/' "
                         "(or 'clear/') sub-folder; see the manifest format in the help")
    targets = sorted(p for p in found["target"].iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    entries = []
    for t in targets:
        entry = {"id": t.stem, "target": str(t)}
        for role, sub in found.items():
            if role == "target":
                continue
            candidate = sub / t.name
            if candidate.is_file():
                entry[role] = str(candidate)
        entries.append(entry)
    if not entries:
        raise InputError(f"training data folder {folder}: {found['target']} holds no raster")
    return Manifest([_sample_from_entry(e, None, {}, i) for i, e in enumerate(entries)],
                    f"folder layout {folder}", str(folder))


# ---------------------------------------------------------------------------------------------
# checking the files of samples before a run
# ---------------------------------------------------------------------------------------------
#: What the band count of each stack is compared with.
_BAND_LISTS = {"cloudy": ("s2_bands", "S2"), "target": ("s2_bands", "S2"), "s1": ("s1_bands", "S1"),
               "terrain": ("terrain_bands", "terrain")}


def check_sample_files(samples: Sequence[PatchSample], roles: Optional[Sequence[str]] = None,
                       manifest: Optional[os.PathLike | str] = None) -> None:
    """Open every file of every sample's stacks ``roles`` (default: all of them) and refuse, naming the
    sample and the file, one that is missing, unreadable or truncated (:func:`open_raster` reads the
    last block of every band) or whose band count is not what the sample's band list says: the S2
    stacks (cloudy, target) as many bands as ``s2_bands``, S1 as ``s1_bands``, terrain as
    ``terrain_bands`` (a stack of several files: their bands together); masks need one band or more.
    ``manifest`` (the file the samples come from) is named in the messages."""
    wanted = tuple(roles) if roles is not None else STACK_KEYS
    where = f"manifest {manifest}, " if manifest else ""
    for sample in samples:
        for role in wanted:
            ref = sample.stacks.get(role)
            if ref is None:
                continue
            what = f"{where}sample {sample.id}: {role}"
            counts = []
            for path in ref.paths:
                with open_raster(path, what) as ds:
                    counts.append(ds.count)
            total = sum(counts)
            if role in _BAND_LISTS:
                key, kind = _BAND_LISTS[role]
                names = tuple(getattr(sample, key))
                if names and total != len(names):
                    files = ref.paths[0] if len(ref.paths) == 1 else "; ".join(ref.paths)
                    has = f"has {total} band(s)" if len(ref.paths) == 1 else f"have {total} band(s) together"
                    raise InputError(f"{what} {files} {has}, but the manifest lists {len(names)} {kind} bands "
                                     f"({', '.join(names)}); the file is not the stack the manifest describes: "
                                     f"rebuild it, or correct '{key}'")
            elif total < 1:
                raise InputError(f"{what} {ref.paths[0]} has no band")
