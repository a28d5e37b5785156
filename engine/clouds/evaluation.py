"""Image-quality metrics of a cloud-removal result against a reference, over whole rasters.

The metrics and their units are those of :mod:`topoclear.models.metrics` (REFERENCE section 7):
reflectance in [0, 1] (integer rasters: ``(DN + offset) / 10000``, clipped; floating-point
rasters: taken as reflectance), **MAE** and **RMSE** in reflectance, **PSNR** in dB
(``20 log10(1 / RMSE)``), **SSIM** unitless (11x11 Gaussian window, sigma 1.5, K1 0.01,
K2 0.03, data range 1, mean over bands and over the window positions inside the image),
**SAM** in degrees (mean spectral angle over pixels).

The cloud mask is read by the mask engine's rules (:mod:`topoclear.engine.clouds.masks.choice`): an SCL
raster as classes 3, 8, 9, 10; any other mask raster as 0 clear, 2 shadow, other values cloud, its
nodata no data (TopoClear's 0/1/2/255 cloud masks read back as written). Without a mask raster the
mask can be computed from the cloudy input (``"detector"``, or ``"auto"``: its SCL band, else the
pretrained detector, else the DSen2-CR rules) by :mod:`topoclear.engine.clouds.masks.engine`.

With a cloud mask (cloud or shadow): the cloud fraction, PSNR inside and outside the mask,
MAE and SAM inside the mask (DSen2-CR's *reconstruction*); with the cloudy input as well: MAE
and SAM of the prediction against the cloudy input on clear pixels (*reproduction*; zero when
clear pixels were kept).

Rasters are read in strips of rows (plus a 5-row halo for SSIM), so any size works in bounded
memory; the sums are accumulated in float64 and give exactly the whole-image values of
:func:`topoclear.models.metrics.evaluate`. Pixels that are nodata in any band of the
prediction or the reference are left out (and SSIM windows touching them).

:func:`write_report` writes a short HTML page: the metrics table and the cloudy / predicted /
reference quick-looks (true colour, one common stretch) side by side.
"""
from __future__ import annotations

import base64
import html
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..progress import SILENT, Monitor
from ..io.raster import Grid, declared_nodata, open_raster
from ..io.warp import FULL_COVERAGE, footprint_coverage, warp_window
from ..sentinel2.bands import STACK_LAYOUTS, is_scl_name
from .evaluation_sums import SSIM_HALO, MetricSums
from .masks.choice import raster_classes, scl_classes
from .masks.kinds import AUTO, DETECTOR, RASTER, SCL, mask_method
from ..sentinel2.locate import bands_named_in_descriptions

#: Largest DN offset accepted, either sign (Sentinel-2 processing baseline 04.00 and later: -1000).
MAX_DN_OFFSET = 10000.0
#: (key, label, unit, region, description) of every metric, in table order.
METRICS: Tuple[Tuple[str, str, str, str, str], ...] = (
    ("mae", "MAE", "reflectance", "whole image", "mean absolute error, prediction vs reference"),
    ("rmse", "RMSE", "reflectance", "whole image", "root-mean-square error, prediction vs reference"),
    ("psnr", "PSNR", "dB", "whole image", "20 log10(1 / RMSE)"),
    ("ssim", "SSIM", "unitless", "whole image", "structural similarity, 11x11 Gaussian window (sigma 1.5)"),
    ("sam", "SAM", "degrees", "whole image", "mean spectral angle"),
    ("cloud_fraction", "Cloud fraction", "fraction 0-1", "mask", "share of valid pixels in the cloud/shadow mask"),
    ("psnr_cloudy", "PSNR", "dB", "cloudy pixels", "PSNR inside the cloud/shadow mask"),
    ("psnr_clear", "PSNR", "dB", "clear pixels", "PSNR outside the mask"),
    ("mae_reconstruction", "MAE", "reflectance", "cloudy pixels", "reconstruction: prediction vs reference "
                                                                  "inside the mask"),
    ("sam_reconstruction", "SAM", "degrees", "cloudy pixels", "reconstruction: spectral angle inside the mask"),
    ("mae_reproduction", "MAE", "reflectance", "clear pixels", "reproduction: prediction vs cloudy input on "
                                                               "clear pixels"),
    ("sam_reproduction", "SAM", "degrees", "clear pixels", "reproduction: spectral angle vs cloudy input"),
)


