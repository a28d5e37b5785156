"""Pretrained cloud / cloud-shadow detector for Sentinel-2: the ukis-csmask ONNX models, run window by window.

ukis-csmask 1.0.0 (DLR, Apache-2.0) ships four ONNX networks inside its wheel (a UNet with an
EfficientNet-B4 encoder, trained on SPARCS + CloudSEN12+): ``model_6b_l1c``, ``model_6b_l2a``,
``model_4b_l1c``, ``model_4b_l2a``, each beside a JSON with its band order, the per-band mean and
standard deviation used for normalisation and its tile size (256 x 256). The networks output
logits for three classes: **0 clear, 1 cloud, 2 cloud shadow**. They are best at about 30 m.

The package's own entry point (``ukis_csmask.mask.CSmask``) normalises, tiles and predicts a
whole image in memory, which does not scale to a 10980 x 10980 Sentinel-2 tile. This module only
reads the model files from the installed package folder (nothing of ``ukis_csmask`` is imported)
and runs them with ``onnxruntime`` itself:

* :class:`CloudDetector` picks the model (product level ``"l1c"`` / ``"l2a"``; the 6-band model
  when blue, green, red, nir, swir16 and swir22 = B2, B3, B4, B8, B11, B12 are all given, else the
  4-band one), opens an ``onnxruntime`` session (intra-op threads: all cores unless told;
  ``CUDAExecutionProvider`` first when ``onnxruntime`` lists it, else the CPU) and exposes
  :meth:`CloudDetector.predict_probabilities` for an in-memory (C, H, W) array.
* :func:`~.detector_scene.detect_scene` masks a whole scene through a ``read_window`` callback,
  window by window, in memory bounded by the window size, and yields uint8 class windows at the
  native grid (0 clear, 1 cloud, 2 shadow, 255 nodata);
  :func:`~.detector_scene.buffer_classes` grows clouds and shadows by a distance in metres.

Input: float32 reflectance (DN / 10000; for processing baseline >= 04.00 apply the
``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` first), nodata as NaN (a pixel is nodata when any of
the bands the model uses is not finite).

**Normalisation** (as the package): ``(reflectance - mean) / std`` per band with the JSON's
``dataset_statistics``; softmax over the three logits.

**Tiles and blending.** Tiles of 256 px overlap by ``int(256 * overlap)`` px (``overlap`` 0.2 as
the package: 51 px). They lie on a fixed lattice of the (detector-resolution) scene: tile ``k``
starts at ``-overlap_px + k * (256 - overlap_px)``, so the first tile's full-weight interior
starts exactly at the scene's first pixel. Each tile's probabilities are weighted by a separable
window that rises as ``sin^2`` over the ``overlap_px`` pixels at each tile edge and is 1 inside;
two neighbouring windows sum to exactly 1 across their overlap (``sin^2 + cos^2``), so the blend
is seamless. Beyond the scene border tiles see the scene mirrored about it (``numpy.pad``
``"symmetric"``, as the package pads). The package blends with a Tukey window instead and does
not renormalise; argmax results agree on ~98-99 % of the pixels of its own test image.

**Nodata** pixels are filled before the network, tile by tile, with the value of the nearest
valid pixel of the same tile (no artificial edge for the network to see; a function of the tile
alone, so it does not depend on how the scene is cut); tiles without any valid pixel are not run.
Filled pixels are reported as nodata (NaN probabilities, class 255) afterwards. On the ukis test
patch with a diagonal nodata swath edge, 99.5 % of the valid pixels (97 % of those within 40 px
of the edge) keep the class they have without the nodata.

Whole scenes, window by window, are run by :mod:`.detector_scene` (:func:`~.detector_scene.detect_scene`).

Nothing here imports ``qgis``; ``onnxruntime`` is imported when a :class:`CloudDetector` is made.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ...errors import InputError, TopoClearError
from ...progress import SILENT, Monitor

__all__ = [
    "CLEAR",
    "CLOUD",
    "SHADOW",
    "NODATA",
    "SIX_BANDS",
    "FOUR_BANDS",
    "S2_L1C_BANDS",
    "INSTALL_HINT",
    "DETECTOR_RESOLUTION_M",
    "DetectorUnavailable",
    "CloudDetector",
    "Lattice",
    "model_folder",
    "blend_tiles",
    "probabilities_to_classes",
    "tile_weights",
]

CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255
"""Output classes of the detector (uint8)."""

SIX_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
"""Bands of the 6-band models: Sentinel-2 B2, B3, B4, B8, B11, B12."""
FOUR_BANDS = ("blue", "green", "red", "nir")
"""Bands of the 4-band models: Sentinel-2 B2, B3, B4, B8."""
S2_L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
"""The 13-band L1C order (SEN12MS-CR, DSen2-CR): pass it as ``bands`` to use such stacks as they are."""

DETECTOR_RESOLUTION_M = 30.0
"""The resolution the models work best at (metres)."""

INSTALL_HINT = "pip install onnxruntime==1.32.0 ukis-csmask==1.0.0"

_ALIASES = {
    "b2": "blue", "b02": "blue", "blue": "blue",
    "b3": "green", "b03": "green", "green": "green",
    "b4": "red", "b04": "red", "red": "red",
    "b8": "nir", "b08": "nir", "nir": "nir",
    "b11": "swir16", "swir16": "swir16", "swir1": "swir16",
    "b12": "swir22", "swir22": "swir22", "swir2": "swir22",
}
_PRODUCT_LEVELS = ("l1c", "l2a")


class DetectorUnavailable(TopoClearError, ImportError):
    """``onnxruntime`` or ``ukis-csmask`` (which holds the model files) is not installed."""


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def model_folder() -> Path:
    """Folder of the installed ``ukis_csmask`` package (its ONNX files), checked without importing anything."""
    missing = []
    for module in ("onnxruntime", "ukis_csmask"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise DetectorUnavailable(
            f"the cloud detector needs the Python package(s) {', '.join(missing)}, which are not installed "
            f"in this Python ({os.path.realpath(sys.executable)}); install them with: {INSTALL_HINT}")
    spec = importlib.util.find_spec("ukis_csmask")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations and spec is not None and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    if not locations:
        raise DetectorUnavailable(f"cannot locate the ukis_csmask package folder; reinstall it with: {INSTALL_HINT}")
    return Path(locations[0])


def _choose_providers(available: Sequence[str]) -> List[str]:
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _all_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def tile_weights(tile: int, overlap_px: int) -> np.ndarray:
    """2-D blending window (tile x tile, float32): ``sin^2`` ramps over ``overlap_px`` px at each edge, 1 inside.

    Along one axis ``w(x) = sin^2(pi/2 * min(1, d / overlap_px))``, ``d = min(x, tile-1-x) + 0.5``;
    copies shifted by ``tile - overlap_px`` sum to exactly 1 across their overlap.
    """
    x = np.arange(tile, dtype=np.float64)
    d = np.minimum(x, tile - 1 - x) + 0.5
    w = np.sin(0.5 * np.pi * np.clip(d / overlap_px, 0.0, 1.0)) ** 2 if overlap_px > 0 else np.ones(tile)
    return np.outer(w, w).astype(np.float32)


@dataclass(frozen=True)
class Lattice:
    """Tile origins along one axis of an ``size``-px (detector resolution) scene."""

    size: int
    tile: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def count(self) -> int:
        return max(1, int(math.ceil((self.size + self.overlap) / self.stride)))

    def origin(self, k: int) -> int:
        return -self.overlap + k * self.stride

    def covering(self, lo: int, hi: int) -> List[int]:
        """Tiles whose (everywhere non-zero) window meets ``[lo, hi)``."""
        return [k for k in range(self.count) if self.origin(k) < hi and self.origin(k) + self.tile > lo]


class CloudDetector:
    """One ukis-csmask ONNX model in an ``onnxruntime`` session.

    ``bands``: names of the channels of the arrays you will pass, in order (``"blue"``, ``"green"``,
    ``"red"``, ``"nir"``, ``"swir16"``, ``"swir22"``, or the Sentinel-2 names B2/B02, B3, B4, B8, B11,
    B12; other names are carried along and ignored, e.g. :data:`S2_L1C_BANDS`). ``threads``: intra-op
    threads (default: all cores of this process). ``providers``: override the provider choice.
    ``batch_size``: tiles per ``session.run`` (default 4 on the CPU, 16 on CUDA). ``overlap``:
    fraction of the tile shared with each neighbour (0.2, the package's value).

    Attributes for the log: ``provider`` (the provider that runs the model), ``model_path``,
    ``model_version``, ``model_bands`` (the model's band order), ``threads``.
    """

    def __init__(
        self,
        product_level: str = "l1c",
        bands: Sequence[str] = SIX_BANDS,
        threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        overlap: float = 0.2,
    ) -> None:
        level = str(product_level).strip().lower()
        if level not in _PRODUCT_LEVELS:
            raise InputError(f"product_level must be 'l1c' or 'l2a', got {product_level!r}")
        self.bands = tuple(str(b) for b in bands)
        canonical = [_canonical(b) for b in self.bands]
        if all(b in canonical for b in SIX_BANDS):
            kind = "6b"
        elif all(b in canonical for b in FOUR_BANDS):
            kind = "4b"
        else:
            raise InputError(f"the cloud detector needs at least the bands blue, green, red, nir (B2, B3, B4, B8), "
                             f"and for its better model also swir16, swir22 (B11, B12); got {list(self.bands)}")
        folder = model_folder()
        self.model_path = folder / f"model_{kind}_{level}.onnx"
        meta_path = self.model_path.with_suffix(".json")
        if not self.model_path.is_file() or not meta_path.is_file():
            raise DetectorUnavailable(f"model file {self.model_path} (or its .json) is missing from the installed "
                                      f"ukis-csmask; reinstall it with: {INSTALL_HINT}")
        try:
            import onnxruntime
        except ImportError as exc:
            raise DetectorUnavailable(
                f"onnxruntime cannot be imported ({exc}); install it with: {INSTALL_HINT}") from exc
        meta = json.loads(meta_path.read_text())
        stats = meta["data"]["dataset_statistics"]
        self.model_bands = tuple(stats["band_names"])
        self.band_index = np.array([canonical.index(b) for b in self.model_bands])
        self.mean = np.asarray(stats["img"][0], dtype=np.float32)[:, None, None]
        self.std = np.asarray(stats["img"][1], dtype=np.float32)[:, None, None]
        self.tile = int(meta["data"]["target_size"][0])
        self.classes = int(meta["data"].get("classes", 3))
        self.model_version = str(meta.get("model", {}).get("version", ""))
        self.product_level = level
        if not 0.0 <= overlap <= 0.5:
            raise InputError(f"overlap must be between 0 and 0.5 of the tile, got {overlap}")
        self.overlap_px = int(self.tile * overlap)
        self.weights = tile_weights(self.tile, self.overlap_px)

        self.threads = int(threads) if threads else _all_cores()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        chosen = list(providers) if providers else _choose_providers(onnxruntime.get_available_providers())
        self.session = onnxruntime.InferenceSession(str(self.model_path), sess_options=options, providers=chosen)
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        default_batch = 16 if self.provider == "CUDAExecutionProvider" else 4
        self.batch_size = max(1, int(batch_size or default_batch))

    def __repr__(self) -> str:
        return (f"CloudDetector({self.model_path.stem}, version {self.model_version}, {self.provider}, "
                f"{self.threads} threads, batch {self.batch_size})")

    # -- tiles --------------------------------------------------------------------------------------
    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """(N, model bands, tile, tile) reflectance without NaN -> (N, 3, tile, tile) softmax probabilities."""
        x = (np.asarray(tiles, dtype=np.float32) - self.mean) / self.std
        out = []
        for start in range(0, len(x), self.batch_size):
            batch = np.ascontiguousarray(x[start:start + self.batch_size])
            logits = self.session.run(None, {self.input_name: batch})[0]
            logits = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            out.append(e / e.sum(axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32, copy=False)

    def _tile_input(self, tile: np.ndarray) -> Optional[np.ndarray]:
        """Nearest-valid fill of a (bands, tile, tile) tile; None when it holds no valid pixel."""
        valid = np.all(np.isfinite(tile), axis=0)
        if not valid.any():
            return None
        if not valid.all():
            index = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
            tile = tile[:, index[0], index[1]]
        return tile

    def run_tiles(self, jobs: List[Tuple[object, np.ndarray]], monitor: Monitor,
             done: Callable[[int], None]) -> Dict[object, Optional[np.ndarray]]:
        """Run (key, raw tile) jobs in batches; returns key -> weighted probabilities (or None for empty tiles)."""
        results: Dict[object, Optional[np.ndarray]] = {}
        pending: List[Tuple[object, np.ndarray]] = []

        def flush():
            if pending:
                monitor.check()
                probs = self.predict_tiles(np.stack([t for _, t in pending]))
                for (key, _), p in zip(pending, probs):
                    results[key] = p * self.weights
                done(len(pending))
                pending.clear()

        for key, raw in jobs:
            filled = self._tile_input(raw)
            if filled is None:
                results[key] = None
                done(1)
                continue
            pending.append((key, filled))
            if len(pending) >= self.batch_size:
                flush()
        flush()
        return results

    # -- in-memory arrays ---------------------------------------------------------------------------
    def _model_input(self, reflectance: np.ndarray) -> np.ndarray:
        a = np.asarray(reflectance)
        if a.ndim != 3 or a.shape[0] != len(self.bands):
            raise InputError(f"reflectance must be (bands, rows, cols) with {len(self.bands)} bands "
                             f"{list(self.bands)}, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"reflectance must be floating point (DN / 10000), got {a.dtype}")
        return a[self.band_index].astype(np.float32, copy=False)

    def predict_probabilities(self, reflectance: np.ndarray, monitor: Optional[Monitor] = None) -> np.ndarray:
        """(C, H, W) reflectance (nodata NaN) -> (3, H, W) float32 probabilities of clear, cloud, shadow.

        Runs at the array's own resolution (resample to ~30 m first for best results, or use
        :func:`detect_scene`). Nodata pixels come back as NaN in all three planes.
        """
        monitor = monitor or SILENT
        x = self._model_input(reflectance)
        _, h, w = x.shape
        ly, lx = Lattice(h, self.tile, self.overlap_px), Lattice(w, self.tile, self.overlap_px)
        keys = [(ky, kx) for ky in range(ly.count) for kx in range(lx.count)]
        e0y, e0x = ly.origin(0), lx.origin(0)
        e1y, e1x = ly.origin(ly.count - 1) + self.tile, lx.origin(lx.count - 1) + self.tile
        padded = np.pad(x, ((0, 0), (-e0y, e1y - h), (-e0x, e1x - w)), mode="symmetric")
        total = len(keys)
        count = [0]

        def done(n):
            count[0] += n
            monitor.progress(100.0 * count[0] / total)

        def jobs():
            for ky, kx in keys:
                oy, ox = ly.origin(ky) - e0y, lx.origin(kx) - e0x
                yield (ky, kx), padded[:, oy:oy + self.tile, ox:ox + self.tile]

        results = self.run_tiles(list(jobs()), monitor, done)
        probs = blend_tiles(results, ly, lx, (0, h), (0, w), self.weights, self.classes)
        probs[:, ~np.all(np.isfinite(x), axis=0)] = np.nan
        return probs

    def predict_classes(self, reflectance: np.ndarray, monitor: Optional[Monitor] = None) -> np.ndarray:
        """(C, H, W) reflectance -> (H, W) uint8 classes (0 clear, 1 cloud, 2 shadow, 255 nodata)."""
        return probabilities_to_classes(self.predict_probabilities(reflectance, monitor))


def blend_tiles(results: Dict[object, Optional[np.ndarray]], ly: Lattice, lx: Lattice, rows: Tuple[int, int],
           cols: Tuple[int, int], weights: np.ndarray, classes: int) -> np.ndarray:
    """Weighted mean of the tiles' probabilities over the region rows x cols (detector grid); NaN where no weight."""
    r0, r1 = rows
    c0, c1 = cols
    acc = np.zeros((classes, r1 - r0, c1 - c0), np.float32)
    wsum = np.zeros((r1 - r0, c1 - c0), np.float32)
    t = ly.tile
    for ky in ly.covering(r0, r1):
        oy = ly.origin(ky)
        y0, y1 = max(r0, oy), min(r1, oy + t)
        for kx in lx.covering(c0, c1):
            p = results[(ky, kx)]
            if p is None:
                continue
            ox = lx.origin(kx)
            x0, x1 = max(c0, ox), min(c1, ox + t)
            acc[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0] += p[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
            wsum[y0 - r0:y1 - r0, x0 - c0:x1 - c0] += weights[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc /= wsum
    acc[:, wsum <= 0] = np.nan
    return acc


def probabilities_to_classes(probs: np.ndarray) -> np.ndarray:
    nodata = ~np.all(np.isfinite(probs), axis=0)
    out = np.argmax(np.where(nodata, 0.0, probs), axis=0).astype(np.uint8)
    out[nodata] = NODATA
    return out
