"""Reference methods every cloud-removal model must beat, and their evaluation on held-out samples.

Two baselines, both given the cloudy image and its cloud / cloud-shadow mask only:

* **identity**: the cloudy image itself (what a user has without any cloud removal);
* **inpainting**: masked pixels filled from the clear pixels around them with GDAL's
  ``FillNodata`` (inverse-distance weighting of the valid pixels that a conic search in four
  directions finds, then optional 3 x 3 smoothing passes), band by band on an in-memory dataset. The
  search reaches across the whole image by default, so every masked pixel is filled when the
  image has any clear pixel; an image without a single clear pixel is returned unchanged (there
  is nothing to interpolate from). Pixels outside the mask are kept as they are.

:func:`evaluate_baselines` runs both (and any model given as a ``predictor``) over the samples
of a manifest (:mod:`topoclear.engine.training.manifest` format) and reports the metrics of
:mod:`topoclear.models.metrics` overall and per 10 % bin of cloud cover, as CRT-UNet does.
Images are compared as reflectance in [0, 1] (``(DN + s2_offset) / 10000``, clipped) on the
bands named in ``bands`` (by default CRT-UNet's 10: B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12).
The mask of a sample is its cloud mask OR its shadow mask; its cloud cover is the fraction of
masked pixels.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
from rasterio.windows import Window

from ...models.bands import S2_BANDS_10_20M
from ..errors import InputError
from ..progress import SILENT, Monitor
from .manifest import Manifest, PatchSample, load_manifest
from .sample_stacks import read_stack, reference_grid

__all__ = [
    "BASELINES",
    "EvalSample",
    "identity",
    "inpaint",
    "load_eval_samples",
    "evaluate_baselines",
]

#: Metrics reported (keys of :func:`topoclear.models.metrics.evaluate` with a mask).
REPORTED = ("mae", "rmse", "psnr", "ssim", "sam", "psnr_cloudy", "psnr_clear", "mae_reconstruction",
            "sam_reconstruction", "mae_reproduction")


def identity(cloudy: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The cloudy image, unchanged (float32 copy)."""
    return np.array(cloudy, dtype=np.float32, copy=True)


def inpaint(cloudy: np.ndarray, mask: np.ndarray, max_search_px: Optional[float] = None,
            smoothing_iterations: int = 0) -> np.ndarray:
    """Fill the masked pixels of a (C, H, W) image with GDAL FillNodata, band by band.

    ``mask``: (H, W), True (or non-zero) on pixels to replace. ``max_search_px``: how far to look
    for valid pixels (default: the image diagonal, so everything is filled). Returns float32.
    """
    from osgeo import gdal

    image = np.asarray(cloudy, dtype=np.float32)
    if image.ndim == 2:
        return inpaint(image[None], mask, max_search_px, smoothing_iterations)[0]
    m = np.asarray(mask)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 else m
    m = m > 0.5 if m.dtype != bool else m
    if m.shape != image.shape[1:]:
        raise ValueError(f"mask {m.shape} does not match the image {image.shape}")
    out = image.copy()
    if not m.any() or m.all():
        return out
    c, h, w = image.shape
    reach = float(max_search_px) if max_search_px is not None else float(math.hypot(h, w)) + 1.0
    driver = gdal.GetDriverByName("MEM")
    valid_ds = driver.Create("", w, h, 1, gdal.GDT_Byte)
    valid_ds.GetRasterBand(1).WriteArray((~m).astype(np.uint8))
    valid_band = valid_ds.GetRasterBand(1)
    for b in range(c):
        ds = driver.Create("", w, h, 1, gdal.GDT_Float32)
        band = ds.GetRasterBand(1)
        band.WriteArray(image[b])
        if gdal.FillNodata(band, valid_band, reach, int(smoothing_iterations)) != 0:
            raise RuntimeError("GDAL FillNodata failed")
        filled = band.ReadAsArray().astype(np.float32)
        out[b] = np.where(m, filled, image[b])
        ds = None
    valid_ds = None
    return out