@dataclass
class Evaluation:
    """Metrics of one prediction (``values``: key -> float) and what was compared."""

    values: Dict[str, float]
    bands: List[str]
    pixels: int
    valid_pixels: int
    notes: List[str] = field(default_factory=list)

    def rows(self) -> List[Tuple[str, str, float, str, str]]:
        """(key, metric, value, unit, region) for every computed metric, in table order."""
        out = []
        for key, label, unit, region, _ in METRICS:
            if key in self.values:
                out.append((key, label, float(self.values[key]), unit, region))
        return out

    def summary(self) -> str:
        return "\n".join(f"{label} ({region}): {value:.6g} {unit}" for _, label, value, unit, region in self.rows())


class _Raster:
    """One raster of the comparison: chosen bands as reflectance on windows of the reference grid."""

    def __init__(self, path: str, role: str, grid: Optional[Grid], bands: Sequence[int], offset: float,
                 scale: Optional[float]) -> None:
        self.path = str(path)
        self.ds = open_raster(path, role)
        self.role = role
        self.grid = Grid.of(self.ds)
        self.bands = list(bands)
        for b in self.bands:
            if not 1 <= b <= self.ds.count:
                raise InputError(f"{role}: band {b} requested but {os.path.basename(path)} has {self.ds.count} band(s)")
        self.is_float = np.dtype(self.ds.dtypes[0]).kind == "f"
        self.scale = scale if scale is not None else (1.0 if self.is_float else 10000.0)
        self.offset = offset if not self.is_float else 0.0
        self.target = grid or self.grid
        self.aligned = grid is None or (self.grid.crs == grid.crs and self.grid.transform == grid.transform
                                         and self.grid.width == grid.width and self.grid.height == grid.height)

    def read(self, row0: int, rows: int) -> Tuple[np.ndarray, np.ndarray]:
        """(bands, rows, width) reflectance clipped to [0, 1], and validity (rows, width)."""
        win = Window(0, row0, self.target.width, rows)
        out = np.empty((len(self.bands), rows, self.target.width), np.float64)
        valid = np.ones((rows, self.target.width), bool)
        for k, b in enumerate(self.bands):
            if self.aligned:
                values = self.ds.read(b, window=win, out_dtype=np.float64)
                nod = declared_nodata(self.ds.nodatavals[b - 1])
                bad = ~np.isfinite(values)
                if nod is not None:
                    bad |= values == nod
                elif not self.is_float:
                    bad |= values == 0  # Sentinel-2 DN 0 = no data
            else:
                values = warp_window(self.ds, b, self.target, win, Resampling.nearest).astype(np.float64)
                bad = ~np.isfinite(values)
            valid &= ~bad
            out[k] = np.clip((np.where(bad, 0.0, values) + self.offset) / self.scale, 0.0, 1.0)
        return out, valid

    def close(self) -> None:
        self.ds.close()


def rgb_band_numbers(ds, count: int) -> List[int]:
    """Band numbers (1-based) of red, green and blue (B4, B3, B2) of a Sentinel-2 raster: from the band
    descriptions, else the stack layout of its band count, else bands 3, 2, 1."""
    named = bands_named_in_descriptions(ds)
    if all(b in named for b in ("B4", "B3", "B2")):
        return [named["B4"], named["B3"], named["B2"]]
    if count in STACK_LAYOUTS:
        order = STACK_LAYOUTS[count][1]
        return [order.index(b) + 1 for b in ("B4", "B3", "B2")]
    return [3, 2, 1] if count >= 3 else [1, 1, 1]


