"""Cloud removal from several dates over whole scenes: :func:`remove_clouds_timeseries`.

One :class:`TimeSeriesRequest` names the **target** Sentinel-2 image (the date to clear), any
number of **other dates** of the same place (any order, any grid), optionally Sentinel-1 per date
and a DEM, and the method (:mod:`.timeseries_methods`: the time-series fill, CA-MTCR, or
``"automatic"``). The run:

1. **Dates and inputs** (:mod:`.timeseries_inputs`): each input's date (given, else metadata,
   else file name); the same date twice, dates that do not overlap the target, a band set
   different from the target's, or no other date at all are errors naming the layer. Every date
   is read on the target grid window by window and masked by the mask engine.
2. **Method**: ``"automatic"`` reads the held-out scores of the shipped model cards and says in
   the log which method it takes and why.
3. **Time-series fill** (every method starts with it): the scene is processed in windows of
   ``window`` px, each read with the halo the kernel needs (:func:`~.timeseries_fill.required_halo`
   and the reach of the single-image fill, whichever is larger; cut at the scene border) and filled
   by :func:`~.timeseries_fill.timeseries_fill`. Each date's scene-wide radiometric fit (used by
   blocks with too few clear pixels in common) comes from a fixed lattice of sample windows, the
   same for every window layout, so **the result does not depend on the window size**. Pixels clear
   on no date get the single-image fill of whole-scene removal
   (:func:`topoclear.engine.clouds.methods.fill.fill_block`, GDAL FillNodata within 100 px, its coarse
   fill beyond; its halo keeps it window-independent except those coarse "no information" pixels).
4. **CA-MTCR** (:mod:`.timeseries_network`): the network runs over the scene in overlapping tiles
   (the tiling and blending of single-image removal) with every date; its prediction replaces the
   cloudy pixels of the bands it predicts, the other bands keep the time-series fill.
5. **Outputs**: the cloud-free target with the target's bands, grid, data type and nodata (clear
   pixels copied unchanged), the "what was observed" companion every cloud-removal run writes
   (:mod:`.observed`: 4 = filled from another date), and a **SOURCE** raster (Byte): 0 observed, ``k`` filled from the
   k-th other date (input order), 253 the network, 254 the single-image fill, 255 nodata; its codes
   and their dates are in its metadata (``TOPOCLEAR_SOURCE_CODES``, JSON) for the legend.
   :class:`TimeSeriesReport` gives the fraction of the cloudy pixels filled from real
   observations (clear on another date), per-date counts and the messages.

Memory is bounded by the window (about ``(window + 2 halo)^2 x bands x (dates + 6) x 4`` bytes;
the window shrinks to keep it under :data:`WINDOW_MEMORY_BYTES`), never by the scene. Nothing here
imports ``qgis``.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import AtomicRasterWriter, published_together
from ..io.raster import bounded_gdal_cache
from ..progress import SILENT, Monitor, RunLog
from .request import InferenceOptions
from .scene import S2Scene
from .timeseries_fill import (MAX_AUXILIARY, SOURCE_FALLBACK, SOURCE_NODATA, Acquisition, FillOptions,
                              required_halo, scene_fit_of, timeseries_fill)
from .timeseries_inputs import DateSource, DatedPath, match_by_date, product_bands, resolve_dates  # noqa: F401
from .timeseries_methods import CA_MTCR, MethodChoice, choose_series_method
from .observed import NODATA as OBSERVED_NODATA
from .observed import band_description as observed_description
from .observed import legend as observed_legend
from .observed import observed_path
from .timeseries_outputs import SOURCE_TAG, SourceWriter, observed_codes, source_legend
from .writer import to_output_dtype

__all__ = ["TimeSeriesRequest", "TimeSeriesReport", "remove_clouds_timeseries", "source_legend", "DEFAULT_WINDOW",
           "SOURCE_TAG"]

#: Window (px) of the time-series fill pass.
DEFAULT_WINDOW = 1024
#: Largest estimated working memory of one window; larger windows are shrunk.
WINDOW_MEMORY_BYTES = 1_500_000_000
#: Sample windows (per side) and their size for the scene-wide radiometric fits.
FIT_SAMPLES, FIT_SAMPLE_PX = 6, 64


@dataclass
class TimeSeriesRequest:
    """One multi-temporal cloud removal (see the module notes).

    target: the Sentinel-2 image to clear (band stack, band file of a product, or .SAFE folder);
    auxiliary: the other dates; output: the cloud-free GeoTIFF; source_output: the SOURCE GeoTIFF
    (None: not written); observed_output: the "what was observed" companion of every cloud-removal
    output (:mod:`.observed`; default ``<output>_observed.tif``): 1 observed clear, 4 filled from
    another date, 2 filled from the neighbourhood (clear on no date, a clear pixel within the
    single-image fill's reach), 5 no information, 0 no data; dates: None, or the target's date then one per other date (date, ISO text
    or None = read it); s1: Sentinel-1 layers, matched to the dates by their own dates; dem: a DEM
    (no method here reads terrain: it is reported as unused); method: ``"automatic"``,
    ``"timeseries_fill"`` or ``"ca_mtcr"``; mask_kind / mask / mask_band: the cloud-mask method and
    the target's mask raster; masks: mask rasters of the other dates, matched by date; fill: the
    kernel's options (``max_days`` ignores dates further away); fallback_distance /
    fallback_smoothing: the single-image fill; weights: CA-MTCR weights (default: the shipped
    ones); window: px of the fill pass; inference: tiles, device and batch of the network.
    """

    target: str
    auxiliary: Sequence[str]
    output: str
    source_output: Optional[str] = None
    observed_output: Optional[str] = None
    dates: Optional[Sequence[Any]] = None
    s1: Sequence[str] = ()
    dem: Optional[str] = None
    method: str = "automatic"
    mask_kind: str = "auto"
    mask: Optional[str] = None
    masks: Sequence[str] = ()
    mask_band: int = 1
    fill: FillOptions = field(default_factory=FillOptions)
    fallback_distance: int = 100
    fallback_smoothing: int = 0
    weights: Optional[str] = None
    window: int = DEFAULT_WINDOW
    inference: InferenceOptions = field(default_factory=lambda: InferenceOptions(tile=256, overlap=64))
    workers: int = 2


@dataclass
class TimeSeriesReport:
    """What a run did (pixel counts over the whole target)."""

    output: str
    source_output: Optional[str]
    observed_output: str
    method: str
    method_key: str
    method_reason: str
    target_date: str
    dates: List[dict]
    width: int
    height: int
    valid_pixels: int
    cloud_pixels: int
    filled_from_dates: int
    fallback_pixels: int
    unreached_pixels: int
    network_pixels: int
    unfilled_pixels: int
    seconds: float
    window: int
    halo: int
    windows: int
    messages: List[str] = field(default_factory=list)
    network: Optional[dict] = None

    @property
    def real_fraction(self) -> Optional[float]:
        """Fraction of the cloudy pixels clear on another date (filled from real observations); None without
        cloudy pixels."""
        return self.filled_from_dates / self.cloud_pixels if self.cloud_pixels else None

    def summary(self) -> str:
        lines = [f"Multi-temporal cloud removal of {self.target_date} with {self.method}: {self.width}x{self.height} "
                 f"px, {len(self.dates)} other date(s), {self.seconds:.1f} s ({self.windows} windows of "
                 f"{self.window} px, halo {self.halo} px)"]
        if self.cloud_pixels:
            lines.append(f"  cloud/shadow {100 * self.cloud_pixels / max(1, self.valid_pixels):.1f} % of the valid "
                         f"pixels; {100 * self.real_fraction:.1f} % of them clear on another date (filled from real "
                         f"observations), {100 * self.fallback_pixels / self.cloud_pixels:.1f} % by the single-image "
                         "fill" + (f" ({self.unreached_pixels} px beyond its reach: no information)"
                                   if self.unreached_pixels else ""))
        else:
            lines.append("  no cloud or shadow in the target: it is copied unchanged")
        if self.network_pixels:
            lines.append(f"  {self.network_pixels} cloudy px predicted by the network")
        for d in self.dates:
            lines.append(f"  {d['role']} {d['date']} ({d['days']:+d} days): {d['filled_pixels']} px filled, clear on "
                         f"{100 * d['usable_fraction']:.1f} % of the target, mask {d['mask_method']}")
        lines.append(f"  output: {self.output}" + (f"; source: {self.source_output}" if self.source_output else "")
                     + f"; what was observed: {self.observed_output}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def _fallback(distance: int, smoothing: int):
    """The single-image fill for pixels clear on no date, and its halo."""
    try:
        from .methods.fill import FillParameters, fill_block
    except ImportError:  # pragma: no cover - older layouts: GDAL FillNodata with a bounded search
        from ..training.baselines import inpaint

        return (lambda image, mask: inpaint(image, mask, max_search_px=distance, smoothing_iterations=smoothing)), \
            int(distance + smoothing), f"GDAL FillNodata within {distance} px"
    params = FillParameters(distance=int(distance), smoothing=int(smoothing))

    def fill(image: np.ndarray, mask: np.ndarray):
        if mask.all():  # nothing clear in the window and its halo: nothing to fill from
            return np.full(image.shape, np.nan, np.float32), np.zeros(mask.shape, bool)
        return fill_block(image, mask, np.ones(mask.shape, bool), params)

    return fill, params.halo, params.describe()


class _Target:
    """The target scene: all its bands as reflectance and raw values, its mask, its output layout."""

    def __init__(self, dated: DatedPath, request: TimeSeriesRequest, log: RunLog, monitor: Monitor) -> None:
        product, names = product_bands(dated.path, dated.label)
        self.scene = S2Scene(dated.path, names, model_title="multi-temporal cloud removal")
        unnamed = [n for n in self.scene.output_names if n not in self.scene.bands]
        if unnamed:
            raise InputError(f"{dated.label}: cannot tell which Sentinel-2 band {unnamed[0]} is; name the bands "
                             "(band descriptions B1..B12) or give a standard stack")
        self.bands = list(self.scene.output_names)
        self.dated = dated
        self.source = DateSource(dated, self.bands, self.scene.grid, request.mask_kind, request.mask,
                                 request.mask_band, monitor, log.say, product=self.scene.product)

    def read(self, window) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(reflectance, raw output values, valid (bands), cloud mask) of a window."""
        raw, valid = self.scene.read_output_raw(window)
        refl = np.empty(raw.shape, np.float32)
        for k, name in enumerate(self.bands):
            src = self.scene.bands[name]
            refl[k] = (raw[k].astype(np.float32) + np.float32(src.offset)) / np.float32(src.quantification)
        refl[~valid] = np.nan
        return refl, raw, valid, self.source.cloud(window)

    def to_output(self, refl: np.ndarray, raw: np.ndarray, valid: np.ndarray, replace: np.ndarray) -> np.ndarray:
        """Output values: ``raw`` where not ``replace`` (H, W), ``refl`` converted back elsewhere."""
        out = raw.copy()
        scene = self.scene
        fill = np.asarray(scene.fill_value).astype(scene.dtype)
        for k, name in enumerate(self.bands):
            src = scene.bands[name]
            dn = refl[k] * np.float32(src.quantification) - np.float32(src.offset)
            band = to_output_dtype(dn, scene.dtype, scene.fill_value)
            ok = replace & np.isfinite(refl[k])
            out[k] = np.where(ok, band, out[k])
            out[k] = np.where(~valid[k] & ~ok, fill, out[k])
        return out

    def close(self) -> None:
        self.source.close()
        self.scene.close()


def _windows(height: int, width: int, size: int) -> List[Tuple[int, int, int, int]]:
    return [(r, c, min(size, height - r), min(size, width - c)) for r in range(0, height, size)
            for c in range(0, width, size)]


def _grown(window, halo: int, height: int, width: int) -> Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]:
    """(window grown by ``halo`` and cut at the scene border, its (top, bottom, left, right) halo)."""
    r, c, h, w = window
    r0, c0 = max(0, r - halo), max(0, c - halo)
    r1, c1 = min(height, r + h + halo), min(width, c + w + halo)
    return (r0, c0, r1 - r0, c1 - c0), (r - r0, r1 - (r + h), c - c0, c1 - (c + w))