#: The baselines by name: ``f(cloudy, mask) -> prediction`` (reflectance in, reflectance out).
BASELINES: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "identity (cloudy input)": identity,
    "inpainting (GDAL FillNodata)": inpaint,
}


@dataclass
class EvalSample:
    """One evaluation sample in memory: reflectance in [0, 1] on ``bands``; mask True = cloud or shadow.

    ``s1`` (dB) and ``terrain`` (physical units) are there for model predictors when the
    sample has them.
    """

    id: str
    source: str
    split: str
    cloudy: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    bands: Sequence[str]
    s1: Optional[np.ndarray] = None
    terrain: Optional[np.ndarray] = None
    sample: object = None

    @property
    def cloud_fraction(self) -> float:
        return float(np.mean(self.mask))


def _reflectance(dn: np.ndarray, offset: float) -> np.ndarray:
    return np.clip((np.nan_to_num(dn, nan=0.0).astype(np.float64) + offset) / 10000.0, 0.0, 1.0).astype(np.float32)


def load_eval_samples(manifest_or_samples, split: Optional[Union[str, Sequence[str]]] = "test",
                      sources: Optional[Iterable[str]] = None, bands: Sequence[str] = S2_BANDS_10_20M,
                      with_inputs: bool = False) -> List[EvalSample]:
    """Read the samples of a manifest (path, folder, :class:`Manifest`, or a list of
    :class:`PatchSample`) whose split is ``split`` (None: all but ``exclude``) and whose source
    contains one of ``sources`` (None: all). ``with_inputs`` also reads S1 and terrain."""
    if isinstance(manifest_or_samples, (str, os.PathLike)):
        samples = load_manifest(manifest_or_samples).samples
    elif isinstance(manifest_or_samples, Manifest):
        samples = manifest_or_samples.samples
    else:
        samples = list(manifest_or_samples)
        if samples and isinstance(samples[0], EvalSample):
            return samples
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    wanted = None if sources is None else [s.lower() for s in sources]
    out: List[EvalSample] = []
    for s in samples:
        if not isinstance(s, PatchSample):
            raise InputError(f"expected PatchSample objects, got {type(s).__name__}")
        if s.split == "exclude" or (splits is not None and s.split not in splits):
            continue
        if wanted is not None and not any(w in s.source.lower() for w in wanted):
            continue
        if "cloudy" not in s.stacks:
            raise InputError(f"sample {s.id}: no cloudy image to evaluate on")
        missing = [b for b in bands if b not in s.s2_bands]
        if missing:
            raise InputError(f"sample {s.id}: bands {', '.join(missing)} missing (has {', '.join(s.s2_bands)})")
        idx = [list(s.s2_bands).index(b) for b in bands]
        grid = reference_grid(s.reference)
        window = Window(0, 0, grid.width, grid.height)
        cloudy_all = read_stack(s.stacks["cloudy"], grid, window, f"sample {s.id}: cloudy")
        target = read_stack(s.stacks["target"], grid, window, f"sample {s.id}: target")[idx]
        if s.has("cloud_mask") or s.has("shadow_mask"):
            mask = np.zeros((grid.height, grid.width), bool)
            for role in ("cloud_mask", "shadow_mask"):
                if s.has(role):
                    mask |= np.nan_to_num(read_stack(s.stacks[role], grid, window, role)[0], nan=0.0) > 0
        else:
            from ..clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c

            if len(s.s2_bands) != 13:
                raise InputError(f"sample {s.id} has no cloud/shadow masks and is not a 13-band L1C stack "
                                 "to compute them from")
            mask = cloud_shadow_masks_l1c(bands_from_stack(np.nan_to_num(cloudy_all), s.s2_bands,
                                                           offset=s.s2_offset))["csm"]
        item = EvalSample(s.id, s.source, s.split, _reflectance(cloudy_all[idx], s.s2_offset),
                          _reflectance(target, s.s2_offset), mask, tuple(bands), sample=s)
        if with_inputs:
            if s.has("s1"):
                item.s1 = read_stack(s.stacks["s1"], grid, window, "S1")
            if s.has("terrain"):
                item.terrain = read_stack(s.stacks["terrain"], grid, window, "terrain")
        out.append(item)
    return out