def parse_bands(text: Optional[str], ds, role: str) -> Optional[List[int]]:
    """Band numbers from ``"1,2,3"`` or band names ``"B2,B3,B4"`` (looked up in ``ds``'s descriptions/layout)."""
    if not text or not str(text).strip():
        return None
    named = bands_named_in_descriptions(ds)
    layout = STACK_LAYOUTS.get(ds.count, (None, ()))[1]
    out = []
    from ..sentinel2.bands import canonical_band

    for item in str(text).replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        if item.isdigit():
            out.append(int(item))
            continue
        name = canonical_band(item)
        if name is None:
            raise InputError(f"{role}: {item!r} is neither a band number nor a Sentinel-2 band name")
        if name in named:
            out.append(named[name])
        elif name in layout:
            out.append(layout.index(name) + 1)
        else:
            raise InputError(f"{role}: band {name} not found in {os.path.basename(ds.name)}")
    return out


def _mask_values(ds, band: int, kind: str, grid: Grid, win: Window) -> np.ndarray:
    values = warp_window(ds, band, grid, win, Resampling.nearest)
    classes = scl_classes(values) if kind == SCL.key else raster_classes(values)
    return (classes == 1) | (classes == 2)


def _computed_mask(cloudy: Optional[str], kind: str, notes: List[str], monitor: Monitor):
    """The mask engine's classes of the cloudy input (``kind`` ``"detector"`` or ``"auto"``) in a temporary
    class raster, or None (``"auto"`` when no method can run on it)."""
    from .masks.engine import open_scene_mask, relay
    from .masks.run import locate_product, scene_grid
    from .masks.choice import DETECTOR_BANDS_4, method_bands

    if not cloudy:
        if kind == DETECTOR.key:
            raise InputError("cloud mask: the pretrained detector computes the mask from the cloudy input: give it")
        return None
    try:
        product = locate_product(cloudy)
        engine = open_scene_mask(product, scene_grid(product, method_bands(kind, product) or DETECTOR_BANDS_4),
                                 kind, consumer="evaluate", monitor=relay(monitor, say=notes.append, progress=False))
    except InputError as exc:
        if kind != AUTO.key:
            raise
        notes.append(f"no cloud mask: none can be computed from the cloudy input ({exc})")
        return None
    if engine is None:
        return None
    try:
        engine.prepare(monitor)
    except BaseException:
        engine.close()
        raise
    return engine


@dataclass
class _Request:
    """What :func:`evaluate_rasters` compares (``mask_kind``: the key of the chosen mask method)."""

    prediction: str
    reference: str
    cloudy: Optional[str]
    mask: Optional[str]
    mask_kind: str
    mask_band: int
    bands: Optional[str]
    offset: float
    scale: Optional[float]


@dataclass
class _Plan:
    """The reference grid and the bands compared: of the prediction (and their names), of the reference."""

    grid: Grid
    pred_bands: List[int]
    names: List[str]
    ref_bands: List[int]


@dataclass
class _Rasters:
    """The rasters of one comparison on the reference grid, and its cloud mask (``mask``: a dataset read by
    the ``mask_kind`` rules in band ``mask_band``, or None)."""

    grid: Grid
    pred: _Raster
    ref: _Raster
    cloudy: Optional[_Raster] = None
    mask: Any = None
    mask_kind: str = ""
    mask_band: int = 1


def _check_inputs(request: _Request, notes: List[str]) -> _Plan:
    """The bands to compare; an :class:`InputError` when the prediction has no CRS or an input does not
    overlap it at all (a note when it covers only part of it)."""
    with open_raster(request.reference, "reference") as ref_ds, \
            open_raster(request.prediction, "prediction") as pred_ds:
        grid = Grid.of(ref_ds)
        pred_bands = parse_bands(request.bands, pred_ds, "prediction") or list(range(1, pred_ds.count + 1))
        names = _band_names(pred_ds, pred_bands)
        ref_bands = _match_bands(ref_ds, names, pred_bands, "reference")
        if pred_ds.crs is None:
            raise InputError(f"prediction: {os.path.basename(str(request.prediction))} has no coordinate "
                             "reference system")
        on = Grid.of(pred_ds)
        _check_overlap(ref_ds, "reference", request.reference, on, notes)
        if request.cloudy:
            with open_raster(request.cloudy, "cloudy input") as cds:
                _check_overlap(cds, "cloudy input", request.cloudy, on, notes)
        if request.mask and request.mask_kind != DETECTOR.key:
            with open_raster(request.mask, "cloud mask") as mask_ds:
                _check_overlap(mask_ds, "cloud mask", request.mask, on, notes)
    return _Plan(grid, pred_bands, names, ref_bands)


