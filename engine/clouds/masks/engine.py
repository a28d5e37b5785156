"""The cloud and shadow mask engine: one Sentinel-2 scene and one mask method in, classes out.

Every tool that needs to know where the clouds are (the cloud mask tool, cloud removal, the
evaluation, and through :func:`open_scene_mask` the snow map and the dataset builder) gets its
classes here, as a uint8 raster of **0 clear, 1 cloud, 2 shadow, 255 nodata**, for the methods
of :mod:`.kinds`:

* ``"detector"``: the pretrained ukis-csmask networks (:mod:`.detector`), the Level-1C or the
  Level-2A model chosen from the product level (:func:`detector_level`), the 6-band model when
  B2, B3, B4, B8, B11, B12 are all there, else the 4-band one. The native grid is block-averaged
  to about 30 m (``resolution_m``; None = the native grid), the network runs in 256 px tiles
  blended across their overlap, and the classes come back to the native grid by nearest
  neighbour.
* ``"scl"``: the Sen2Cor scene classification (:mod:`.scl`): 8 and 9 cloud, 10 (cirrus) cloud
  when ``scl_cirrus``, 3 shadow when ``scl_shadow``, 0 nodata; the product's SCL band or the
  given raster, resampled by nearest neighbour.
* ``"computed"``: the DSen2-CR rules on Level-1C bands (:mod:`.rules`): cloud score >= 0.2,
  Zhai shadows with scene-wide thresholds (cloud wins where both).
* ``"raster"``: a mask raster the user gives, read with :func:`raster_classes`: **0 clear, 2
  shadow, any other value cloud, the raster's declared nodata (or NaN) nodata**; pixels outside
  the raster are nodata. TopoClear's own cloud masks (0/1/2/255, nodata 255) read back as they
  were written, and any binary mask (0 / non-zero, e.g. 0/1 or 0/255 without a declared nodata)
  reads as clear / cloud.
* ``"auto"`` (:func:`choose_method`): the given mask raster (as SCL when its name says SCL),
  else the product's SCL band, else the detector when ``onnxruntime`` and ``ukis-csmask`` are
  installed and the bands are there, else the DSen2-CR rules when the Level-1C bands are there,
  else none (an error for the cloud mask tool). The choice and why go to the log.

Pixels where the Sentinel-2 bands the method reads are nodata are nodata (255). An optional
**buffer** (``buffer_m``, metres) grows clouds and shadows over clear pixels
(:func:`~.detector_scene.buffer_classes`; cloud wins where both buffers meet), exactly across window
edges.

**Windows.** :meth:`SceneMask.classes` gives the classes of any window (row0, col0, rows, cols)
of the scene's grid. The rules, SCL and raster methods are local: each window is read with the
halo it needs and the result equals a whole-scene pass. The detector looks far (a 256 px tile
at 30 m is 7.7 km): :meth:`SceneMask.classes` runs it on the window grown by at least
:data:`DETECTOR_WINDOW_HALO` detector px (3.8 km at 30 m), starting on the whole scene's tile
lattice, which on the reference patch agrees with the whole-scene classes on all pixels; for many
windows of one scene call
:meth:`SceneMask.prepare` first: one whole-scene pass (every tile run once) into a temporary
class GeoTIFF, from which every later window is a plain read. :meth:`SceneMask.windows` iterates
the whole scene, :meth:`SceneMask.write` writes it. Memory is bounded by the window size, never by
the scene.

**Using it** (the snow map, the dataset builder, any script)::

    from topoclear.engine.clouds.masks.engine import CLOUD, SHADOW, open_scene_mask
    mask = open_scene_mask(product, grid, "auto", mask=raster_or_none, consumer="snow", monitor=monitor)
    if mask is not None:                        # None: no mask ("none", or "auto" found nothing)
        with mask:
            if mask.method.key == "detector":
                mask.prepare(monitor)           # one whole-scene pass; every window is then a read
            for window in windows:              # (row0, col0, rows, cols) or rasterio Windows of grid
                classes = mask.classes(window)  # uint8: 0 clear, 1 cloud, 2 shadow, 255 nodata

``mask.messages`` says what was chosen and why (also sent to ``monitor.message``).

Nothing here imports ``qgis``; ``onnxruntime`` is imported only when the detector runs.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ...errors import InputError
from ...io.atomic import AtomicRasterWriter
from ...io.raster import Grid, ThreadLocalDatasets, bounded_gdal_cache, check_band, nodata_to_nan, open_raster
from ...io.warp import check_coverage, warp_window
from ...progress import SILENT, Monitor
from ...sentinel2.bands import S2Product
from ...sentinel2.reader import BandReader
from .choice import (CLASS_NAMES, DETECTOR_BANDS, DETECTOR_BANDS_4, INSTALL_HELP, RULES_BANDS, MaskChoice,
                     choose_method, detector_level, detector_status, method_bands, pixel_size_metres, raster_classes,
                     scl_classes)
from .detector import CLEAR, CLOUD, DETECTOR_RESOLUTION_M, NODATA, SHADOW, CloudDetector, DetectorUnavailable
from .detector_scene import ClassWindow, block_factor, buffer_classes, detect_scene
from .kinds import AUTO, DETECTOR, NONE, RASTER, RULES, SCL
from .rules import CLOUD_SCORE_HALO, CLOUD_THRESHOLD, SHADOW_HALO, cloud_shadow_masks_l1c, shadow_thresholds

__all__ = [
    "CLEAR", "CLOUD", "SHADOW", "NODATA", "CLASS_NAMES", "DETECTOR_BANDS", "DETECTOR_BANDS_4", "RULES_BANDS",
    "INSTALL_HELP", "DETECTOR_WINDOW_HALO", "CLASS_CREATION_OPTIONS", "CLASS_DESCRIPTION",
    "detector_status", "detector_level", "pixel_size_metres", "raster_classes", "scl_classes",
    "MaskChoice", "choose_method", "method_bands", "SceneMask", "open_scene_mask", "relay",
]

#: Context (detector px) read around a window by :meth:`SceneMask.classes` when no whole-scene pass was made.
DETECTOR_WINDOW_HALO = 128
#: Window (native px) of the whole-scene pass of the local methods (rules, SCL, raster).
LOCAL_WINDOW_PX = 1024
#: GeoTIFF options of class rasters: tiled, deflate (a class raster compresses ~50 x).
CLASS_CREATION_OPTIONS = {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512", "COMPRESS": "DEFLATE",
                          "BIGTIFF": "IF_SAFER"}
CLASS_DESCRIPTION = "cloud mask: 0 clear, 1 cloud, 2 shadow, 255 nodata"

WindowLike = Union[Tuple[int, int, int, int], Window]


class _Relay(Monitor):
    """A monitor passing cancel (and progress, and messages through ``say``, when asked) on to another."""

    def __init__(self, inner: Monitor, say: Optional[Callable[[str], None]] = None, progress: bool = True,
                 messages: bool = True) -> None:
        super().__init__()
        self.inner, self.say, self.forward_progress, self.forward_messages = inner, say, progress, messages

    def progress(self, percent: float) -> None:
        if self.forward_progress:
            self.inner.progress(percent)

    def message(self, text: str) -> None:
        if self.forward_messages:
            (self.say or self.inner.message)(text)

    def cancelled(self) -> bool:
        return self.inner.cancelled()


def relay(monitor: Monitor, say: Optional[Callable[[str], None]] = None, progress: bool = True,
          messages: bool = True) -> Monitor:
    """A monitor forwarding cancel, progress (when ``progress``) and messages (to ``say``, else to
    ``monitor``; none when not ``messages``) to ``monitor``."""
    return _Relay(monitor, say, progress, messages)


def _window_tuple(window: WindowLike) -> Tuple[int, int, int, int]:
    if isinstance(window, Window):
        return int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    r, c, h, w = window
    return int(r), int(c), int(h), int(w)


def _reflect(start: int, size: int, n: int) -> np.ndarray:
    """Indices ``start .. start+size-1`` of an axis of ``n`` px, mirrored about the border pixels."""
    i = np.arange(start, start + size)
    if n <= 1:
        return np.zeros(size, np.int64)
    period = 2 * (n - 1)
    m = np.mod(i, period)
    return np.where(m < n, m, period - m).astype(np.int64)


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------
class SceneMask:
    """Cloud / shadow classes of one scene for one decided method (:class:`MaskChoice`), window by window.

    ``product``: the bands (:func:`~topoclear.engine.sentinel2.locate.locate_bands`); ``grid``: the grid the
    classes are wanted on (the scene's; any grid of the product works, e.g. a 20 m grid). Made by
    :func:`open_scene_mask`; close it (or use it as a context manager). Thread-safe: every thread reads
    through its own datasets. ``messages``: what was chosen and how it runs, for the log.
    """

    def __init__(self, product: S2Product, grid: Grid, choice: MaskChoice, *, buffer_m: float = 0.0,
                 scl_cirrus: bool = True, scl_shadow: bool = True,
                 resolution_m: Optional[float] = DETECTOR_RESOLUTION_M, threads: Optional[int] = None,
                 batch_size: Optional[int] = None, window_px: Optional[int] = None,
                 detectors: Optional[Dict[tuple, CloudDetector]] = None, monitor: Monitor = SILENT) -> None:
        if choice.key == AUTO.key:
            raise InputError("a SceneMask needs a decided method (see choose_method)")
        if buffer_m is None or not math.isfinite(float(buffer_m)) or float(buffer_m) < 0:
            raise InputError(f"cloud buffer must be a distance >= 0 m, got {buffer_m}")
        self.product = product
        self.grid = grid
        self.choice = choice
        self.method = choice.method
        self.height, self.width = int(grid.height), int(grid.width)
        self.buffer_m = float(buffer_m)
        self.scl_cirrus, self.scl_shadow = bool(scl_cirrus), bool(scl_shadow)
        self.monitor = monitor
        self.messages: List[str] = []
        self.pixel_m, pixel_note = pixel_size_metres(grid)
        self.buffer_px = self.buffer_m / self.pixel_m
        self.margin = int(math.ceil(self.buffer_px)) + 1 if self.buffer_px >= 0.5 else 0
        self.window_px = window_px
        self.detector: Optional[CloudDetector] = None
        self.provider: Optional[str] = None
        self.model: Optional[str] = None
        self.factor = 1
        self.last_run = None
        self._cache_path: Optional[str] = None
        self._cache_dir: Optional[str] = None
        self._datasets = ThreadLocalDatasets("cloud mask")
        self._local = threading.local()
        self._readers: List[BandReader] = []
        self._lock = threading.Lock()
        self.bands: Tuple[str, ...] = method_bands(choice.key, product)
        self._say(choice.describe())
        try:
            if choice.key == DETECTOR.key:
                self._open_detector(choice, resolution_m, threads, batch_size, detectors, pixel_note)
            elif choice.key == RULES.key:
                self._open_rules()
            elif choice.key in (SCL.key, RASTER.key):
                self._open_raster(choice)
            # nodata of the scene for the methods that read no reflectance band
            self._validity_band = None
            if not self.bands:
                self._validity_band = next((b for b in ("B2", "B3", "B4", "B8") if b in product.bands),
                                           next(iter(product.bands), None))
            if self.buffer_m:
                self._say(f"Buffer: clouds and shadows grown by {self.buffer_m:g} m ({self.buffer_px:.1f} px of "
                          f"{self.pixel_m:.3g} m) over clear pixels; cloud wins where both buffers meet")
        except Exception:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.messages.append(text)
        self.monitor.message(text)

    def _open_detector(self, choice, resolution_m, threads, batch_size, detectors, pixel_note) -> None:
        key = (choice.level or "l1c", self.bands, threads, batch_size)
        self.detector = detectors.get(key) if detectors is not None else None
        if self.detector is None:
            self.detector = CloudDetector(product_level=key[0], bands=self.bands, threads=threads,
                                          batch_size=batch_size)
            if detectors is not None:
                detectors[key] = self.detector
        self.provider = self.detector.provider
        self.model = self.detector.model_path.stem
        self.resolution_m = float(resolution_m) if resolution_m else self.pixel_m
        self.factor = block_factor(self.pixel_m, self.resolution_m)
        grid_text = (f"{self.pixel_m:.3g} m input block-averaged {self.factor}x{self.factor} to "
                     f"{self.factor * self.pixel_m:.3g} m" if self.factor > 1
                     else f"run at the input's own {self.pixel_m:.3g} m")
        where = self.provider
        if self.provider != "CUDAExecutionProvider":
            where += " (this onnxruntime has no CUDA provider; onnxruntime-gpu adds it)"
        self._say(f"Detector: {self.model} (version {self.detector.model_version}) on {where}, "
                  f"{self.detector.threads} thread(s), batch {self.detector.batch_size}; {grid_text} "
                  f"({pixel_note}); classes back to the native grid by nearest neighbour")

    def _open_rules(self) -> None:
        sample = self._overview(("B2", "B8", "B11"))
        valid = np.all([np.isfinite(v) for v in sample.values()], axis=0)
        if not valid.any():
            raise InputError("the Sentinel-2 input holds only nodata or NaN")
        filled = {k: np.where(valid, v, 0.0) for k, v in sample.items()}
        self.thresholds = shadow_thresholds(filled, valid=valid)
        self._say(f"DSen2-CR rules: cloud score >= {CLOUD_THRESHOLD:g}; Zhai 2018 shadows with scene thresholds "
                  f"CSI < {self.thresholds[0]:.4f}, B2 < {self.thresholds[1]:.4f}")

    def _open_raster(self, choice) -> None:
        with open_raster(choice.raster, "cloud mask") as ds:
            check_band(ds, choice.band, "cloud mask")
            check_coverage(Grid.of(ds), self.grid, "Cloud mask", choice.raster, "refuse")
        if choice.key == SCL.key:
            self._say("SCL classes: 8, 9 cloud" + (", 10 cirrus as cloud" if self.scl_cirrus else "; 10 (cirrus) clear")
                      + ("; 3 shadow" if self.scl_shadow else "; 3 (shadow) clear") + "; 0 nodata; nearest-neighbour "
                      "resampling")

    def _overview(self, names: Sequence[str], max_pixels: int = 512 * 512) -> Dict[str, np.ndarray]:
        """Decimated reflectance (0-1, nearest) of whole bands, for scene statistics."""
        factor = max(1.0, math.sqrt(self.width * self.height / max_pixels))
        shape = (max(1, int(self.height / factor)), max(1, int(self.width / factor)))
        out = {}
        for name in names:
            src = self.product.bands[name]
            with open_raster(src.path, "Sentinel-2 band") as ds:
                values = ds.read(src.index, out_shape=shape, resampling=Resampling.nearest, out_dtype=np.float32)
            values = nodata_to_nan(values, src.nodata)
            values[~np.isfinite(values)] = np.nan
            out[name] = (values + np.float32(src.offset)) / np.float32(src.quantification)
        return out

    # -- reading --------------------------------------------------------------------------------
    def _reader(self) -> BandReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            names = list(self.bands) or ([self._validity_band] if self._validity_band else [])
            reader = BandReader(self.product, names, grid=self.grid)
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    def reflectance(self, names: Sequence[str], window: WindowLike) -> np.ndarray:
        """(len(names), rows, cols) float32 reflectance (0-1, offsets applied) of a window inside the scene; NaN =
        nodata."""
        r, c, h, w = _window_tuple(window)
        reader = self._reader()
        out = np.empty((len(names), h, w), np.float32)
        win = Window(c, r, w, h)
        for k, name in enumerate(names):
            out[k] = reader.read(name, win)
        return out

    def _reflected(self, names: Sequence[str], r: int, c: int, h: int, w: int) -> np.ndarray:
        """Reflectance of a window that may reach outside the scene, mirrored about the border."""
        rows, cols = _reflect(r, h, self.height), _reflect(c, w, self.width)
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        data = self.reflectance(names, (r0, c0, r1 - r0, c1 - c0))
        rows, cols = rows - r0, cols - c0
        if rows.size == data.shape[1] and cols.size == data.shape[2] and (rows == np.arange(rows.size)).all() \
                and (cols == np.arange(cols.size)).all():
            return data
        return data[:, rows[:, None], cols[None, :]]

    def _clip(self, r: int, c: int, h: int, w: int) -> Tuple[int, int, int, int]:
        r0, c0 = max(0, r), max(0, c)
        r1, c1 = min(self.height, r + h), min(self.width, c + w)
        return r0, c0, max(0, r1 - r0), max(0, c1 - c0)

    # -- classes --------------------------------------------------------------------------------
    def classes(self, window: WindowLike) -> np.ndarray:
        """uint8 (rows, cols) classes of ``window`` = (row0, col0, rows, cols) (or a rasterio Window) of the
        grid: 0 clear, 1 cloud, 2 shadow, 255 nodata (also for the part of a window outside the scene)."""
        r, c, h, w = _window_tuple(window)
        out = np.full((h, w), NODATA, np.uint8)
        inner = self._clip(r, c, h, w)
        if inner[2] == 0 or inner[3] == 0:
            return out
        ir, ic, ih, iw = inner
        if self._cache_path is not None:
            ds = self._datasets.get(self._cache_path)
            values = ds.read(1, window=Window(ic, ir, iw, ih))
        else:
            m = self.margin
            box = self._clip(ir - m, ic - m, ih + 2 * m, iw + 2 * m)
            values = self._raw(box)
            if m:
                values = buffer_classes(values, self.buffer_m, self.pixel_m)
            values = values[ir - box[0]:ir - box[0] + ih, ic - box[1]:ic - box[1] + iw]
        out[ir - r:ir - r + ih, ic - c:ic - c + iw] = values
        return out

    def cloud_shadow(self, window: WindowLike) -> np.ndarray:
        """Boolean (rows, cols): True where the classes are cloud or shadow."""
        cls = self.classes(window)
        return (cls == CLOUD) | (cls == SHADOW)

    def _raw(self, box: Tuple[int, int, int, int]) -> np.ndarray:
        """Unbuffered classes of a box inside the scene."""
        key = self.method.key
        if key == DETECTOR.key:
            return self._detector_box(box)
        if key == RULES.key:
            return self._rules_box(box)
        if key in (SCL.key, RASTER.key):
            values = warp_window(self._datasets.get(self.choice.raster), self.choice.band, self.grid,
                                 Window(box[1], box[0], box[3], box[2]), Resampling.nearest)
            cls = (scl_classes(values, self.scl_cirrus, self.scl_shadow) if key == SCL.key
                   else raster_classes(values))
        else:
            cls = np.zeros(box[2:], np.uint8)
        if self._validity_band is not None:
            valid = np.isfinite(self.reflectance([self._validity_band], box)[0])
            cls[~valid] = NODATA
        return cls

    def _rules_box(self, box) -> np.ndarray:
        r, c, h, w = box
        halo = CLOUD_SCORE_HALO + SHADOW_HALO
        data = self._reflected(RULES_BANDS, r - halo, c - halo, h + 2 * halo, w + 2 * halo)
        nodata = ~np.all(np.isfinite(data[:, halo:halo + h, halo:halo + w]), axis=0)
        bands = {name: np.nan_to_num(data[k], nan=0.0) for k, name in enumerate(RULES_BANDS)}
        del data
        masks = cloud_shadow_masks_l1c(bands, thresholds=self.thresholds)
        cloud = masks["cloud"][halo:halo + h, halo:halo + w]
        shadow = masks["shadow"][halo:halo + h, halo:halo + w]
        out = np.zeros((h, w), np.uint8)
        out[shadow] = SHADOW
        out[cloud] = CLOUD
        out[nodata] = NODATA
        return out

    def _detector_box(self, box) -> np.ndarray:
        """The detector on ``box`` grown by at least :data:`DETECTOR_WINDOW_HALO` detector px, its start on the
        whole scene's tile lattice (so its tiles are the scene's tiles, and their blocks the scene's blocks)."""
        r, c, h, w = box
        f = self.factor
        halo = DETECTOR_WINDOW_HALO * f
        step = (self.detector.tile - self.detector.overlap_px) * f
        r0, c0 = max(0, r - halo) // step * step, max(0, c - halo) // step * step
        r1, c1 = min(self.height, r + h + halo), min(self.width, c + w + halo)
        hh, ww = r1 - r0, c1 - c0
        run = detect_scene(lambda a, b, n, m: self.reflectance(self.bands, (r0 + a, c0 + b, n, m)), hh, ww,
                           self.pixel_m, resolution_m=self.resolution_m, window_px=max(hh, ww) + f,
                           detector=self.detector, monitor=_Relay(self.monitor, progress=False, messages=False))
        out = np.full((hh, ww), NODATA, np.uint8)
        for cw in run:
            out[cw.row0:cw.row0 + cw.rows, cw.col0:cw.col0 + cw.cols] = cw.classes
        return out[r - r0:r - r0 + h, c - c0:c - c0 + w]

    # -- whole scene ----------------------------------------------------------------------------
    def windows(self, monitor: Optional[Monitor] = None, window_px: Optional[int] = None) -> Iterator[ClassWindow]:
        """Every window of the scene (row-major), as :class:`~.detector.ClassWindow` (buffer applied).

        The detector makes one pass in which every tile runs once; the local methods compute windows of
        ``window_px`` (default 1024) px on two threads. Progress and cancel through ``monitor``.
        """
        monitor = monitor or self.monitor
        if self._cache_path is None and self.method.key == DETECTOR.key:
            run = detect_scene(lambda a, b, n, m: self.reflectance(self.bands, (a, b, n, m)), self.height,
                               self.width, self.pixel_m, monitor=_Relay(monitor, say=self._say),
                               resolution_m=self.resolution_m,
                               window_px=window_px or self.window_px, detector=self.detector, buffer_m=self.buffer_m)
            self.last_run = run
            yield from run
            return
        size = int(window_px or self.window_px or LOCAL_WINDOW_PX)
        boxes = [(r, c, min(size, self.height - r), min(size, self.width - c))
                 for r in range(0, self.height, size) for c in range(0, self.width, size)]
        total = max(1, len(boxes))
        done = 0
        workers = 1 if self._cache_path is not None else 2
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topoclear-mask") as pool:
            pending: deque = deque()
            try:
                for box in boxes:
                    monitor.check()
                    pending.append((box, pool.submit(self.classes, box)))
                    while len(pending) > workers:
                        b, future = pending.popleft()
                        yield ClassWindow(b[0], b[1], future.result())
                        done += 1
                        monitor.progress(100.0 * done / total)
                while pending:
                    b, future = pending.popleft()
                    yield ClassWindow(b[0], b[1], future.result())
                    done += 1
                    monitor.progress(100.0 * done / total)
            finally:
                for _, future in pending:
                    future.cancel()

    def write(self, path: str, monitor: Optional[Monitor] = None, tags: Optional[Dict[str, str]] = None
              ) -> Dict[int, int]:
        """Write the whole scene's classes as a Byte GeoTIFF (nodata 255, tiled, deflate) through an atomic
        writer; returns the pixel count of each class."""
        counts = {CLEAR: 0, CLOUD: 0, SHADOW: 0, NODATA: 0}
        with bounded_gdal_cache(), AtomicRasterWriter(path, self.grid, 1, "uint8", nodata=NODATA,
                                                      descriptions=[CLASS_DESCRIPTION],
                                                      creation_options=CLASS_CREATION_OPTIONS) as dst:
            for cw in self.windows(monitor):
                dst.write(cw.classes[None], window=Window(cw.col0, cw.row0, cw.cols, cw.rows))
                values, n = np.unique(cw.classes, return_counts=True)
                for v, k in zip(values, n):
                    counts[int(v)] = counts.get(int(v), 0) + int(k)
            dst.update_tags(TOPOCLEAR_CLASSES="0 clear, 1 cloud, 2 shadow, 255 nodata",
                            TOPOCLEAR_MASK_METHOD=self.method.key, **(tags or {}))
        return counts

    def prepare(self, monitor: Optional[Monitor] = None, folder: Optional[str] = None) -> "SceneMask":
        """One whole-scene pass into a temporary class GeoTIFF (in ``folder``, default the system's temporary
        folder; removed by :meth:`close`): every later :meth:`classes` is a plain read of it. Worth it for the
        detector when many windows are asked (local methods compute windows as fast as they read them)."""
        if self._cache_path is not None:
            return self
        self._cache_dir = tempfile.mkdtemp(prefix="topoclear-cloudmask-", dir=folder)
        path = os.path.join(self._cache_dir, "classes.tif")
        profile = dict(driver="GTiff", width=self.width, height=self.height, count=1, dtype="uint8",
                       crs=self.grid.crs, transform=self.grid.transform, nodata=NODATA, **CLASS_CREATION_OPTIONS)
        try:
            with bounded_gdal_cache(), rasterio.open(path, "w", **profile) as dst:
                for cw in self.windows(monitor):
                    dst.write(cw.classes[None], window=Window(cw.col0, cw.row0, cw.cols, cw.rows))
        except BaseException:
            self._remove_cache()
            raise
        self._cache_path = path
        return self

    @property
    def cache_path(self) -> Optional[str]:
        """The temporary class GeoTIFF of :meth:`prepare` (None before it)."""
        return self._cache_path

    def _remove_cache(self) -> None:
        if self._cache_dir:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
        self._cache_dir = self._cache_path = None

    def summary(self) -> str:
        return "\n".join(self.messages)

    def close(self) -> None:
        self._datasets.close()
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers = []
        self._local = threading.local()
        self._remove_cache()

    def __enter__(self) -> "SceneMask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_scene_mask(product: S2Product, grid: Grid, method: str = AUTO.key, *, mask: Optional[str] = None,
                    mask_band: int = 1, consumer: str = "cloudmask", level: Optional[str] = None,
                    buffer_m: float = 0.0, scl_cirrus: bool = True, scl_shadow: bool = True,
                    resolution_m: Optional[float] = DETECTOR_RESOLUTION_M, threads: Optional[int] = None,
                    batch_size: Optional[int] = None, window_px: Optional[int] = None,
                    detectors: Optional[Dict[tuple, CloudDetector]] = None,
                    monitor: Monitor = SILENT) -> Optional[SceneMask]:
    """The :class:`SceneMask` of ``product`` on ``grid`` for ``method`` (:func:`choose_method`); None when the
    method is (or ``"auto"`` comes to) none. With ``"auto"``, a detector that is installed but cannot start
    (a broken onnxruntime) gives way to the next method, and the log says why.

    ``detectors``: a dict kept by the caller across scenes (many patches): the detector sessions are made
    once and reused from it (loading a model takes about a second)."""
    choice = choose_method(product, method, mask, mask_band, consumer, level)
    options = dict(buffer_m=buffer_m, scl_cirrus=scl_cirrus, scl_shadow=scl_shadow, resolution_m=resolution_m,
                   threads=threads, batch_size=batch_size, window_px=window_px, detectors=detectors,
                   monitor=monitor)
    if choice.key == NONE.key:
        monitor.message(choice.describe())
        return None
    try:
        return SceneMask(product, grid, choice, **options)
    except DetectorUnavailable as exc:
        if choice.asked != AUTO.key:
            raise
        choice = choose_method(product, method, mask, mask_band, consumer, level, detector_problem=str(exc))
        if choice.key == NONE.key:
            monitor.message(choice.describe())
            return None
        return SceneMask(product, grid, choice, **options)
