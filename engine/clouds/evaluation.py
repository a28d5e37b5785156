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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..progress import SILENT, Monitor
from ..io.raster import Grid, declared_nodata, open_raster
from ..io.warp import FULL_COVERAGE, footprint_coverage, warp_window
from ..sentinel2.bands import STACK_LAYOUTS, is_scl_name
from .masks.choice import raster_classes, scl_classes
from .masks.kinds import AUTO, DETECTOR, RASTER, SCL, mask_method
from ..sentinel2.locate import bands_named_in_descriptions

SSIM_HALO = 5  # (11 - 1) / 2
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
    mask_kind = mask_method(mask_kind, "evaluate").key
    check_offset(offset)
    notes: List[str] = []
    with open_raster(reference, "reference") as ref_ds, open_raster(prediction, "prediction") as pred_ds:
        grid = Grid.of(ref_ds)
        pred_bands = parse_bands(bands, pred_ds, "prediction") or list(range(1, pred_ds.count + 1))
        names = _band_names(pred_ds, pred_bands)
        ref_bands = _match_bands(ref_ds, names, pred_bands, "reference")
        if pred_ds.crs is None:
            raise InputError(f"prediction: {os.path.basename(str(prediction))} has no coordinate reference system")
        on = Grid.of(pred_ds)
        _check_overlap(ref_ds, "reference", reference, on, notes)
        if cloudy:
            with open_raster(cloudy, "cloudy input") as cds:
                _check_overlap(cds, "cloudy input", cloudy, on, notes)
        if mask and mask_kind != DETECTOR.key:
            with open_raster(mask, "cloud mask") as mask_ds:
                _check_overlap(mask_ds, "cloud mask", mask, on, notes)
    opened: List[_Raster] = []
    try:
        pred = _Raster(prediction, "prediction", grid, pred_bands, offset, scale)
        opened.append(pred)
        ref = _Raster(reference, "reference", None, ref_bands, offset, scale)
        opened.append(ref)
        if not pred.aligned:
            notes.append("the prediction's grid differs from the reference's: resampled by nearest neighbour")
        cl = None
        if cloudy:
            with open_raster(cloudy, "cloudy input") as cds:
                cl_bands = _match_bands(cds, names, pred_bands, "cloudy input")
            cl = _Raster(cloudy, "cloudy input", grid, cl_bands, offset, scale)
            opened.append(cl)
        mds = None
        if mask and mask_kind != DETECTOR.key:
            mds = open_raster(mask, "cloud mask")
            if mask_kind == AUTO.key:
                mask_kind = SCL.key if is_scl_name(mask) else RASTER.key
        else:
            if mask:
                notes.append("a mask raster was given but the cloud mask is computed by the detector: it is not used")
            computed = _computed_mask(cloudy, mask_kind, notes, monitor)
            if computed is not None:
                opened.append(computed)
                mds = open_raster(computed.cache_path, "cloud mask")
                mask_kind, mask_band = RASTER.key, 1
        if cl is not None and mds is None:
            notes.append("no cloud mask: reproduction metrics (clear pixels) need one and are left out")
        sums = _Sums()
        height = grid.height
        total = max(1, math.ceil(height / window_rows))
        for n, row0 in enumerate(range(0, height, window_rows)):
            monitor.check()
            rows = min(window_rows, height - row0)
            h0, h1 = max(0, row0 - SSIM_HALO), min(height, row0 + rows + SSIM_HALO)
            p, pv = pred.read(h0, h1 - h0)
            t, tv = ref.read(h0, h1 - h0)
            valid = pv & tv
            core = slice(row0 - h0, row0 - h0 + rows)
            m = None
            if mds is not None:
                m = _mask_values(mds, mask_band, mask_kind, grid, Window(0, row0, grid.width, rows))
            c = None
            if cl is not None:
                c, cv = cl.read(row0, rows)
                valid_c = cv
            sums.add(p, t, valid, core, m, c, valid_c if cl is not None else None, row0 == 0, row0 + rows == height)
            monitor.progress(100.0 * (n + 1) / total)
        if mds is not None:
            mds.close()
        if sums.n == 0:
            raise InputError("prediction and reference have no valid pixel in common (all nodata or NaN)")
        values = sums.result(with_mask=mds is not None, with_cloudy=cl is not None and mds is not None)
        return Evaluation(values, names, grid.width * grid.height, sums.n, notes)
    finally:
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


