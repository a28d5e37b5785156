"""Cut aligned 256 x 256 patch stacks from scenes and split them 80/15/5 without overlap.

A **scene** is a set of rasters on one grid (the Sentinel-2 grid): a cloudy Sentinel-2 image,
its cloud-free target, and optionally Sentinel-1, a terrain stack (see
:func:`topoclear.engine.terrain.stack.terrain_stack`), cloud and cloud-shadow masks and a land
mask. :func:`build_dataset` cuts every scene into non-overlapping patches and writes them with a
manifest in the format :mod:`topoclear.engine.training.patches` reads, so training can consume the
folder directly.

The rules follow CRT-UNet (Boumahdi et al. 2025, section II-B) where they apply:

* **patches** of ``patch_size`` x ``patch_size`` px (256), on a regular lattice, never
  overlapping one another;
* **land only / fully valid**: a patch is kept only if every pixel of every stack holds data
  (no declared nodata, no NaN, no Sentinel-2 pixel whose bands are all 0; the aspect band of a
  terrain stack may be nodata on flat cells, which have no aspect). With a land mask (1 =
  land), every pixel must be land. ``max_water_fraction`` optionally refuses patches with more
  open water than that, water being NDWI = (B3 - B8) / (B3 + B8) > 0.2 and B8 < 0.15 on the
  clear image (CRT-UNet keeps 100 % land patches: ``max_water_fraction=0``). The water fraction
  of every patch is recorded either way. Snow in terrain shadow can pass this water test (it
  is dark in the NIR and relatively bright in the green): in snowy mountains prefer a land mask;
* **split** 80 % train, 15 % validation, 5 % test, with **no overlap between splits**.
  Patches are grouped into square spatial blocks of ``block_patches`` x ``block_patches``
  patches, and whole blocks are assigned to splits. Scenes showing the same ground (their
  footprints intersect, in any CRS, or the caller gave them the same ``group``) share one
  patch lattice and one block assignment, so a place seen twice (another date, another sun,
  other synthetic clouds) is always in one split. Scenes of one group whose grids do not line
  up are assigned as a whole. The assignment is balanced **within each source** (real pairs,
  synthetic clouds, semi-synthetic scenes...), greedily towards the target fractions in an
  order shuffled by ``seed``; each split with a positive fraction gets at least one block of a
  source when the source has enough blocks. ``split`` on a scene forces its blocks into that
  split; ``"exclude"`` marks the scene's patches as kept out of training and evaluation (they
  take no part in the split, so other scenes of the same ground are split as usual).

Everything is deterministic for a given ``seed``. The output folder holds::

    manifest.json                      samples (topoclear-patch-manifest, version 1) + build summary
    s2_cloudy/<id>.tif  s2_clear/<id>.tif  s1/<id>.tif  terrain/<id>.tif
    masks/<id>_cloud.tif  masks/<id>_shadow.tif

Each sample entry carries, besides the fields the training reads, its ``group``, ``scene``,
``window`` (col, row, width, height in the scene), ``block``, ``bounds`` and ``crs`` (the
patch's ground footprint), ``cloud_fraction`` / ``shadow_fraction`` (from the masks) and
``water_fraction``.
"""
from __future__ import annotations

import json
import math
import os
from collections import OrderedDict, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import write_text_atomic
from .patches import MANIFEST_FORMAT, SPLITS
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid, open_raster
from ..sentinel2.bands import STACK_LAYOUTS, canonical_band

__all__ = [
    "ROLES",
    "DEFAULT_FRACTIONS",
    "SceneInputs",
    "BuildOptions",
    "DatasetSummary",
    "build_dataset",
    "assign_splits",
    "split_overlaps",
    "water_mask",
    "load_scene_list",
    "add_missing_masks",
]

#: Raster roles of a scene, and the folder (and file suffix) of each in the output.
ROLES: Dict[str, Tuple[str, str]] = OrderedDict([
    ("cloudy", ("s2_cloudy", "")),
    ("target", ("s2_clear", "")),
    ("s1", ("s1", "")),
    ("terrain", ("terrain", "")),
    ("cloud_mask", ("masks", "_cloud")),
    ("shadow_mask", ("masks", "_shadow")),
])
#: Train / validation / test fractions of CRT-UNet.
DEFAULT_FRACTIONS: Tuple[float, float, float] = (0.80, 0.15, 0.05)
_TRAIN_SPLITS = ("train", "val", "test")
#: Water test on the clear image (reflectance): NDWI above, NIR below.
WATER_NDWI, WATER_NIR = 0.2, 0.15


