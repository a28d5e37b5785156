"""The operations a batch job can run, each through the engine entry point the plugin itself uses.

* ``terrain`` (:func:`~..terrain.derivatives.compute_terrain`): **dem**, and at least one of the
  outputs slope / aspect / hillshade; band, z_factor, slope_units, edge_mode, sun_azimuth,
  sun_zenith, multidirectional, window_rows.
* ``cloudmask`` (``run_cloud_mask(CloudMaskRequest)`` of the cloud-mask engine, when the
  installation has it; else the job fails with "not available"): **image**, **output**, and the
  fields of the cloud-mask request (method, mask, mask_band, buffer_m, ...).
* ``removeclouds`` (:func:`~..clouds.removal.remove_clouds` with the model of
  :func:`~..clouds.weights.resolve_model`): **image**, **output**, **model**; weights, s1, dem,
  mask, mask_kind, metadata, device, tile, overlap, mode, batch_size, keep_clear, policy,
  allow_untrained, model_options.
* ``snowmap`` (:func:`~..snow.mapping.snow_map`): **image**, **output**; method, dem, dem_band,
  cloud, cloud_mask, resolution, fsc, fsc_formula, red_test, window_rows and every threshold of
  :class:`~..snow.parameters.SnowParameters` by its name.
* ``snowseries`` (:func:`~..snow.series.snow_series`): **images** (a list), **output**; dates,
  start, end, max_gap_days, snow_maps (a folder), csv, chart, cloud_masks (a list), grids, and
  the snow map parameters but image / output / fsc.

A model loaded for ``removeclouds`` is kept per worker process (:func:`cached_model`, keyed by
model name, weights file and variant), so a worker running many scenes loads its weights once.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import textwrap
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InputError
from ..progress import SILENT, Monitor

IN, OUT, FOLDER, INS, INT, FLOAT, BOOL, TEXT = "in", "out", "folder", "ins", "int", "float", "bool", "text"


@dataclass
class RunContext:
    """What a running job gets: its threads, a monitor, and notes to report."""

    threads: int = 1
    monitor: Monitor = SILENT
    notes: List[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Operation:
    """An operation: its parameters (name -> kind), the required ones, and how it runs."""

    name: str
    params: Mapping[str, str]
    required: Tuple[str, ...]
    run: Callable[[Mapping[str, Any], RunContext], List[str]]
    check: Optional[Callable[[Mapping[str, Any], str], None]] = None

    def normalise(self, given: Mapping[str, Any], base: str, where: str) -> Dict[str, Any]:
        """The typed parameters (paths absolute from ``base``); :class:`InputError` naming ``where``."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise InputError(f"{where}: {self.name} has no parameter {', '.join(map(repr, unknown))} (its parameters: "
                             f"{', '.join(self.params)})")
        out = {name: _typed(self.params[name], value, base, f"{where}: {name}") for name, value in given.items()}
        missing = [name for name in self.required if out.get(name) in (None, [], "")]
        if missing:
            raise InputError(f"{where}: {self.name} needs {', '.join(missing)}")
        if self.check is not None:
            self.check(out, where)
        return out

    def files(self, params: Mapping[str, Any]) -> Tuple[List[str], List[str], List[str]]:
        """(input files, output files, output folders) of a job's parameters."""
        inputs, outputs, folders = [], [], []
        for name, kind in self.params.items():
            value = params.get(name)
            if value in (None, "", []):
                continue
            if kind == IN:
                inputs.append(value)
            elif kind == INS:
                inputs.extend(value)
            elif kind == OUT:
                outputs.append(value)
            elif kind == FOLDER:
                folders.append(value)
        return inputs, outputs, folders


def _path(value: Any, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(str(value))))


def _typed(kind: str, value: Any, base: str, where: str) -> Any:
    if value is None:
        return None
    try:
        if kind in (IN, OUT, FOLDER):
            return _path(value, base)
        if kind == INS:
            items = value if isinstance(value, (list, tuple)) else str(value).split(";")
            return [_path(v, base) for v in (str(i).strip() for i in items) if v]
        if kind == INT:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == FLOAT:
            return float(value)
        if kind == BOOL:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return text in ("1", "true", "yes", "on")
        return value if isinstance(value, (list, tuple, dict)) else str(value)
    except (TypeError, ValueError):
        expected = {INT: "a whole number", FLOAT: "a number", BOOL: "true or false"}.get(kind, "a value")
        raise InputError(f"{where}: {value!r} is not {expected}") from None