def _open_rasters(request: _Request, plan: _Plan, notes: List[str], opened: List[Any]) -> _Rasters:
    """The prediction, the reference and the cloudy input as reflectance on the reference grid (each one
    added to ``opened`` as it opens)."""
    pred = _Raster(request.prediction, "prediction", plan.grid, plan.pred_bands, request.offset, request.scale)
    opened.append(pred)
    ref = _Raster(request.reference, "reference", None, plan.ref_bands, request.offset, request.scale)
    opened.append(ref)
    if not pred.aligned:
        notes.append("the prediction's grid differs from the reference's: resampled by nearest neighbour")
    rasters = _Rasters(plan.grid, pred, ref, mask_kind=request.mask_kind, mask_band=request.mask_band)
    if request.cloudy:
        with open_raster(request.cloudy, "cloudy input") as cds:
            cl_bands = _match_bands(cds, plan.names, plan.pred_bands, "cloudy input")
        rasters.cloudy = _Raster(request.cloudy, "cloudy input", plan.grid, cl_bands, request.offset, request.scale)
        opened.append(rasters.cloudy)
    return rasters


def _open_mask(request: _Request, rasters: _Rasters, notes: List[str], monitor: Monitor,
               opened: List[Any]) -> None:
    """Open the cloud mask of ``rasters``: the mask raster, else one computed from the cloudy input when the
    mask method can (its engine added to ``opened``), else none."""
    if request.mask and request.mask_kind != DETECTOR.key:
        rasters.mask = open_raster(request.mask, "cloud mask")
        if request.mask_kind == AUTO.key:
            rasters.mask_kind = SCL.key if is_scl_name(request.mask) else RASTER.key
    else:
        if request.mask:
            notes.append("a mask raster was given but the cloud mask is computed by the detector: it is not used")
        computed = _computed_mask(request.cloudy, request.mask_kind, notes, monitor)
        if computed is not None:
            opened.append(computed)
            rasters.mask = open_raster(computed.cache_path, "cloud mask")
            rasters.mask_kind, rasters.mask_band = RASTER.key, 1
    if rasters.cloudy is not None and rasters.mask is None:
        notes.append("no cloud mask: reproduction metrics (clear pixels) need one and are left out")


def _accumulate(rasters: _Rasters, window_rows: int, monitor: Monitor) -> MetricSums:
    """The metric sums over the whole grid, read in strips of ``window_rows`` rows (plus the SSIM halo)."""
    grid = rasters.grid
    sums = MetricSums()
    height = grid.height
    total = max(1, math.ceil(height / window_rows))
    for n, row0 in enumerate(range(0, height, window_rows)):
        monitor.check()
        rows = min(window_rows, height - row0)
        h0, h1 = max(0, row0 - SSIM_HALO), min(height, row0 + rows + SSIM_HALO)
        p, pv = rasters.pred.read(h0, h1 - h0)
        t, tv = rasters.ref.read(h0, h1 - h0)
        core = slice(row0 - h0, row0 - h0 + rows)
        m = c = cv = None
        if rasters.mask is not None:
            m = _mask_values(rasters.mask, rasters.mask_band, rasters.mask_kind, grid,
                             Window(0, row0, grid.width, rows))
        if rasters.cloudy is not None:
            c, cv = rasters.cloudy.read(row0, rows)
        sums.add(p, t, pv & tv, core, m, c, cv, row0 == 0, row0 + rows == height)
        monitor.progress(100.0 * (n + 1) / total)
    return sums


