"""Training data for the cloud-removal models: aligned patch stacks read from GeoTIFFs in windows.

A **sample** is one location: a cloudy Sentinel-2 image, its cloud-free target, and optionally
Sentinel-1, a terrain stack and cloud / cloud-shadow masks, all covering the same ground. A
**manifest** lists the samples. :class:`PatchDataset` cuts random crops (``patch_size`` px, 256
by default, as CRT-UNet) from them, reads only those windows from disk, applies the same
flips and 90-degree rotation to every stack of a crop and scales the values for the model.
It needs numpy and rasterio only; the training engine wraps it in a torch ``DataLoader`` (it
is a map-style dataset: ``len()`` and ``[i]``).

Manifest (JSON)
---------------
::

    {"format": "topoclear-patch-manifest", "version": 1,
     "description": "what the data is and where it comes from",
     "s2_bands": ["B1", "B2", ...],            # bands of the cloudy and target stacks
     "s1_bands": ["VV", "VH"],                 # bands of the S1 stacks (dB)
     "terrain_bands": ["elevation", "slope", "aspect", "hillshade"],
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

Relative paths are relative to the manifest's folder. A stack given as a list of files is the
concatenation of their bands (e.g. one file per band). Files of one sample must share the CRS
and cover the same ground; they may have different pixel sizes (20 m and 60 m bands are read
onto the grid of the cloudy image by nearest neighbour). Band lists may be overridden per
sample. Masks are single-band rasters, 1 (or any non-zero value) on cloud / shadow.

A **CSV** manifest has a header ``id,split,cloudy,target,s1,terrain,cloud_mask,shadow_mask``
(any subset with ``cloudy`` or ``target``); several files in one cell are separated by ``;``.
S2 band names then come from the file's band descriptions or its band count (13: L1C order,
12: L2A order, 10: B2-B8A + B11, B12).

A **folder** with ``manifest.json`` or ``manifest.csv`` is read through it; otherwise its
sub-folders ``cloudy/``, ``target/`` (or ``clear/``), ``s1/``, ``terrain/``, ``cloud_mask/``,
``shadow_mask/`` are matched by file name.

Values and scaling
------------------
S2 in reflectance x 10000 (after ``s2_offset``), S1 in dB, terrain in the units of
:mod:`topoclear.engine.terrain.stack` (elevation m, slope and aspect degrees, hillshade 0-255);
each crop is scaled with the model's scaling (:mod:`topoclear.models.scaling`). Declared
nodata and non-finite values become 0 after scaling.

Augmentation (training only, CRT-UNet section IV-A): horizontal flip, vertical flip and a
90-degree rotation (by 90, 180 or 270 degrees), each with probability 0.5, the same for all
stacks of a crop. A terrain ``aspect`` band is turned with the image (a compass direction in a
rotated or mirrored image points elsewhere), so it stays the direction the slope faces in the
augmented image; slope, elevation and hillshade are unchanged.

Randomness is a function of ``(seed, epoch, index)`` only, so crops and augmentations are the
same whatever the number of loader workers and whatever ran before.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from ...models.scaling import canonical_terrain_name, scale_s1, scale_s2, scale_terrain
from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid, open_raster
from ..sentinel2.bands import STACK_LAYOUTS, canonical_band

__all__ = [
    "STACK_KEYS",
    "SPLITS",
    "MANIFEST_FORMAT",
    "StackRef",
    "PatchSample",
    "Manifest",
    "load_manifest",
    "manifest_from_folder",
    "read_stack",
    "augment",
    "PatchDataset",
    "write_cloud_shadow_masks",
    "build_sample_manifests",
]

MANIFEST_FORMAT = "topoclear-patch-manifest"
#: Stack roles of a sample, in a fixed order.
STACK_KEYS: Tuple[str, ...] = ("cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask")
SPLITS: Tuple[str, ...] = ("train", "val", "test", "exclude")
DEFAULT_S1_BANDS: Tuple[str, ...] = ("VV", "VH")
DEFAULT_TERRAIN_BANDS: Tuple[str, ...] = ("elevation", "slope", "aspect", "hillshade")
_FOLDER_ROLES = {"cloudy": ("cloudy", "s2_cloudy"), "target": ("target", "clear", "s2_clear"), "s1": ("s1",),
                 "terrain": ("terrain",), "cloud_mask": ("cloud_mask", "cloud_masks"),
                 "shadow_mask": ("shadow_mask", "shadow_masks")}
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------
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
    s1_bands: Tuple[str, ...] = DEFAULT_S1_BANDS
    terrain_bands: Tuple[str, ...] = DEFAULT_TERRAIN_BANDS
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
        return {"format": MANIFEST_FORMAT, "version": 1, "description": self.description, "samples": samples}

    def save(self, path: os.PathLike | str) -> Path:
        """Write the manifest as JSON (paths relative to its folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(path.parent.resolve()), indent=1))
        self.path = str(path)
        return path


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
        s2_bands=s2, s1_bands=names("s1_bands", DEFAULT_S1_BANDS),
        terrain_bands=names("terrain_bands", DEFAULT_TERRAIN_BANDS), s2_offset=offset,
        notes=str(entry.get("notes", "")),
    )