# -- terrain ------------------------------------------------------------------------------------------

def _terrain_check(params: Mapping[str, Any], where: str) -> None:
    if not any(params.get(p) for p in ("slope", "aspect", "hillshade")):
        raise InputError(f"{where}: terrain needs at least one output among slope, aspect, hillshade")


def run_terrain(params: Mapping[str, Any], ctx: RunContext) -> List[str]:
    from ..sentinel2.metadata import SunAngles
    from ..terrain.derivatives import DEFAULT_SUN, TerrainOptions, compute_terrain

    sun = DEFAULT_SUN
    if params.get("sun_azimuth") is not None or params.get("sun_zenith") is not None:
        sun = SunAngles(zenith=params.get("sun_zenith", DEFAULT_SUN.zenith),
                        azimuth=params.get("sun_azimuth", DEFAULT_SUN.azimuth), source="job parameters")
    options = TerrainOptions(z_factor=params.get("z_factor", 1.0), slope_units=params.get("slope_units", "degrees"),
                             edge_mode=params.get("edge_mode", "edges"), sun=sun,
                             multidirectional=params.get("multidirectional", False))
    outputs = {p: params[p] for p in ("slope", "aspect", "hillshade") if params.get(p)}
    done = compute_terrain(params["dem"], outputs, params.get("band", 1), options, ctx.monitor,
                           window_rows=params.get("window_rows"), workers=ctx.threads)
    return list(done.values())


# -- snow -----------------------------------------------------------------------------------------------

def _snow_fields() -> Dict[str, str]:
    from ..snow.parameters import SnowParameters

    return {f.name: (INT if f.name == "band_height" else FLOAT) for f in dataclasses.fields(SnowParameters)
            if f.name != "method"}


def _snow_parameters(params: Mapping[str, Any]):
    from ..snow.parameters import SnowParameters

    chosen = {k: params[k] for k in _snow_fields() if params.get(k) is not None}
    if params.get("red_test") is False:
        chosen["red_threshold"] = None
    return SnowParameters(method=params.get("method", "lis"), **chosen).validate()


def run_snowmap(params: Mapping[str, Any], ctx: RunContext) -> List[str]:
    from ..snow.mapping import snow_map
    from ..snow.parameters import CloudInput
    from ..snow.requests import Sentinel2Input, SnowMapRequest

    request = SnowMapRequest(Sentinel2Input(params["image"], resolution=params.get("resolution", "coarsest")),
                             params["output"], _snow_parameters(params), dem=params.get("dem"),
                             dem_band=params.get("dem_band", 1),
                             cloud=CloudInput(params.get("cloud", "auto"), params.get("cloud_mask")),
                             fsc_output=params.get("fsc"), fsc_formula=params.get("fsc_formula", "gascoin"),
                             window_rows=params.get("window_rows"))
    result = snow_map(request, ctx.monitor)
    ctx.notes.append(result.summary())
    return [p for p in (result.output, result.fsc_output) if p]


