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
* :func:`detect_scene` masks a whole scene through a ``read_window`` callback, window by window,
  in memory bounded by the window size, and yields uint8 class windows at the native grid
  (0 clear, 1 cloud, 2 shadow, 255 nodata).
* :func:`buffer_classes` grows clouds and shadows by a distance in metres.

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

**Whole scenes** (:func:`detect_scene`): the native grid is block-averaged by an integer factor
``f`` to about ``resolution_m`` (30 m): ``f = round(resolution_m / pixel_size_m)`` with ties going
to the finer grid, so 10 m input is averaged 3 x 3 (30 m), 20 m input is used as is (30 / 20 = 1.5
-> 1, 20 m), 15 m input 2 x 2; a block is the mean of its valid pixels. The tile lattice covers
the whole averaged scene. Each window (``window_px`` native px, a multiple of ``f``) runs the
lattice tiles that touch it (its *halo* is the part of those tiles outside the window: up to
255 px at the detector resolution, i.e. ~7.7 km) and keeps the probabilities of the tiles it shares
with windows still to come (a one-row-of-tiles cache, freed as soon as the last window needing a
tile has used it): **every tile is run exactly once, whatever the window size, and the classes
equal those of a single pass over the whole scene** (up to float rounding of the blend). Classes
come back to the native grid by nearest neighbour (each native pixel takes its block's class);
native nodata pixels are 255. ``halo_px`` can bound the context read around a window; tile parts
beyond it are then mirrored, and results near window edges become approximate (on the ukis test
patch, 300 px windows agree with the whole-image classes on 97.2 % of the pixels with a 64 px
halo, 99.85 % with 96 px and 100 % with 128 px: the network looks far).

Memory per window, for ``W`` = window + 2 x 256 detector px: the detector-resolution input
(``bands x W^2`` float32), one native read strip (~512 native rows x ``W * f`` x bands float32),
the native classes and nodata mask of the window (+ buffer margin), the tile cache (about two
rows of tiles across the scene: ~0.8 MB per tile) and ``onnxruntime``'s own working memory for
one batch. Nothing grows with the scene size except the cache's width.

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
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

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
    "ClassWindow",
    "ScenePlan",
    "SceneDetection",
    "block_factor",
    "plan_scene",
    "detect_scene",
    "buffer_classes",
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
_READ_STRIP_PX = 512  # native rows per read_window call inside a window


class DetectorUnavailable(TopoClearError, ImportError):
    """``onnxruntime`` or ``ukis-csmask`` (which holds the model files) is not installed."""


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def _model_folder() -> Path:
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
class _Lattice:
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
        folder = _model_folder()
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

    def _run(self, jobs: List[Tuple[object, np.ndarray]], monitor: Monitor,
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
        ly, lx = _Lattice(h, self.tile, self.overlap_px), _Lattice(w, self.tile, self.overlap_px)
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

        results = self._run(list(jobs()), monitor, done)
        probs = _blend(results, ly, lx, (0, h), (0, w), self.weights, self.classes)
        probs[:, ~np.all(np.isfinite(x), axis=0)] = np.nan
        return probs

    def predict_classes(self, reflectance: np.ndarray, monitor: Optional[Monitor] = None) -> np.ndarray:
        """(C, H, W) reflectance -> (H, W) uint8 classes (0 clear, 1 cloud, 2 shadow, 255 nodata)."""
        return _classes(self.predict_probabilities(reflectance, monitor))


def _blend(results: Dict[object, Optional[np.ndarray]], ly: _Lattice, lx: _Lattice, rows: Tuple[int, int],
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


def _classes(probs: np.ndarray) -> np.ndarray:
    nodata = ~np.all(np.isfinite(probs), axis=0)
    out = np.argmax(np.where(nodata, 0.0, probs), axis=0).astype(np.uint8)
    out[nodata] = NODATA
    return out


# -- whole scenes -----------------------------------------------------------------------------------

def block_factor(pixel_size_m: float, resolution_m: float = DETECTOR_RESOLUTION_M) -> int:
    """Integer averaging factor from the native pixel to about ``resolution_m``: the nearest integer of
    ``resolution_m / pixel_size_m``, ties to the finer grid, at least 1 (10 m -> 3, 20 m -> 1, 15 m -> 2, 60 m -> 1)."""
    if not pixel_size_m or pixel_size_m <= 0 or not math.isfinite(pixel_size_m):
        raise InputError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
    if not resolution_m or resolution_m <= 0:
        raise InputError(f"resolution_m must be positive, got {resolution_m!r}")
    return max(1, int(math.ceil(resolution_m / pixel_size_m - 0.5 - 1e-9)))


@dataclass(frozen=True)
class ClassWindow:
    """Classes of one window of the native grid: rows ``row0 .. row0 + rows`` and columns ``col0 .. col0 + cols``."""

    row0: int
    col0: int
    classes: np.ndarray  # (rows, cols) uint8: 0 clear, 1 cloud, 2 shadow, 255 nodata

    @property
    def rows(self) -> int:
        return int(self.classes.shape[0])

    @property
    def cols(self) -> int:
        return int(self.classes.shape[1])


@dataclass(frozen=True)
class ScenePlan:
    """How a scene is cut: averaging factor, detector grid, tile lattice and windows (native px)."""

    height: int
    width: int
    pixel_size_m: float
    resolution_m: float
    factor: int
    coarse_shape: Tuple[int, int]
    tile: int
    overlap_px: int
    tiles: Tuple[int, int]  # tile rows, tile columns of the lattice
    window_px: int  # native, a multiple of factor
    windows: Tuple[Tuple[int, int, int, int], ...]  # (row0, col0, rows, cols), native, row-major
    buffer_px: float

    @property
    def detector_pixel_m(self) -> float:
        return self.factor * self.pixel_size_m

    @property
    def tile_count(self) -> int:
        return self.tiles[0] * self.tiles[1]

    @property
    def max_halo_px(self) -> int:
        """Largest context read beyond a window edge (native px): a tile can start 255 detector px before it."""
        return (self.tile - 1) * self.factor

    def describe(self) -> str:
        p, f = self.pixel_size_m, self.factor
        if f == 1:
            grid = (f"{p:g} m input used at its own resolution (the nearest integer factor of "
                    f"{self.resolution_m:g} / {p:g} is 1)")
        else:
            grid = f"{p:g} m input block-averaged {f}x{f} to {self.detector_pixel_m:g} m"
        return (f"cloud detector: {grid}; {self.coarse_shape[0]} x {self.coarse_shape[1]} px at the detector "
                f"resolution, {self.tile_count} tiles of {self.tile} px (overlap {self.overlap_px} px), "
                f"{len(self.windows)} window(s) of up to {self.window_px} px")


def plan_scene(height: int, width: int, pixel_size_m: float, resolution_m: float = DETECTOR_RESOLUTION_M,
               window_px: Optional[int] = None, tile: int = 256, overlap_px: int = 51,
               buffer_m: float = 0.0) -> ScenePlan:
    """The :class:`ScenePlan` of a ``height`` x ``width`` scene; ``window_px`` defaults to 1024 detector px."""
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise InputError(f"scene size must be positive, got {height} x {width}")
    f = block_factor(pixel_size_m, resolution_m)
    coarse = (int(math.ceil(height / f)), int(math.ceil(width / f)))
    window_c = max(1, int(round((window_px or 1024 * f) / f)))
    window_n = window_c * f
    windows = tuple((r, c, min(window_n, height - r), min(window_n, width - c))
                    for r in range(0, height, window_n) for c in range(0, width, window_n))
    ly, lx = _Lattice(coarse[0], tile, overlap_px), _Lattice(coarse[1], tile, overlap_px)
    if buffer_m < 0:
        raise InputError(f"buffer_m must be >= 0, got {buffer_m}")
    return ScenePlan(height, width, float(pixel_size_m), float(resolution_m), f, coarse, tile, overlap_px,
                     (ly.count, lx.count), window_n, windows, float(buffer_m) / float(pixel_size_m))


def _block_mean(x: np.ndarray, f: int) -> np.ndarray:
    """(C, h, w) native -> (C, ceil(h/f), ceil(w/f)): mean of each block's valid pixels (NaN where none)."""
    if f == 1:
        return x
    c, h, w = x.shape
    hh, ww = -(-h // f) * f, -(-w // f) * f
    if (hh, ww) != (h, w):
        x = np.pad(x, ((0, 0), (0, hh - h), (0, ww - w)), constant_values=np.nan)
    valid = np.all(np.isfinite(x), axis=0)
    s = np.where(valid, x, 0.0).reshape(c, hh // f, f, ww // f, f).sum(axis=(2, 4), dtype=np.float64)
    n = valid.reshape(hh // f, f, ww // f, f).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s / n).astype(np.float32)


class SceneDetection:
    """Iterable of :class:`ClassWindow` (row-major) over a whole scene; made by :func:`detect_scene`.

    Attributes: ``plan`` (:class:`ScenePlan`), ``detector``, ``provider``; after (or during) the
    iteration ``tiles_run`` (network tiles evaluated), ``counts`` (pixels per class 0, 1, 2, 255),
    ``peak_cache_tiles`` (most tiles held for later windows at once).
    """

    def __init__(self, read_window, plan: ScenePlan, detector: CloudDetector, monitor: Monitor,
                 halo_px: Optional[int]) -> None:
        self.read_window = read_window
        self.plan = plan
        self.detector = detector
        self.provider = detector.provider
        self.monitor = monitor
        self.halo_px = halo_px
        self.tiles_run = 0
        self.peak_cache_tiles = 0
        self.counts = {CLEAR: 0, CLOUD: 0, SHADOW: 0, NODATA: 0}
        self._started = False

    def __iter__(self) -> Iterator[ClassWindow]:
        if self._started:
            raise RuntimeError("a SceneDetection can be iterated once")
        self._started = True
        return self._windows()

    def fractions(self) -> Dict[int, float]:
        """Fraction of the valid pixels that are clear, cloud, shadow (so far)."""
        valid = self.counts[CLEAR] + self.counts[CLOUD] + self.counts[SHADOW]
        return {k: (self.counts[k] / valid if valid else float("nan")) for k in (CLEAR, CLOUD, SHADOW)}

    # -- internals --------------------------------------------------------------------------------
    def _read(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        self.monitor.check()
        a = np.asarray(self.read_window(int(row0), int(col0), int(rows), int(cols)))
        if a.ndim != 3 or a.shape[1:] != (rows, cols) or a.shape[0] != len(self.detector.bands):
            raise InputError(f"read_window({row0}, {col0}, {rows}, {cols}) returned shape {a.shape}; expected "
                             f"({len(self.detector.bands)}, {rows}, {cols}) for bands {list(self.detector.bands)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"read_window must return floating-point reflectance (DN / 10000), got {a.dtype}")
        return a[self.detector.band_index].astype(np.float32, copy=False)

    def _windows(self) -> Iterator[ClassWindow]:
        plan, det, f = self.plan, self.detector, self.plan.factor
        hc, wc = plan.coarse_shape
        t = det.tile
        ly, lx = _Lattice(hc, t, det.overlap_px), _Lattice(wc, t, det.overlap_px)
        buffer_px = plan.buffer_px
        margin_n = int(math.ceil(buffer_px)) + 1 if buffer_px >= 0.5 else 0  # native px of exact context for the buffer
        margin_c = -(-margin_n // f)

        def region(r0n, c0n, rn, cn):
            """Coarse region whose classes the window needs (core + buffer margin), clipped to the scene."""
            return ((max(0, r0n // f - margin_c), min(hc, -(-(r0n + rn) // f) + margin_c)),
                    (max(0, c0n // f - margin_c), min(wc, -(-(c0n + cn) // f) + margin_c)))

        # How many windows need each tile: a tile is dropped from the cache after its last use.
        uses: Dict[Tuple[int, int], int] = {}
        window_tiles = []
        for r0n, c0n, rn, cn in plan.windows:
            (y0, y1), (x0, x1) = region(r0n, c0n, rn, cn)
            keys = [(ky, kx) for ky in ly.covering(y0, y1) for kx in lx.covering(x0, x1)]
            window_tiles.append(keys)
            for k in keys:
                uses[k] = uses.get(k, 0) + 1
        total = max(1, len(uses))
        cache: Dict[Tuple[int, int], Optional[np.ndarray]] = {}
        self.monitor.message(plan.describe() + f"; provider {det.provider}, {det.threads} threads")

        def done(n):
            self.tiles_run += n
            self.monitor.progress(100.0 * self.tiles_run / total)

        for (r0n, c0n, rn, cn), keys in zip(plan.windows, window_tiles):
            self.monitor.check()
            (y0, y1), (x0, x1) = region(r0n, c0n, rn, cn)
            todo = [k for k in keys if k not in cache]
            # Read box (coarse): the tiles still to run and the class region, clipped to the scene (and halo).
            by0, by1, bx0, bx1 = y0, y1, x0, x1
            if todo:
                ty0 = min(ly.origin(k[0]) for k in todo)
                ty1 = max(ly.origin(k[0]) for k in todo) + t
                tx0 = min(lx.origin(k[1]) for k in todo)
                tx1 = max(lx.origin(k[1]) for k in todo) + t
                if self.halo_px is not None:
                    halo_c = max(-(-int(self.halo_px) // f), margin_c)
                    lim_y = (r0n // f - halo_c, -(-(r0n + rn) // f) + halo_c)
                    lim_x = (c0n // f - halo_c, -(-(c0n + cn) // f) + halo_c)
                else:
                    lim_y, lim_x = (ty0, ty1), (tx0, tx1)
                by0, by1 = min(by0, max(0, ty0, lim_y[0])), max(by1, min(hc, ty1, lim_y[1]))
                bx0, bx1 = min(bx0, max(0, tx0, lim_x[0])), max(bx1, min(wc, tx1, lim_x[1]))
            coarse, valid_native = self._read_box(by0, by1, bx0, bx1, (y0, y1, x0, x1))
            if todo:
                # the tiles' extent: the part read (about which the rest is mirrored) and the mirrored rest
                sy0, sy1, sx0, sx1 = max(by0, ty0), min(by1, ty1), max(bx0, tx0), min(bx1, tx1)
                padded = np.pad(coarse[:, sy0 - by0:sy1 - by0, sx0 - bx0:sx1 - bx0],
                                ((0, 0), (sy0 - ty0, ty1 - sy1), (sx0 - tx0, tx1 - sx1)), mode="symmetric")
                jobs = []
                for ky, kx in todo:
                    oy, ox = ly.origin(ky) - ty0, lx.origin(kx) - tx0
                    jobs.append(((ky, kx), padded[:, oy:oy + t, ox:ox + t]))
                del padded
                cache.update(det._run(jobs, self.monitor, done))
            del coarse
            self.peak_cache_tiles = max(self.peak_cache_tiles, len(cache))
            probs = _blend(cache, ly, lx, (y0, y1), (x0, x1), det.weights, det.classes)
            for k in keys:
                uses[k] -= 1
                if uses[k] == 0:
                    del cache[k]
            classes_c = _classes(probs)
            del probs
            # Back to the native grid (nearest neighbour: every native pixel takes its block's class).
            classes = np.repeat(np.repeat(classes_c, f, axis=0), f, axis=1) if f > 1 else classes_c
            n0y, n0x = y0 * f, x0 * f
            ry0, ry1 = max(0, r0n - margin_n), min(plan.height, r0n + rn + margin_n)
            rx0, rx1 = max(0, c0n - margin_n), min(plan.width, c0n + cn + margin_n)
            classes = classes[ry0 - n0y:ry1 - n0y, rx0 - n0x:rx1 - n0x].copy()
            classes[~valid_native[ry0 - n0y:ry1 - n0y, rx0 - n0x:rx1 - n0x]] = NODATA
            if margin_n:
                classes = buffer_classes(classes, plan.buffer_px * plan.pixel_size_m, plan.pixel_size_m)
            core = np.ascontiguousarray(classes[r0n - ry0:r0n - ry0 + rn, c0n - rx0:c0n - rx0 + cn])
            values, counts = np.unique(core, return_counts=True)
            for v, n in zip(values, counts):
                self.counts[int(v)] = self.counts.get(int(v), 0) + int(n)
            yield ClassWindow(r0n, c0n, core)
        self.monitor.progress(100.0)

    def _read_box(self, by0: int, by1: int, bx0: int, bx1: int, cls: Tuple[int, int, int, int]):
        """Coarse (model bands, by1-by0, bx1-bx0) input of a box, read in native strips, and the native
        validity of the class region ``cls`` (coarse y0, y1, x0, x1, times f)."""
        plan, f = self.plan, self.plan.factor
        y0, y1, x0, x1 = cls
        nb = len(self.detector.model_bands)
        coarse = np.empty((nb, by1 - by0, bx1 - bx0), np.float32)
        valid = np.zeros(((y1 - y0) * f, (x1 - x0) * f), bool)
        col0, col1 = bx0 * f, min(plan.width, bx1 * f)
        strip = max(1, _READ_STRIP_PX // f)
        for cy in range(by0, by1, strip):
            cy1 = min(by1, cy + strip)
            row0, row1 = cy * f, min(plan.height, cy1 * f)
            native = self._read(row0, col0, row1 - row0, col1 - col0)
            coarse[:, cy - by0:cy1 - by0] = _block_mean(native, f)
            # native validity where this strip meets the class region
            vy0, vy1 = max(row0, y0 * f), min(row1, y1 * f)
            if vy0 < vy1:
                ok = np.all(np.isfinite(native[:, vy0 - row0:vy1 - row0]), axis=0)
                vx0, vx1 = x0 * f, min(col1, x1 * f)
                valid[vy0 - y0 * f:vy1 - y0 * f, 0:vx1 - vx0] = ok[:, vx0 - col0:vx1 - col0]
            del native
        return coarse, valid


def detect_scene(
    read_window: Callable[[int, int, int, int], np.ndarray],
    height: int,
    width: int,
    pixel_size_m: float,
    monitor: Optional[Monitor] = None,
    resolution_m: float = DETECTOR_RESOLUTION_M,
    window_px: Optional[int] = None,
    halo_px: Optional[int] = None,
    *,
    detector: Optional[CloudDetector] = None,
    product_level: str = "l1c",
    bands: Sequence[str] = SIX_BANDS,
    threads: Optional[int] = None,
    batch_size: Optional[int] = None,
    buffer_m: float = 0.0,
) -> SceneDetection:
    """Cloud / shadow classes of a whole scene, window by window (see the module notes).

    ``read_window(row0, col0, rows, cols)`` returns (C, rows, cols) float32 reflectance at the
    native resolution, channels in ``bands`` order (or the given ``detector``'s), nodata as NaN.
    ``pixel_size_m`` is the native pixel size; the detector runs at the nearest integer multiple of
    it to ``resolution_m`` (:func:`block_factor`). ``window_px`` (native, rounded to a multiple of
    the factor; default 1024 detector px) only bounds memory: the classes do not depend on it.
    ``halo_px`` (native) bounds the context read around each window (default: all the tiles need).
    ``buffer_m`` grows clouds and shadows (:func:`buffer_classes`), exactly across window edges.

    Returns a :class:`SceneDetection`: iterate it for :class:`ClassWindow` objects (uint8: 0 clear,
    1 cloud, 2 shadow, 255 nodata). Progress and cancellation go through ``monitor``
    (``monitor.check()`` raises :class:`~topoclear.engine.errors.Cancelled` between tile batches
    and reads). Detector errors (:class:`DetectorUnavailable`, bad bands) are raised here, before
    the first window.
    """
    if detector is None:
        detector = CloudDetector(product_level=product_level, bands=bands, threads=threads, batch_size=batch_size)
    if halo_px is not None and int(halo_px) < 0:
        raise InputError(f"halo_px must be >= 0, got {halo_px}")
    plan = plan_scene(height, width, pixel_size_m, resolution_m, window_px, detector.tile, detector.overlap_px,
                      buffer_m)
    return SceneDetection(read_window, plan, detector, monitor or SILENT, halo_px)


def buffer_classes(classes: np.ndarray, metres: float, pixel_size_m: float) -> np.ndarray:
    """Grow clouds and shadows by ``metres`` (Euclidean distance, converted to pixels of ``pixel_size_m``).

    Only clear pixels change: a clear pixel within the distance of a cloud becomes cloud; else,
    within the distance of a shadow, it becomes shadow (cloud over shadow where both buffers meet).
    Detected clouds and shadows keep their class, nodata (255) stays nodata and neither blocks nor
    seeds a buffer. Returns a new uint8 array. A distance under half a pixel changes nothing.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise InputError(f"classes must be a 2-D array, got shape {classes.shape}")
    if pixel_size_m <= 0:
        raise InputError(f"pixel_size_m must be positive, got {pixel_size_m}")
    if metres < 0:
        raise InputError(f"buffer distance must be >= 0 m, got {metres}")
    out = classes.astype(np.uint8, copy=True)
    radius = float(metres) / float(pixel_size_m)
    if radius < 0.5:
        return out
    clear = out == CLEAR
    for cls in (CLOUD, SHADOW):
        seeds = classes == cls
        if not seeds.any() or not clear.any():
            continue
        near = ndimage.distance_transform_edt(~seeds) <= radius
        grow = clear & near
        out[grow] = cls
        clear &= ~grow
    return out