def _scene_fits(target: _Target, aux: Sequence[DateSource], options: FillOptions) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Each date's scene-wide (gain, offset) from a fixed lattice of sample windows."""
    h, w = target.scene.height, target.scene.width
    size = min(FIT_SAMPLE_PX, h, w)
    rows = np.unique(np.linspace(0, h - size, FIT_SAMPLES).astype(int))
    cols = np.unique(np.linspace(0, w - size, FIT_SAMPLES).astype(int))
    boxes = [(int(r), int(c), size, size) for r in rows for c in cols]
    t_parts, m_parts = [], []
    for box in boxes:
        refl, _, _, cloud = target.read(box)
        t_parts.append(refl)
        m_parts.append(~cloud & np.isfinite(refl).all(axis=0))
    tgt = np.concatenate(t_parts, axis=2)
    clear = np.concatenate(m_parts, axis=1)
    fits = []
    for src in aux:
        a_parts, c_parts = [], []
        for box in boxes:
            img, cloud = src.read(box)
            a_parts.append(img)
            c_parts.append(~cloud & np.isfinite(img).all(axis=0))
        fits.append(scene_fit_of(tgt, np.concatenate(a_parts, axis=2), clear & np.concatenate(c_parts, axis=1),
                                 options))
    return fits


def _window_size(request: TimeSeriesRequest, bands: int, dates: int, halo: int, log: RunLog) -> int:
    size = max(64, int(request.window or DEFAULT_WINDOW))
    while size > 128 and (size + 2 * halo) ** 2 * bands * (dates + 6) * 4 > WINDOW_MEMORY_BYTES:
        size //= 2
    if size != int(request.window or DEFAULT_WINDOW):
        log.say(f"Window shrunk to {size} px to keep the working memory under {WINDOW_MEMORY_BYTES / 1e9:.1f} GB "
                f"({bands} bands, {dates + 1} dates)")
    return size


