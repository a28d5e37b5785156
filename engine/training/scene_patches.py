"""The patches of a dataset build: scenes opened and grouped by ground, their patch lattice and checks.

Scenes showing the same ground (intersecting footprints, or one ``group``) share one lattice of
non-overlapping patches; each candidate patch is checked for nodata, land and open water (see
:mod:`topoclear.engine.training.dataset_builder` for the rules).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import contained_path
from ..io.raster import Grid, ThreadLocalDatasets, open_raster, valid_mask
from ..sentinel2.bands import STACK_LAYOUTS, canonical_band
from .builder_inputs import BuildOptions, SceneInputs
from .manifest import SPLITS

__all__ = ["WATER_NDWI", "WATER_NIR", "water_mask", "s2_band_names", "footprint_lonlat", "footprints_intersect",
           "OpenedScene", "CandidatePatch", "open_scene", "group_scenes", "candidate_patches", "check_patch"]

#: Water test on the clear image (reflectance): NDWI above, NIR below.
WATER_NDWI, WATER_NIR = 0.2, 0.15


def water_mask(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Open water on a clear image (reflectance): NDWI (B3, B8) > 0.2 and B8 < 0.15."""
    g, n = np.asarray(bands["B3"], np.float64), np.asarray(bands["B8"], np.float64)
    s = g + n
    ndwi = np.where(s > 0, (g - n) / np.where(s > 0, s, 1.0), 0.0)
    return (ndwi > WATER_NDWI) & (n < WATER_NIR)