def _stack_names(ref: StackRef) -> Tuple[str, ...]:
    if len(ref.paths) == 1:
        return _band_names_from_file(ref.paths[0])
    from ..sentinel2.bands import band_from_filename

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
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise InputError(f"manifest {path}: no rows")
        missing = {"target"} - set(rows[0])
        if missing:
            raise InputError(f"manifest {path}: the header needs a 'target' column (has {', '.join(rows[0])})")
        entries, defaults, description = rows, {}, ""
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"manifest {path} is not valid JSON: {exc}") from exc
        if isinstance(data, list):
            data = {"samples": data}
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise InputError(f"manifest {path}: expected an object with a 'samples' list")
        entries = data["samples"]
        defaults = {k: data[k] for k in ("s2_bands", "s1_bands", "terrain_bands", "s2_offset") if k in data}
        description = str(data.get("description", ""))
    samples = [_sample_from_entry(e, base, defaults, i) for i, e in enumerate(entries)]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"manifest {path}: duplicate sample ids {', '.join(dup[:5])}")
    if not samples:
        raise InputError(f"manifest {path}: no samples")
    return Manifest(samples, description, str(path))


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
    targets = sorted(p for p in found["target"].iterdir() if p.suffix.lower() in _RASTER_SUFFIXES)
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
# windowed reading
# ---------------------------------------------------------------------------------------------
def _finest(paths: Sequence[str]) -> str:
    best, best_size = paths[0], math.inf
    for p in paths:
        with open_raster(p) as ds:
            size = abs(ds.transform.a)
        if size < best_size:
            best, best_size = p, size
    return best


def reference_grid(ref: StackRef) -> Grid:
    """Grid of the finest-resolution file of ``ref``."""
    with open_raster(_finest(ref.paths), "reference image") as ds:
        return Grid.of(ds)


def read_stack(ref: StackRef, grid: Grid, window: Window, role: str = "stack") -> np.ndarray:
    """Bands of ``ref`` over ``window`` of ``grid`` as float32 (C, h, w); nodata becomes NaN.

    Files on ``grid`` itself are read directly; others (another pixel size, same CRS) are read
    over the same ground and resampled to the window by nearest neighbour.
    """
    h, w = int(window.height), int(window.width)
    parts = []
    for path in ref.paths:
        with open_raster(path, role) as ds:
            if grid.crs is not None and ds.crs is not None and ds.crs != grid.crs:
                raise InputError(f"{role}: {path} is in {ds.crs}, the sample's reference image in {grid.crs}; "
                                 "reproject it onto the Sentinel-2 grid first (e.g. with the terrain stack tool "
                                 "or gdalwarp)")
            if ds.transform == grid.transform and ds.width >= window.col_off + w and ds.height >= window.row_off + h:
                data = ds.read(window=window, out_dtype=np.float32)
            else:
                bounds = rasterio.windows.bounds(window, grid.transform)
                src = from_bounds(*bounds, transform=ds.transform)
                eps = 1e-3
                if (src.col_off < -eps or src.row_off < -eps or src.col_off + src.width > ds.width + eps
                        or src.row_off + src.height > ds.height + eps):
                    raise InputError(f"{role}: {path} does not cover the ground of the sample's reference image")
                data = ds.read(window=src, out_shape=(ds.count, h, w), resampling=Resampling.nearest,
                               out_dtype=np.float32)
            if ds.nodata is not None and not math.isnan(ds.nodata):
                data[data == np.float32(ds.nodata)] = np.nan
            parts.append(data)
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _indices(available: Sequence[str], wanted: Sequence[str], role: str, sample_id: str,
             canonical=lambda x: str(x).upper()) -> List[int]:
    """Positions of ``wanted`` bands in ``available`` (by name; by position if the counts match
    and the wanted names are generic)."""
    lookup = {canonical(a): i for i, a in enumerate(available)}
    out = []
    for name in wanted:
        key = canonical(name)
        if key not in lookup:
            if len(wanted) == len(available) and not all(canonical(n) in lookup for n in wanted):
                generic = all(str(n).split("_")[-1].isdigit() for n in wanted)
                if generic:
                    return list(range(len(available)))
            raise InputError(f"sample {sample_id!r}: the model needs {role} band {name!r}, but the {role} stack has "
                             f"{', '.join(available)}")
        out.append(lookup[key])
    return out


