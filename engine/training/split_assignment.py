"""Which split each spatial block goes to, and the check that no ground is in two splits."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS

from ..io.raster import Grid, open_raster
from .builder_inputs import DEFAULT_FRACTIONS
from .scene_patches import footprint_lonlat, footprints_intersect

__all__ = ["TRAIN_SPLITS", "assign_splits", "split_overlaps"]

#: The splits blocks are assigned to (``exclude`` takes no part in the assignment).
TRAIN_SPLITS = ("train", "val", "test")


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
        counts = {s: 0 for s in TRAIN_SPLITS}
        for u in order:
            if u in out and out[u] in counts:
                counts[out[u]] += units[u][stratum]
        new = _assign_greedily(order, units, stratum, fr, out, counts)
        _fill_empty_splits(order, new, units, stratum, fr, out, counts)
    for u in units:
        out.setdefault(u, "train")
    return {u: out[u] for u in units}


def _assign_greedily(order: Sequence[Tuple], units, stratum: str, fr: np.ndarray, out: Dict[Tuple, str],
                     counts: Dict[str, int]) -> List[Tuple]:
    """Give each unassigned unit of ``order`` to the split furthest below its share; the units given."""
    total = sum(counts.values())
    new: List[Tuple] = []
    for u in order:
        if u in out:
            continue
        n = units[u][stratum]
        after = total + n
        deficit = [fr[i] * after - counts[s] for i, s in enumerate(TRAIN_SPLITS)]
        best = TRAIN_SPLITS[int(np.argmax(deficit))]
        out[u] = best
        counts[best] += n
        total = after
        new.append(u)
    return new


def _fill_empty_splits(order: Sequence[Tuple], new: Sequence[Tuple], units, stratum: str, fr: np.ndarray,
                       out: Dict[Tuple, str], counts: Dict[str, int]) -> None:
    """Every split with a positive fraction gets a unit of the stratum when another split can spare one."""
    total = sum(counts.values())
    for i, s in enumerate(TRAIN_SPLITS):
        if fr[i] <= 0 or counts[s] > 0:
            continue
        donors = []
        for j, d in enumerate(TRAIN_SPLITS):
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
        items.append((e["id"], e["split"], crs, bounds, footprint_lonlat(Grid(crs, _bounds_transform(bounds), 1, 1))))
    out = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = items[i], items[j]
            if a[1] == b[1]:
                continue
            if a[2] == b[2]:
                hit = footprints_intersect(a[3], b[3], tol=1e-6)
            else:
                hit = footprints_intersect(a[4], b[4])
            if hit:
                out.append((a[0], b[0]))
    return out


def _bounds_transform(bounds) -> "rasterio.Affine":
    left, bottom, right, top = bounds
    return rasterio.Affine(right - left, 0.0, left, 0.0, -(top - bottom), top)