def _summarise(per_sample: List[dict], fractions: List[float], bin_width: float) -> dict:
    from ...models.metrics import metrics_by_cloud_cover

    keys = [k for k in REPORTED if per_sample and k in per_sample[0]]
    values = {k: [float(p[k]) for p in per_sample] for k in keys}
    overall = {}
    for k, v in values.items():
        arr = np.asarray(v, dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        overall[k] = float(arr.mean()) if arr.size else float("nan")
    overall["count"] = len(per_sample)
    overall["cloud_fraction"] = float(np.mean(fractions)) if fractions else float("nan")
    bins = metrics_by_cloud_cover(fractions, values, bin_width) if per_sample else []
    return {"overall": overall, "by_cloud_cover": bins}


def evaluate_baselines(manifest_or_samples, split: Optional[Union[str, Sequence[str]]] = "test",
                       sources: Optional[Iterable[str]] = None, bands: Sequence[str] = S2_BANDS_10_20M,
                       predictors: Optional[Mapping[str, Callable[[EvalSample], np.ndarray]]] = None,
                       include_baselines: bool = True, bin_width: float = 0.1,
                       monitor: Monitor = SILENT) -> dict:
    """Metrics of the baselines (and of ``predictors``) on held-out samples.

    ``manifest_or_samples``: a manifest path or folder, a :class:`Manifest`, a list of
    :class:`PatchSample`, or a list of :class:`EvalSample` already in memory. ``split`` and
    ``sources`` select samples (see :func:`load_eval_samples`). ``predictors`` maps a model name
    to ``f(sample) -> (C, H, W)`` reflectance on ``bands`` (the sample carries ``cloudy``,
    ``mask``, ``s1``, ``terrain``).

    Returns ``{"samples": n, "split", "sources", "bands", "methods": {name: {"overall": {metric:
    mean over samples, "count", "cloud_fraction"}, "by_cloud_cover": [per-bin rows of
    metrics_by_cloud_cover]}}, "per_sample": [{"id", "source", "cloud_fraction", name: {metrics}}]}``.
    Units: MAE / RMSE reflectance, PSNR dB, SAM degrees, SSIM unitless.
    """
    from ...models.metrics import evaluate

    samples = load_eval_samples(manifest_or_samples, split, sources, bands, with_inputs=bool(predictors))
    methods: Dict[str, Callable[[EvalSample], np.ndarray]] = {}
    if include_baselines:
        for name, fn in BASELINES.items():
            methods[name] = (lambda f: (lambda s: f(s.cloudy, s.mask)))(fn)
    methods.update(predictors or {})
    if not methods:
        raise InputError("nothing to evaluate: no baseline and no predictor")
    per_method: Dict[str, List[dict]] = {m: [] for m in methods}
    rows = []
    for n, s in enumerate(samples):
        monitor.check()
        row = {"id": s.id, "source": s.source, "split": s.split, "cloud_fraction": s.cloud_fraction}
        for name, fn in methods.items():
            pred = np.asarray(fn(s), dtype=np.float32)
            if pred.shape != s.target.shape:
                raise InputError(f"{name}: prediction of shape {pred.shape} for a target of shape {s.target.shape}")
            pred = np.clip(np.nan_to_num(pred, nan=0.0), 0.0, 1.0)
            m = evaluate(pred, s.target, cloudy=s.cloudy, mask=s.mask[None])
            m = {k: float(v) for k, v in m.items()}
            per_method[name].append(m)
            row[name] = m
        rows.append(row)
        monitor.progress(100.0 * (n + 1) / max(1, len(samples)))
    fractions = [s.cloud_fraction for s in samples]
    return {
        "samples": len(samples),
        "split": split if split is None or isinstance(split, str) else list(split),
        "sources": None if sources is None else list(sources),
        "bands": list(bands),
        "units": {"mae": "reflectance", "rmse": "reflectance", "psnr": "dB", "ssim": "unitless", "sam": "degrees"},
        "methods": {name: _summarise(per_method[name], fractions, bin_width) for name in methods},
        "per_sample": rows,
    }