# ---------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------
def augment(arrays: Dict[str, np.ndarray], rng: np.random.Generator, aspect_channel: Optional[int] = None,
            probability: float = 0.5) -> Dict[str, np.ndarray]:
    """Flip left-right, flip up-down and rotate by a multiple of 90 degrees, each with
    ``probability``, the same way for every (C, H, W) array (square crops for rotations).

    ``aspect_channel``: index of an aspect band (degrees clockwise from north) in
    ``arrays["terrain"]``, turned with the image. Returns new arrays (contiguous).
    """
    hflip = rng.random() < probability
    vflip = rng.random() < probability
    k = int(rng.integers(1, 4)) if rng.random() < probability else 0
    out = {}
    for key, a in arrays.items():
        if hflip:
            a = a[:, :, ::-1]
        if vflip:
            a = a[:, ::-1, :]
        if k:
            a = np.rot90(a, k, axes=(1, 2))  # counter-clockwise
        out[key] = np.ascontiguousarray(a)
    if aspect_channel is not None and "terrain" in out:
        t = out["terrain"]
        asp = t[aspect_channel]
        valid = np.isfinite(asp)
        if hflip:  # east <-> west
            asp = np.where(valid, (360.0 - asp) % 360.0, asp)
        if vflip:  # north <-> south
            asp = np.where(valid, (180.0 - asp) % 360.0, asp)
        if k:  # the image turns counter-clockwise, so compass directions in it turn too
            asp = np.where(valid, (asp - 90.0 * k) % 360.0, asp)
        t[aspect_channel] = asp
    return out


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    sample: PatchSample
    grid: Grid
    s2_index: List[int]
    out_index: List[int]
    s1_index: List[int]
    terrain_index: List[int]


