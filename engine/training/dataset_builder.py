"""Cut aligned 256 x 256 patch stacks from scenes and split them 80/15/5 without overlap.

A **scene** is a set of rasters on one grid (the Sentinel-2 grid): a cloudy Sentinel-2 image,
its cloud-free target, and optionally Sentinel-1, a terrain stack (see
:func:`topoclear.engine.terrain.stack.terrain_stack`), cloud and cloud-shadow masks and a land
mask. :func:`build_dataset` cuts every scene into non-overlapping patches and writes them with a
manifest in the format :mod:`topoclear.engine.training.manifest` describes, so training can consume the
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

Everything is deterministic for a given ``seed``.

:func:`build_dataset_folder` is the safe way to make a new dataset (``topoclear:builddataset``
uses it): every input is checked first (names, grids, band counts), then everything, the masks
computed for scenes that have none included, is written into a temporary folder beside the output
that is renamed into place when complete (:func:`~topoclear.engine.io.atomic.atomic_folder`), so a
failure or a cancel leaves nothing; a folder that already holds files is refused, or, with
``overwrite``, replaced only once the new dataset is complete and only if it holds a dataset (its
``manifest.json``). The manifest's paths are relative to the folder.

The output folder holds::

    manifest.json                      samples (topoclear-patch-manifest, version 1) + build summary
    s2_cloudy/<id>.tif  s2_clear/<id>.tif  s1/<id>.tif  terrain/<id>.tif
    masks/<id>_cloud.tif  masks/<id>_shadow.tif
    scene_masks/<scene>_cloud.tif      (build_dataset_folder) masks computed for whole scenes

Each sample entry carries, besides the fields the training reads, its ``group``, ``scene``,
``window`` (col, row, width, height in the scene), ``block``, ``bounds`` and ``crs`` (the
patch's ground footprint), ``cloud_fraction`` / ``shadow_fraction`` (from the masks) and
``water_fraction``.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import Cancelled, InputError, OutputError, TopoClearError
from ..io.atomic import (AtomicRasterWriter, atomic_folder, contained_path, remove_stale_temporaries,
                         why_not_writable, write_text_atomic)
from ..io.folders import make_folders, remove_if_empty
from ..io.raster import Grid, ThreadLocalDatasets
from ..progress import SILENT, Monitor
from .builder_inputs import ROLES, BuildOptions, DatasetSummary, SceneInputs
from .manifest import MANIFEST_FORMAT, SPLITS
from .scene_list import add_missing_masks
from .scene_patches import CandidatePatch, OpenedScene, candidate_patches, check_patch, group_scenes, open_scene
from .split_assignment import assign_splits

__all__ = ["build_dataset", "build_dataset_folder", "output_folder_problem"]

#: Source tags copied from a scene raster into its patches.
_KEPT_TAGS = ("SEMI_SYNTHETIC", "SYNTHETIC_CLOUDS", "CONTENT")


def build_dataset(scenes: Sequence[SceneInputs], output_dir: os.PathLike | str,
                  options: BuildOptions = BuildOptions(), monitor: Monitor = SILENT) -> DatasetSummary:
    """Cut, check, split and write the patches of ``scenes`` (module docstring) into ``output_dir``.

    Returns a :class:`~topoclear.engine.training.builder_inputs.DatasetSummary`; the manifest is
    ``output_dir/manifest.json``. Patches of a previous build in the folder are overwritten file
    by file; the manifest lists only this build's patches.
    """
    if not scenes:
        raise InputError("no scene to cut into patches")
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise InputError(f"scene names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets = ThreadLocalDatasets("input raster")  # each raster is read once per patch
    try:
        opened = [open_scene(s) for s in scenes]
        group_scenes(opened, options.patch_size)
        monitor.progress(2)
        patches, rejected = _kept_patches(opened, options, datasets, monitor)
        blocks = _assign_patch_splits(patches, options)
        samples, counts, written = _write_samples(patches, out, options, datasets, monitor)
    finally:
        datasets.close()
    kept = {k: {s: v for s, v in c.items() if v} for k, c in counts.items()}
    summary = DatasetSummary(str(out / "manifest.json"), kept, dict(rejected), len(opened),
                             len({s.group for s in opened}), blocks, written)
    write_text_atomic(out / "manifest.json", json.dumps(_manifest(samples, opened, options, summary), indent=1))
    monitor.progress(100)
    return summary


def build_dataset_folder(scenes: Sequence[SceneInputs], output_dir: os.PathLike | str,
                         options: BuildOptions = BuildOptions(), monitor: Monitor = SILENT,
                         compute_masks: bool = False, overwrite: bool = False) -> DatasetSummary:
    """Build a new dataset folder ``output_dir``: :func:`build_dataset` (and, with ``compute_masks``,
    :func:`~topoclear.engine.training.scene_list.add_missing_masks` into ``scene_masks/``) into a
    temporary folder beside it, renamed into place when complete.

    Before anything is written: ``output_dir`` must be new or empty, or, with ``overwrite``, hold a
    dataset (its ``manifest.json``), which is replaced only once the new one is complete; every scene
    is checked (:func:`~topoclear.engine.training.scene_patches.open_scene`: names, grids, band counts)
    and no input may lie inside ``output_dir``. Missing parent folders are created, and removed again
    when the build fails. Nothing is left by a failure or a cancel. The caller's scenes are not
    changed. The manifest's paths are relative to ``output_dir``.
    """
    out = Path(output_dir)
    problem = output_folder_problem(out, overwrite)
    if problem:
        raise OutputError(problem)
    if not scenes:
        raise InputError("no scene to cut into patches")
    scenes = [dataclasses.replace(s) for s in scenes]
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise InputError(f"scene names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    _refuse_inputs_inside(scenes, out)
    for scene in scenes:
        open_scene(scene)
    created = _make_parents(out)
    try:
        with (_replacing_folder(out) if _holds_files(out) else atomic_folder(out)) as tmp:
            try:
                start = 0.0
                if compute_masks:
                    add_missing_masks(scenes, tmp / "scene_masks", monitor.sub(0.0, 20.0))
                    start = 20.0
                summary = build_dataset(scenes, tmp, options, monitor.sub(start, 100.0))
            except Cancelled:
                raise
            except TopoClearError as exc:  # name the output, not its temporary folder
                raise type(exc)(str(exc).replace(str(tmp), str(out))) from exc
    except BaseException:
        remove_if_empty(created)
        raise
    summary.manifest = str(out / "manifest.json")
    return summary


def output_folder_problem(path: os.PathLike | str, overwrite: bool = False,
                          how_to_replace: str = "ask for the dataset there to be replaced") -> Optional[str]:
    """Why :func:`build_dataset_folder` cannot make ``path`` (a file; a folder holding files, unless
    ``overwrite`` and it holds a dataset), or None; ``how_to_replace`` tells the user how to ask for
    ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"output folder {path} is a file, expected a folder"
    if not _holds_files(path):
        return None
    names = sorted(os.listdir(path), key=lambda n: (n != "manifest.json", n))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if not overwrite:
        return (f"output folder {path} already holds files ({shown}): choose a new or an empty folder, or "
                f"{how_to_replace} (TopoClear never replaces a folder's contents unless told to)")
    if not _is_dataset(path):
        return (f"output folder {path} holds files ({shown}) but no TopoClear patch dataset (manifest.json): only a "
                "dataset folder is replaced; choose a new or an empty folder")
    if not os.access(path.parent, os.W_OK):
        return f"output folder {path}: folder {path.parent} is not writable ({why_not_writable(path.parent)})"
    return None