def evaluate_rasters(prediction: str, reference: str, cloudy: Optional[str] = None, mask: Optional[str] = None,
                     mask_kind: str = "auto", mask_band: int = 1, bands: Optional[str] = None,
                     offset: float = 0.0, scale: Optional[float] = None, monitor: Monitor = SILENT,
                     window_rows: int = 256) -> Evaluation:
    """Metrics of ``prediction`` against ``reference`` (see the module docstring).

    ``bands``: band numbers or Sentinel-2 band names of the prediction to compare (default:
    all); the same bands are taken from the reference (and the cloudy input) by name when
    they have named bands, else by number. The reference fixes the grid: the prediction (and
    the others) are resampled onto it by nearest neighbour when their grid differs.
    ``mask_kind``: a method of :func:`~topoclear.engine.clouds.masks.kinds.mask_methods` ``("evaluate")``:
    ``"scl"``, ``"raster"`` (0 clear, 2 shadow, other values cloud, its nodata no data), ``"detector"``
    (computed from ``cloudy``) or ``"auto"`` (the mask raster, as SCL when its file name says so; without
    one, computed from ``cloudy`` when given: see the module notes).
    """
    request = _Request(prediction, reference, cloudy, mask, mask_method(mask_kind, "evaluate").key, mask_band,
                       bands, offset, scale)
    check_offset(offset)
    notes: List[str] = []
    plan = _check_inputs(request, notes)
    opened: List[Any] = []
    rasters: Optional[_Rasters] = None
    try:
        rasters = _open_rasters(request, plan, notes, opened)
        _open_mask(request, rasters, notes, monitor, opened)
        sums = _accumulate(rasters, window_rows, monitor)
        if sums.n == 0:
            raise InputError("prediction and reference have no valid pixel in common (all nodata or NaN)")
        with_mask = rasters.mask is not None
        values = sums.result(with_mask=with_mask, with_cloudy=rasters.cloudy is not None and with_mask)
        return Evaluation(values, plan.names, plan.grid.width * plan.grid.height, sums.n, notes)
    finally:
        if rasters is not None and rasters.mask is not None:
            rasters.mask.close()  # before the computed mask it may read is removed
        for r in opened:
            r.close()


