"""Cloud removal over whole Sentinel-2 scenes with any method of the catalogue.

:func:`run_cloud_removal` runs the method a :class:`~.request.CloudRemovalRequest` names
(:mod:`.methods.catalogue`): ``auto`` picks the best held-out method for the inputs
(:mod:`.methods.selection`), ``fill`` fills the mask from the surroundings
(:mod:`.methods.classic`), a network's name runs that network with its shipped weights
(:func:`~.weights.resolve_model`) through :func:`remove_clouds`, which runs a network (an
``nn.Module`` built by :func:`topoclear.models.build_model`, trained or not) over a scene of any
size. Networks that start from the fill (``spec.prior == "fill"``) first fill the scene into a
temporary image, then read it as their prior (:mod:`.prior_inputs`). Every run also writes the
observed codes of its output (:mod:`.observed`).

1. **Inputs.** The Sentinel-2 bands the network needs are found and read by :mod:`.scene`;
   Sentinel-1 (VV, VH in dB), the terrain stack derived from a DEM and the cloud mask are
   brought onto the Sentinel-2 grid window by window (:mod:`.inputs`).
2. **Tiles.** The scene is cut into overlapping tiles (:mod:`.tiling`, defaults from the
   catalogue in :mod:`.tiling_defaults`), the part of a tile outside the scene filled by
   reflection, each input scaled with the network's scaling (:mod:`.tile_inputs`), tiles
   batched and run on the chosen device (:mod:`.device`), the predictions blended with smooth
   weights (or margin-cropped) into the output. Tiles whose Sentinel-2 pixels are all nodata
   are skipped.
3. **Output.** One GeoTIFF with the bands, grid, data type and nodata of the input
   (:mod:`.writer`): predicted bands converted back to the input's digital numbers, bands the
   network does not predict copied from the input, band descriptions naming each band and what
   happened to it. With *keep clear pixels* and a cloud mask, every pixel the mask calls clear
   is copied from the input (the reproduction error there is zero). Written window by window
   through :class:`~topoclear.engine.io.atomic.AtomicRasterWriter`: an error or a cancel leaves
   no file.

Memory does not grow with the scene: inputs are read per tile by a few reader threads, at
most ``prefetch`` batches ahead, and the blender keeps only the overlap strips still waiting
for their next tile (a few MB per 10 000 px of scene width). On CUDA out-of-memory the batch is
halved (down to one tile), then the tile size is halved and the scene restarted, and the run
continues; both are reported (:class:`.report.CloudRemovalReport`).
"""
from __future__ import annotations

import os
import time
from collections import deque

import numpy as np
from rasterio.windows import Window
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, List, Optional

from ..errors import InputError
from ..io.atomic import AtomicRasterWriter, published_together
from ..io.raster import bounded_gdal_cache
from ..progress import SILENT, Countdown, Monitor, RunLog
from ..sentinel2.metadata import SunAngles
from .device import ModelRunner, TileTooLarge
from ..io.atomic import temporary_beside
from .inputs import COMPUTED_MASK_BANDS, MaskSource, S1Source, TerrainSource, open_terrain, scene_mask
from .masks.kinds import RULES, mask_method
from .methods.catalogue import AUTOMATIC, get_method
from .methods.classic import fill_scene, grown_window
from .methods.selection import choose_automatic
from .observed import band_description, legend, observed_path, single_image_codes
from .prior_inputs import PriorSource
from .report import CloudRemovalReport, TileStats
from .request import COVERAGE_POLICIES, CloudRemovalRequest, InferenceOptions
from .scene import S2Scene
from .tile_inputs import TileInputs
from .tiling import Blender, TilePlan, round_up
from .tiling_defaults import default_tiling, receptive_radius
from .weights import resolve_model
from .writer import OutputWriter, band_descriptions, output_options

__all__ = ["remove_clouds", "run_cloud_removal", "CloudRemovalRequest", "InferenceOptions", "CloudRemovalReport"]


@dataclass
class _Network:
    """The network of a run and its catalogue entry."""

    model: Any
    spec: Any
    layout: Any
    title: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scene_bands(self):
        """The Sentinel-2 bands the network reads (its output bands for SAR-only networks)."""
        return self.layout.s2 if self.spec.needs_s2 else self.layout.output


@dataclass
class _Sources:
    """The rasters a run has open (closed together at the end)."""

    scene: S2Scene
    s1: Optional[S1Source] = None
    terrain: Optional[Any] = None  # TerrainSource or StackTerrainSource
    mask: Optional[MaskSource] = None
    prior: Optional[PriorSource] = None
    temporary: tuple = ()

    def reset_counts(self) -> None:
        for src in (self.s1, self.terrain):
            if src is not None:
                src.filled = src.pixels = 0

    def close(self) -> None:
        for src in (self.scene, self.s1, self.terrain, self.mask, self.prior):
            if src is not None:
                src.close()
        for path in self.temporary:
            try:
                os.remove(path)
            except OSError:
                pass