def _holds_files(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return True


def _is_dataset(path: Path) -> bool:
    """Whether ``path`` holds a patch dataset: a ``manifest.json`` of the patch manifest format."""
    try:
        document = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") == MANIFEST_FORMAT


def _refuse_inputs_inside(scenes: Sequence[SceneInputs], out: Path) -> None:
    root = os.path.realpath(str(out)).rstrip(os.sep) + os.sep
    for scene in scenes:
        files = dict(scene.rasters())
        if scene.land_mask:
            files["land_mask"] = str(scene.land_mask)
        for role, path in files.items():
            if os.path.realpath(str(path)).startswith(root):
                raise InputError(f"scene {scene.name}: the {role} {path} lies inside the output folder {out}; "
                                 "TopoClear never writes where its inputs are: choose another (new or empty) folder")


def _make_parents(out: Path) -> List[Path]:
    """Create the missing parent folders of ``out``; those created, outermost first."""
    try:
        return make_folders(out.parent)
    except OSError as exc:
        raise OutputError(f"output folder {out}: cannot create its folder {out.parent} ({exc.strerror})") from exc


@contextmanager
def _replacing_folder(path: Path) -> Iterator[Path]:
    """Like :func:`~topoclear.engine.io.atomic.atomic_folder` for a folder that already holds a dataset:
    the new folder is built under a temporary name beside it, and only when it is complete does it take
    the old folder's place (the old one is then removed); on any failure the old folder stays as it was."""
    parent = path.parent
    remove_stale_temporaries(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=str(parent)))
    except OSError as exc:
        raise OutputError(f"output folder {path}: cannot create a folder in {parent} ({exc.strerror}); nothing "
                          "was written") from exc
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".replaced", dir=str(parent)))
        try:
            os.rename(path, old)  # onto the empty folder just made
        except OSError:
            old.rmdir()
            raise
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise OutputError(f"cannot write the output folder {path}: {reason}; the previous dataset was left as it "
                          "was") from exc
    except TopoClearError:
        raise
    except Exception as exc:  # writers of other libraries report a full disk their way
        if "no space left" in str(exc).lower():
            raise OutputError(f"cannot write the output folder {path}: the disk is full; the previous dataset was "
                              "left as it was") from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _kept_patches(opened: Sequence[OpenedScene], options: BuildOptions, datasets: ThreadLocalDatasets,
                  monitor: Monitor) -> Tuple[List[CandidatePatch], Dict[str, int]]:
    """The candidate patches that pass the checks, and the count of rejected ones per reason."""
    patches: List[CandidatePatch] = []
    rejected: Dict[str, int] = defaultdict(int)
    candidates = [p for s in opened for p in candidate_patches(s, options)]
    for s in opened:
        if s.grid.width < options.patch_size or s.grid.height < options.patch_size:
            rejected["scenes smaller than a patch"] += 1
    for n, p in enumerate(candidates):
        monitor.check()
        reason = check_patch(p, options, datasets)
        if reason is None:
            patches.append(p)
        else:
            rejected[reason] += 1
        monitor.progress(2 + 38.0 * (n + 1) / max(1, len(candidates)))
    return patches, rejected