@dataclass
class SceneInputs:
    """The rasters of one scene, all on the grid of ``cloudy`` (the Sentinel-2 grid).

    Attributes:
        name: unique scene name (prefix of its patch ids; letters, digits, ``-`` and ``_``).
        cloudy, target: cloudy and cloud-free Sentinel-2 stacks (reflectance x 10000).
        s1, terrain, cloud_mask, shadow_mask: optional aligned stacks (S1 in dB; terrain as
            written by the terrain stack tool; masks 1 on cloud / shadow).
        land_mask: optional raster, non-zero on land; patches must be all land.
        group: scenes of the same ground; scenes whose footprints intersect are grouped anyway.
        source: stratum of the split and ``source`` of the manifest (e.g. ``"real"``).
        split: force every patch of the scene into ``train``, ``val``, ``test`` or ``exclude``.
        s2_bands: band names of the S2 stacks (default: from descriptions or band count).
        s1_bands, terrain_bands: band names (default VV, VH and the terrain stack's four).
        s2_offset: added to S2 values by the reader (-1000 from processing baseline 04.00).
        notes: free text copied into every sample of the scene.
        max_water_fraction: the water test of this scene (None: the build option's); 1 disables it.
    """

    name: str
    cloudy: str
    target: str
    s1: Optional[str] = None
    terrain: Optional[str] = None
    cloud_mask: Optional[str] = None
    shadow_mask: Optional[str] = None
    land_mask: Optional[str] = None
    group: Optional[str] = None
    source: str = "custom"
    split: Optional[str] = None
    s2_bands: Optional[Sequence[str]] = None
    s1_bands: Sequence[str] = ("VV", "VH")
    terrain_bands: Sequence[str] = ("elevation", "slope", "aspect", "hillshade")
    s2_offset: float = 0.0
    notes: str = ""
    max_water_fraction: Optional[float] = None

    def rasters(self) -> Dict[str, str]:
        """Role -> path of the stacks given (without the land mask)."""
        return {r: str(getattr(self, r)) for r in ROLES if getattr(self, r)}