def remove_clouds_timeseries(request: TimeSeriesRequest, monitor: Monitor = SILENT) -> TimeSeriesReport:
    """Remove the clouds of ``request.target`` with its other dates (see the module notes)."""
    start = time.perf_counter()
    log = RunLog(monitor)
    target_dated, aux_dated = resolve_dates(request.target, request.auxiliary, request.dates)
    if len(aux_dated) > MAX_AUXILIARY:
        raise InputError(f"AUX: {len(aux_dated)} other dates given; at most {MAX_AUXILIARY}")
    s1 = match_by_date(list(request.s1), [target_dated] + aux_dated, "S1") if request.s1 else {}
    masks = match_by_date(list(request.masks), aux_dated, "CLOUD_MASKS") if request.masks else {}
    choice = choose_series_method(request.method, bool(s1), len(aux_dated), request.weights)
    log.say(choice.describe())
    if request.dem:
        log.say(f"DEM {os.path.basename(str(request.dem))}: {choice.method.title} takes no terrain input; the DEM "
                "is not used")
    if s1 and choice.method is not CA_MTCR:
        log.say(f"Sentinel-1: {len(s1)} layer(s) matched to the dates; the time-series fill reads no radar, they are "
                "not used")
    target = None
    sources: List[DateSource] = []
    try:
        target = _Target(target_dated, request, log, monitor)
        log.say(f"Target {target_dated.label}: {target_dated.date} ({target_dated.how}); "
                f"{target.scene.width}x{target.scene.height} px, bands {', '.join(target.bands)}")
        for dated in aux_dated:
            monitor.check()
            sources.append(DateSource(dated, target.bands, target.scene.grid, request.mask_kind,
                                      masks.get(dated.path), request.mask_band, monitor, log.say))
        return _run(request, choice, target, sources, s1, log, monitor, start)
    finally:
        for src in sources:
            src.close()
        if target is not None:
            target.close()