def _assign_patch_splits(patches: Sequence[CandidatePatch], options: BuildOptions) -> int:
    """Set each patch's split by its spatial block; returns the number of blocks split."""
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
    return len(units)


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


def _write_patch(ds: rasterio.DatasetReader, window: Window, out_path: Path, compress: bool,
                 descriptions: Optional[Sequence[str]] = None, tags: Optional[dict] = None) -> int:
    """Copy ``window`` of ``ds`` into its own GeoTIFF; returns the bytes written."""
    data = ds.read(window=window)
    grid = Grid(ds.crs, ds.window_transform(window), int(window.width), int(window.height))
    dtype = ds.dtypes[0]
    desc = list(descriptions) if descriptions else [d or "" for d in ds.descriptions]
    src_tags = ds.tags()
    with AtomicRasterWriter(out_path, grid, data.shape[0], dtype, ds.nodata, desc,
                            creation_options=_creation_options(dtype, compress, int(window.width))) as dst:
        dst.write(data)
        merged = {k: v for k, v in src_tags.items() if k in _KEPT_TAGS}
        merged.update(tags or {})
        if merged:
            dst.update_tags(**merged)
    return out_path.stat().st_size


def _write_sample(p: CandidatePatch, out: Path, options: BuildOptions,
                  datasets: ThreadLocalDatasets) -> Tuple[dict, int]:
    """Write the stacks of one patch; returns its manifest entry and the bytes written."""
    inp = p.scene.inputs
    pid = f"{inp.name}_r{int(p.window.row_off):05d}_c{int(p.window.col_off):05d}"
    entry: Dict[str, object] = {"id": pid, "split": p.split, "source": inp.source}
    written = 0
    for role, (folder, suffix) in ROLES.items():
        path = getattr(inp, role)
        if not path:
            continue
        target = contained_path(out / folder, f"{pid}{suffix}.tif", "patch id")
        target.parent.mkdir(parents=True, exist_ok=True)
        ds = datasets.get(str(path))
        desc = list(p.scene.s2_bands) if role in ("cloudy", "target") else None
        if role == "s1" and inp.s1_bands:
            desc = list(inp.s1_bands) if len(inp.s1_bands) == ds.count else None
        written += _write_patch(ds, p.window, target, options.compress, desc,
                                {"PATCH_ID": pid, "SCENE": inp.name, "SPLIT": p.split})
        entry[role] = os.path.relpath(target, out)
    entry.update(_sample_fields(p))
    return entry, written