def run_snowseries(params: Mapping[str, Any], ctx: RunContext) -> List[str]:
    from ..snow.dates import parse_date, parse_date_list
    from ..snow.parameters import CloudInput
    from ..snow.requests import Sentinel2Input
    from ..snow.series import SeriesScene, SnowSeriesRequest, snow_series

    images, masks = params["images"], params.get("cloud_masks") or []
    if masks and len(masks) != len(images):
        raise InputError(f"cloud_masks: {len(masks)} raster(s) for {len(images)} image(s): give one per image")
    dates = params.get("dates")
    dates = parse_date_list(";".join(dates) if isinstance(dates, (list, tuple)) else dates, len(images), "dates")
    kind = params.get("cloud", "raster" if masks else "auto")
    scenes = [SeriesScene(image=Sentinel2Input(p, resolution=params.get("resolution", "coarsest")), date=dates[i],
                          cloud=CloudInput(kind, masks[i]) if masks else None) for i, p in enumerate(images)]
    report = snow_series(SnowSeriesRequest(
        scenes, params["output"], _snow_parameters(params), dem=params.get("dem"), dem_band=params.get("dem_band", 1),
        cloud=CloudInput(kind), start=parse_date(params["start"], "start") if params.get("start") else None,
        end=parse_date(params["end"], "end") if params.get("end") else None,
        max_gap_days=params.get("max_gap_days", 15), grids=params.get("grids", "align"),
        snow_map_folder=params.get("snow_maps"), statistics_csv=params.get("csv"), chart_html=params.get("chart"),
        window_rows=params.get("window_rows")), ctx.monitor)
    ctx.notes.append(report.text())
    written = [report.output, report.statistics_csv, report.chart_html]
    written += [m.path for m in report.maps if m.path and params.get("snow_maps")
                and os.path.dirname(m.path) == os.path.abspath(params["snow_maps"])]
    return [p for p in written if p]


# -- clouds ---------------------------------------------------------------------------------------------