def _run(request, choice: MethodChoice, target: _Target, sources: List[DateSource], s1: Dict[str, str], log: RunLog,
         monitor: Monitor, start: float) -> TimeSeriesReport:
    fill_fn, fallback_halo, fallback_text = _fallback(request.fallback_distance, request.fallback_smoothing)
    halo = max(required_halo(request.fill), fallback_halo)
    scene = target.scene
    window = _window_size(request, len(target.bands), len(sources), halo, log)
    log.say(f"Time-series fill: windows of {window} px with a halo of {halo} px; pixels clear on no other date: "
            f"{fallback_text}")
    fits = _scene_fits(target, sources, request.fill)
    network_title = None
    if choice.method is CA_MTCR:
        from .timeseries_network import network_title as _title, open_network

        network = open_network(choice, request, target, sources, s1, log)
        network_title = _title(network)
    legend = source_legend(target.dated, [s.dated for s in sources], network_title)
    counts = _Counts(len(sources))
    fill_path = request.output
    if choice.method is CA_MTCR:
        fill_path = _temporary_beside(request.output)
    try:
        _fill_pass(request, target, sources, fits, fill_fn, halo, window, fill_path, legend, counts, monitor,
                   part=choice.method is CA_MTCR)
        network_info = None
        if choice.method is CA_MTCR:
            network_info = network.run(fill_path, fill_path + ".source.tif", request.output, request.source_output,
                                       legend, counts, monitor.sub(50, 100) if hasattr(monitor, "sub") else monitor)
    finally:
        if fill_path != request.output and os.path.exists(fill_path):
            os.remove(fill_path)
        for extra in (fill_path + ".source.tif",):
            if fill_path != request.output and os.path.exists(extra):
                os.remove(extra)
    dates = []
    for k, src in enumerate(sources):
        d = src.dated
        dates.append({"role": d.role, "file": d.path, "date": str(d.date), "how": d.how,
                      "days": (d.date - target.dated.date).days, "filled_pixels": int(counts.per_date[k]),
                      "usable_fraction": counts.usable[k] / max(1, counts.pixels), "mask_method": src.mask_method})
    report = TimeSeriesReport(
        output=str(request.output), source_output=request.source_output,
        observed_output=observed_path(request.output, request.observed_output), method=choice.method.title,
        method_key=choice.method.key, method_reason=choice.reason, target_date=str(target.dated.date), dates=dates,
        width=scene.width, height=scene.height, valid_pixels=counts.valid, cloud_pixels=counts.cloud,
        filled_from_dates=counts.from_dates, fallback_pixels=counts.fallback, unreached_pixels=counts.unreached,
        network_pixels=counts.network, unfilled_pixels=counts.unfilled, seconds=time.perf_counter() - start,
        window=window, halo=halo, windows=counts.windows, messages=log.messages, network=network_info)
    for line in report.summary().splitlines()[1:]:
        monitor.message(line)
    return report