class _Sums:
    """float64 running sums of every metric."""

    def __init__(self) -> None:
        self.n = 0  # valid pixels
        self.abs = self.sq = self.sam = 0.0
        self.ssim = 0.0
        self.ssim_n = 0
        self.nm = 0  # valid pixels in the mask
        self.abs_m = self.sq_m = self.sam_m = 0.0
        self.nc = 0  # valid clear pixels
        self.sq_c = 0.0
        self.nr = 0
        self.abs_r = self.sam_r = 0.0
        self.bands = 0

    def add(self, p, t, valid, core, m, c, cv, first: bool, last: bool) -> None:
        import torch

        from ...models.metrics import sam_map, ssim_map

        bands = p.shape[0]
        self.bands = bands
        pc, tc, vc = p[:, core], t[:, core], valid[core]
        diff = pc - tc
        ad = np.abs(diff).sum(axis=0)
        sq = (diff ** 2).sum(axis=0)
        angle = sam_map(torch.from_numpy(pc[None]), torch.from_numpy(tc[None]), degrees=True)[0, 0].numpy()
        self.n += int(vc.sum())
        self.abs += float(ad[vc].sum())
        self.sq += float(sq[vc].sum())
        self.sam += float(angle[vc].sum())
        # SSIM: map positions of the strip whose 11x11 window lies inside the image and is all valid
        if p.shape[1] >= 11 and p.shape[2] >= 11:
            smap = ssim_map(torch.from_numpy(p[None]), torch.from_numpy(t[None]))[0].numpy()  # (C, h-10, w-10)
            ok = _window_all(valid, 11)  # (h-10, w-10)
            # map row r corresponds to strip row r + 5: keep the centres inside the core rows
            centre0 = core.start - SSIM_HALO
            centre1 = core.stop - SSIM_HALO
            keep = np.zeros(ok.shape[0], bool)
            keep[max(centre0, 0):max(centre1, 0)] = True
            sel = ok & keep[:, None]
            self.ssim += float(smap[:, sel].sum())
            self.ssim_n += int(sel.sum()) * bands
        if m is not None:
            mm = m & vc
            clear = ~m & vc
            self.nm += int(mm.sum())
            self.abs_m += float(ad[mm].sum())
            self.sq_m += float(sq[mm].sum())
            self.sam_m += float(angle[mm].sum())
            self.nc += int(clear.sum())
            self.sq_c += float(sq[clear].sum())
            if c is not None:
                rv = clear & cv
                dc = pc - c
                ac = sam_map(torch.from_numpy(pc[None]), torch.from_numpy(c[None]), degrees=True)[0, 0].numpy()
                self.nr += int(rv.sum())
                self.abs_r += float(np.abs(dc).sum(axis=0)[rv].sum())
                self.sam_r += float(ac[rv].sum())

    def result(self, with_mask: bool, with_cloudy: bool) -> Dict[str, float]:
        nan = float("nan")
        b = max(1, self.bands)

        def psnr(sq_sum: float, n: int) -> float:
            if n == 0:
                return nan
            mse = sq_sum / (n * b)
            return float("inf") if mse == 0 else 20.0 * math.log10(1.0 / math.sqrt(mse))

        out = {"mae": self.abs / (self.n * b), "rmse": math.sqrt(self.sq / (self.n * b)), "psnr": psnr(self.sq, self.n),
               "ssim": self.ssim / self.ssim_n if self.ssim_n else nan, "sam": self.sam / self.n}
        if with_mask:
            out["cloud_fraction"] = self.nm / self.n
            out["psnr_cloudy"] = psnr(self.sq_m, self.nm)
            out["psnr_clear"] = psnr(self.sq_c, self.nc)
            out["mae_reconstruction"] = self.abs_m / (self.nm * b) if self.nm else nan
            out["sam_reconstruction"] = self.sam_m / self.nm if self.nm else nan
            if with_cloudy:
                out["mae_reproduction"] = self.abs_r / (self.nr * b) if self.nr else nan
                out["sam_reproduction"] = self.sam_r / self.nr if self.nr else nan
        return out


def _window_all(valid: np.ndarray, size: int) -> np.ndarray:
    """True where the ``size`` x ``size`` window starting there is all valid ('valid' positions)."""
    v = valid.astype(np.int32)
    c = np.pad(v.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return s == size * size


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