_MODEL_LOCKS: Dict[Tuple, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@functools.lru_cache(maxsize=4)
def cached_model(name: str, weights: Optional[str], has_s1: bool, has_dem: bool, allow_untrained: bool,
                 options: str):
    """The network :func:`~..clouds.weights.resolve_model` picks, loaded once per worker process and key."""
    from ..clouds.weights import resolve_model

    return resolve_model(name, weights, has_s1=has_s1, has_dem=has_dem, allow_untrained=allow_untrained,
                         options=json.loads(options) or None)


def model_lock(key: Tuple) -> threading.Lock:
    """One lock per cached model: the threads of a worker do not run one network at once."""
    with _LOCKS_GUARD:
        return _MODEL_LOCKS.setdefault(key, threading.Lock())


def set_torch_threads(threads: int) -> int:
    """``torch.set_num_threads(threads)``; returns the number torch uses."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def run_removeclouds(params: Mapping[str, Any], ctx: RunContext) -> List[str]:
    from ..clouds.removal import remove_clouds
    from ..clouds.request import CloudRemovalRequest, InferenceOptions

    ctx.notes.append(f"torch threads {set_torch_threads(ctx.threads)}")
    model_options = params.get("model_options") or {}
    if isinstance(model_options, str):
        try:
            model_options = json.loads(model_options)
        except ValueError:
            raise InputError(f"model_options: {model_options!r} is not a JSON object") from None
    key = (params["model"], params.get("weights"), bool(params.get("s1")), bool(params.get("dem")),
           bool(params.get("allow_untrained", False)), json.dumps(model_options, sort_keys=True))
    hits = cached_model.cache_info().hits
    choice = cached_model(*key)
    ctx.notes.append("model from the worker's cache" if cached_model.cache_info().hits > hits else "model loaded")
    options = InferenceOptions(tile=params.get("tile"), overlap=params.get("overlap"), mode=params.get("mode"),
                               batch_size=params.get("batch_size"), device=params.get("device", "auto"),
                               keep_clear=params.get("keep_clear", True), policy=params.get("policy", "refuse"),
                               workers=ctx.threads)
    request = CloudRemovalRequest(params["image"], params["output"], model=params["model"],
                                  weights=params.get("weights"), s1=params.get("s1"), dem=params.get("dem"),
                                  mask=params.get("mask"), mask_kind=params.get("mask_kind", "auto"),
                                  metadata=params.get("metadata"), options=options,
                                  allow_untrained=params.get("allow_untrained", False))
    for note in choice.notes:
        ctx.monitor.message(note)
    with model_lock(key):
        report = remove_clouds(choice.model, request, ctx.monitor)
    return [report.output]


#: Where the cloud-mask engine's entry point may live (the first module holding both names is used).
CLOUDMASK_MODULES = ("run", "engine", "")


def cloudmask_entry():
    """(``run_cloud_mask``, ``CloudMaskRequest``) of the cloud-mask engine, or :class:`InputError` saying the
    operation is not available in this installation."""
    import importlib

    problems = []
    for name in CLOUDMASK_MODULES:
        module_name = "topoclear.engine.clouds.masks" + (f".{name}" if name else "")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"{module_name}: {exc}")
            continue
        run, request = getattr(module, "run_cloud_mask", None), getattr(module, "CloudMaskRequest", None)
        if callable(run) and request is not None and dataclasses.is_dataclass(request):
            return run, request
        problems.append(f"{module_name} has no run_cloud_mask / CloudMaskRequest")
    raise InputError("cloudmask is not available in this installation (no cloud-mask entry point: "
                     + "; ".join(problems) + ")")


def run_cloudmask(params: Mapping[str, Any], ctx: RunContext) -> List[str]:
    run, request_class = cloudmask_entry()
    fields = {f.name for f in dataclasses.fields(request_class)}
    values = {"s2": params["image"], "output": params["output"]}
    values.update({k: v for k, v in params.items() if k not in ("image", "output")})
    if "threads" in fields and values.get("threads") is None:
        values["threads"] = ctx.threads
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InputError(f"cloudmask: the cloud-mask request has no field {', '.join(unknown)} (its fields: "
                         f"{', '.join(sorted(fields))})")
    report = run(request_class(**values), ctx.monitor)
    return [getattr(report, "output", params["output"])]


_SNOW_COMMON = {"method": TEXT, "dem": IN, "dem_band": INT, "cloud": TEXT, "resolution": TEXT, "red_test": BOOL,
                "window_rows": INT}
OPERATIONS: Dict[str, Operation] = {
    "terrain": Operation("terrain", {"dem": IN, "band": INT, "slope": OUT, "aspect": OUT, "hillshade": OUT,
                                     "z_factor": FLOAT, "slope_units": TEXT, "edge_mode": TEXT, "sun_azimuth": FLOAT,
                                     "sun_zenith": FLOAT, "multidirectional": BOOL, "window_rows": INT},
                         ("dem",), run_terrain, _terrain_check),
    "cloudmask": Operation("cloudmask", {"image": IN, "output": OUT, "method": TEXT, "mask": IN, "mask_band": INT,
                                         "buffer_m": FLOAT, "scl_cirrus": BOOL, "scl_shadow": BOOL,
                                         "product_level": TEXT, "resolution_m": FLOAT, "threads": INT,
                                         "batch_size": INT, "window_px": INT},
                           ("image", "output"), run_cloudmask),
    "removeclouds": Operation("removeclouds", {"image": IN, "output": OUT, "model": TEXT, "weights": IN, "s1": IN,
                                               "dem": IN, "mask": IN, "mask_kind": TEXT, "metadata": IN,
                                               "device": TEXT, "tile": INT, "overlap": INT, "mode": TEXT,
                                               "batch_size": INT, "keep_clear": BOOL, "policy": TEXT,
                                               "allow_untrained": BOOL, "model_options": TEXT},
                              ("image", "output", "model"), run_removeclouds),
    "snowmap": Operation("snowmap", {"image": IN, "output": OUT, **_SNOW_COMMON, "cloud_mask": IN, "fsc": OUT,
                                     "fsc_formula": TEXT, **_snow_fields()},
                         ("image", "output"), run_snowmap),
    "snowseries": Operation("snowseries", {"images": INS, "output": OUT, "dates": TEXT, "start": TEXT, "end": TEXT,
                                           "max_gap_days": INT, "snow_maps": FOLDER, "csv": OUT, "chart": OUT,
                                           "cloud_masks": INS, "grids": TEXT, **_SNOW_COMMON, **_snow_fields()},
                            ("images", "output"), run_snowseries),
}


def describe_operations() -> str:
    """One line per operation: its parameters, the required ones first (for ``--help``)."""
    lines = []
    for op in OPERATIONS.values():
        optional = [p for p in op.params if p not in op.required]
        text = f"{op.name}: {', '.join(op.required)} (required); {', '.join(optional)}"
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def expected_outputs(params: Mapping[str, Any], operation: str) -> Sequence[str]:
    """The output files a job declares (folders excluded)."""
    return OPERATIONS[operation].files(params)[1]
