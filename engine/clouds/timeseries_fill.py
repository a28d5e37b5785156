"""Multi-temporal cloud removal: fill the cloudy pixels of a target date from other dates.

This module works on one window of aligned, in-memory arrays (the caller reads the window of the
target and of every auxiliary date on the same grid, with a halo, and calls
:func:`timeseries_fill` once per window). It never touches files.

Inputs and outputs
------------------
* **Target**: a (C, H, W) float32 reflectance image (NaN = nodata), its cloud / cloud-shadow mask
  (H, W, True = cloudy) and its acquisition date.
* **Auxiliary dates**: a sequence of :class:`Acquisition` (image, mask, date) on the same grid and
  bands. An auxiliary pixel is *usable* where its mask is False and all its bands are finite.
* **Result** (:class:`FillResult`): the filled image, a per-pixel ``source`` code (uint8) and
  :class:`FillStats`. Source codes: ``0`` observed clear in the target (values copied unchanged),
  ``k`` (1..252) filled from the k-th auxiliary date *in the caller's order* (1-based),
  ``254`` filled by the single-image fallback, ``255`` nodata (the target is nodata there and
  ``fill_nodata`` is off, or nothing could fill the pixel; values NaN). ``253`` is kept for the
  pixels a multi-temporal network fills (:data:`SOURCE_NETWORK`, written by :mod:`.timeseries`).

Method
------
1. **Which pixels.** A target pixel is *to fill* where its mask is True (whatever its values;
   NaN is fine), and also where it is nodata when ``FillOptions.fill_nodata`` is True. Pixels
   clear and valid in the target are never modified.
2. **Temporal selection.** Auxiliary dates are ranked by absolute time difference to the target
   (on a tie the earlier date comes first, so the result does not depend on the caller's order;
   dates further than ``max_days`` are ignored). Each pixel to fill
   takes its value from the nearest-ranked date on which it is usable; where the nearest date is
   cloudy the next nearest is used, and so on.
3. **Radiometric matching.** Before use, each auxiliary date is matched to the target per band by
   a robust linear fit ``target = gain * aux + offset`` on the pixels clear in both, computed
   **per region** so it follows local differences (phenology, haze, illumination):

   * square blocks of ``block_size`` px (default 96) on a lattice of step ``block_step`` (default
     48, i.e. 50 % overlap), anchored to the scene grid through ``origin`` so that neighbouring
     windows share the same blocks;
   * the fit of a block: Theil's incomplete method (median slope of the pairs formed by the
     i-th and (i + n/2)-th smallest auxiliary values) as the starting point, refined by
     ``irls_iterations`` iterations of iteratively reweighted least squares with Tukey's
     biweight (c = 4.685, residual scale 1.4826 MAD). Pixels that changed between the dates or
     undetected haze thus get no weight. The fit uses every ``fit_stride``-th pixel of the scene
     grid in each direction (default 2);
   * thresholds, on the number of pixels clear in both images within the block:
     ``>= min_linear_pixels`` (default 1000, ~11 % of a 96 x 96 block) gives the full gain +
     offset fit, unless the auxiliary band barely varies in the block (robust spread below
     ``min_spread`` = 0.005 reflectance) or the gain falls outside ``gain_range`` (0.5 - 2.0),
     in which case (and for ``>= min_offset_pixels``, default 100) an **offset-only** fit
     (gain 1, offset = median difference) is used. A block with fewer common clear pixels
     takes the date's ``scene_fit`` when the caller gives one (one fit of the whole scene,
     :func:`scene_fit_of` on decimated images: the same in every window), else the fit of the
     whole window computed by the same rules; a window with fewer than ``min_offset_pixels``
     common clear pixels (and no scene fit) uses the **identity** (gain 1, offset 0);
   * the block gains and offsets, attached to the block centres, are interpolated bilinearly
     between the centres (held constant beyond the outermost ones) into smooth per-pixel
     fields, so there are no block seams. Only the blocks whose interpolation support reaches a
     pixel that needs the date are fitted.
4. **Seam-free borders (residual feathering).** Dates are applied nearest first. For the region
   R filled from date k, the residual ``current output - matched date k`` is taken on the
   reference pixels (observed, or filled from a nearer date) lying within ``ring_px`` (2) px of
   R where date k is usable, smoothed along the border by normalised Gaussian convolution
   (sigma = ``feather_px`` / 2) and added to the filled pixels with a linear weight that is 1
   on the pixels next to the border and falls to 0 at ``feather_px`` (default 4) px inside R.
   The filled values thus meet the observed ones at the border and return to the matched
   auxiliary values within a few pixels; observed pixels are never changed. ``feather_px = 0``
   turns blending off.
5. **Fallback.** Pixels to fill that are usable on no auxiliary date are filled by the
   ``fallback`` callable, ``f(image, mask) -> image`` on (C, H, W) float32 and (H, W) bool
   (True = fill). It gets the output so far (observed and time-series-filled pixels as
   context, the pixels to fill and nodata set to 0 and flagged in the mask). The default,
   :func:`inpaint_fallback`, is GDAL FillNodata inside the mask
   (:func:`topoclear.engine.training.baselines.inpaint`). Those pixels get code 254; with
   ``fallback=None`` they stay NaN with code 255. A fallback may return ``(image, reached)``,
   ``reached`` (H, W) False where it had nothing near enough to fill from (e.g. the coarse part
   of :func:`topoclear.engine.clouds.methods.fill.fill_block`): those pixels are counted as
   ``unreached`` (:attr:`FillResult.unreached`).

Filled values are clipped below at ``clip_min`` (0, reflectance cannot be negative).

Windows and halo
----------------
Pass the arrays of the window grown by ``halo`` px on each side and the scene position
``origin`` = (row, col) of their top-left pixel; the result is cropped to the core window and the
statistics count the core only. With ``halo >= required_halo(options)`` (107 px with the defaults)
and every date's ``scene_fit`` given, the core result of the time-series filled and observed pixels
equals that of a whole-scene run (without scene fits, blocks that fall back to the window-level fit
depend on the window). Pixels left to the fallback are window-independent when the fallback's own
reach fits in the halo (the windowed fill of :mod:`topoclear.engine.clouds.methods.fill` with
``halo >= distance + smoothing``, except its unreached pixels; the default GDAL FillNodata searches
the whole array it is given).

The pieces live in :mod:`.timeseries_matching` (robust fits, block lattice, gain / offset fields)
and :mod:`.timeseries_blending` (residual feathering, :func:`seam_step`); whole scenes, files and
dates are read by :mod:`.timeseries`.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..progress import SILENT, Monitor
from .timeseries_blending import blend, blend_margin, bounding_box, seam_step
from .timeseries_matching import FIT_KINDS, Lattice, match_fields, robust_linear_fit, sample_grid, scene_fit_of

__all__ = [
    "SOURCE_OBSERVED",
    "SOURCE_FALLBACK",
    "SOURCE_NETWORK",
    "SOURCE_NODATA",
    "MAX_AUXILIARY",
    "FIT_KINDS",
    "Acquisition",
    "FillOptions",
    "DateStats",
    "FillStats",
    "FillResult",
    "required_halo",
    "inpaint_fallback",
    "robust_linear_fit",
    "scene_fit_of",
    "seam_step",
    "timeseries_fill",
]

#: Source code of pixels observed clear in the target.
SOURCE_OBSERVED = 0
#: Source code of pixels filled by a multi-temporal network (never written by :func:`timeseries_fill`).
SOURCE_NETWORK = 253
#: Source code of pixels filled by the single-image fallback.
SOURCE_FALLBACK = 254
#: Source code of nodata pixels (values NaN).
SOURCE_NODATA = 255
#: Most auxiliary dates one call accepts (codes 1..252).
MAX_AUXILIARY = 252

DateLike = Union[str, _dt.date, _dt.datetime, np.datetime64]
Fallback = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Acquisition:
    """One auxiliary date on the target grid: (C, H, W) reflectance (NaN nodata), (H, W) mask
    (True = cloud / shadow, not usable) and the acquisition date (``datetime.date``,
    ``datetime.datetime``, ``numpy.datetime64`` or an ISO string such as ``"2018-05-31"``)."""

    image: np.ndarray
    mask: np.ndarray
    date: DateLike
    #: optional (gain, offset), one per band, fitted over the whole scene (:func:`scene_fit_of`): the fit of
    #: the blocks with too few common clear pixels, the same in every window
    scene_fit: Optional[Tuple[np.ndarray, np.ndarray]] = None


@dataclass(frozen=True)
class FillOptions:
    """Parameters of :func:`timeseries_fill` (see the module documentation for their role)."""

    block_size: int = 96
    block_step: int = 48
    min_linear_pixels: int = 1000
    min_offset_pixels: int = 100
    min_spread: float = 0.005
    gain_range: Tuple[float, float] = (0.5, 2.0)
    fit_stride: int = 2
    irls_iterations: int = 8
    feather_px: int = 4
    ring_px: int = 2
    max_days: Optional[float] = None
    clip_min: Optional[float] = 0.0
    fill_nodata: bool = False

    def validate(self) -> None:
        if self.block_size < 8:
            raise InputError(f"block_size must be at least 8 px, got {self.block_size}")
        if not 1 <= self.block_step <= self.block_size:
            raise InputError(f"block_step must be between 1 and block_size ({self.block_size}), got {self.block_step}")
        if self.min_offset_pixels < 1 or self.min_linear_pixels < self.min_offset_pixels:
            raise InputError("expected 1 <= min_offset_pixels <= min_linear_pixels, got "
                             f"{self.min_offset_pixels} and {self.min_linear_pixels}")
        lo, hi = self.gain_range
        if not 0 < lo <= 1 <= hi:
            raise InputError(f"gain_range must satisfy 0 < low <= 1 <= high, got {self.gain_range}")
        if self.fit_stride < 1 or self.irls_iterations < 0 or self.feather_px < 0 or self.ring_px < 1:
            raise InputError("fit_stride and ring_px must be >= 1, irls_iterations and feather_px >= 0")
        if self.max_days is not None and not self.max_days >= 0:
            raise InputError(f"max_days must be >= 0 or None, got {self.max_days}")

    @property
    def feather_sigma(self) -> float:
        return max(1.0, self.feather_px / 2.0)


def required_halo(options: Optional[FillOptions] = None) -> int:
    """Halo (px) that makes a window's core independent of the window (see the module notes)."""
    o = options or FillOptions()
    feather = (o.ring_px + int(math.ceil(4.0 * o.feather_sigma)) + 1) if o.feather_px > 0 else 0
    return int(o.block_step + (o.block_size + 1) // 2 + feather)


@dataclass
class DateStats:
    """What one auxiliary date contributed (pixel counts are over the core window)."""

    index: int  #: source code of the date (1-based position in the caller's list)
    date: str  #: ISO date
    days: float  #: signed time difference to the target (auxiliary minus target), in days
    rank: int  #: 0 for the temporally nearest date; -1 when excluded by ``max_days``
    usable_pixels: int  #: pixels clear and valid on this date
    filled_pixels: int  #: target pixels filled from this date
    fit_blocks: Dict[str, int] = field(default_factory=dict)  #: fitted (block, band) pairs per kind


@dataclass
class FillStats:
    """Pixel counts of the core window and the contribution of each date."""

    pixels: int
    observed_pixels: int
    to_fill_pixels: int  #: cloudy target pixels (plus nodata ones with ``fill_nodata``)
    filled_from_dates: int
    fallback_pixels: int
    unreached_pixels: int  #: fallback pixels the fallback did not reach (its coarse fill; 0 if it does not say)
    unfilled_pixels: int  #: pixels to fill left NaN (no date, no fallback result)
    nodata_pixels: int  #: pixels with code 255
    per_date: List[DateStats]

    @property
    def real_fraction(self) -> float:
        """Fraction of the pixels to fill that were filled from real observations (NaN if none)."""
        return self.filled_from_dates / self.to_fill_pixels if self.to_fill_pixels else float("nan")

    @property
    def fallback_fraction(self) -> float:
        return self.fallback_pixels / self.to_fill_pixels if self.to_fill_pixels else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["real_fraction"] = self.real_fraction
        d["fallback_fraction"] = self.fallback_fraction
        return d


@dataclass
class FillResult:
    image: np.ndarray  #: (C, h, w) float32, the core window
    source: np.ndarray  #: (h, w) uint8 source codes
    stats: FillStats
    #: (h, w) True on fallback pixels the fallback says it did not reach (no clear pixel near enough)
    unreached: Optional[np.ndarray] = None


# --------------------------------------------------------------------------- inputs
def _day_number(value: DateLike, role: str) -> Tuple[float, str]:
    try:
        if isinstance(value, np.datetime64):
            d = value
        elif isinstance(value, _dt.datetime):
            d = np.datetime64(value.replace(tzinfo=None), "s")
        elif isinstance(value, _dt.date):
            d = np.datetime64(value, "D")
        elif isinstance(value, str):
            d = np.datetime64(value.strip())
        else:
            raise TypeError(type(value).__name__)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{role}: cannot read the date {value!r} (expected a date, a datetime or "
                         f"an ISO string like 2018-05-31)") from exc
    if np.isnat(d):
        raise InputError(f"{role}: the date is missing (NaT)")
    seconds = d.astype("datetime64[s]").astype(np.int64)
    return float(seconds) / 86400.0, str(d.astype("datetime64[D]"))


def _as_image(image, role: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3:
        raise InputError(f"{role}: expected a (bands, height, width) array, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _as_mask(mask, shape: Tuple[int, int], role: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != shape:
        raise InputError(f"{role}: mask of shape {m.shape} does not match the image ({shape[0]} x {shape[1]})")
    return m if m.dtype == bool else np.nan_to_num(m.astype(np.float64), nan=1.0) > 0.5


def _halo_sides(halo) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) of a halo given as one number or four."""
    if np.ndim(halo) == 0:
        return (int(halo),) * 4
    sides = tuple(int(v) for v in halo)
    if len(sides) != 4:
        raise InputError(f"halo must be one number or (top, bottom, left, right), got {halo!r}")
    return sides


def _scene_fit(fit, bands: int, role: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    if fit is None:
        return None
    try:
        gain, offset = (np.asarray(v, np.float64).reshape(bands) for v in fit)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{role}: scene_fit must be (gain, offset) with one value per band ({bands})") from exc
    if not (np.isfinite(gain).all() and np.isfinite(offset).all()):
        raise InputError(f"{role}: scene_fit holds values that are not finite")
    return gain, offset


def inpaint_fallback(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Default single-image fallback: GDAL FillNodata inside ``mask``, band by band."""
    from ..training.baselines import inpaint

    return inpaint(image, mask)


# --------------------------------------------------------------------------- steps
@dataclass
class _Dates:
    """The auxiliary dates, checked: images, usable pixels, days from the target, and their ranking."""

    images: List[np.ndarray]
    usable: List[np.ndarray]
    days: List[float]
    iso: List[str]
    scene_fits: List[Optional[Tuple[np.ndarray, np.ndarray]]]
    ranked: List[int]  #: indices nearest first, dates beyond ``max_days`` left out

    @property
    def rank_of(self) -> Dict[int, int]:
        return {i: r for r, i in enumerate(self.ranked)}


def _read_dates(auxiliaries: Sequence[Acquisition], target: np.ndarray, target_date: DateLike,
                opts: FillOptions) -> _Dates:
    auxiliaries = list(auxiliaries)
    if len(auxiliaries) > MAX_AUXILIARY:
        raise InputError(f"{len(auxiliaries)} auxiliary dates given; at most {MAX_AUXILIARY} fit the uint8 source codes")
    c, h, w = target.shape
    t_day, _ = _day_number(target_date, "target")
    dates = _Dates([], [], [], [], [], [])
    for n, acq in enumerate(auxiliaries, start=1):
        role = f"auxiliary date {n}"
        img = _as_image(acq.image, role)
        if img.shape != target.shape:
            raise InputError(f"{role}: image of shape {img.shape}, expected the target's {target.shape} "
                             "(same bands, aligned on the target grid)")
        m = _as_mask(acq.mask, (h, w), role)
        d, iso = _day_number(acq.date, role)
        dates.images.append(img)
        dates.scene_fits.append(_scene_fit(acq.scene_fit, c, role))
        dates.usable.append(~m & np.isfinite(img).all(axis=0))
        dates.days.append(d - t_day)
        dates.iso.append(iso)
    days = dates.days
    ranked = sorted(range(len(days)), key=lambda i: (abs(days[i]), days[i], i))
    dates.ranked = [i for i in ranked if opts.max_days is None or abs(days[i]) <= opts.max_days]
    return dates


def _fill_from_dates(target: np.ndarray, observed: np.ndarray, source: np.ndarray, out: np.ndarray,
                     dates: _Dates, opts: FillOptions, origin: Tuple[int, int],
                     monitor: Monitor) -> Dict[int, Dict[str, int]]:
    """Write the matched (and feathered) values of every date into ``out`` where ``source`` names it.

    Returns the fit-block counts per date index."""
    h, w = source.shape
    lat_r = Lattice(h, int(origin[0]), opts.block_step, opts.block_size)
    lat_c = Lattice(w, int(origin[1]), opts.block_step, opts.block_size)
    grid = sample_grid((h, w), (int(origin[0]), int(origin[1])), opts.fit_stride)
    reference = observed.copy()
    fit_counts: Dict[int, Dict[str, int]] = {}
    used = [i for i in dates.ranked if (source == i + 1).any()]
    for step_no, i in enumerate(used):
        monitor.check()
        image, usable = dates.images[i], dates.usable[i]
        region = source == i + 1
        needed = ndimage.binary_dilation(region, iterations=opts.ring_px + 1) if opts.feather_px else region
        box = bounding_box(region, blend_margin(opts) if opts.feather_px else 0)
        gain, offset, fit_counts[i] = match_fields(target, image, observed & usable, needed, lat_r, lat_c,
                                                   grid, opts, box, dates.scene_fits[i])
        matched = gain * image[(slice(None),) + box] + offset
        out_box, region_box = out[(slice(None),) + box], region[box]
        out_box[:, region_box] = matched[:, region_box]
        if opts.feather_px > 0:
            blend(out_box, matched, region_box, reference[box], usable[box], opts)
        reference |= region
        monitor.progress(90.0 * (step_no + 1) / max(1, len(used)))
    return fit_counts


def _apply_fallback(out: np.ndarray, source: np.ndarray, remaining: np.ndarray, fallback: Fallback,
                    opts: FillOptions) -> np.ndarray:
    """Fill ``remaining`` pixels of ``out`` by ``fallback``; returns the fallback pixels it says it
    did not reach (all False when it does not say)."""
    context_missing = remaining | ~np.isfinite(out).all(axis=0)
    work = np.where(context_missing[None], np.float32(0.0), out).astype(np.float32)
    result = fallback(work, context_missing)
    reached = None
    if isinstance(result, tuple):
        result, reached = result
    result = np.asarray(result, dtype=np.float32)
    if result.shape != out.shape:
        raise InputError(f"the fallback returned an array of shape {result.shape}, expected {out.shape}")
    values = result[:, remaining]
    ok = np.isfinite(values).all(axis=0)
    if opts.clip_min is not None:
        values = np.maximum(values, np.float32(opts.clip_min))
    rr, cc = np.nonzero(remaining)
    rr, cc = rr[ok], cc[ok]
    out[:, rr, cc] = values[:, ok]
    source[rr, cc] = SOURCE_FALLBACK
    if reached is None:
        return np.zeros(source.shape, bool)
    return (source == SOURCE_FALLBACK) & ~np.asarray(reached, bool)


def _core_stats(src: np.ndarray, fill_core: np.ndarray, unreached_core: np.ndarray, dates: _Dates,
                fit_counts: Dict[int, Dict[str, int]], core) -> FillStats:
    rank_of = dates.rank_of
    per_date = [DateStats(index=i + 1, date=dates.iso[i], days=float(dates.days[i]), rank=rank_of.get(i, -1),
                          usable_pixels=int(dates.usable[i][core].sum()),
                          filled_pixels=int((src == i + 1).sum()), fit_blocks=fit_counts.get(i, {}))
                for i in range(len(dates.images))]
    return FillStats(pixels=int(src.size), observed_pixels=int((src == SOURCE_OBSERVED).sum()),
                     to_fill_pixels=int(fill_core.sum()),
                     filled_from_dates=int(((src >= 1) & (src <= MAX_AUXILIARY)).sum()),
                     fallback_pixels=int((src == SOURCE_FALLBACK).sum()),
                     unreached_pixels=int(unreached_core.sum()),
                     unfilled_pixels=int((fill_core & (src == SOURCE_NODATA)).sum()),
                     nodata_pixels=int((src == SOURCE_NODATA).sum()), per_date=per_date)


# --------------------------------------------------------------------------- main entry
def timeseries_fill(target: np.ndarray, target_mask: np.ndarray, target_date: DateLike,
                    auxiliaries: Sequence[Acquisition], options: Optional[FillOptions] = None,
                    fallback: Optional[Fallback] = inpaint_fallback, halo: int = 0,
                    origin: Tuple[int, int] = (0, 0), monitor: Monitor = SILENT) -> FillResult:
    """Fill the cloudy pixels of ``target`` from ``auxiliaries`` (see the module documentation).

    ``target``: (C, H, W) reflectance, NaN nodata; ``target_mask``: (H, W), True = cloud or
    shadow; ``auxiliaries``: :class:`Acquisition` objects on the same grid and bands, in any
    order (their position gives the source codes). ``fallback``: ``f(image, mask) -> image`` for
    the pixels clear on no date (None: leave them NaN). ``halo``: px on each side of the arrays
    that are context only (one number, or (top, bottom, left, right) where a window meets the scene
    border); the result is cropped to the core. ``origin``: scene (row, col) of the
    top-left array pixel, anchoring the fit blocks. Raises :class:`InputError` on inconsistent
    inputs and :class:`Cancelled` when ``monitor`` says so.
    """
    opts = options or FillOptions()
    opts.validate()
    tgt = _as_image(target, "target")
    _, h, w = tgt.shape
    tmask = _as_mask(target_mask, (h, w), "target")
    top, bottom, left, right = _halo_sides(halo)
    if min(top, bottom, left, right) < 0 or top + bottom >= h or left + right >= w:
        raise InputError(f"halo of {halo} px does not leave a core window in an array of {h} x {w} px")
    dates = _read_dates(auxiliaries, tgt, target_date, opts)

    valid = np.isfinite(tgt).all(axis=0)
    observed = ~tmask & valid
    to_fill = tmask | (~valid if opts.fill_nodata else np.zeros_like(tmask))
    source = np.full((h, w), SOURCE_NODATA, np.uint8)
    source[observed] = SOURCE_OBSERVED
    out = tgt.copy()
    out[:, to_fill] = np.nan
    remaining = to_fill.copy()
    for i in dates.ranked:  # each pixel to fill takes the nearest date on which it is usable
        take_here = remaining & dates.usable[i]
        source[take_here] = i + 1
        remaining &= ~take_here

    fit_counts = _fill_from_dates(tgt, observed, source, out, dates, opts, origin, monitor)
    filled = to_fill & (source != SOURCE_NODATA)
    if opts.clip_min is not None and filled.any():
        out[:, filled] = np.maximum(out[:, filled], np.float32(opts.clip_min))
    unreached = np.zeros((h, w), bool)
    if remaining.any() and fallback is not None:
        monitor.check()
        unreached = _apply_fallback(out, source, remaining, fallback, opts)
    monitor.progress(100.0)

    core = (slice(top, h - bottom), slice(left, w - right))
    src = np.ascontiguousarray(source[core])
    stats = _core_stats(src, to_fill[core], unreached[core], dates, fit_counts, core)
    return FillResult(image=np.ascontiguousarray(out[(slice(None),) + core]), source=src,
                      stats=stats, unreached=np.ascontiguousarray(unreached[core]))
