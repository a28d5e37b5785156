"""Cloud removal over whole Sentinel-2 scenes with any registered network.

:func:`remove_clouds` runs a network (an ``nn.Module`` built by
:func:`topoclear.models.build_model`, trained or not) over a scene of any size:

1. **Inputs.** The Sentinel-2 bands the network needs are found with
   :func:`topoclear.engine.sentinel2.bands.locate_bands` (a band stack, separate band files or a
   SAFE folder; explicit band choices override the detection) and converted to reflectance x
   10000 with the product's radiometric offsets. Sentinel-1 (VV, VH in dB) and the terrain
   stack derived from a DEM are resampled onto the Sentinel-2 grid window by window
   (:mod:`topoclear.engine.clouds.inputs`); 20 m bands of separate band files are brought to 10 m
   by nearest neighbour, as CRT-UNet does.
2. **Tiles.** The scene is cut into overlapping tiles (:mod:`topoclear.engine.clouds.tiling`), the
   part of a tile outside the scene filled by reflection, each input scaled with the network's
   scaling (:mod:`topoclear.models.scaling`), tiles batched and run on the chosen device, the
   predictions blended with smooth weights (or margin-cropped) into the output. Tiles whose
   Sentinel-2 pixels are all nodata are skipped.
3. **Output.** One GeoTIFF with the bands, grid, data type and nodata of the input: predicted
   bands converted back to the input's digital numbers, bands the network does not predict
   copied from the input, band descriptions naming each band and what happened to it. With
   *keep clear pixels* and a cloud mask, every pixel the mask calls clear is copied from the
   input (the reproduction error there is zero). Written window by window through
   :class:`~topoclear.engine.io.raster.AtomicRasterWriter`: an error or a cancel leaves no file.

Memory does not grow with the scene: inputs are read per tile by a few reader threads, at
most ``prefetch`` batches ahead, and the blender keeps only the overlap strips still waiting
for their next tile (a few MB per 10 000 px of scene width).

**Devices.** ``"auto"`` (the first CUDA GPU, else the CPU), ``"cpu"``, ``"cuda"`` or
``"cuda:N"``; the device used is reported. On CUDA, mixed precision (float16 autocast) is
used when it keeps the result within :data:`AMP_TOLERANCE` (reflectance) of float32: the first
batch runs both ways and AMP stays on only if the largest difference is within the tolerance.
On CUDA out-of-memory the batch is halved (down to one tile), then the tile size is halved and
the scene restarted, and the run continues; both are reported.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ...models.scaling import scale_s1, scale_s2, scale_terrain, unscale_s2
from .inputs import COMPUTED_MASK_BANDS, MASK_KINDS, MaskSource, S1Source, TerrainSource, padded_read
from ..io.raster import ThreadLocalDatasets
from ..errors import InputError
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid, bounded_gdal_cache, open_raster
from ...models.bands import S2_BANDS_L1C
from ..sentinel2.bands import Override
from ..sentinel2.reader import BandReader
from ..sentinel2.locate import locate_bands
from ..sentinel2.metadata import SunAngles
from .tiling import Blender, TilePlan, round_up, take, tile_source

#: Largest difference (reflectance, 0-1) between a mixed-precision and a float32 prediction for
#: which mixed precision stays on (checked on the first batch of every run).
AMP_TOLERANCE = 0.005
#: Default tile sizes (px) per model family and device type (see :func:`default_tiling`).
DEFAULT_TILE = {("dsen2cr", "cuda"): 512, ("dsen2cr", "cpu"): 256, ("unet", "cuda"): 2048, ("unet", "cpu"): 1024,
                ("other", "cuda"): 1024, ("other", "cpu"): 512}
#: Overlap (blended) of networks whose receptive field is not known exactly (the GANs).
DEFAULT_OVERLAP = 128
#: Default batch sizes.
DEFAULT_BATCH = {"cuda": 8, "cpu": 1}
AMP_MODES = ("auto", "on", "off")


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def select_device(name: Optional[str] = "auto") -> Tuple[Any, str]:
    """``(torch.device, description)`` for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    import torch

    text = (name or "auto").strip().lower()
    if text in ("auto", "automatic", ""):
        text = "cuda:0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"
    if text.startswith("cuda") or text.startswith("gpu"):
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise InputError(f"device {name!r}: PyTorch {torch.__version__} ({built}) sees no CUDA GPU; "
                             "choose 'auto' or 'cpu'")
        index = 0
        if ":" in text:
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise InputError(f"device {name!r}: expected cuda:N with a number N") from None
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            names = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(count))
            raise InputError(f"device {name!r}: there is no CUDA device {index}; available: {names}")
        props = torch.cuda.get_device_properties(index)
        return torch.device(f"cuda:{index}"), f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    raise InputError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(
            exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class TileTooLarge(Exception):
    """A single tile does not fit on the device: the tile size must shrink."""


class ModelRunner:
    """Runs a network on numpy batches: device, mixed precision, out-of-memory backoff.

    ``runner(batch)`` takes ``{"s2": (N, C, H, W), "s1": ..., "terrain": ...}`` float32 arrays
    (already scaled) and returns the prediction (N, C_out, H, W) as float32 numpy.
    """

    def __init__(self, model, device="auto", amp: str = "auto", batch_size: Optional[int] = None,
                 scaling: str = "unit", monitor: Monitor = SILENT) -> None:
        import torch

        if amp not in AMP_MODES:
            raise InputError(f"mixed precision {amp!r} is not one of {', '.join(AMP_MODES)}")
        if isinstance(device, str) or device is None:
            self.device, self.device_name = select_device(device)
        else:
            self.device, self.device_name = torch.device(device), str(device)
        self.cuda = self.device.type == "cuda"
        self.model = model.to(self.device).eval()
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = max(1, int(batch_size or DEFAULT_BATCH[self.device.type if self.cuda else "cpu"]))
        self.initial_batch_size = self.batch_size
        self.amp_mode = amp
        self.amp = self.cuda and amp in ("auto", "on")
        self._amp_checked = amp != "auto"
        self.amp_difference: Optional[float] = None
        self.scaling = scaling
        self.monitor = monitor
        self.messages: List[str] = []

    def _say(self, text: str) -> None:
        self.messages.append(text)
        self.monitor.message(text)

    def _forward(self, batch: Dict[str, np.ndarray], amp: bool) -> np.ndarray:
        import torch

        inputs = {}
        for key, array in batch.items():
            t = torch.from_numpy(np.ascontiguousarray(array))
            if self.cuda:
                t = t.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            inputs[key] = t
        with torch.inference_mode():
            if amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.model(**inputs)
            else:
                out = self.model(**inputs)
            return out.float().cpu().numpy()

    def _check_amp(self, batch: Dict[str, np.ndarray]) -> None:
        full = self._forward(batch, False)
        half = self._forward(batch, True)
        diff = np.abs(unscale_s2(half, self.scaling) - unscale_s2(full, self.scaling)) / 10000.0
        self.amp_difference = float(np.nanmax(diff)) if diff.size else 0.0
        self._amp_checked = True
        if not np.isfinite(self.amp_difference) or self.amp_difference > AMP_TOLERANCE:
            self.amp = False
            self._say(f"Mixed precision: float16 differs from float32 by up to {self.amp_difference:.4g} reflectance "
                      f"(tolerance {AMP_TOLERANCE}); running in float32")
        else:
            self._say(f"Mixed precision: float16 autocast, within {self.amp_difference:.2g} reflectance of float32 "
                      f"on the first batch (tolerance {AMP_TOLERANCE})")

    def __call__(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(batch.values())).shape[0]
        if self.amp and not self._amp_checked:
            self._run_guarded(lambda: self._check_amp({k: v[:1] for k, v in batch.items()}))
        outputs = []
        start = 0
        while start < n:
            size = min(self.batch_size, n - start)
            part = {k: v[start:start + size] for k, v in batch.items()}
            try:
                outputs.append(self._forward(part, self.amp))
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not _is_oom(exc):
                    raise
                self._free()
                if size == 1:
                    raise TileTooLarge(str(exc)) from exc
                self.batch_size = max(1, size // 2)
                self._say(f"Out of {self.device.type.upper()} memory with {size} tiles per batch; "
                          f"continuing with {self.batch_size}")
                continue
            start += size
        return np.concatenate(outputs, axis=0)

    def _run_guarded(self, call) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
            self._free()
            raise TileTooLarge(str(exc)) from exc

    def _free(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# the Sentinel-2 scene
# --------------------------------------------------------------------------------------------
class S2Scene:
    """The Sentinel-2 input: its bands, the output grid and band list, windowed reads.

    A band stack in one file gives an output with all of that file's bands (those the network
    does not predict are copied). Separate band files or a SAFE folder give an output with the
    network's bands on the finest grid among them.
    """

    def __init__(self, source: str, model_bands: Sequence[str], overrides: Optional[Dict[str, Override]] = None,
                 offset: Optional[float] = None, quantification: Optional[float] = None,
                 model_title: str = "the model", extra_bands: Sequence[str] = ()) -> None:
        self.source = str(source)
        self.model_bands = tuple(model_bands)
        wanted = list(dict.fromkeys(list(self.model_bands) + list(extra_bands)))
        optional = [b for b in S2_BANDS_L1C if b not in wanted]
        try:
            product = locate_bands(source, names=wanted, overrides=overrides, offset=offset,
                                   quantification=quantification, preferred_resolutions=(10, 20, 60),
                                   optional=optional)
        except InputError as exc:
            raise InputError(f"{model_title} needs the Sentinel-2 bands {', '.join(self.model_bands)}"
                             f"{' (and ' + ', '.join(extra_bands) + ' for the cloud mask)' if extra_bands else ''}: "
                             f"{exc}") from exc
        self.product = product
        self.bands = product.bands
        paths = {src.path for src in product.bands.values()}
        self.stack_path: Optional[str] = None
        if len(paths) == 1:
            path = next(iter(paths))
            with open_raster(path, "Sentinel-2 input") as ds:
                if ds.count >= len(self.model_bands):
                    self.stack_path = path
        if self.stack_path is not None:
            with open_raster(self.stack_path, "Sentinel-2 input") as ds:
                self.grid = Grid.of(ds)
                count = ds.count
                self.dtype = np.dtype(ds.dtypes[0]).name
                self.declared_nodata = ds.nodata
                self.input_descriptions = list(ds.descriptions)
            by_index = {src.index: name for name, src in product.bands.items()}
            self.output_names = [by_index.get(i, f"band {i}") for i in range(1, count + 1)]
            self.output_index = list(range(1, count + 1))
        else:
            names = [b for b in self.model_bands]
            with BandReader(product, names, resolution="finest") as reader:
                self.grid = reader.grid
            first = product.bands[names[0]]
            with open_raster(first.path, "Sentinel-2 band") as ds:
                self.dtype = np.dtype(ds.dtypes[first.index - 1]).name
                self.declared_nodata = ds.nodatavals[first.index - 1]
            self.output_names = names
            self.output_index = []
            self.input_descriptions = [None] * len(names)
        if self.grid.crs is None:
            raise InputError(f"Sentinel-2 input {self.source} has no coordinate reference system")
        # nodata written in invalid pixels: the declared value, else Sentinel-2's DN 0 (NaN for floats)
        kind = np.dtype(self.dtype).kind
        if self.declared_nodata is not None:
            self.fill_value = self.declared_nodata
        else:
            self.fill_value = np.nan if kind == "f" else 0
        self.height, self.width = self.grid.height, self.grid.width
        self._datasets = ThreadLocalDatasets("Sentinel-2 input")
        self._readers: Dict[int, BandReader] = {}
        self._lock = threading.Lock()

    # -- descriptions ------------------------------------------------------------------------
    def describe(self) -> str:
        return self.product.describe()

    def model_band_output_index(self) -> List[int]:
        """Position (0-based) of each network band in the output band list."""
        if self.stack_path is not None:
            return [self.bands[b].index - 1 for b in self.model_bands]
        return [self.output_names.index(b) for b in self.model_bands]

    # -- reads -------------------------------------------------------------------------------
    def _band_reader(self) -> BandReader:
        key = threading.get_ident()
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = BandReader(self.product, list(self.bands), grid=self.grid)
            return reader

    def _nodata(self, name: str) -> Optional[float]:
        return self.bands[name].nodata

    def read_reflectance(self, names: Sequence[str], window: Tuple[int, int, int, int]) -> np.ndarray:
        """(len(names), rows, cols) float32 reflectance x 10000 (offsets applied); NaN = nodata."""
        rows, cols = window[2], window[3]
        win = Window(window[1], window[0], cols, rows)
        out = np.empty((len(names), rows, cols), np.float32)
        if self.stack_path is not None:
            ds = self._datasets.get(self.stack_path)
            indexes = [self.bands[n].index for n in names]
            data = ds.read(indexes, window=win, out_dtype=np.float32)
            for k, name in enumerate(names):
                src = self.bands[name]
                values = data[k]
                bad = ~np.isfinite(values)
                if src.nodata is not None and not (isinstance(src.nodata, float) and math.isnan(src.nodata)):
                    bad |= values == np.float32(src.nodata)
                out[k] = (values + np.float32(src.offset)) * np.float32(10000.0 / src.quantification)
                out[k][bad] = np.nan
            return out
        reader = self._band_reader()
        for k, name in enumerate(names):
            src = self.bands[name]
            values = reader.read_dn(name, win)  # NaN = nodata
            out[k] = (values + np.float32(src.offset)) * np.float32(10000.0 / src.quantification)
        return out

    def read_output_raw(self, window: Tuple[int, int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """The input's values of every output band ``(n, rows, cols)`` in the output data type, and validity."""
        rows, cols = window[2], window[3]
        win = Window(window[1], window[0], cols, rows)
        if self.stack_path is not None:
            ds = self._datasets.get(self.stack_path)
            raw = ds.read(window=win)
            valid = np.ones(raw.shape, bool)
            if np.dtype(self.dtype).kind == "f":
                valid &= np.isfinite(raw)
            for i, name in enumerate(self.output_names):
                src = self.bands.get(name)
                nod = src.nodata if src is not None else ds.nodatavals[i]
                if nod is not None and not (isinstance(nod, float) and math.isnan(nod)):
                    valid[i] &= raw[i] != np.asarray(nod, dtype=raw.dtype)
            return raw.astype(self.dtype, copy=False), valid
        reader = self._band_reader()
        raw = np.empty((len(self.output_names), rows, cols), self.dtype)
        valid = np.empty(raw.shape, bool)
        for k, name in enumerate(self.output_names):
            values = reader.read_dn(name, win)
            valid[k] = np.isfinite(values)
            raw[k] = np.where(valid[k], values, 0).astype(self.dtype)
        return raw, valid

    def any_valid(self, names: Sequence[str], max_pixels: int = 256 * 256) -> bool:
        """Whether a decimated look at the bands finds a pixel valid in all of them."""
        valid = None
        for name in names:
            band = np.isfinite(self.overview([name], max_pixels)[name])
            valid = band if valid is None else valid & band
        return bool(valid is not None and valid.any())

    def overview(self, names: Sequence[str], max_pixels: int = 512 * 512) -> Dict[str, np.ndarray]:
        """Decimated reflectance (0-1) of whole bands (nearest), for scene statistics."""
        factor = max(1.0, math.sqrt(self.width * self.height / max_pixels))
        shape = (max(1, int(self.height / factor)), max(1, int(self.width / factor)))
        out = {}
        for name in names:
            src = self.bands[name]
            with open_raster(src.path, "Sentinel-2 band") as ds:
                values = ds.read(src.index, out_shape=shape, resampling=Resampling.nearest, out_dtype=np.float32)
            bad = ~np.isfinite(values)
            if src.nodata is not None and not (isinstance(src.nodata, float) and math.isnan(src.nodata)):
                bad |= values == np.float32(src.nodata)
            values = (values + np.float32(src.offset)) / np.float32(src.quantification)
            values[bad] = np.nan
            out[name] = values
        return out

    def close(self) -> None:
        self._datasets.close()
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers = {}


# --------------------------------------------------------------------------------------------
# options and report
# --------------------------------------------------------------------------------------------
@dataclass
class InferenceOptions:
    """How to run a network over a scene (None: the model's default).

    tile / overlap: px (rounded up to the model's size multiple); mode: ``"blend"`` or ``"crop"``
    (:mod:`topoclear.engine.clouds.tiling`); batch_size: tiles per batch; device: ``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``; amp: ``"auto"`` (checked against float32), ``"on"``, ``"off"``;
    keep_clear: copy the input where the cloud mask says clear; policy: ``"refuse"`` or
    ``"fill"`` for auxiliary inputs covering only part of the scene; workers: reader threads;
    prefetch: batches read ahead.
    """

    tile: Optional[int] = None
    overlap: Optional[int] = None
    mode: Optional[str] = None
    batch_size: Optional[int] = None
    device: str = "auto"
    amp: str = "auto"
    keep_clear: bool = True
    policy: str = "refuse"
    workers: Optional[int] = None
    prefetch: int = 2


@dataclass
class CloudRemovalReport:
    """What a run did (all figures for the log)."""

    output: str
    model: str
    device: str
    amp: bool
    amp_difference: Optional[float]
    tile: Tuple[int, int]
    overlap: int
    mode: str
    batch_size: int
    tiles: int
    tiles_skipped: int
    width: int
    height: int
    valid_pixels: int
    cloud_pixels: Optional[int]
    kept_pixels: int
    seconds: float
    s1_filled: Optional[float] = None
    terrain_filled: Optional[float] = None
    messages: List[str] = field(default_factory=list)
    peak_device_memory: Optional[int] = None
    blender_peak_bytes: int = 0

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)

    def summary(self) -> str:
        lines = [f"Cloud removal with {self.model} on {self.device}"
                 + (f", mixed precision (float16, within {self.amp_difference:.2g} of float32)" if self.amp else ""),
                 f"  {self.width}x{self.height} px in {self.seconds:.1f} s ({self.megapixels_per_second:.3f} Mpx/s); "
                 f"{self.tiles} tiles of {self.tile[0]}x{self.tile[1]} px ({self.tiles_skipped} all-nodata skipped), "
                 f"overlap {self.overlap} px ({self.mode}), batch {self.batch_size}"]
        if self.cloud_pixels is not None and self.valid_pixels:
            lines.append(f"  cloud/shadow {100 * self.cloud_pixels / self.valid_pixels:.1f} % of the valid pixels; "
                         f"{self.kept_pixels} clear pixels copied from the input")
        if self.s1_filled:
            lines.append(f"  Sentinel-1 missing (filled) on {100 * self.s1_filled:.2f} % of the tile pixels")
        if self.terrain_filled:
            lines.append(f"  DEM missing (filled) on {100 * self.terrain_filled:.2f} % of the tile pixels")
        if self.peak_device_memory:
            lines.append(f"  peak GPU memory {self.peak_device_memory / 2**30:.2f} GiB")
        lines.append(f"  output: {self.output}")
        return "\n".join(lines)


def receptive_radius(model) -> Optional[int]:
    """How far (px) an output pixel's inputs can lie from it, for the networks where this is known.

    * DSen2-CR: ``2 + 2 * blocks`` (one 3x3 convolution in the head, two per residual block, one
      in the tail): 34 px for the paper's 16 blocks.
    * UNet / CRT-UNet with ``L`` levels: ``7 * 2**(L-1) - 5`` px (219 px for 6 levels), measured
      as the support of the input gradient of one output pixel over all positions modulo the
      pooling grid; it obeys ``r(L) = 2 r(L-1) + 5`` from L = 2 (9 px) on.
    * Other networks (the GANs): None.

    With a dead margin (half the overlap in ``"crop"`` mode) at least this wide, every output
    pixel is computed from real context only and the result does not depend on the tiling.
    """
    from ...models.dsen2cr import DSen2CR
    from ...models.unet import UNet

    if isinstance(model, DSen2CR):
        return 2 + 2 * len(model.body)
    if isinstance(model, UNet):
        return 7 * 2 ** (len(model.widths) - 1) - 5
    return None


def _family(model) -> str:
    from ...models.dsen2cr import DSen2CR
    from ...models.unet import UNet

    return "dsen2cr" if isinstance(model, DSen2CR) else "unet" if isinstance(model, UNet) else "other"


def default_tiling(model, multiple: int, options: InferenceOptions, device_type: str = "cpu") -> Tuple[int, int, str]:
    """(tile, overlap, mode) with the defaults filled in where ``options`` leaves them None.

    Overlap: twice :func:`receptive_radius` (rounded up to the size multiple), cropped, so the
    result is exactly independent of the tiling; for networks without a known radius
    :data:`DEFAULT_OVERLAP`, blended. Tile: :data:`DEFAULT_TILE`, at least the overlap plus
    a quarter of it.
    """
    radius = receptive_radius(model)
    kind = "cuda" if device_type == "cuda" else "cpu"
    if options.overlap is not None and options.overlap >= 0:
        overlap = int(options.overlap)
    elif radius is not None:
        overlap = round_up(2 * radius, max(multiple, 8))
    else:
        overlap = DEFAULT_OVERLAP
    overlap = round_up(overlap, multiple) if overlap else 0
    tile = options.tile or max(DEFAULT_TILE[(_family(model), kind)], round_up(overlap + max(overlap // 4, 64), multiple))
    mode = options.mode or ("crop" if radius is not None and overlap >= 2 * radius else "blend")
    return round_up(tile, multiple), overlap, mode


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
class _Inputs:
    """Everything a tile read needs, shared by the reader threads."""

    def __init__(self, scene: S2Scene, layout, scaling: str, s1: Optional[S1Source],
                 terrain: Optional[TerrainSource], needs_s2: bool) -> None:
        self.scene = scene
        self.layout = layout
        self.scaling = scaling
        self.s1 = s1
        self.terrain = terrain
        self.needs_s2 = needs_s2

    def read_tile(self, tile) -> Tuple[Dict[str, np.ndarray], bool]:
        """Scaled inputs of one tile, and whether it holds any valid Sentinel-2 pixel."""
        scene = self.scene
        window, rows, cols = tile_source(tile.row_off, tile.col_off, tile.height, tile.width, scene.height,
                                         scene.width)
        s2 = scene.read_reflectance(self.layout.s2 if self.needs_s2 else self.layout.output, window)
        valid = np.isfinite(s2).all(axis=0)
        inside = (tile.row_off < scene.height and tile.col_off < scene.width
                  and tile.row_off + tile.height > 0 and tile.col_off + tile.width > 0)
        if not inside or not valid.any():
            return {}, False
        out: Dict[str, np.ndarray] = {}
        if self.needs_s2:
            s2 = np.where(np.isfinite(s2), s2, 0.0).astype(np.float32)
            out["s2"] = scale_s2(take(s2, rows, cols), self.scaling).astype(np.float32)
        if self.s1 is not None:
            s1 = self.s1.read(window)
            out["s1"] = scale_s1(take(s1, rows, cols), self.scaling, bands=self.layout.s1).astype(np.float32)
        if self.terrain is not None:
            t = self.terrain.read(window)
            out["terrain"] = scale_terrain(take(t, rows, cols), self.scaling,
                                           bands=self.layout.terrain).astype(np.float32)
        return out, True

    def read_batch(self, tiles) -> Tuple[Optional[Dict[str, np.ndarray]], List[bool]]:
        items, flags = [], []
        for tile in tiles:
            data, ok = self.read_tile(tile)
            flags.append(ok)
            if ok:
                items.append(data)
        if not items:
            return None, flags
        return {k: np.stack([d[k] for d in items]) for k in items[0]}, flags


def _sun(metadata: Optional[str], sun: Optional[SunAngles], monitor: Monitor) -> Optional[SunAngles]:
    if sun is not None:
        return sun
    if metadata:
        from ..sentinel2.metadata import read_sun_angles

        return read_sun_angles(metadata)
    return None


def remove_clouds(model, s2: str, output: str, *, s1: Optional[str] = None, dem: Optional[str] = None,
                  mask: Optional[str] = None, mask_kind: str = "auto", mask_band: int = 1,
                  metadata: Optional[str] = None, sun: Optional[SunAngles] = None,
                  s2_overrides: Optional[Dict[str, Override]] = None, s2_offset: Optional[float] = None,
                  s2_quantification: Optional[float] = None, s1_bands: Optional[Dict[str, int]] = None,
                  s1_units: str = "auto", dem_band: int = 1, options: InferenceOptions = InferenceOptions(),
                  monitor: Monitor = SILENT, model_title: Optional[str] = None) -> CloudRemovalReport:
    """Remove clouds from the Sentinel-2 scene ``s2`` with ``model`` and write ``output`` (GeoTIFF).

    ``model``: a network from :func:`topoclear.models.build_model` (its ``spec_name`` and
    ``input_layout`` say which inputs and bands it takes). ``s1``: Sentinel-1 raster (VV/VH);
    ``dem``: DEM for the terrain stack, lit by the sun of ``metadata`` (MTD_TL.xml / SAFE) or
    ``sun``; ``mask`` / ``mask_kind``: cloud mask (see :data:`topoclear.engine.clouds.inputs.MASK_KINDS`;
    ``"auto"``: the given raster (SCL if its name says so), else the product's SCL band, else
    the DSen2-CR rules when the Level-1C bands are there, else none).
    """
    from ...models.registry import get_spec

    spec_name = getattr(model, "spec_name", None)
    layout = getattr(model, "input_layout", None)
    if spec_name is None or layout is None:
        raise InputError("the network must come from topoclear.models.build_model (it needs spec_name and "
                         "input_layout to know its inputs)")
    spec = get_spec(spec_name)
    title = model_title or spec.title
    if model_title is None and spec.needs_s1 and spec.needs_s2 and "s1" not in layout.inputs:
        title = f"{spec.title.split(' (')[0]} (optical-only variant, without Sentinel-1)"
    if mask_kind not in MASK_KINDS:
        raise InputError(f"cloud mask kind {mask_kind!r} is not one of {', '.join(MASK_KINDS)}")
    if options.policy not in ("refuse", "fill"):
        raise InputError(f"coverage policy {options.policy!r} is not 'refuse' or 'fill'")
    if "s1" in layout.inputs and not s1:
        raise InputError(f"{title} needs a Sentinel-1 layer ({', '.join(layout.s1)}); give one, or use a "
                         "variant trained without SAR")
    if "terrain" in layout.inputs and not dem:
        raise InputError(f"{title} needs a DEM for its terrain input ({', '.join(layout.terrain)}); give one or "
                         "choose a model without terrain")
    messages: List[str] = []

    def say(text: str) -> None:
        messages.append(text)
        monitor.message(text)

    start = time.perf_counter()
    model_bands = layout.s2 if spec.needs_s2 else layout.output
    scene = S2Scene(s2, model_bands, s2_overrides, s2_offset, s2_quantification, title,
                    extra_bands=COMPUTED_MASK_BANDS if mask_kind == "computed" else ())
    sources: List[Any] = [scene]
    try:
        say(scene.describe())
        if not scene.any_valid(model_bands):
            raise InputError(f"the Sentinel-2 input {os.path.basename(str(s2))} holds only nodata or NaN in the bands "
                             f"{', '.join(model_bands)}")
        missing_out = [b for b in layout.output if b not in scene.output_names]
        if missing_out:
            raise InputError(f"{title} predicts {', '.join(layout.output)} but the input has no "
                             f"{', '.join(missing_out)}")
        s1_source = terrain_source = mask_source = None
        if "s1" in layout.inputs:
            s1_source = S1Source(s1, scene.grid, layout.s1, s1_bands, s1_units, options.policy, monitor)
            sources.append(s1_source)
            say(s1_source.summary)
        elif s1:
            say(f"{title} takes no Sentinel-1 input: the Sentinel-1 layer is not used")
        if "terrain" in layout.inputs:
            sun_angles = _sun(metadata, sun, monitor)
            if sun_angles is None:
                say("No Sentinel-2 metadata for the sun angles: the hillshade is lit from azimuth 315, zenith 45 "
                    "(give the scene's MTD_TL.xml to light it as the scene was)")
            terrain_source = TerrainSource(dem, scene.grid, dem_band, sun_angles, options.policy, monitor,
                                           needed=[_terrain_name(b) for b in layout.terrain])
            sources.append(terrain_source)
            say(terrain_source.summary)
        elif dem:
            say(f"{title} takes no terrain input: the DEM is not used")
        # cloud mask
        kind = mask_kind
        if kind == "auto":
            if mask:
                kind = "scl" if "SCL" in os.path.basename(str(mask)).upper() else "raster"
            elif scene.product.scl is not None:
                kind, mask, mask_band = "scl", scene.product.scl.path, scene.product.scl.index
            elif all(b in scene.bands for b in COMPUTED_MASK_BANDS):
                kind = "computed"
            else:
                kind = "none"
        if kind in ("scl", "raster"):
            mask_source = MaskSource(kind, scene.grid, str(mask), mask_band)
        elif kind == "computed":
            missing = [b for b in COMPUTED_MASK_BANDS if b not in scene.bands]
            if missing:
                raise InputError(f"the computed cloud mask (DSen2-CR rules) needs the Level-1C bands "
                                 f"{', '.join(COMPUTED_MASK_BANDS)}; the input lacks {', '.join(missing)}. "
                                 "Give an SCL band or a mask raster instead")
            overview = scene.overview(["B2", "B8", "B11"])

            def l1c_reader(window, halo):
                data = padded_read(lambda w: scene.read_reflectance(COMPUTED_MASK_BANDS, w) / 10000.0, window, halo,
                                   scene.height, scene.width)
                return dict(zip(COMPUTED_MASK_BANDS, data))

            mask_source = MaskSource("computed", scene.grid, reader=l1c_reader, scene_sample=overview)
        if mask_source is not None:
            sources.append(mask_source)
            say(mask_source.summary)
        keep_clear = options.keep_clear and mask_source is not None
        if options.keep_clear and mask_source is None:
            say("No cloud mask: every pixel is predicted (keep clear pixels needs a mask)")
        runner = ModelRunner(model, options.device, options.amp, options.batch_size, spec.scaling, monitor)
        say(f"Device: {runner.device_name}")
        tile, overlap, mode = default_tiling(model, spec.size_multiple, options, runner.device.type)
        radius = receptive_radius(model)
        dead = overlap // 2 if mode == "crop" else overlap // 4
        if radius is None or dead < radius:
            say("Tiling: the discarded tile margin is narrower than the network's receptive field"
                + (f" ({radius} px)" if radius else "") + ": tile borders are blended seamlessly, but results may "
                "depend slightly on the tile size")
        inputs = _Inputs(scene, layout, spec.scaling, s1_source, terrain_source, spec.needs_s2)
        descriptions = _descriptions(scene, layout, spec_name)
        with bounded_gdal_cache(), AtomicRasterWriter(output, scene.grid, len(scene.output_names), scene.dtype,
                                                      scene.declared_nodata, descriptions) as dst:
            while True:
                try:
                    stats = _run_plan(inputs, runner, mask_source, keep_clear, dst, tile, overlap, mode,
                                      spec.size_multiple, options, monitor)
                    break
                except TileTooLarge:
                    smaller = round_up(tile // 2, spec.size_multiple)
                    if smaller - overlap < spec.size_multiple or smaller >= tile:
                        raise InputError(f"out of memory on {runner.device_name} even with one tile of {tile} px "
                                         f"per batch; choose a smaller overlap or the CPU") from None
                    say(f"Out of memory with one tile of {tile} px: restarting with tiles of {smaller} px")
                    tile = smaller
                    runner.batch_size = runner.initial_batch_size
                    for src in (s1_source, terrain_source):
                        if src is not None:
                            src.filled = src.pixels = 0
            if stats["valid"] == 0:
                raise InputError(f"the Sentinel-2 input {os.path.basename(str(s2))} holds no valid pixel "
                                 "(only nodata or NaN)")
            dst.update_tags(TOPOCLEAR_MODEL=spec_name, TOPOCLEAR_DEVICE=runner.device_name,
                            TOPOCLEAR_KEEP_CLEAR=str(keep_clear))
        seconds = time.perf_counter() - start
        peak = None
        if runner.cuda:
            import torch

            peak = int(torch.cuda.max_memory_allocated(runner.device))
        report = CloudRemovalReport(
            output=str(output), model=title, device=runner.device_name, amp=runner.amp,
            amp_difference=runner.amp_difference, tile=stats["tile"], overlap=stats["overlap"], mode=mode,
            batch_size=runner.batch_size, tiles=stats["tiles"], tiles_skipped=stats["skipped"],
            width=scene.width, height=scene.height, valid_pixels=stats["valid"],
            cloud_pixels=stats["cloud"] if mask_source is not None else None, kept_pixels=stats["kept"],
            seconds=seconds,
            s1_filled=(s1_source.filled / s1_source.pixels) if s1_source is not None and s1_source.pixels else None,
            terrain_filled=(terrain_source.filled / terrain_source.pixels)
            if terrain_source is not None and terrain_source.pixels else None,
            messages=messages + runner.messages, peak_device_memory=peak, blender_peak_bytes=stats["blender_peak"])
        return report
    finally:
        for src in sources:
            src.close()


def _terrain_name(name: str) -> str:
    from ...models.scaling import canonical_terrain_name

    return canonical_terrain_name(name)


def _descriptions(scene: S2Scene, layout, spec_name: str) -> List[str]:
    predicted = set(layout.output)
    out = []
    for i, name in enumerate(scene.output_names):
        if name in predicted:
            out.append(f"{name}, cloud removed ({spec_name})")
        else:
            original = scene.input_descriptions[i] if i < len(scene.input_descriptions) else None
            label = original or name
            out.append(f"{label}, copied from the input (not predicted by {spec_name})")
    return out


def _run_plan(inputs: _Inputs, runner: ModelRunner, mask_source: Optional[MaskSource], keep_clear: bool, dst,
              tile: int, overlap: int, mode: str, multiple: int, options: InferenceOptions,
              monitor: Monitor) -> Dict[str, Any]:
    scene = inputs.scene
    layout = inputs.layout
    plan = TilePlan(scene.height, scene.width, tile, overlap, multiple, mode)
    monitor.message(f"Tiling: {plan.describe()}")
    blender = Blender(plan, len(layout.output))
    tiles = list(plan)
    batch = max(1, runner.batch_size)
    batches = [tiles[i:i + batch] for i in range(0, len(tiles), batch)]
    out_index = [scene.output_names.index(b) for b in layout.output]
    stats = {"valid": 0, "cloud": 0, "kept": 0, "skipped": 0, "tiles": len(tiles),
             "tile": plan.tile_size, "overlap": plan.overlap}
    workers = options.workers or (min(8, max(1, (os.cpu_count() or 2) // 2)) if runner.cuda else 1)
    done = 0
    total = max(1, len(tiles))
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topoclear-read") as pool:
        try:
            queue = iter(batches)
            for group in queue:
                pending.append((group, pool.submit(inputs.read_batch, group)))
                if len(pending) > max(1, options.prefetch):
                    break
            while pending:
                monitor.check()
                group, future = pending.popleft()
                data, flags = future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(inputs.read_batch, nxt)))
                predictions = runner(data) if data is not None else None
                k = 0
                for t, ok in zip(group, flags):
                    pred = None
                    if ok:
                        pred = predictions[k]
                        k += 1
                    else:
                        stats["skipped"] += 1
                    for row0, col0, values in blender.add(t, pred):
                        _write_rect(scene, layout, inputs.scaling, mask_source, keep_clear, dst, row0, col0, values,
                                    out_index, stats)
                done += len(group)
                monitor.progress(100.0 * done / total)
        finally:
            for _, future in pending:
                future.cancel()
    if blender.pending:
        raise AssertionError("tiles left unblended")
    stats["blender_peak"] = blender.peak_cells_bytes
    monitor.check()
    return stats


def _to_dtype(values: np.ndarray, dtype: str, fill_value) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        values = np.where(np.isfinite(values), values, 0.0)  # NaN only where nodata is written anyway
        out = np.clip(np.rint(values), info.min, info.max).astype(dt)
        if fill_value is not None and not (isinstance(fill_value, float) and math.isnan(fill_value)):
            nod = np.asarray(fill_value).astype(dt)
            clash = out == nod  # a prediction must not read as nodata
            if clash.any():
                out[clash] = nod + 1 if nod < info.max else nod - 1
        return out
    return values.astype(dt)


def _write_rect(scene: S2Scene, layout, scaling: str, mask_source: Optional[MaskSource], keep_clear: bool, dst,
                row0: int, col0: int, values: np.ndarray, out_index: List[int], stats: Dict[str, Any]) -> None:
    rows, cols = values.shape[1], values.shape[2]
    window = (row0, col0, rows, cols)
    raw, valid_bands = scene.read_output_raw(window)
    model_out = [scene.output_names.index(b) for b in (layout.s2 if "s2" in layout.inputs else layout.output)]
    valid = valid_bands[model_out].all(axis=0) & np.isfinite(values).all(axis=0)
    cloud = mask_source.read(window) if mask_source is not None else None
    keep = (valid & ~cloud) if (keep_clear and cloud is not None) else None
    refl = unscale_s2(values, scaling)  # reflectance x 10000
    out = raw.copy()
    for k, b in enumerate(out_index):
        name = scene.output_names[b]
        src = scene.bands[name]
        dn = refl[k] * np.float32(src.quantification / 10000.0) - np.float32(src.offset)
        band = _to_dtype(dn, scene.dtype, scene.fill_value)
        if keep is not None:
            band = np.where(keep, raw[b], band)
        fill = np.asarray(scene.fill_value).astype(scene.dtype)
        out[b] = np.where(valid, band, fill)
    stats["valid"] += int(valid.sum())
    if cloud is not None:
        stats["cloud"] += int((cloud & valid).sum())
    if keep is not None:
        stats["kept"] += int(keep.sum())
    dst.write(out, window=Window(col0, row0, cols, rows))


# --------------------------------------------------------------------------------------------
# models and weights for a run
# --------------------------------------------------------------------------------------------
#: Folder of the shipped default weights: ``<model>.safetensors`` + ``<model>.json`` (trained with
#: Sentinel-1) and ``<model>_nosar.safetensors`` + ``.json`` (the optical-only variant).
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models", "weights")
#: Models offered for cloud removal, in menu order.
CLOUD_MODELS = ("crt_unet", "unet", "dsen2cr", "cr_gan", "sar2opt_gan")
NOSAR_SUFFIX = "_nosar"


def shipped_weights(model: str, with_s1: bool = True) -> Optional[str]:
    """Path of the shipped default weights of ``model`` (its optical-only variant if not ``with_s1``), or None."""
    name = model if with_s1 else model + NOSAR_SUFFIX
    path = os.path.join(WEIGHTS_DIR, name + ".safetensors")
    return path if os.path.isfile(path) else None


def describe_needs(model: str) -> str:
    """What a model needs, for a user choosing it: ``"Sentinel-2 (10 bands: B2, ...) + Sentinel-1 + DEM"``.

    The Sentinel-2 bands are those of the shipped weights when there are any, else the model's defaults.
    """
    from ...models.registry import get_spec
    from .. import checkpoints

    spec = get_spec(model)
    bands = spec.default_s2_bands
    shipped = shipped_weights(model) or shipped_weights(model, with_s1=False)
    if shipped:
        bands = tuple(checkpoints.read_card(shipped)["architecture"]["input_layout"]["s2"]) or bands
    parts = []
    if spec.needs_s2:
        parts.append(f"Sentinel-2 ({len(bands)} bands: {', '.join(bands)})")
    if spec.needs_s1:
        pols = ", ".join(spec.default_s1_bands)
        parts.append(f"Sentinel-1 ({pols})" + ("" if not spec.needs_s2 else "; without it, the optical-only variant"))
    if spec.needs_terrain:
        parts.append("DEM (terrain stack)")
    return " + ".join(parts)


@dataclass
class ModelChoice:
    model: Any
    name: str
    weights: Optional[str]
    card: Optional[dict]
    notes: List[str]


def resolve_model(name: str, weights: Optional[str] = None, has_s1: bool = True, has_dem: bool = True,
                  allow_untrained: bool = False, options: Optional[Dict[str, Any]] = None) -> ModelChoice:
    """The network to run: registry ``name`` with ``weights`` (default: the shipped ones).

    Without a Sentinel-1 layer, a model that has an optical-only variant runs as that variant
    (with its own weights), and the notes say so. Raises :class:`InputError` for models whose
    inputs are missing, weights of another model or band set, and missing default weights
    (unless ``allow_untrained``: then the network keeps its random initial weights, for
    benchmarks and tests only).
    """
    from ...models.registry import UnknownModelError, build_model, get_spec
    from .. import checkpoints

    try:
        spec = get_spec(name)
    except UnknownModelError as exc:
        raise InputError(str(exc)) from None
    if spec.multi_temporal:
        raise InputError(f"{spec.title} is multi-temporal; whole-scene cloud removal takes one acquisition")
    notes: List[str] = []
    if spec.needs_terrain and not has_dem:
        raise InputError(f"{spec.title} needs a DEM (its terrain stack is an input); give one, or choose a model "
                         "without terrain (UNet, DSen2-CR)")
    if not spec.needs_s2 and not has_s1:
        raise InputError(f"{spec.title} paints the optical image from Sentinel-1 alone: give a Sentinel-1 layer")
    if weights:
        card = checkpoints.read_card(weights)
        arch = card["architecture"]
        layout = arch["input_layout"]
        if arch["model"] != name:
            raise InputError(f"the weights file {os.path.basename(str(weights))} holds a {arch['model']!r} model, not "
                             f"{name!r}: choose the matching model or weights")
        if layout.get("s1") and not has_s1:
            raise InputError(f"the weights {os.path.basename(str(weights))} were trained with Sentinel-1 "
                             f"({', '.join(layout['s1'])}): give a Sentinel-1 layer, or weights of the optical-only "
                             "variant")
        if layout.get("terrain") and not has_dem:
            raise InputError(f"the weights {os.path.basename(str(weights))} need a DEM (terrain input)")
        if has_s1 and spec.needs_s1 and not layout.get("s1"):
            notes.append("The weights were trained without Sentinel-1: the Sentinel-1 layer is not used")
        model, card = checkpoints.load_model(weights, expect_model=name)
        notes.append(f"Weights: {weights} ({checkpoints.checkpoint_paths(weights)[1].name})")
        return ModelChoice(model, name, str(weights), card, notes)
    with_s1 = has_s1 or not spec.needs_s1
    if spec.needs_s1 and not has_s1:
        notes.append(f"No Sentinel-1 layer: {spec.title} runs as its optical-only variant (trained without SAR)")
    path = shipped_weights(name, with_s1)
    if path is None and with_s1 and spec.needs_s1 and spec.needs_s2:
        other = shipped_weights(name, False)
        if other is not None:
            path = other
            notes.append(f"Only the optical-only weights of {spec.title} are shipped: the Sentinel-1 layer is not used")
    if path is not None:
        model, card = checkpoints.load_model(path, expect_model=name)
        notes.append(f"Weights: shipped default {os.path.basename(path)}")
        return ModelChoice(model, name, path, card, notes)
    wanted = name + ("" if with_s1 else NOSAR_SUFFIX) + ".safetensors"
    if not allow_untrained:
        raise InputError(f"no trained weights are shipped for {spec.title} yet (looked for {wanted} in "
                         f"{WEIGHTS_DIR}); give a weights file (.safetensors with its .json model card)")
    s1_bands = None if with_s1 else 0
    model = build_model(name, s1_bands=s1_bands, **dict(options or {}))
    model.build_options = dict(options or {})
    notes.append(f"UNTRAINED {spec.title}: random initial weights (for benchmarks and tests; the image is not "
                 "cloud-free)")
    return ModelChoice(model, name, None, None, notes)


def run_cloud_removal(s2: str, output: str, model: str, weights: Optional[str] = None, *, s1: Optional[str] = None,
                      dem: Optional[str] = None, allow_untrained: bool = False,
                      model_options: Optional[Dict[str, Any]] = None, monitor: Monitor = SILENT,
                      **kwargs) -> CloudRemovalReport:
    """:func:`resolve_model` then :func:`remove_clouds`: the whole run from a model name.

    ``kwargs`` go to :func:`remove_clouds` (mask, metadata, options, ...). The report's
    ``messages`` start with the model choice notes.
    """
    choice = resolve_model(model, weights, has_s1=bool(s1), has_dem=bool(dem), allow_untrained=allow_untrained,
                           options=model_options)
    for note in choice.notes:
        monitor.message(note)
    report = remove_clouds(choice.model, s2, output, s1=s1, dem=dem, monitor=monitor, **kwargs)
    report.messages[:0] = choice.notes
    return report
