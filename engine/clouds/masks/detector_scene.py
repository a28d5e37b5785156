"""The pretrained cloud detector (:mod:`.detector`) over whole scenes, window by window.

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

Nothing here imports ``qgis``; ``onnxruntime`` is imported when a
:class:`~.detector.CloudDetector` is made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...progress import SILENT, Monitor
from .detector import (CLEAR, CLOUD, DETECTOR_RESOLUTION_M, NODATA, SHADOW, SIX_BANDS, CloudDetector, Lattice,
                       blend_tiles, probabilities_to_classes)

__all__ = ["READ_STRIP_PX", "ClassWindow", "ScenePlan", "SceneDetection", "block_factor", "plan_scene",
           "detect_scene", "buffer_classes"]

READ_STRIP_PX = 512  # native rows per read_window call inside a window


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
    ly, lx = Lattice(coarse[0], tile, overlap_px), Lattice(coarse[1], tile, overlap_px)
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
        ly, lx = Lattice(hc, t, det.overlap_px), Lattice(wc, t, det.overlap_px)
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
                cache.update(det.run_tiles(jobs, self.monitor, done))
            del coarse
            self.peak_cache_tiles = max(self.peak_cache_tiles, len(cache))
            probs = blend_tiles(cache, ly, lx, (y0, y1), (x0, x1), det.weights, det.classes)
            for k in keys:
                uses[k] -= 1
                if uses[k] == 0:
                    del cache[k]
            classes_c = probabilities_to_classes(probs)
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
        strip = max(1, READ_STRIP_PX // f)
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