def s2_band_names(path: str, given: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """Sentinel-2 band names of a stack: ``given``, else its band descriptions, else its band count."""
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


def footprint_lonlat(grid: Grid) -> Tuple[float, float, float, float]:
    """Bounds of ``grid`` in longitude / latitude (densified edges)."""
    return transform_bounds(grid.crs, CRS.from_epsg(4326), *grid.bounds, densify_pts=21)


def footprints_intersect(a, b, tol: float = 1e-9) -> bool:
    """Whether two (left, bottom, right, top) boxes share more than an edge."""
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
class OpenedScene:
    """A scene checked to be on one grid, with its ground group and patch lattice."""

    inputs: SceneInputs
    grid: Grid
    s2_bands: Tuple[str, ...]
    group: str = ""
    lattice: Optional[Tuple[int, int, int, int]] = None  # col0, row0, lattice col offset, lattice row offset


@dataclass
class CandidatePatch:
    """One lattice cell of a scene: its window, spatial block (``unit``), fractions and split."""

    scene: OpenedScene
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


#: What each raster of a scene is called in messages.
_ROLE_TEXT = {"target": "cloud-free target", "s1": "Sentinel-1 stack", "terrain": "terrain stack",
              "cloud_mask": "cloud mask", "shadow_mask": "shadow mask", "land_mask": "land mask"}


def open_scene(inputs: SceneInputs) -> OpenedScene:
    """Check a scene's name and split, and every raster before anything is written: readable and
    complete, on the grid of its cloudy image, the target with the cloudy image's band count, S1 and
    terrain stacks with as many bands as their band names, masks with one band or more."""
    if not inputs.name or any(not (c.isalnum() or c in "-_.") for c in inputs.name):
        raise InputError(f"scene name {inputs.name!r} must be made of letters, digits, '-', '_' or '.'")
    contained_path(Path("the output folder"), inputs.name, "scene name")
    if inputs.split is not None and inputs.split not in SPLITS:
        raise InputError(f"scene {inputs.name}: split {inputs.split!r} is not one of {', '.join(SPLITS)}")
    with open_raster(inputs.cloudy, f"scene {inputs.name}: cloudy image") as ds:
        if ds.crs is None:
            raise InputError(f"scene {inputs.name}: {inputs.cloudy} has no coordinate reference system")
        grid = Grid.of(ds)
        count = ds.count
    others = dict(inputs.rasters())
    others.pop("cloudy", None)
    if inputs.land_mask:
        others["land_mask"] = str(inputs.land_mask)
    for role, path in others.items():
        with open_raster(path, f"scene {inputs.name}: {role}") as ds:
            g = Grid.of(ds)
            _check_band_count(inputs, role, path, ds.count, count)
        if g.crs != grid.crs or g.width != grid.width or g.height != grid.height or \
                not g.transform.almost_equals(grid.transform, precision=1e-6 * max(grid.pixel_size)):
            raise InputError(f"scene {inputs.name}: {role} {path} is not on the grid of the cloudy image "
                             f"({g.width} x {g.height} px, {g.crs}, {tuple(g.transform)[:6]} vs {grid.width} x "
                             f"{grid.height} px, {grid.crs}, {tuple(grid.transform)[:6]}); resample it onto the "
                             "Sentinel-2 grid first (terrain stack tool, gdalwarp)")
    return OpenedScene(inputs, grid, s2_band_names(inputs.cloudy, inputs.s2_bands))


def _check_band_count(inputs: SceneInputs, role: str, path: str, bands: int, cloudy_bands: int) -> None:
    """Refuse a raster of a scene whose band count does not fit its role."""
    what = f"scene {inputs.name}: {_ROLE_TEXT.get(role, role)} {path}"
    if role == "target" and bands != cloudy_bands:
        raise InputError(f"{what} has {bands} bands, the cloudy image {cloudy_bands}: the target must hold the same "
                         "Sentinel-2 bands as the cloudy image, in the same order")
    expected = {"s1": inputs.s1_bands, "terrain": inputs.terrain_bands}.get(role)
    if expected and bands != len(expected):
        raise InputError(f"{what} has {bands} band(s), {len(expected)} expected ({', '.join(expected)}): give a "
                         "stack with those bands, in that order")
    if bands < 1:
        raise InputError(f"{what} has no band")


def group_scenes(scenes: List[OpenedScene], patch: int) -> None:
    """Set each scene's group (given names + intersecting footprints) and its patch lattice."""
    uf = _UnionFind(len(scenes))
    by_name: Dict[str, int] = {}
    for i, s in enumerate(scenes):
        if s.inputs.group:
            if s.inputs.group in by_name:
                uf.union(i, by_name[s.inputs.group])
            else:
                by_name[s.inputs.group] = i
    prints = [footprint_lonlat(s.grid) for s in scenes]
    for i in range(len(scenes)):
        for j in range(i + 1, len(scenes)):
            if footprints_intersect(prints[i], prints[j]):
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


def candidate_patches(scene: OpenedScene, options: BuildOptions) -> List[CandidatePatch]:
    """Every whole lattice cell of ``scene`` (after :func:`group_scenes`), row by row."""
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
            out.append(CandidatePatch(scene, Window(col, row, p, p), (lr, lc), unit))
    return out


def _read(datasets: ThreadLocalDatasets, path: str, window: Window
          ) -> Tuple[np.ndarray, Optional[float], Tuple[str, ...]]:
    ds = datasets.get(str(path))
    return ds.read(window=window), ds.nodata, tuple(d or "" for d in ds.descriptions)


def _water_fraction(patch: CandidatePatch, data: np.ndarray, options: BuildOptions) -> Optional[str]:
    """Record the open-water fraction of the target; "water" if it exceeds the scene's limit."""
    s, inp = patch.scene, patch.scene.inputs
    limit = inp.max_water_fraction if inp.max_water_fraction is not None else options.max_water_fraction
    if "B3" in s.s2_bands and "B8" in s.s2_bands:
        refl = (data.astype(np.float64) + inp.s2_offset) / 10000.0
        bands = {b: refl[s.s2_bands.index(b)] for b in ("B3", "B8")}
        patch.water_fraction = float(water_mask(bands).mean())
    elif limit is not None and limit < 1.0:
        raise InputError(f"scene {inp.name}: the water test needs bands B3 and B8")
    if limit is not None and patch.water_fraction is not None and patch.water_fraction > limit:
        return "water"
    return None


def _mask_fractions(patch: CandidatePatch, datasets: ThreadLocalDatasets) -> Optional[str]:
    """Record the cloud, shadow and cloud-or-shadow fractions; "nodata" if a mask has nodata."""
    inp, w = patch.scene.inputs, patch.window
    union = None
    for role in ("cloud_mask", "shadow_mask"):
        path = getattr(inp, role)
        if path:
            data, nodata, _ = _read(datasets, path, w)
            if nodata is not None and not valid_mask(data, nodata).all():
                return "nodata"
            mask = data[0] > 0
            setattr(patch, role.replace("_mask", "_fraction"), float(mask.mean()))
            union = mask if union is None else (union | mask)
    if union is not None:
        patch.cloud_shadow_fraction = float(union.mean())
    return None


def check_patch(patch: CandidatePatch, options: BuildOptions, datasets: ThreadLocalDatasets) -> Optional[str]:
    """None if the patch is kept, otherwise the reason (and fills its fractions).

    ``datasets`` keeps the scene rasters open for the whole build.
    """
    inp, w = patch.scene.inputs, patch.window
    for role in ("cloudy", "target"):
        data, nodata, _ = _read(datasets, getattr(inp, role), w)
        if not valid_mask(data, nodata).all() or (data == 0).all(axis=0).any():
            return "nodata"
        if role == "target":
            reason = _water_fraction(patch, data, options)
            if reason:
                return reason
    if inp.s1:
        data, nodata, _ = _read(datasets, inp.s1, w)
        if not valid_mask(data, nodata).all():
            return "nodata"
    if inp.terrain:
        data, nodata, desc = _read(datasets, inp.terrain, w)
        names = list(inp.terrain_bands) if len(inp.terrain_bands) == data.shape[0] else list(desc)
        keep = [i for i, n in enumerate(names) if "aspect" not in str(n).lower()]
        if not valid_mask(data[keep], nodata).all():
            return "nodata"
    if inp.land_mask:
        data, nodata, _ = _read(datasets, inp.land_mask, w)
        if not valid_mask(data, nodata).all() or (data[0] == 0).any():
            return "not land"
    return _mask_fractions(patch, datasets)