@dataclass(frozen=True)
class BuildOptions:
    """How patches are cut and split (see the module docstring)."""

    patch_size: int = 256
    fractions: Tuple[float, float, float] = DEFAULT_FRACTIONS
    block_patches: int = 2
    seed: int = 0
    max_water_fraction: Optional[float] = None
    compress: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise InputError(f"patch size must be at least 8 px, got {self.patch_size}")
        if self.block_patches < 1:
            raise InputError(f"block size must be at least 1 patch, got {self.block_patches}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or sum(self.fractions) <= 0:
            raise InputError(f"fractions must be three non-negative numbers (train, val, test), got {self.fractions}")
        if self.max_water_fraction is not None and not 0.0 <= self.max_water_fraction <= 1.0:
            raise InputError(f"max water fraction must lie in [0, 1], got {self.max_water_fraction}")

    @property
    def normalised_fractions(self) -> Tuple[float, float, float]:
        total = float(sum(self.fractions))
        return tuple(f / total for f in self.fractions)  # type: ignore[return-value]


@dataclass
class DatasetSummary:
    """What :func:`build_dataset` wrote."""

    manifest: str
    counts: Dict[str, Dict[str, int]]  # source -> split -> patches
    rejected: Dict[str, int]  # reason -> patches
    scenes: int
    groups: int
    blocks: int
    bytes_written: int

    @property
    def total(self) -> int:
        return sum(sum(v.values()) for v in self.counts.values())

    def as_dict(self) -> dict:
        out = asdict(self)
        out["total"] = self.total
        return out

    def text(self) -> str:
        lines = [f"{self.total} patches from {self.scenes} scenes ({self.groups} ground groups, {self.blocks} "
                 f"spatial blocks), {self.bytes_written / 2 ** 20:.1f} MiB -> {self.manifest}"]
        for source, splits in self.counts.items():
            parts = ", ".join(f"{s} {splits.get(s, 0)}" for s in SPLITS if splits.get(s, 0))
            lines.append(f"  {source}: {parts}")
        if self.rejected:
            lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def water_mask(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Open water on a clear image (reflectance): NDWI (B3, B8) > 0.2 and B8 < 0.15."""
    g, n = np.asarray(bands["B3"], np.float64), np.asarray(bands["B8"], np.float64)
    s = g + n
    ndwi = np.where(s > 0, (g - n) / np.where(s > 0, s, 1.0), 0.0)
    return (ndwi > WATER_NDWI) & (n < WATER_NIR)


def _s2_names(path: str, given: Optional[Sequence[str]]) -> Tuple[str, ...]:
    with open_raster(path, "Sentinel-2 stack") as ds:
        count = ds.count
        names = [canonical_band(d or "") for d in ds.descriptions]
    if given:
        if len(given) != count:
            raise InputError(f"{path}: {len(given)} band names given for {count} bands")
        return tuple(canonical_band(str(b)) or str(b) for b in given)
    if all(names) and len(set(names)) == count:
        return tuple(names)  # type: ignore[arg-type]
    if count in STACK_LAYOUTS:
        return STACK_LAYOUTS[count][1]
    raise InputError(f"{path}: cannot tell which Sentinel-2 bands its {count} bands are; name them (s2_bands) or "
                     "set the band descriptions")


def _footprint_lonlat(grid: Grid) -> Tuple[float, float, float, float]:
    return transform_bounds(grid.crs, CRS.from_epsg(4326), *grid.bounds, densify_pts=21)


def _intersects(a, b, tol: float = 1e-9) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


@dataclass
class _Scene:
    inputs: SceneInputs
    grid: Grid
    s2_bands: Tuple[str, ...]
    group: str = ""
    lattice: Optional[Tuple[int, int, int, int]] = None  # col0, row0, lattice col offset, lattice row offset


@dataclass
class _Patch:
    scene: _Scene
    window: Window
    lattice_rc: Tuple[int, int]  # lattice row, col (group coordinates)
    unit: Tuple[str, int, int]
    cloud_fraction: Optional[float] = None
    shadow_fraction: Optional[float] = None
    water_fraction: Optional[float] = None
    cloud_shadow_fraction: Optional[float] = None
    split: str = ""

    @property
    def source(self) -> str:
        return self.scene.inputs.source


def _open_scene(inputs: SceneInputs) -> _Scene:
    if not inputs.name or any(not (c.isalnum() or c in "-_.") for c in inputs.name):
        raise InputError(f"scene name {inputs.name!r} must be made of letters, digits, '-', '_' or '.'")
    if inputs.split is not None and inputs.split not in SPLITS:
        raise InputError(f"scene {inputs.name}: split {inputs.split!r} is not one of {', '.join(SPLITS)}")
    with open_raster(inputs.cloudy, f"scene {inputs.name}: cloudy image") as ds:
        if ds.crs is None:
            raise InputError(f"scene {inputs.name}: {inputs.cloudy} has no coordinate reference system")
        grid = Grid.of(ds)
    others = dict(inputs.rasters())
    if inputs.land_mask:
        others["land_mask"] = str(inputs.land_mask)
    for role, path in others.items():
        with open_raster(path, f"scene {inputs.name}: {role}") as ds:
            g = Grid.of(ds)
        if g.crs != grid.crs or g.width != grid.width or g.height != grid.height or \
                not g.transform.almost_equals(grid.transform, precision=1e-6 * max(grid.pixel_size)):
            raise InputError(f"scene {inputs.name}: {role} {path} is not on the grid of the cloudy image "
                             f"({g.width} x {g.height} px, {g.crs}, {tuple(g.transform)[:6]} vs {grid.width} x "
                             f"{grid.height} px, {grid.crs}, {tuple(grid.transform)[:6]}); resample it onto the "
                             "Sentinel-2 grid first (terrain stack tool, gdalwarp)")
    return _Scene(inputs, grid, _s2_names(inputs.cloudy, inputs.s2_bands))


def _group_scenes(scenes: List[_Scene], patch: int) -> None:
    """Set each scene's group (given names + intersecting footprints) and its patch lattice."""
    uf = _UnionFind(len(scenes))
    by_name: Dict[str, int] = {}
    for i, s in enumerate(scenes):
        if s.inputs.group:
            if s.inputs.group in by_name:
                uf.union(i, by_name[s.inputs.group])
            else:
                by_name[s.inputs.group] = i
    prints = [_footprint_lonlat(s.grid) for s in scenes]
    for i in range(len(scenes)):
        for j in range(i + 1, len(scenes)):
            if _intersects(prints[i], prints[j]):
                uf.union(i, j)
    members: Dict[int, List[int]] = defaultdict(list)
    for i in range(len(scenes)):
        members[uf.find(i)].append(i)
    for root, idx in members.items():
        named = sorted({scenes[i].inputs.group for i in idx if scenes[i].inputs.group})
        name = named[0] if named else scenes[idx[0]].inputs.name
        g0 = scenes[idx[0]].grid
        aligned = all(scenes[i].grid.crs == g0.crs and
                      math.isclose(scenes[i].grid.pixel_size[0], g0.pixel_size[0], rel_tol=1e-9) and
                      math.isclose(scenes[i].grid.pixel_size[1], g0.pixel_size[1], rel_tol=1e-9) for i in idx)
        offsets = []
        if aligned:
            left0 = min(scenes[i].grid.transform.c for i in idx)
            top0 = max(scenes[i].grid.transform.f for i in idx)
            px, py = g0.pixel_size
            for i in idx:
                dc = (scenes[i].grid.transform.c - left0) / px
                dr = (top0 - scenes[i].grid.transform.f) / py
                if abs(dc - round(dc)) > 1e-6 or abs(dr - round(dr)) > 1e-6:
                    aligned = False
                    break
                offsets.append((int(round(dc)), int(round(dr))))
        for k, i in enumerate(idx):
            scenes[i].group = name
            if aligned:
                dc, dr = offsets[k]
                # first lattice column/row inside the scene, and its lattice index in group coordinates
                col0 = (-dc) % patch
                row0 = (-dr) % patch
                scenes[i].lattice = (col0, row0, (dc + col0) // patch, (dr + row0) // patch)
            else:
                scenes[i].lattice = None  # whole group is one block


def _candidate_patches(scene: _Scene, options: BuildOptions) -> List[_Patch]:
    p = options.patch_size
    g = scene.grid
    out = []
    if scene.lattice is None:
        col0 = row0 = lat_c = lat_r = 0
    else:
        col0, row0, lat_c, lat_r = scene.lattice
    for j, row in enumerate(range(row0, g.height - p + 1, p)):
        for i, col in enumerate(range(col0, g.width - p + 1, p)):
            lr, lc = lat_r + j, lat_c + i
            if scene.lattice is None:
                unit = (scene.group, -1, -1)
            else:
                unit = (scene.group, lr // options.block_patches, lc // options.block_patches)
            out.append(_Patch(scene, Window(col, row, p, p), (lr, lc), unit))
    return out


def _invalid(data: np.ndarray, nodata) -> np.ndarray:
    bad = ~np.isfinite(data)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= data == np.asarray(nodata, dtype=data.dtype)
    return bad


class _Datasets:
    """Rasters kept open for the duration of a build (each is read once per patch)."""

    def __init__(self) -> None:
        self._open: Dict[str, rasterio.io.DatasetReader] = {}

    def __call__(self, path: str) -> "rasterio.io.DatasetReader":
        ds = self._open.get(path)
        if ds is None:
            ds = self._open[path] = open_raster(path)
        return ds

    def close(self) -> None:
        for ds in self._open.values():
            ds.close()
        self._open.clear()


_DATASETS = _Datasets()


def _read(path: str, window: Window) -> Tuple[np.ndarray, Optional[float], Tuple[str, ...]]:
    ds = _DATASETS(str(path))
    return ds.read(window=window), ds.nodata, tuple(d or "" for d in ds.descriptions)


def _check_patch(patch: _Patch, options: BuildOptions) -> Optional[str]:
    """None if the patch is kept, otherwise the reason (and fills its fractions)."""
    s = patch.scene
    inp = s.inputs
    w = patch.window
    for role in ("cloudy", "target"):
        data, nodata, _ = _read(getattr(inp, role), w)
        if _invalid(data, nodata).any(axis=0).any() or (data == 0).all(axis=0).any():
            return "nodata"
        if role == "target":
            limit = inp.max_water_fraction if inp.max_water_fraction is not None else options.max_water_fraction
            if "B3" in s.s2_bands and "B8" in s.s2_bands:
                refl = (data.astype(np.float64) + inp.s2_offset) / 10000.0
                bands = {b: refl[s.s2_bands.index(b)] for b in ("B3", "B8")}
                patch.water_fraction = float(water_mask(bands).mean())
            elif limit is not None and limit < 1.0:
                raise InputError(f"scene {inp.name}: the water test needs bands B3 and B8")
            if limit is not None and patch.water_fraction is not None and patch.water_fraction > limit:
                return "water"
    if inp.s1:
        data, nodata, _ = _read(inp.s1, w)
        if _invalid(data, nodata).any():
            return "nodata"
    if inp.terrain:
        data, nodata, desc = _read(inp.terrain, w)
        names = list(inp.terrain_bands) if len(inp.terrain_bands) == data.shape[0] else list(desc)
        keep = [i for i, n in enumerate(names) if "aspect" not in str(n).lower()]
        if _invalid(data[keep], nodata).any():
            return "nodata"
    if inp.land_mask:
        data, nodata, _ = _read(inp.land_mask, w)
        if _invalid(data, nodata).any() or (data[0] == 0).any():
            return "not land"
    union = None
    for role in ("cloud_mask", "shadow_mask"):
        path = getattr(inp, role)
        if path:
            data, nodata, _ = _read(path, w)
            if nodata is not None and _invalid(data, nodata).any():
                return "nodata"
            mask = data[0] > 0
            setattr(patch, role.replace("_mask", "_fraction"), float(mask.mean()))
            union = mask if union is None else (union | mask)
    if union is not None:
        patch.cloud_shadow_fraction = float(union.mean())
    return None


# ---------------------------------------------------------------------------------------------
# split assignment
# ---------------------------------------------------------------------------------------------
def assign_splits(units: Mapping[Tuple, Mapping[str, int]], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  seed: int = 0, forced: Optional[Mapping[Tuple, str]] = None,
                  strata: Optional[Sequence[str]] = None) -> Dict[Tuple, str]:
    """Assign whole units (spatial blocks) to train / val / test.

    ``units`` maps a unit key to its patch count per stratum (source). Within each stratum, in
    the order of ``strata`` (default: sorted), the units not yet assigned are visited in an
    order shuffled by ``seed`` and each goes to the split furthest below its target share of
    the stratum's patches; units assigned for an earlier stratum (or ``forced``) count as they
    are. Then, if a split with a positive fraction has no patch of the stratum while another
    has several units, the smallest unit of the most over-filled split moves to it.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    fr = fr / fr.sum()
    out: Dict[Tuple, str] = dict(forced or {})
    strata = list(strata) if strata is not None else sorted({s for c in units.values() for s in c})
    for k, stratum in enumerate(strata):
        keys = sorted((u for u, c in units.items() if c.get(stratum, 0) > 0), key=repr)
        if not keys:
            continue
        rng = np.random.default_rng([int(seed), k, 101])
        order = [keys[i] for i in rng.permutation(len(keys))]
        counts = {s: 0 for s in _TRAIN_SPLITS}
        total = 0
        new: List[Tuple] = []
        for u in order:
            if u in out:
                if out[u] in counts:
                    counts[out[u]] += units[u][stratum]
                    total += units[u][stratum]
        for u in order:
            if u in out:
                continue
            n = units[u][stratum]
            after = total + n
            deficit = [fr[i] * after - counts[s] for i, s in enumerate(_TRAIN_SPLITS)]
            best = _TRAIN_SPLITS[int(np.argmax(deficit))]
            out[u] = best
            counts[best] += n
            total = after
            new.append(u)
        # every split with a positive fraction gets something when possible
        for i, s in enumerate(_TRAIN_SPLITS):
            if fr[i] <= 0 or counts[s] > 0:
                continue
            donors = []
            for j, d in enumerate(_TRAIN_SPLITS):
                movable = [u for u in new if out[u] == d]
                n_units = sum(1 for u in order if out.get(u) == d)
                if movable and n_units > 1:
                    donors.append((counts[d] - fr[j] * total, d, movable))
            if not donors:
                continue
            _, d, movable = max(donors, key=lambda t: t[0])
            u = min(movable, key=lambda x: (units[x][stratum], repr(x)))
            out[u] = s
            counts[d] -= units[u][stratum]
            counts[s] += units[u][stratum]
    for u in units:
        out.setdefault(u, "train")
    return {u: out[u] for u in units}


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _creation_options(dtype: str, compress: bool, size: int) -> Dict[str, str]:
    opts = {"TILED": "YES", "BLOCKXSIZE": str(min(256, size)), "BLOCKYSIZE": str(min(256, size))}
    if size % 16:
        opts = {}
    if compress:
        opts.update({"COMPRESS": "DEFLATE", "ZLEVEL": "6",
                     "PREDICTOR": "3" if np.issubdtype(np.dtype(dtype), np.floating) else "2"})
    return opts


def _write_patch(src_path: str, window: Window, out_path: Path, compress: bool,
                 descriptions: Optional[Sequence[str]] = None, tags: Optional[dict] = None) -> int:
    ds = _DATASETS(str(src_path))
    data = ds.read(window=window)
    grid = Grid(ds.crs, ds.window_transform(window), int(window.width), int(window.height))
    dtype = ds.dtypes[0]
    nodata = ds.nodata
    desc = list(descriptions) if descriptions else [d or "" for d in ds.descriptions]
    src_tags = ds.tags()
    with AtomicRasterWriter(out_path, grid, data.shape[0], dtype, nodata, desc,
                            creation_options=_creation_options(dtype, compress, int(window.width))) as dst:
        dst.write(data)
        merged = {k: v for k, v in src_tags.items() if k in ("SEMI_SYNTHETIC", "SYNTHETIC_CLOUDS", "CONTENT")}
        merged.update(tags or {})
        if merged:
            dst.update_tags(**merged)
    return out_path.stat().st_size


def build_dataset(scenes: Sequence[SceneInputs], output_dir: os.PathLike | str,
                  options: BuildOptions = BuildOptions(), monitor: Monitor = SILENT) -> DatasetSummary:
    """Cut, check, split and write the patches of ``scenes`` (module docstring) into ``output_dir``.

    Returns a :class:`DatasetSummary`; the manifest is ``output_dir/manifest.json``. Patches of a
    previous build in the folder are overwritten file by file; the manifest lists only this
    build's patches.
    """
    try:
        return _build(scenes, output_dir, options, monitor)
    finally:
        _DATASETS.close()


def _build(scenes: Sequence[SceneInputs], output_dir: os.PathLike | str, options: BuildOptions,
           monitor: Monitor) -> DatasetSummary:
    if not scenes:
        raise InputError("no scene to cut into patches")
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise InputError(f"scene names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    opened = [_open_scene(s) for s in scenes]
    _group_scenes(opened, options.patch_size)
    monitor.progress(2)

    patches: List[_Patch] = []
    rejected: Dict[str, int] = defaultdict(int)
    candidates = [p for s in opened for p in _candidate_patches(s, options)]
    for s in opened:
        if s.grid.width < options.patch_size or s.grid.height < options.patch_size:
            rejected["scenes smaller than a patch"] += 1
    for n, p in enumerate(candidates):
        monitor.check()
        reason = _check_patch(p, options)
        if reason is None:
            patches.append(p)
        else:
            rejected[reason] += 1
        monitor.progress(2 + 38.0 * (n + 1) / max(1, len(candidates)))

    # splits
    units: Dict[Tuple, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    forced: Dict[Tuple, str] = {}
    strata: List[str] = []
    for p in patches:
        want = p.scene.inputs.split
        if want == "exclude":  # kept out of everything: takes no part in the split
            continue
        units[p.unit][p.source] += 1
        if p.source not in strata:
            strata.append(p.source)
        if want:
            if forced.get(p.unit, want) != want:
                raise InputError(f"scenes of group {p.unit[0]!r} force different splits ({forced[p.unit]}, {want}) "
                                 "on the same ground")
            forced[p.unit] = want
    assignment = assign_splits({u: dict(c) for u, c in units.items()}, options.normalised_fractions, options.seed,
                               forced, strata)
    for p in patches:
        p.split = "exclude" if p.scene.inputs.split == "exclude" else assignment[p.unit]

    # write
    samples = []
    written = 0
    counts: Dict[str, Dict[str, int]] = OrderedDict()
    for n, p in enumerate(patches):
        monitor.check()
        inp = p.scene.inputs
        lr, lc = p.lattice_rc
        pid = f"{inp.name}_r{int(p.window.row_off):05d}_c{int(p.window.col_off):05d}"
        entry: Dict[str, object] = {"id": pid, "split": p.split, "source": inp.source}
        for role, (folder, suffix) in ROLES.items():
            path = getattr(inp, role)
            if not path:
                continue
            target = out / folder / f"{pid}{suffix}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            desc = list(p.scene.s2_bands) if role in ("cloudy", "target") else None
            if role == "s1" and inp.s1_bands:
                desc = list(inp.s1_bands) if len(inp.s1_bands) == _DATASETS(str(path)).count else None
            written += _write_patch(str(path), p.window, target, options.compress, desc,
                                    {"PATCH_ID": pid, "SCENE": inp.name, "SPLIT": p.split})
            entry[role] = os.path.relpath(target, out)
        entry["s2_bands"] = list(p.scene.s2_bands)
        if inp.s1:
            entry["s1_bands"] = list(inp.s1_bands)
        if inp.terrain:
            entry["terrain_bands"] = list(inp.terrain_bands)
        if inp.s2_offset:
            entry["s2_offset"] = inp.s2_offset
        if inp.notes:
            entry["notes"] = inp.notes
        left, bottom, right, top = rasterio.windows.bounds(p.window, p.scene.grid.transform)
        entry.update({
            "group": p.unit[0], "scene": inp.name,
            "window": [int(p.window.col_off), int(p.window.row_off), int(p.window.width), int(p.window.height)],
            "block": [p.unit[1], p.unit[2]], "lattice": [lr, lc],
            "crs": p.scene.grid.crs.to_string(), "bounds": [left, bottom, right, top],
        })
        for key in ("cloud_fraction", "shadow_fraction", "cloud_shadow_fraction", "water_fraction"):
            value = getattr(p, key)
            if value is not None:
                entry[key] = round(value, 6)
        samples.append(entry)
        counts.setdefault(inp.source, {s: 0 for s in SPLITS})[p.split] += 1
        monitor.progress(40 + 58.0 * (n + 1) / max(1, len(patches)))

    kept = {k: {s: v for s, v in c.items() if v} for k, c in counts.items()}
    summary = DatasetSummary(str(out / "manifest.json"), kept,
                             dict(rejected), len(opened), len({s.group for s in opened}), len(units), written)
    common = {tuple(e["s2_bands"]) for e in samples}
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1,
        "description": options.description or "patch stacks cut by topoclear.engine.training.dataset_builder",
        "builder": {
            "patch_size": options.patch_size, "fractions": list(options.normalised_fractions),
            "block_patches": options.block_patches, "seed": options.seed,
            "max_water_fraction": options.max_water_fraction,
            "rules": "non-overlapping patches; fully valid (no nodata); splits by spatial blocks, the same ground "
                     "always in one split (CRT-UNet: 256 px, land only, 80/15/5, no overlap)",
            "scenes": [{"name": s.inputs.name, "group": s.group, "source": s.inputs.source,
                        "crs": s.grid.crs.to_string(), "size": [s.grid.width, s.grid.height],
                        "notes": s.inputs.notes} for s in opened],
            "summary": {k: v for k, v in summary.as_dict().items() if k != "manifest"},
        },
        "samples": samples,
    }
    if len(common) == 1:
        manifest["s2_bands"] = list(next(iter(common)))
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1))
    monitor.progress(100)
    return summary


# ---------------------------------------------------------------------------------------------
# scene lists
# ---------------------------------------------------------------------------------------------
_SCENE_FIELDS = ("name", "cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask", "land_mask", "group",
                 "source", "split", "s2_bands", "s2_offset", "notes")
_ALIASES = {"clear": "target", "s2_clear": "target", "s2_cloudy": "cloudy", "id": "name"}


def load_scene_list(path: os.PathLike | str) -> List[SceneInputs]:
    """Scenes from a CSV (header: ``name,cloudy,target,s1,terrain,cloud_mask,shadow_mask,land_mask,
    group,source,split``, any subset with ``cloudy`` and ``target``) or a JSON list of objects with
    those keys (or ``{"scenes": [...]}``). Relative paths are relative to the list's folder."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene list {path} does not exist")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [dict(r) for r in csv.DictReader(handle)]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"scene list {path} is neither CSV nor valid JSON: {exc}") from exc
        rows = data.get("scenes") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise InputError(f"scene list {path}: expected a list of scenes")
    base = path.parent.resolve()
    scenes = []
    for i, row in enumerate(rows):
        row = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in row.items()}
        unknown = set(row) - set(_SCENE_FIELDS)
        if unknown:
            raise InputError(f"scene list {path}: unknown field(s) {', '.join(sorted(unknown))}; "
                             f"expected {', '.join(_SCENE_FIELDS)}")
        if not row.get("cloudy") or not row.get("target"):
            raise InputError(f"scene list {path}, scene {i + 1}: 'cloudy' and 'target' are required")
        kwargs = {}
        for key in ("cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask", "land_mask"):
            value = row.get(key)
            if value not in (None, ""):
                p = Path(str(value).strip()).expanduser()
                kwargs[key] = str(p if p.is_absolute() else base / p)
        name = str(row.get("name") or Path(kwargs["cloudy"]).stem)
        bands = row.get("s2_bands")
        if isinstance(bands, str):
            bands = [b for b in bands.replace(";", ",").split(",") if b.strip()]
        scenes.append(SceneInputs(
            name=name, group=(row.get("group") or None), source=str(row.get("source") or "custom"),
            split=(str(row["split"]).strip().lower() if row.get("split") else None), s2_bands=bands or None,
            s2_offset=float(row.get("s2_offset") or 0.0), notes=str(row.get("notes") or ""), **kwargs))
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
    from .patches import write_cloud_shadow_masks

    out = Path(folder)
    done = []
    todo = [s for s in scenes if not s.cloud_mask and not s.shadow_mask]
    for n, scene in enumerate(todo):
        names = _s2_names(scene.cloudy, scene.s2_bands)
        if "B1" not in names or "B10" not in names:
            monitor.message(f"scene {scene.name}: no cloud/shadow masks (they can be computed from Level-1C "
                            "stacks with B1 and B10 only)")
            continue
        out.mkdir(parents=True, exist_ok=True)
        cloud, shadow = out / f"{scene.name}_cloud.tif", out / f"{scene.name}_shadow.tif"
        fc, fs = write_cloud_shadow_masks(scene.cloudy, names, cloud, shadow, scene.s2_offset,
                                          monitor.sub(100.0 * n / len(todo), 100.0 * (n + 1) / len(todo)))
        scene.cloud_mask, scene.shadow_mask = str(cloud), str(shadow)
        monitor.message(f"scene {scene.name}: masks computed (cloud {100 * fc:.1f} %, shadow {100 * fs:.1f} %)")
        done.append(scene.name)
    return done


# ---------------------------------------------------------------------------------------------
# checking a manifest
# ---------------------------------------------------------------------------------------------
def split_overlaps(manifest: os.PathLike | str | Mapping,
                   ignore: Iterable[str] = ("exclude",)) -> List[Tuple[str, str]]:
    """Pairs of sample ids in different splits whose ground footprints overlap (should be empty).

    Footprints come from the ``crs`` and ``bounds`` the builder records (samples without them
    are read from their cloudy image). Samples in other CRSs are compared in longitude/latitude.
    """
    if not isinstance(manifest, Mapping):
        path = Path(manifest)
        if path.is_dir():
            path = path / "manifest.json"
        base = path.parent
        data = json.loads(path.read_text())
    else:
        data, base = manifest, Path(".")
    ignore = set(ignore)
    items = []
    for e in data["samples"]:
        if e.get("split") in ignore:
            continue
        if "bounds" in e and "crs" in e:
            crs, bounds = CRS.from_string(e["crs"]), tuple(e["bounds"])
        else:
            ref = e.get("cloudy") or e["target"]
            ref = ref[0] if isinstance(ref, list) else ref
            with open_raster(base / ref) as ds:
                crs, bounds = ds.crs, tuple(ds.bounds)
        items.append((e["id"], e["split"], crs, bounds, _footprint_lonlat(Grid(crs, _bounds_transform(bounds), 1, 1))))
    out = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = items[i], items[j]
            if a[1] == b[1]:
                continue
            if a[2] == b[2]:
                hit = _intersects(a[3], b[3], tol=1e-6)
            else:
                hit = _intersects(a[4], b[4])
            if hit:
                out.append((a[0], b[0]))
    return out


def _bounds_transform(bounds) -> "rasterio.Affine":
    left, bottom, right, top = bounds
    return rasterio.Affine(right - left, 0.0, left, 0.0, -(top - bottom), top)
