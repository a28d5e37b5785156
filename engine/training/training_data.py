"""The data of a training run: train / validation / test samples and their patch datasets."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...models.registry import get_spec
from ..errors import InputError
from .manifest import Manifest, PatchSample, check_sample_files, load_manifest
from .patch_dataset import PatchDataset
from .training_config import MASK_LOSSES, TrainConfig

__all__ = ["DataArg", "split_samples", "training_datasets"]

#: What training data may be given as.
DataArg = Union[str, os.PathLike, Manifest, Sequence[PatchSample], PatchDataset]


def _samples_of(data: DataArg) -> Tuple[List[PatchSample], dict]:
    """The samples of a manifest path, :class:`Manifest` or sample list, and where they come from."""
    if isinstance(data, Manifest):
        return list(data.samples), {"manifest": data.path, "description": data.description}
    if isinstance(data, (str, os.PathLike)):
        manifest = load_manifest(data)
        return list(manifest.samples), {"manifest": manifest.path, "description": manifest.description}
    samples = list(data)
    if samples and not all(isinstance(s, PatchSample) for s in samples):
        raise InputError("training data must be a manifest path, a Manifest, a list of PatchSample or a PatchDataset")
    return samples, {"manifest": None, "description": "samples given in memory"}


def _roles_read(common: dict) -> List[str]:
    """The stacks of a sample that a run reads (their files are checked before it starts)."""
    roles = (["cloudy"] if common["s2_bands"] else []) + ["target"]
    roles += [role for role, key in (("s1", "s1_bands"), ("terrain", "terrain_bands")) if common[key]]
    return roles + ["cloud_mask", "shadow_mask"]


def training_datasets(config: TrainConfig, layout, data: DataArg, val_data: Optional[DataArg]):
    """Training and validation :class:`PatchDataset`, what the card says of the data, and the test samples."""
    spec = get_spec(config.model)
    masks = "required" if config.loss in MASK_LOSSES or spec.prior else "optional"
    s2 = layout.s2 if "s2" in layout.inputs else ()
    common = dict(s2_bands=s2, output_bands=layout.output, s1_bands=layout.s1, terrain_bands=layout.terrain,
                  scaling=spec.scaling, patch_size=config.patch_size, masks=masks,
                  missing_inputs=config.missing_inputs, seed=config.seed, cache=config.cache_data, prior=spec.prior)
    info: dict = {}
    if isinstance(data, PatchDataset):
        train_ds = data
        info["train_source"] = "PatchDataset given in memory"
        test: List[PatchSample] = []
        if val_data is None:
            return train_ds, None, info, test
    else:
        samples, info = _samples_of(data)
        check_sample_files([s for s in samples if s.split != "exclude"], _roles_read(common), info.get("manifest"))
        if val_data is None:
            parts = split_samples(samples, config.val_fraction, config.test_fraction, config.seed)
        else:
            parts = {"train": [s for s in samples if s.split == "train"], "val": [],
                     "test": [s for s in samples if s.split == "test"]}
        if not parts["train"]:
            raise InputError("no training samples (every sample is in the val, test or exclude split)")
        train_ds = PatchDataset(parts["train"], training=True, crops_per_sample=config.crops_per_sample,
                                augmentation_probability=0.5 if config.augment else 0.0,
                                mask_errors=config.mask_errors, **common)
        test = parts["test"]
        if val_data is None:
            val_ds = PatchDataset(parts["val"], training=False, crops_per_sample=config.val_crops, **common) \
                if parts["val"] else None
            info["excluded"] = [s.id for s in samples if s.split == "exclude"]
            return train_ds, val_ds, info, test
    if isinstance(val_data, PatchDataset):
        return train_ds, val_data, info, test
    val_samples, val_info = _samples_of(val_data)
    val_samples = [s for s in val_samples if s.split != "exclude"]
    check_sample_files(val_samples, _roles_read(common), val_info.get("manifest"))
    info["val_manifest"] = val_info.get("manifest")
    return train_ds, PatchDataset(val_samples, training=False, crops_per_sample=config.val_crops, **common), info, test


def split_samples(samples: Sequence[PatchSample], val_fraction: float = 0.15, test_fraction: float = 0.05,
                  seed: int = 0) -> Dict[str, List[PatchSample]]:
    """Train / val / test lists: the manifest's own splits when it names any ``val`` sample,
    otherwise a seeded random split of the non-excluded samples (at least one validation
    sample when there are two or more)."""
    usable = [s for s in samples if s.split != "exclude"]
    if any(s.split == "val" for s in usable):
        return {name: [s for s in usable if s.split == name] for name in ("train", "val", "test")}
    pool = [s for s in usable if s.split != "test"]
    test = [s for s in usable if s.split == "test"]
    order = np.random.default_rng(seed).permutation(len(pool))
    n = len(pool)
    n_val = int(round(val_fraction * n))
    n_val = max(1, n_val) if n >= 2 and val_fraction > 0 else n_val
    n_test = int(round(test_fraction * n)) if n - n_val >= 3 else 0
    val = [pool[i] for i in order[:n_val]]
    test += [pool[i] for i in order[n_val:n_val + n_test]]
    train = [pool[i] for i in order[n_val + n_test:]]
    return {"train": train, "val": val, "test": test}