class PatchDataset:
    """Crops of aligned stacks, scaled for one model.

    Args:
        samples: :class:`PatchSample` list (e.g. ``manifest.split("train")``).
        s2_bands: S2 bands the model reads (names, in order); empty for SAR-only models.
        output_bands: bands of the target (the model's output).
        s1_bands / terrain_bands: S1 and terrain bands the model reads (empty: not read).
        scaling: name of the value scaling (:data:`topoclear.models.scaling.SCALINGS`).
        patch_size: crop side in pixels.
        training: random crops and augmentation; otherwise fixed crops and no augmentation:
            the centre crop when ``crops_per_sample`` is 1, else tiles covering the image
            (overlapping only where the size is not a multiple of the patch size), at most
            ``crops_per_sample`` of them spread over the image.
        crops_per_sample: crops per sample and epoch (training) / per sample (validation).
        masks: ``"required"`` (every sample needs cloud and shadow masks), ``"optional"``
            (read when every sample has them), ``"none"``.
        missing_inputs: ``"error"`` or ``"zeros"``: what to do when a sample lacks an S1 or
            terrain stack the model reads (zeros: an all-zero input in scaled units, the
            CRT-UNet ablation's way of removing an input).
        seed: seed of the crops and augmentations.
        augmentation_probability: probability of each flip and of the rotation.
        cache: keep every stack in memory after its first read (whole sample), so that later
            crops are cut from memory; for data sets of small patches that fit in RAM.
    """

    def __init__(
        self,
        samples: Sequence[PatchSample],
        s2_bands: Sequence[str],
        output_bands: Sequence[str],
        s1_bands: Sequence[str] = (),
        terrain_bands: Sequence[str] = (),
        scaling: str = "unit",
        patch_size: int = 256,
        training: bool = True,
        crops_per_sample: int = 1,
        masks: str = "optional",
        missing_inputs: str = "error",
        seed: int = 0,
        augmentation_probability: float = 0.5,
        cache: bool = False,
    ) -> None:
        if not samples:
            raise InputError("no samples to read (check the manifest's splits)")
        if masks not in ("required", "optional", "none"):
            raise ValueError(f"masks must be 'required', 'optional' or 'none', got {masks!r}")
        if missing_inputs not in ("error", "zeros"):
            raise ValueError(f"missing_inputs must be 'error' or 'zeros', got {missing_inputs!r}")
        if patch_size < 8:
            raise InputError(f"patch size must be at least 8 px, got {patch_size}")
        self.s2_bands = tuple(s2_bands)
        self.output_bands = tuple(output_bands)
        self.s1_bands = tuple(s1_bands)
        self.terrain_bands = tuple(terrain_bands)
        self.scaling = scaling
        self.patch_size = int(patch_size)
        self.training = bool(training)
        self.crops_per_sample = max(1, int(crops_per_sample))
        self.missing_inputs = missing_inputs
        self.seed = int(seed)
        self.augmentation_probability = float(augmentation_probability)
        self.epoch = 0
        self.cache = bool(cache)
        self._cached: Dict[Tuple[str, str], np.ndarray] = {}
        self.filled_with_zeros: Dict[str, List[str]] = {"s1": [], "terrain": []}
        self._prepared = [self._prepare(s) for s in samples]
        have_masks = all(p.sample.has("cloud_mask") and p.sample.has("shadow_mask") for p in self._prepared)
        if masks == "required" and not have_masks:
            lacking = [p.sample.id for p in self._prepared
                       if not (p.sample.has("cloud_mask") and p.sample.has("shadow_mask"))]
            raise InputError(
                f"the loss needs cloud and shadow masks, but {len(lacking)} sample(s) have none "
                f"({', '.join(lacking[:5])}); add them to the manifest (write_cloud_shadow_masks computes them "
                "from Level-1C stacks) or choose the L1 loss")
        self.with_masks = masks != "none" and have_masks
        self._aspect = None
        for i, b in enumerate(self.terrain_bands):
            if canonical_terrain_name(b) == "aspect":
                self._aspect = i
        self._windows = [self._fixed_windows(p) for p in self._prepared] if not self.training else None

    # -- set-up -------------------------------------------------------------------------------
    def _prepare(self, sample: PatchSample) -> _Prepared:
        ref = sample.reference
        grid = reference_grid(ref)
        if grid.width < self.patch_size or grid.height < self.patch_size:
            raise InputError(f"sample {sample.id!r} is {grid.width} x {grid.height} px, smaller than the patch size "
                             f"{self.patch_size}; choose a smaller patch size")
        s2_index: List[int] = []
        if self.s2_bands:
            if not sample.has("cloudy"):
                raise InputError(f"sample {sample.id!r} has no cloudy image, which the model reads")
            s2_index = _indices(sample.s2_bands, self.s2_bands, "S2", sample.id)
        out_index = _indices(sample.s2_bands, self.output_bands, "target S2", sample.id)
        s1_index: List[int] = []
        if self.s1_bands:
            if sample.has("s1"):
                s1_index = _indices(sample.s1_bands, self.s1_bands, "S1", sample.id)
            elif self.missing_inputs == "zeros":
                self.filled_with_zeros["s1"].append(sample.id)
            else:
                raise InputError(f"sample {sample.id!r} has no Sentinel-1 stack, which the model reads; add one, "
                                 "train the variant without S1, or fill missing inputs with zeros")
        terrain_index: List[int] = []
        if self.terrain_bands:
            if sample.has("terrain"):
                terrain_index = _indices(sample.terrain_bands, self.terrain_bands, "terrain", sample.id,
                                         canonical=canonical_terrain_name)
            elif self.missing_inputs == "zeros":
                self.filled_with_zeros["terrain"].append(sample.id)
            else:
                raise InputError(f"sample {sample.id!r} has no terrain stack, which the model reads; build one with "
                                 "the terrain stack tool, or fill missing inputs with zeros")
        return _Prepared(sample, grid, s2_index, out_index, s1_index, terrain_index)

    def _fixed_windows(self, p: _Prepared) -> List[Window]:
        size = self.patch_size
        if self.crops_per_sample == 1:
            return [Window((p.grid.width - size) // 2, (p.grid.height - size) // 2, size, size)]

        def starts(length: int) -> List[int]:  # tiles covering the axis, overlapping only if they must
            n = math.ceil(length / size)
            return sorted({int(round(v)) for v in np.linspace(0, length - size, n)})

        tiles = [Window(c, r, size, size) for r in starts(p.grid.height) for c in starts(p.grid.width)]
        if len(tiles) <= self.crops_per_sample:
            return tiles
        picks = np.linspace(0, len(tiles) - 1, self.crops_per_sample).round().astype(int)
        return [tiles[i] for i in picks]

    # -- map-style dataset --------------------------------------------------------------------
    @property
    def samples(self) -> List[PatchSample]:
        return [p.sample for p in self._prepared]

    def set_epoch(self, epoch: int) -> None:
        """Draw the crops of epoch ``epoch`` (training); no effect on validation crops."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self._windows is not None:
            return sum(len(w) for w in self._windows)
        return len(self._prepared) * self.crops_per_sample

    def _locate(self, index: int) -> Tuple[_Prepared, Window, Optional[np.random.Generator]]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._windows is not None:
            for p, windows in zip(self._prepared, self._windows):
                if index < len(windows):
                    return p, windows[index], None
                index -= len(windows)
        p = self._prepared[index % len(self._prepared)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        size = self.patch_size
        row = int(rng.integers(0, p.grid.height - size + 1))
        col = int(rng.integers(0, p.grid.width - size + 1))
        return p, Window(col, row, size, size), rng

    def window_of(self, index: int) -> Tuple[str, Window]:
        """(sample id, window) of item ``index`` in the current epoch."""
        p, window, _ = self._locate(index)
        return p.sample.id, window

    def _read(self, p: _Prepared, role: str, window: Window, what: str) -> np.ndarray:
        """Stack ``role`` of sample ``p`` over ``window`` (from memory when caching)."""
        ref = p.sample.stacks[role]
        if not self.cache:
            return read_stack(ref, p.grid, window, what)
        key = (p.sample.id, role)
        if key not in self._cached:
            self._cached[key] = read_stack(ref, p.grid, Window(0, 0, p.grid.width, p.grid.height), what)
        r, c = int(window.row_off), int(window.col_off)
        return self._cached[key][:, r:r + int(window.height), c:c + int(window.width)].copy()

    def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
        p, window, rng = self._locate(int(index))
        s = p.sample
        size = self.patch_size
        raw: Dict[str, np.ndarray] = {}
        if self.s2_bands:
            cloudy = self._read(p, "cloudy", window, f"sample {s.id}: cloudy image") + s.s2_offset
            raw["s2"] = cloudy[p.s2_index]
            if self.output_bands != self.s2_bands:
                raw["cloudy"] = cloudy[p.out_index]
        raw["target"] = self._read(p, "target", window, f"sample {s.id}: target")[p.out_index] + s.s2_offset
        if self.s1_bands and p.s1_index:
            raw["s1"] = self._read(p, "s1", window, f"sample {s.id}: S1")[p.s1_index]
        if self.terrain_bands and p.terrain_index:
            raw["terrain"] = self._read(p, "terrain", window, f"sample {s.id}: terrain")[p.terrain_index]
        if self.with_masks:
            for role in ("cloud_mask", "shadow_mask"):
                m = self._read(p, role, window, f"sample {s.id}: {role}")[:1]
                raw[role] = (np.nan_to_num(m, nan=0.0) > 0).astype(np.float32)
        if rng is not None and self.augmentation_probability > 0:
            raw = augment(raw, rng, self._aspect if "terrain" in raw else None, self.augmentation_probability)

        item: Dict[str, np.ndarray] = {}
        for key in ("s2", "cloudy"):
            if key in raw:
                item[key] = _finite(scale_s2(raw[key], self.scaling))
        item["target"] = _finite(scale_s2(raw["target"], self.scaling))
        if self.s1_bands:
            if "s1" in raw:
                item["s1"] = _finite(scale_s1(raw["s1"], self.scaling, bands=self.s1_bands, channel_axis=0))
            else:
                item["s1"] = np.zeros((len(self.s1_bands), size, size), np.float32)
        if self.terrain_bands:
            if "terrain" in raw:
                item["terrain"] = _finite(scale_terrain(raw["terrain"], self.scaling, bands=self.terrain_bands,
                                                        channel_axis=0))
            else:
                item["terrain"] = np.zeros((len(self.terrain_bands), size, size), np.float32)
        if self.with_masks:
            item["cloud_mask"] = raw["cloud_mask"]
            item["shadow_mask"] = raw["shadow_mask"]
        item["index"] = np.int64(index)
        return item

    def describe(self) -> dict:
        """What the dataset holds, for a model card."""
        sources: Dict[str, int] = {}
        for p in self._prepared:
            key = p.sample.source or "unspecified"
            sources[key] = sources.get(key, 0) + 1
        return {
            "samples": len(self._prepared),
            "sample_ids": [p.sample.id for p in self._prepared],
            "sources": sources,
            "patches": len(self),
            "patch_size": self.patch_size,
            "masks": self.with_masks,
            "filled_with_zeros": {k: v for k, v in self.filled_with_zeros.items() if v},
        }


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------------------------------------
# masks for samples that have none
# ---------------------------------------------------------------------------------------------
def write_cloud_shadow_masks(
    cloudy: StackRef | os.PathLike | str,
    band_names: Sequence[str],
    cloud_path: os.PathLike | str,
    shadow_path: os.PathLike | str,
    s2_offset: float = 0.0,
    monitor: Monitor = SILENT,
    strip_rows: int = 1024,
    overview_pixels: int = 1024,
) -> Tuple[float, float]:
    """Cloud and cloud-shadow masks (uint8 0/1) of a Level-1C stack with DSen2-CR's detectors.

    Works in strips with the halos :data:`~topoclear.engine.clouds.masks.rules.CLOUD_SCORE_HALO` /
    :data:`~topoclear.engine.clouds.masks.rules.SHADOW_HALO`; the scene-wide shadow thresholds come from a
    decimated read (at most ``overview_pixels`` on a side) of the whole image (the whole image
    itself when it is that small). Needs bands B1, B2, B3, B4, B8, B10, B11 (reflectance x 10000).
    Returns the cloud and shadow fractions.
    """
    from ..clouds.masks.rules import CLOUD_SCORE_HALO, SHADOW_HALO, cloud_score_l1c, shadow_mask_l1c, shadow_thresholds
    from ..clouds.masks.rules import CLOUD_THRESHOLD

    ref = cloudy if isinstance(cloudy, StackRef) else StackRef((str(cloudy),))
    needed = ("B1", "B2", "B3", "B4", "B8", "B10", "B11")
    missing = [b for b in needed if b not in band_names]
    if missing:
        raise InputError(f"cloud/shadow masks need the Level-1C bands {', '.join(needed)}; the stack lacks "
                         f"{', '.join(missing)} (Level-2A products: build masks from the SCL band instead)")
    idx = [list(band_names).index(b) for b in needed]
    grid = reference_grid(ref)

    def to_bands(data: np.ndarray) -> Dict[str, np.ndarray]:
        refl = (np.nan_to_num(data, nan=0.0).astype(np.float64) + s2_offset) / 10000.0
        return {b: refl[i] for b, i in zip(needed, range(len(needed)))}

    factor = max(1, math.ceil(max(grid.width, grid.height) / overview_pixels))
    with open_raster(_finest(ref.paths), "cloudy image") as ds:
        if len(ref.paths) == 1 and factor > 1:
            over = ds.read([i + 1 for i in idx], out_shape=(len(idx), grid.height // factor, grid.width // factor),
                           resampling=Resampling.nearest, out_dtype=np.float32)
        else:
            over = None
    if over is None:
        over = read_stack(ref, grid, Window(0, 0, grid.width, grid.height), "cloudy image")[idx]
    thresholds = shadow_thresholds(to_bands(over))

    halo = max(CLOUD_SCORE_HALO, SHADOW_HALO)
    cloud_fraction = shadow_fraction = 0.0
    with AtomicRasterWriter(cloud_path, grid, 1, "uint8", descriptions=["cloud mask (1 = cloud)"]) as c_out, \
            AtomicRasterWriter(shadow_path, grid, 1, "uint8", descriptions=["cloud shadow mask (1 = shadow)"]) as s_out:
        for row in range(0, grid.height, strip_rows):
            monitor.check()
            rows = min(strip_rows, grid.height - row)
            r0, r1 = max(0, row - halo), min(grid.height, row + rows + halo)
            data = read_stack(ref, grid, Window(0, r0, grid.width, r1 - r0), "cloudy image")[idx]
            bands = to_bands(data)
            cloud = cloud_score_l1c(bands) >= CLOUD_THRESHOLD
            shadow = shadow_mask_l1c(bands, thresholds=thresholds)
            crop = slice(row - r0, row - r0 + rows)
            window = Window(0, row, grid.width, rows)
            c_out.write(cloud[crop].astype(np.uint8)[None], window=window)
            s_out.write(shadow[crop].astype(np.uint8)[None], window=window)
            cloud_fraction += float(cloud[crop].sum())
            shadow_fraction += float(shadow[crop].sum())
            monitor.progress(100.0 * (row + rows) / grid.height)
    total = float(grid.width * grid.height)
    return cloud_fraction / total, shadow_fraction / total


# ---------------------------------------------------------------------------------------------
# manifests of the sample data shipped beside the repository
# ---------------------------------------------------------------------------------------------
#: SEN12MS-CR scene whose clear image is snow-covered while the cloudy one is snow-free.
_SNOW_CHANGE_SCENE = "26_p100"
#: Validation scenes of the sample manifests (everything else trains).
_SEN12MSCR_VAL_SCENE = "39_p500"
_BIGEARTHNET_VAL_PATCH = "87_48"
_L1C = STACK_LAYOUTS[13][1]
_L2A = STACK_LAYOUTS[12][1]
_SEN12MSCR_CITATION = ("SEN12MS-CR (Ebel et al. 2020, TGRS), CC BY 4.0; SEN12MS-CR-TS (Ebel et al. 2022), CC BY 4.0; "
                       "contains modified Copernicus Sentinel data")
_BIGEARTHNET_CITATION = "BigEarthNet-MM (Sumbul et al. 2021), CDLA-Permissive-1.0; contains modified Copernicus data"


def _scene_key(name: str) -> str:
    """``ROIs1158_spring_s2_cloudy_26_p100.tif`` -> ``26_p100``."""
    stem = Path(name).stem
    parts = stem.split("_")
    return "_".join(parts[-2:])


def _write_stack_on_grid(paths: Sequence[str], out: Path, band_names: Sequence[str]) -> None:
    """Stack single-band files (any pixel size, same ground) onto the finest grid (nearest)."""
    ref = StackRef(tuple(paths))
    grid = reference_grid(ref)
    data = read_stack(ref, grid, Window(0, 0, grid.width, grid.height), "band files")
    with AtomicRasterWriter(out, grid, data.shape[0], "uint16", descriptions=list(band_names)) as dst:
        dst.write(np.clip(np.nan_to_num(data), 0, 65535).astype(np.uint16))


def build_sample_manifests(
    data_dir: os.PathLike | str,
    cache_dir: os.PathLike | str,
    seed: int = 0,
    monitor: Monitor = SILENT,
    overwrite: bool = False,
) -> Dict[str, Path]:
    """Training manifests over the real sample data in ``data_dir`` (``../shared/data``).

    Derived files (masks, synthetic cloudy images, band stacks) go to ``cache_dir``, never into
    ``data_dir``; existing ones are reused unless ``overwrite``. Two manifests:

    ``sen12mscr.json`` (Level-1C, 13 bands, no S1)
        * 6 **real** cloudy / clear pairs of SEN12MS-CR (cloudy and clear share the grid, dates
          differ, same season); cloud and shadow masks computed from the cloudy image with
          DSen2-CR's detectors (:func:`write_cloud_shadow_masks`). The pair ``26_p100`` is
          marked ``exclude``: its clear image is snow-covered and its cloudy one snow-free, so
          it teaches a land-cover change, not cloud removal.
        * 8 **synthetic** pairs: each clear SEN12MS-CR image and the two clear SEN12MS-CR-TS dates
          (Rome, 2018-01-06 and 2018-05-31) with synthetic clouds and shadows
          (:mod:`topoclear.engine.training.synthetic_clouds`, seed = ``seed`` + position); the masks are
          the generator's own. The snow-covered ``26_p100`` clear image is used here (no change
          between input and target).
        * Validation: the ``39_p500`` scene (real pair and its synthetic pair); all else trains.
        The one real S1 image co-registered with a cloudy S2 (``19_p30``) has no clear target
        and is not used.
    ``bigearthnet.json`` (Level-2A, 12 bands, with real S1 VV/VH)
        6 BigEarthNet-MM patches (120 x 120 px): real clear S2 (band files stacked onto the
        10 m grid by nearest neighbour) and the co-registered real S1 (read from the two
        original files), with synthetic clouds and shadows. Validation: patch ``87_48``.

    Returns ``{"sen12mscr": path, "bigearthnet": path}`` (a key is left out when its data is absent).
    """
    from .synthetic_clouds import write_synthetic_pair

    data = Path(data_dir)
    cache = Path(cache_dir)
    for sub in ("masks", "synthetic", "stacks"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    out: Dict[str, Path] = {}

    cr = data / "sen12ms-cr"
    if (cr / "s2_cloudy").is_dir() and (cr / "s2_clear").is_dir():
        clear = {_scene_key(p.name): p for p in sorted((cr / "s2_clear").glob("*.tif"))}
        cloudy = {_scene_key(p.name): p for p in sorted((cr / "s2_cloudy").glob("*.tif"))}
        samples: List[dict] = []
        pairs = sorted(set(clear) & set(cloudy))
        for n, key in enumerate(pairs):
            monitor.check()
            cm, sm = cache / "masks" / f"{key}_cloud.tif", cache / "masks" / f"{key}_shadow.tif"
            if overwrite or not (cm.exists() and sm.exists()):
                write_cloud_shadow_masks(str(cloudy[key]), _L1C, cm, sm)
            split = "exclude" if key == _SNOW_CHANGE_SCENE else ("val" if key == _SEN12MSCR_VAL_SCENE else "train")
            samples.append({
                "id": f"real_{key}", "split": split, "source": "real SEN12MS-CR pair",
                "cloudy": str(cloudy[key]), "target": str(clear[key]), "cloud_mask": str(cm), "shadow_mask": str(sm),
                "notes": ("clear image snow-covered, cloudy one snow-free: land-cover change"
                          if key == _SNOW_CHANGE_SCENE else "masks: DSen2-CR cloud score and Zhai shadow test"),
            })
            monitor.progress(40.0 * (n + 1) / max(1, len(pairs)))
        clear_images = [(f"synthetic_{k}", p) for k, p in clear.items()]
        ts = data / "sen12ms-cr-ts"
        for date in ("2018-01-06", "2018-05-31"):
            for p in sorted(ts.glob(f"*{date}*.tif")):
                clear_images.append((f"synthetic_ts_{date}", p))
        for n, (sid, path) in enumerate(clear_images):
            monitor.check()
            cloudy_path = cache / "synthetic" / f"{sid}.tif"
            cm, sm = cache / "synthetic" / f"{sid}_cloud.tif", cache / "synthetic" / f"{sid}_shadow.tif"
            if overwrite or not all(x.exists() for x in (cloudy_path, cm, sm)):
                write_synthetic_pair(path, _L1C, cloudy_path, cm, sm, seed=seed + n)
            split = "val" if sid.endswith(_SEN12MSCR_VAL_SCENE) else "train"
            samples.append({
                "id": sid, "split": split, "source": "synthetic clouds on a real clear image",
                "cloudy": str(cloudy_path), "target": str(path), "cloud_mask": str(cm), "shadow_mask": str(sm),
                "notes": f"synthetic clouds and shadows, seed {seed + n} (topoclear.engine.training.synthetic_clouds)",
            })
            monitor.progress(40.0 + 40.0 * (n + 1) / max(1, len(clear_images)))
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "s2_bands": list(_L1C),
            "description": ("SEN12MS-CR sample patches: real cloudy/clear Level-1C pairs with DSen2-CR masks, and "
                            f"clear images with synthetic clouds and shadows. {_SEN12MSCR_CITATION}"),
            "samples": samples,
        }
        path = cache / "sen12mscr.json"
        path.write_text(json.dumps(manifest, indent=1))
        out["sen12mscr"] = path

    ben_s2 = data / "bigearthnet" / "BigEarthNet-S2-Example"
    ben_s1 = data / "bigearthnet" / "BigEarthNet-S1-Example"
    if ben_s2.is_dir() and ben_s1.is_dir():
        samples = []
        folders = sorted(p for p in ben_s2.iterdir() if p.is_dir())
        for n, folder in enumerate(folders):
            monitor.check()
            patch = "_".join(folder.name.split("_")[-2:])
            s1_dirs = [p for p in ben_s1.iterdir() if p.is_dir() and p.name.endswith(f"_{patch}")]
            if not s1_dirs:
                continue
            s1_dir = s1_dirs[0]
            vv, vh = (next(iter(s1_dir.glob(f"*_{pol}.tif")), None) for pol in ("VV", "VH"))
            band_files = [next(iter(folder.glob(f"*_{b[0]}{b[1:].zfill(2) if b != 'B8A' else '8A'}.tif")), None)
                          for b in _L2A]
            if vv is None or vh is None or any(f is None for f in band_files):
                continue
            clear_path = cache / "stacks" / f"bigearthnet_{patch}_clear.tif"
            if overwrite or not clear_path.exists():
                _write_stack_on_grid([str(f) for f in band_files], clear_path, _L2A)
            cloudy_path = cache / "synthetic" / f"bigearthnet_{patch}.tif"
            cm, sm = cache / "synthetic" / f"bigearthnet_{patch}_cloud.tif", cache / "synthetic" / f"bigearthnet_{patch}_shadow.tif"
            if overwrite or not all(x.exists() for x in (cloudy_path, cm, sm)):
                write_synthetic_pair(clear_path, _L2A, cloudy_path, cm, sm, seed=seed + 100 + n)
            samples.append({
                "id": f"bigearthnet_{patch}", "split": "val" if patch == _BIGEARTHNET_VAL_PATCH else "train",
                "source": "synthetic clouds on a real clear image, real S1",
                "cloudy": str(cloudy_path), "target": str(clear_path), "s1": [str(vv), str(vh)],
                "cloud_mask": str(cm), "shadow_mask": str(sm),
                "notes": f"BigEarthNet {folder.name}; synthetic clouds seed {seed + 100 + n}",
            })
            monitor.progress(80.0 + 20.0 * (n + 1) / max(1, len(folders)))
        if samples:
            manifest = {
                "format": MANIFEST_FORMAT, "version": 1, "s2_bands": list(_L2A), "s1_bands": ["VV", "VH"],
                "description": ("BigEarthNet-MM sample patches: real clear Level-2A Sentinel-2 with synthetic clouds "
                                f"and shadows, and the co-registered real Sentinel-1 (dB). {_BIGEARTHNET_CITATION}"),
                "samples": samples,
            }
            path = cache / "bigearthnet.json"
            path.write_text(json.dumps(manifest, indent=1))
            out["bigearthnet"] = path
    monitor.progress(100.0)
    return out