def check_offset(offset: float) -> None:
    """An :class:`InputError` unless the DN ``offset`` is a finite number within +-:data:`MAX_DN_OFFSET`."""
    try:
        value = float(offset)
    except (TypeError, ValueError):
        raise InputError(f"DN offset {offset!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > MAX_DN_OFFSET:
        raise InputError(f"DN offset {value:g} is outside the accepted range (from {-MAX_DN_OFFSET:g} to "
                         f"{MAX_DN_OFFSET:g} DN; Sentinel-2 processing baseline 04.00 and later: -1000, earlier: 0)")


def _check_overlap(ds, role: str, path: str, prediction: Grid, notes: List[str]) -> None:
    """An :class:`InputError` naming ``path`` when the raster ``ds`` does not overlap the ``prediction``'s
    extent at all; a note when it covers only part of it."""
    name = os.path.basename(str(path))
    grid = Grid.of(ds)
    if grid.crs is None:
        raise InputError(f"{role}: {name} has no coordinate reference system")
    try:
        fraction = footprint_coverage(grid, prediction)
    except Exception as exc:  # noqa: BLE001 - bounds that cannot be brought into the prediction's CRS
        raise InputError(f"{role}: the extent of {name} cannot be brought into the prediction's coordinate "
                         f"reference system {prediction.crs} ({exc})") from None
    if fraction <= 0.0:
        raise InputError(f"{role}: {name} does not overlap the prediction at all (its extent "
                         f"{tuple(round(v, 1) for v in grid.bounds)} in {grid.crs}; the prediction's "
                         f"{tuple(round(v, 1) for v in prediction.bounds)} in {prediction.crs}): choose a {role} "
                         "of the same place")
    if fraction < FULL_COVERAGE:
        notes.append(f"the {role} {name} covers only {100 * fraction:.1f} % of the prediction")


def _band_names(ds, bands: Sequence[int]) -> List[str]:
    named = {i: n for n, i in bands_named_in_descriptions(ds).items()}
    layout = STACK_LAYOUTS.get(ds.count, (None, ()))[1]
    out = []
    for b in bands:
        if b in named:
            out.append(named[b])
        elif layout and b <= len(layout):
            out.append(layout[b - 1])
        else:
            out.append(f"band {b}")
    return out


def _match_bands(ds, names: Sequence[str], numbers: Sequence[int], role: str) -> List[int]:
    named = bands_named_in_descriptions(ds)
    layout = STACK_LAYOUTS.get(ds.count, (None, ()))[1]
    out = []
    for name, number in zip(names, numbers):
        if name in named:
            out.append(named[name])
        elif name in layout:
            out.append(layout.index(name) + 1)
        elif number <= ds.count:
            out.append(number)
        else:
            raise InputError(f"{role}: {os.path.basename(ds.name)} has no band {name} (band {number})")
    return out


# --------------------------------------------------------------------------------------------
# quick-looks and report
# --------------------------------------------------------------------------------------------
def quicklook(path: str, max_size: int = 360, stretch: Tuple[float, float] = (0.0, 0.3),
              offset: float = 0.0, scale: Optional[float] = None) -> np.ndarray:
    """True-colour (B4, B3, B2) RGB uint8 array (h, w, 3) of a raster, decimated, linear stretch in reflectance."""
    with open_raster(path, "quick-look") as ds:
        idx = rgb_band_numbers(ds, ds.count)
        factor = max(1.0, max(ds.width, ds.height) / max_size)
        shape = (max(1, int(round(ds.height / factor))), max(1, int(round(ds.width / factor))))
        data = ds.read(idx, out_shape=(3,) + shape, resampling=Resampling.average, out_dtype=np.float64)
        is_float = np.dtype(ds.dtypes[0]).kind == "f"
    s = scale if scale is not None else (1.0 if is_float else 10000.0)
    refl = (np.nan_to_num(data) + (0.0 if is_float else offset)) / s
    lo, hi = stretch
    rgb = np.clip((refl - lo) / (hi - lo), 0, 1) ** (1 / 1.4)
    return (rgb.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A PNG file (8-bit RGB) of an (h, w, 3) uint8 array."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_report(path: str, evaluation: Evaluation, prediction: str, reference: str, cloudy: Optional[str] = None,
                 title: str = "Cloud removal evaluation", offset: float = 0.0) -> str:
    """Write the HTML report (metrics table + quick-looks side by side, images embedded)."""
    images = []
    for label, source in (("Cloudy input", cloudy), ("Prediction", prediction), ("Reference (clear)", reference)):
        if source:
            data = base64.b64encode(png_bytes(quicklook(source, offset=offset))).decode("ascii")
            images.append((label, os.path.basename(str(source)), data))
    rows = "\n".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(region)}</td>"
                     f"<td style='text-align:right'>{value:.5g}</td><td>{html.escape(unit)}</td></tr>"
                     for _, label, value, unit, region in evaluation.rows())
    figures = "\n".join(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(label)}'>"
                        f"<figcaption><b>{html.escape(label)}</b><br>{html.escape(name)}</figcaption></figure>"
                        for label, name, data in images)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in evaluation.notes)
    text = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px}} figure{{display:inline-block;margin:0 12px 12px 0;text-align:center}}
img{{image-rendering:pixelated;border:1px solid #888}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Prediction <code>{html.escape(str(prediction))}</code> against reference <code>{html.escape(str(reference))}</code>;
bands {html.escape(', '.join(evaluation.bands))}; {evaluation.valid_pixels} valid of {evaluation.pixels} pixels.
Reflectance in [0, 1]; quick-looks in true colour (B4, B3, B2), reflectance 0-0.3 stretched alike.</p>
<div>{figures}</div>
<table><tr><th>Metric</th><th>Region</th><th>Value</th><th>Unit</th></tr>
{rows}
</table>
{('<ul>' + notes + '</ul>') if notes else ''}
</body></html>
"""
    write_text_atomic(path, text)
    return str(path)


__all__ = ["METRICS", "Evaluation", "evaluate_rasters", "quicklook", "png_bytes", "write_report", "parse_bands"]