@dataclass
class _Tiling:
    tile: int
    overlap: int
    mode: str
    multiple: int


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
def run_cloud_removal(request: CloudRemovalRequest, monitor: Monitor = SILENT) -> CloudRemovalReport:
    """The whole run of the request's method (``request.model``; module notes).

    The report's ``messages`` start with the method choice notes (automatic: which and why).
    """
    method = get_method(request.model or AUTOMATIC.key)
    notes, weights = [], request.weights
    if method.kind == "automatic":
        choice = choose_automatic(bool(request.s1), bool(request.dem))
        notes += choice.notes
        if weights:
            notes.append("A weights file was given but the method is Automatic: the file is not used (choose its "
                         "network to run it)")
        method, weights = get_method(choice.method), choice.weights
    for note in notes:
        monitor.message(note)
    if method.kind == "classic":
        report = run_fill(request, monitor)
    else:
        choice = resolve_model(method.key, weights, has_s1=bool(request.s1), has_dem=bool(request.dem),
                               allow_untrained=request.allow_untrained, options=request.model_options)
        for note in choice.notes:
            monitor.message(note)
        notes += choice.notes
        report = remove_clouds(choice.model, request, monitor)
    report.messages[:0] = notes
    if report.no_information_warning:
        monitor.message(report.no_information_warning)
    return report


#: Scenes from this many pixels on try ONNX Runtime on the CPU (smaller ones do not repay its export).
ONNX_MIN_PIXELS = 2048 * 2048

