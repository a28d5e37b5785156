"""Random and fixed crops of aligned training stacks, augmented and scaled for one model.

:class:`PatchDataset` cuts crops (``patch_size`` px, 256 by default, as CRT-UNet) from the
samples of a manifest (:mod:`topoclear.engine.training.manifest`), reads only those windows from
disk (:func:`~topoclear.engine.training.sample_stacks.read_stack`), applies the same flips and
90-degree rotation to every stack of a crop and scales the values for the model. It needs numpy
and rasterio only; the training loop wraps it in a torch ``DataLoader`` (it is a map-style
dataset: ``len()`` and ``[i]``).

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

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ...models.scaling import canonical_terrain_name, scale_s1, scale_s2, scale_terrain
from ..errors import InputError
from ..io.raster import Grid
from .manifest import PatchSample
from .sample_stacks import read_stack, reference_grid

__all__ = ["augment", "PatchDataset"]

#: Fills of whole samples, by (sample id, cloudy stack, bands): computed once per process and
#: shared by the datasets of every network trained in it (the fill does not depend on the network).
_FILLS: Dict[tuple, Tuple[np.ndarray, np.ndarray]] = {}


def _band_indices(available: Sequence[str], wanted: Sequence[str], role: str, sample_id: str,
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
        prior: ``"fill"`` for networks that start from the classic fill
            (:mod:`topoclear.models.fill_prior`): each item also holds ``mask`` (1, H, W), the
            cloud-or-shadow mask, and ``prior``, the S2 bands filled inside it by
            :func:`~topoclear.engine.clouds.methods.fill.fill_block` over the **whole sample**
            (as whole-scene removal fills a scene before its network runs), then cropped and
            augmented with the rest. Needs the masks; the fill of a sample is kept in memory.
        mask_errors: with ``prior``, the probability that a training crop also gets false alarms
            of the mask: smooth blobs (5-30 % of the crop) over pixels the mask calls clear, added
            to ``mask`` and filled in ``prior`` (from the crop), the target unchanged; a rule-based
            mask flags bright ground and dark shadows as cloud, and the network learns to keep
            such pixels as observed instead of trusting the fill there.
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
        prior: Optional[str] = None,
        mask_errors: float = 0.0,
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
        if prior not in (None, "fill"):
            raise ValueError(f"prior must be None or 'fill', got {prior!r}")
        self.prior = prior
        self.mask_errors = float(mask_errors)
        self._priors: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
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
        if self.prior and not have_masks:
            raise InputError("a network that starts from the fill needs cloud and shadow masks for every sample")
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
            s2_index = _band_indices(sample.s2_bands, self.s2_bands, "S2", sample.id)
        out_index = _band_indices(sample.s2_bands, self.output_bands, "target S2", sample.id)
        s1_index: List[int] = []
        if self.s1_bands:
            if sample.has("s1"):
                s1_index = _band_indices(sample.s1_bands, self.s1_bands, "S1", sample.id)
            elif self.missing_inputs == "zeros":
                self.filled_with_zeros["s1"].append(sample.id)
            else:
                raise InputError(f"sample {sample.id!r} has no Sentinel-1 stack, which the model reads; add one, "
                                 "train the variant without S1, or fill missing inputs with zeros")
        terrain_index: List[int] = []
        if self.terrain_bands:
            if sample.has("terrain"):
                terrain_index = _band_indices(sample.terrain_bands, self.terrain_bands, "terrain", sample.id,
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

    def _read_crop(self, p: _Prepared, window: Window) -> Dict[str, np.ndarray]:
        """The unscaled stacks of one crop: S2 in reflectance x 10000 (offset applied), masks 0/1."""
        s = p.sample
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
        if self.prior:
            fill, mask = self._prior_of(p)
            r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
            raw["prior"] = fill[:, r:r + h, c:c + w].copy()
            raw["mask"] = mask[None, r:r + h, c:c + w].astype(np.float32)
        return raw

    def _false_alarms(self, raw: Dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Add false alarms to the crop's mask and fill them (see ``mask_errors``)."""
        from ..clouds.methods.fill import fill_block
        from .synthetic_clouds import fractal_field

        mask = raw["mask"][0] > 0.5
        shape = mask.shape
        field_ = fractal_field(shape, rng, 3.0, float(rng.uniform(16.0, 64.0)))
        extra = (field_ > np.quantile(field_, 1.0 - rng.uniform(0.05, 0.30))) & ~mask
        if not extra.any() or (mask | extra).all():
            return
        cloudy = raw["s2"]
        filled, _ = fill_block(cloudy, mask | extra, np.ones(shape, bool))
        raw["prior"] = np.where(extra[None], filled, raw["prior"]).astype(np.float32)
        raw["mask"] = (mask | extra)[None].astype(np.float32)

    def _prior_of(self, p: _Prepared) -> Tuple[np.ndarray, np.ndarray]:
        """The fill of the model's S2 bands over the whole sample, and the mask it filled."""
        from ..clouds.methods.fill import fill_block

        key = (p.sample.id, p.sample.stacks["cloudy"].paths, tuple(p.s2_index))
        if key in _FILLS:
            return _FILLS[key]
        if key not in self._priors:
            s = p.sample
            whole = Window(0, 0, p.grid.width, p.grid.height)
            cloudy = self._read(p, "cloudy", whole, f"sample {s.id}: cloudy image")[p.s2_index] + s.s2_offset
            mask = np.zeros((p.grid.height, p.grid.width), bool)
            for role in ("cloud_mask", "shadow_mask"):
                mask |= np.nan_to_num(self._read(p, role, whole, f"sample {s.id}: {role}")[0], nan=0.0) > 0
            valid = np.isfinite(cloudy).all(axis=0)
            fill, _ = fill_block(np.nan_to_num(cloudy), mask, valid)
            self._priors[key] = _FILLS[key] = (fill, mask & valid)
        return self._priors[key]

    def _scaled(self, raw: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The model's inputs and target from a crop's stacks (zeros for an input the sample lacks)."""
        size = self.patch_size
        item: Dict[str, np.ndarray] = {}
        for key in ("s2", "cloudy", "prior"):
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
        if "mask" in raw:
            item["mask"] = np.ascontiguousarray(raw["mask"], dtype=np.float32)
        return item

    def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
        p, window, rng = self._locate(int(index))
        raw = self._read_crop(p, window)
        if rng is not None and self.prior and self.mask_errors > 0 and rng.random() < self.mask_errors:
            self._false_alarms(raw, rng)
        if rng is not None and self.augmentation_probability > 0:
            raw = augment(raw, rng, self._aspect if "terrain" in raw else None, self.augmentation_probability)
        item = self._scaled(raw)
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