class _Counts:
    def __init__(self, dates: int) -> None:
        self.per_date = np.zeros(dates, np.int64)
        self.usable = np.zeros(dates, np.int64)
        self.pixels = self.valid = self.cloud = self.from_dates = self.fallback = 0
        self.unreached = self.network = self.unfilled = self.windows = 0


def _temporary_beside(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{os.path.splitext(name)[0]}.{os.getpid()}.timeseries-fill.tif")


def _fill_pass(request, target: _Target, sources: List[DateSource], fits, fill_fn, halo: int, window: int,
               out_path: str, legend: Dict[int, str], counts: _Counts, monitor: Monitor, part: bool = False) -> None:
    """The time-series fill of every window into ``out_path`` (and the SOURCE raster)."""
    scene = target.scene
    descriptions = [f"{b}, cloud removed (time-series fill of {len(sources) + 1} dates)" for b in target.bands]
    observed = observed_path(request.output, request.observed_output)
    windows = _windows(scene.height, scene.width, window)
    counts.windows = len(windows)
    source_path = request.source_output if out_path == request.output else out_path + ".source.tif"
    tdate = target.dated.date

    def read(win):
        box, sides = _grown(win, halo, scene.height, scene.width)
        refl, raw, valid, cloud = target.read(box)
        aux = []
        for src, fit in zip(sources, fits):
            img, m = src.read(box)
            aux.append(Acquisition(img, m, src.dated.date, scene_fit=fit))
        core = (slice(sides[0], sides[0] + win[2]), slice(sides[2], sides[2] + win[3]))
        return box, sides, refl, cloud, aux, raw[(slice(None),) + core], valid[(slice(None),) + core], core

    progress = monitor.sub(0, 50) if part and hasattr(monitor, "sub") else monitor
    with bounded_gdal_cache(), published_together(), \
            AtomicRasterWriter(out_path, scene.grid, len(target.bands), scene.dtype, scene.declared_nodata,
                               descriptions) as dst, \
            SourceWriter(source_path, scene.grid, legend) as src_dst, \
            AtomicRasterWriter(observed, scene.grid, 1, "uint8", OBSERVED_NODATA, [observed_description()]) as obs, \
            ThreadPoolExecutor(max_workers=max(1, int(request.workers)), thread_name_prefix="topoclear-ts") as pool:
        pending = pool.submit(read, windows[0]) if windows else None
        for n, win in enumerate(windows):
            progress.check()
            box, sides, refl, cloud, aux, raw, valid, core = pending.result()
            pending = pool.submit(read, windows[n + 1]) if n + 1 < len(windows) else None
            result = timeseries_fill(refl, cloud, tdate, aux, request.fill, fallback=fill_fn, halo=sides,
                                     origin=(box[0], box[1]))
            replace = cloud[core] & valid.all(axis=0)
            out = target.to_output(result.image, raw, valid, replace)
            dst.write(out, window=Window(win[1], win[0], win[3], win[2]))
            code = result.source
            code = np.where(valid.all(axis=0), code, SOURCE_NODATA).astype(np.uint8)
            if src_dst is not None:
                src_dst.write(code[None], window=Window(win[1], win[0], win[3], win[2]))
            obs.write(observed_codes(code, valid.all(axis=0), replace, result.unreached)[None],
                      window=Window(win[1], win[0], win[3], win[2]))
            _count(counts, result, replace, valid, code, aux, core)
            progress.progress(100.0 * (n + 1) / len(windows))
        dst.update_tags(TOPOCLEAR_METHOD="timeseries_fill", TOPOCLEAR_TARGET_DATE=str(tdate),
                        TOPOCLEAR_DATES=";".join(str(s.dated.date) for s in sources))
        obs.update_tags(TOPOCLEAR_OBSERVED=observed_legend())


def _count(counts: _Counts, result, replace, valid, code, aux, core) -> None:
    ok = valid.all(axis=0)
    counts.pixels += ok.size
    counts.valid += int(ok.sum())
    counts.cloud += int(replace.sum())
    dates = (code >= 1) & (code <= MAX_AUXILIARY) & replace
    counts.from_dates += int(dates.sum())
    counts.fallback += int(((code == SOURCE_FALLBACK) & replace).sum())
    if result.unreached is not None:
        counts.unreached += int((result.unreached & replace).sum())
    counts.unfilled += int((replace & (code == SOURCE_NODATA)).sum())
    for k, a in enumerate(aux):
        counts.per_date[k] += int(((code == k + 1) & replace).sum())
        usable = ~np.asarray(a.mask)[core] & np.isfinite(np.asarray(a.image)[(slice(None),) + core]).all(axis=0)
        counts.usable[k] += int((usable & ok).sum())