def _sample_fields(p: CandidatePatch) -> Dict[str, object]:
    """Band lists, notes, ground footprint and fractions of a patch's manifest entry."""
    inp = p.scene.inputs
    fields: Dict[str, object] = {"s2_bands": list(p.scene.s2_bands)}
    if inp.s1:
        fields["s1_bands"] = list(inp.s1_bands)
    if inp.terrain:
        fields["terrain_bands"] = list(inp.terrain_bands)
    if inp.s2_offset:
        fields["s2_offset"] = inp.s2_offset
    if inp.notes:
        fields["notes"] = inp.notes
    lr, lc = p.lattice_rc
    left, bottom, right, top = rasterio.windows.bounds(p.window, p.scene.grid.transform)
    fields.update({
        "group": p.unit[0], "scene": inp.name,
        "window": [int(p.window.col_off), int(p.window.row_off), int(p.window.width), int(p.window.height)],
        "block": [p.unit[1], p.unit[2]], "lattice": [lr, lc],
        "crs": p.scene.grid.crs.to_string(), "bounds": [left, bottom, right, top],
    })
    for key in ("cloud_fraction", "shadow_fraction", "cloud_shadow_fraction", "water_fraction"):
        value = getattr(p, key)
        if value is not None:
            fields[key] = round(value, 6)
    return fields


def _write_samples(patches: Sequence[CandidatePatch], out: Path, options: BuildOptions,
                   datasets: ThreadLocalDatasets, monitor: Monitor):
    """Write every kept patch; returns the manifest entries, patches per source and split, and bytes."""
    samples = []
    written = 0
    counts: Dict[str, Dict[str, int]] = OrderedDict()
    for n, p in enumerate(patches):
        monitor.check()
        entry, size = _write_sample(p, out, options, datasets)
        samples.append(entry)
        written += size
        counts.setdefault(p.scene.inputs.source, {s: 0 for s in SPLITS})[p.split] += 1
        monitor.progress(40 + 58.0 * (n + 1) / max(1, len(patches)))
    return samples, counts, written


def _manifest(samples: List[dict], opened: Sequence[OpenedScene], options: BuildOptions,
              summary: DatasetSummary) -> dict:
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
    return manifest