#: Band sets the fill reads, best first (it fills every band of the output).
FILL_BANDS = (("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), ("B2", "B3", "B4", "B8"),
              ("B2", "B3", "B4"))


def run_fill(request: CloudRemovalRequest, monitor: Monitor = SILENT) -> CloudRemovalReport:
    """The fill from the surroundings over the request's scene (:func:`~.methods.classic.fill_scene`)."""
    start = time.perf_counter()
    extra = COMPUTED_MASK_BANDS if request.mask_kind == RULES.key else ()
    scene = None
    for bands in FILL_BANDS:
        try:
            scene = S2Scene(request.s2, bands, request.s2_overrides, request.s2_offset, request.s2_quantification,
                            "The fill", extra_bands=extra)
            break
        except InputError:
            if bands == FILL_BANDS[-1]:
                raise
    log = RunLog(monitor)
    mask = None
    try:
        log.say(scene.describe())
        mask_method(request.mask_kind, "removal")
        mask = scene_mask(scene, request.mask_kind, request.mask, request.mask_band)
        if mask is not None:
            log.say(mask.summary)
        observed = observed_path(request.output, request.observed)
        log.say(f"Method: fill from the surroundings, {request.fill.describe()}")
        done = fill_scene(scene, mask, request.output, observed, request.fill, monitor,
                          creation_options=request.creation_options)
    finally:
        if mask is not None:
            mask.close()
        scene.close()
    return CloudRemovalReport(
        output=str(request.output), model="Fill from the surroundings (GDAL FillNodata)", device="cpu (GDAL)",
        amp=False, amp_difference=None, tile=(done.window, done.window), overlap=done.halo, mode="halo",
        batch_size=1, tiles=done.windows, tiles_skipped=0, width=scene.width, height=scene.height,
        valid_pixels=done.valid, cloud_pixels=done.cloud, kept_pixels=done.valid - done.cloud,
        seconds=time.perf_counter() - start, messages=log.messages, observed=done.observed,
        observed_counts=done.counts, method="fill")


def remove_clouds(model, request: CloudRemovalRequest, monitor: Monitor = SILENT) -> CloudRemovalReport:
    """Remove clouds from the Sentinel-2 scene ``request.s2`` with ``model`` and write ``request.output``.

    ``model``: a network from :func:`topoclear.models.build_model` (its ``spec_name`` and
    ``input_layout`` say which inputs and bands it takes); the request's ``model`` and
    ``weights`` are not used here. See :class:`~.request.CloudRemovalRequest` for the rest.
    """
    network = _network(model, request)
    _check_request(network, request)
    log = RunLog(monitor)
    start = time.perf_counter()
    extra = COMPUTED_MASK_BANDS if request.mask_kind == RULES.key else ()
    scene = S2Scene(request.s2, network.scene_bands, request.s2_overrides, request.s2_offset,
                    request.s2_quantification, network.title, extra_bands=extra)
    sources = _Sources(scene)
    try:
        log.say(scene.describe())
        _check_scene(scene, network, request)
        _open_auxiliary(sources, network, request, log)
        keep_clear = request.options.keep_clear and sources.mask is not None
        if request.options.keep_clear and sources.mask is None:
            log.say("No cloud mask: every pixel is predicted (keep clear pixels needs a mask)")
        options = request.options
        runner = ModelRunner(model, options.device, options.amp, options.batch_size, network.spec.scaling, monitor,
                             onnx=scene.width * scene.height >= ONNX_MIN_PIXELS)
        log.say(f"Device: {runner.device_name}")
        if network.spec.prior == "fill":
            _first_pass_fill(sources, request, log)
        tiling = _choose_tiling(network, options, runner.device.type, log)
        stats = _write_scene(network, sources, runner, tiling, keep_clear, request, log)
        return _report(network, request, sources, runner, tiling, stats, time.perf_counter() - start,
                       log.messages + runner.messages)
    finally:
        sources.close()


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------
def _network(model, request: CloudRemovalRequest) -> _Network:
    from ...models.registry import get_spec

    spec_name = getattr(model, "spec_name", None)
    layout = getattr(model, "input_layout", None)
    if spec_name is None or layout is None:
        raise InputError("the network must come from topoclear.models.build_model (it needs spec_name and "
                         "input_layout to know its inputs)")
    spec = get_spec(spec_name)
    title = request.model_title or spec.title
    if request.model_title is None and spec.needs_s1 and spec.needs_s2 and "s1" not in layout.inputs:
        title = f"{spec.short_title} (optical-only variant, without Sentinel-1)"
    return _Network(model, spec, layout, title)


def _check_request(network: _Network, request: CloudRemovalRequest) -> None:
    mask_method(request.mask_kind, "removal")
    if request.options.policy not in COVERAGE_POLICIES:
        raise InputError(f"coverage policy {request.options.policy!r} is not 'refuse' or 'fill'")
    layout, title = network.layout, network.title
    if "s1" in layout.inputs and not request.s1:
        raise InputError(f"{title} needs a Sentinel-1 layer ({', '.join(layout.s1)}); give one, or use a "
                         "variant trained without SAR")
    if "terrain" in layout.inputs and not request.dem:
        raise InputError(f"{title} needs a DEM for its terrain input ({', '.join(layout.terrain)}); give one or "
                         "choose a model without terrain")


def _check_scene(scene: S2Scene, network: _Network, request: CloudRemovalRequest) -> None:
    bands = network.scene_bands
    if not scene.any_valid(bands):
        raise InputError(f"the Sentinel-2 input {os.path.basename(str(request.s2))} holds only nodata or NaN in the "
                         f"bands {', '.join(bands)}")
    output = network.layout.output
    missing = [b for b in output if b not in scene.output_names]
    if missing:
        raise InputError(f"{network.title} predicts {', '.join(output)} but the input has no {', '.join(missing)}")


def _open_auxiliary(sources: _Sources, network: _Network, request: CloudRemovalRequest, log: RunLog) -> None:
    """Sentinel-1, the terrain stack and the cloud mask on the scene's grid, as the network and request ask."""
    from ...models.scaling import canonical_terrain_name

    scene, layout, title, policy = sources.scene, network.layout, network.title, request.options.policy
    if "s1" in layout.inputs:
        sources.s1 = S1Source(request.s1, scene.grid, layout.s1, request.s1_bands, request.s1_units, policy,
                              log.monitor)
        log.say(sources.s1.summary)
    elif request.s1:
        log.say(f"{title} takes no Sentinel-1 input: the Sentinel-1 layer is not used")
    if "terrain" in layout.inputs:
        sun = _sun(request.metadata, request.sun)
        sources.terrain = open_terrain(request.dem, scene.grid, request.dem_band, sun, policy, log.monitor,
                                       needed=[canonical_terrain_name(b) for b in layout.terrain])
        if sun is None and isinstance(sources.terrain, TerrainSource):
            log.say("No Sentinel-2 metadata for the sun angles: the hillshade is lit from azimuth 315, zenith 45 "
                    "(give the scene's MTD_TL.xml to light it as the scene was)")
        log.say(sources.terrain.summary)
    elif request.dem:
        log.say(f"{title} takes no terrain input: the DEM is not used")
    sources.mask = scene_mask(scene, request.mask_kind, request.mask, request.mask_band, log.monitor, log.say)


def _first_pass_fill(sources: _Sources, request: CloudRemovalRequest, log: RunLog) -> None:
    """The fill of the scene into temporary files beside the output, then open as the network's prior."""
    if sources.mask is None:
        raise InputError("this network starts from the fill of the cloud mask: choose a cloud mask method other than "
                         "None (or give a mask raster)")
    fill = temporary_beside(request.output, ".fill.tif")
    codes = temporary_beside(request.output, ".fillcodes.tif")
    sources.temporary = (fill, codes)
    log.say(f"First pass: fill from the surroundings ({request.fill.describe()})")
    done = fill_scene(sources.scene, sources.mask, fill, codes, request.fill, log.monitor.sub(0.0, 40.0))
    log.say(f"First pass done in {done.seconds:.1f} s ({done.windows} windows of {done.window} px, halo {done.halo} px)")
    sources.prior = PriorSource(sources.scene, fill, codes)


def _coder(network: _Network, sources: _Sources, request: CloudRemovalRequest):
    """``coder(window, valid, masked) -> codes`` of a network run (:mod:`.observed`)."""
    from scipy import ndimage

    s1 = sources.s1 if "s1" in network.layout.inputs else None
    distance = int(request.fill.distance)
    scene = sources.scene

    def coder(window, valid, masked):
        sar = s1.valid(window) if (s1 is not None and masked is not None and masked.any()) else None
        if sources.prior is not None:
            codes = sources.prior.read_codes(window).copy()
            if sar is not None:
                codes[(codes == 2) | (codes == 5)] = np.where(sar[(codes == 2) | (codes == 5)], 3,
                                                              codes[(codes == 2) | (codes == 5)])
            return np.where(valid, codes, 0).astype(np.uint8)
        reached = None
        if masked is not None and masked.any():
            win = Window(window[1], window[0], window[3], window[2])
            block, (r, c, h, w) = grown_window(win, distance, scene.height, scene.width)
            cloud = sources.mask.read(block)
            reached = (ndimage.distance_transform_edt(cloud)[r:r + h, c:c + w] <= distance) if (~cloud).any() \
                else np.zeros(masked.shape, bool)
        return single_image_codes(valid, masked, reached, sar)

    return coder


def _sun(metadata: Optional[str], sun: Optional[SunAngles]) -> Optional[SunAngles]:
    if sun is not None:
        return sun
    if metadata:
        from ..sentinel2.metadata import read_sun_angles

        return read_sun_angles(metadata)
    return None


def _choose_tiling(network: _Network, options: InferenceOptions, device_type: str, log: RunLog) -> _Tiling:
    multiple = network.spec.size_multiple
    tile, overlap, mode = default_tiling(network.model, multiple, options, device_type)
    radius = receptive_radius(network.model)
    dead = overlap // 2 if mode == "crop" else overlap // 4
    if radius is None or dead < radius:
        log.say("Tiling: the discarded tile margin is narrower than the network's receptive field"
                + (f" ({radius} px)" if radius else "") + ": tile borders are blended seamlessly, but results may "
                "depend slightly on the tile size")
    return _Tiling(tile, overlap, mode, multiple)


def _write_scene(network: _Network, sources: _Sources, runner: ModelRunner, tiling: _Tiling, keep_clear: bool,
                 request: CloudRemovalRequest, log: RunLog) -> TileStats:
    """Every tile through the network into the output file; the tile shrinks on out-of-memory."""
    scene = sources.scene
    inputs = TileInputs(scene, network.layout, network.spec.scaling, sources.s1, sources.terrain,
                        network.spec.needs_s2, prior=sources.prior)
    descriptions = band_descriptions(scene, network.layout, network.name, from_fill=sources.prior is not None)
    mask = sources.prior if sources.prior is not None else sources.mask
    coder = _coder(network, sources, request)
    observed = observed_path(request.output, request.observed)
    with bounded_gdal_cache(), published_together(), \
            AtomicRasterWriter(request.output, scene.grid, len(scene.output_names), scene.dtype,
                               scene.declared_nodata, descriptions,
                               output_options(scene.dtype, request.creation_options)) as dst, \
            AtomicRasterWriter(observed, scene.grid, 1, "uint8", 0, [band_description()],
                               output_options("uint8", request.creation_options)) as obs:
        while True:
            stats = TileStats()
            writer = OutputWriter(scene, network.layout, network.spec.scaling, mask, keep_clear, dst, stats,
                                  observed=obs, coder=coder, base=sources.prior)
            try:
                _run_pass(inputs, runner, writer, tiling, request.options, log.monitor)
                break
            except TileTooLarge:
                _shrink_tile(tiling, runner, log)
                sources.reset_counts()
        if stats.valid == 0:
            raise InputError(f"the Sentinel-2 input {os.path.basename(str(request.s2))} holds no valid pixel "
                             "(only nodata or NaN)")
        dst.update_tags(TOPOCLEAR_MODEL=network.name, TOPOCLEAR_DEVICE=runner.device_name,
                        TOPOCLEAR_KEEP_CLEAR=str(keep_clear))
        obs.update_tags(TOPOCLEAR_OBSERVED_CODES=legend())
        stats.counts = writer.counts
    return stats


def _shrink_tile(tiling: _Tiling, runner: ModelRunner, log: RunLog) -> None:
    smaller = round_up(tiling.tile // 2, tiling.multiple)
    if smaller - tiling.overlap < tiling.multiple or smaller >= tiling.tile:
        raise InputError(f"out of memory on {runner.device_name} even with one tile of {tiling.tile} px "
                         f"per batch; choose a smaller overlap or the CPU") from None
    log.say(f"Out of memory with one tile of {tiling.tile} px: restarting with tiles of {smaller} px")
    tiling.tile = smaller
    runner.restart()


def _run_pass(inputs: TileInputs, runner: ModelRunner, writer: OutputWriter, tiling: _Tiling,
              options: InferenceOptions, monitor: Monitor) -> None:
    """One pass of the tile plan: tiles read ahead by reader threads, run in batches, blended and written."""
    scene = inputs.scene
    plan = TilePlan(scene.height, scene.width, tiling.tile, tiling.overlap, tiling.multiple, tiling.mode)
    monitor.message(f"Tiling: {plan.describe()}")
    blender = Blender(plan, len(inputs.layout.output))
    tiles = list(plan)
    batch = max(1, runner.batch_size)
    batches = iter([tiles[i:i + batch] for i in range(0, len(tiles), batch)])
    stats = writer.stats
    stats.tiles, stats.tile, stats.overlap = len(tiles), plan.tile_size, plan.overlap
    workers = options.workers or (min(8, max(1, (os.cpu_count() or 2) // 2)) if runner.cuda else 1)
    done, total = 0, max(1, len(tiles))
    countdown = Countdown(total, monitor.message, "Tile")
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topoclear-read") as pool:
        try:
            for group in batches:
                pending.append((group, pool.submit(inputs.read_batch, group)))
                if len(pending) > max(1, options.prefetch):
                    break
            while pending:
                monitor.check()
                group, future = pending.popleft()
                data, flags = future.result()
                following = next(batches, None)
                if following is not None:
                    pending.append((following, pool.submit(inputs.read_batch, following)))
                predictions = runner(data) if data is not None else None
                _blend_batch(group, flags, predictions, blender, writer)
                done += len(group)
                monitor.progress(100.0 * done / total)
                countdown.update(done)
        finally:
            for _, future in pending:
                future.cancel()
    if blender.pending:
        raise AssertionError("tiles left unblended")
    stats.blender_peak = blender.peak_cells_bytes
    monitor.check()


def _blend_batch(group, flags, predictions, blender: Blender, writer: OutputWriter) -> None:
    """Add a batch's predictions (None for skipped tiles) to the blender and write what it completes."""
    k = 0
    for tile, ok in zip(group, flags):
        prediction = None
        if ok:
            prediction = predictions[k]
            k += 1
        else:
            writer.stats.skipped += 1
        for row0, col0, values in blender.add(tile, prediction):
            writer.write(row0, col0, values)


def _report(network: _Network, request: CloudRemovalRequest, sources: _Sources, runner: ModelRunner,
            tiling: _Tiling, stats: TileStats, seconds: float, messages: List[str]) -> CloudRemovalReport:
    scene, s1, terrain = sources.scene, sources.s1, sources.terrain
    return CloudRemovalReport(
        output=str(request.output), model=network.title, device=runner.device_name, amp=runner.amp,
        amp_difference=runner.amp_difference, tile=stats.tile, overlap=stats.overlap, mode=tiling.mode,
        batch_size=runner.batch_size, tiles=stats.tiles, tiles_skipped=stats.skipped, width=scene.width,
        height=scene.height, valid_pixels=stats.valid,
        cloud_pixels=stats.cloud if sources.mask is not None else None, kept_pixels=stats.kept, seconds=seconds,
        s1_filled=(s1.filled / s1.pixels) if s1 is not None and s1.pixels else None,
        terrain_filled=(terrain.filled / terrain.pixels) if terrain is not None and terrain.pixels else None,
        messages=messages, peak_device_memory=runner.peak_memory(), blender_peak_bytes=stats.blender_peak,
        observed=observed_path(request.output, request.observed), observed_counts=stats.counts, method=network.name)
