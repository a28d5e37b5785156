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
  ``k`` (1..253) filled from the k-th auxiliary date *in the caller's order* (1-based),
  ``254`` filled by the single-image fallback, ``255`` nodata (the target is nodata there and
  ``fill_nodata`` is off, or nothing could fill the pixel; values NaN).

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
     takes the fit of the whole window computed by the same rules, and a window with fewer than
     ``min_offset_pixels`` common clear pixels uses the **identity** (gain 1, offset 0);
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
   ``fallback=None`` they stay NaN with code 255.

Filled values are clipped below at ``clip_min`` (0, reflectance cannot be negative).

Windows and halo
----------------
Pass the arrays of the window grown by ``halo`` px on each side and the scene position
``origin`` = (row, col) of their top-left pixel; the result is cropped to the core window and the
statistics count the core only. With ``halo >= required_halo(options)`` (107 px with the defaults)
the core result equals that of a whole-scene run, except where a block falls back to the
window-level fit and for pixels left to the fallback (GDAL FillNodata searches the whole array it
is given). Time-series filled and observed pixels are otherwise purely local.
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

__all__ = [
    "SOURCE_OBSERVED",
    "SOURCE_FALLBACK",
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
    "seam_step",
    "timeseries_fill",
]

#: Source code of pixels observed clear in the target.
SOURCE_OBSERVED = 0
#: Source code of pixels filled by the single-image fallback.
SOURCE_FALLBACK = 254
#: Source code of nodata pixels (values NaN).
SOURCE_NODATA = 255
#: Most auxiliary dates one call accepts (codes 1..253).
MAX_AUXILIARY = 253
#: Names of the radiometric fit kinds, in the order of their internal codes.
FIT_KINDS = ("linear", "offset", "window", "identity")
_LINEAR, _OFFSET, _WINDOW, _IDENTITY = range(4)
_TUKEY_C = 4.685
_MAD_TO_SIGMA = 1.4826

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
    blend = (o.ring_px + int(math.ceil(4.0 * o.feather_sigma)) + 1) if o.feather_px > 0 else 0
    return int(o.block_step + (o.block_size + 1) // 2 + blend)


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


def inpaint_fallback(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Default single-image fallback: GDAL FillNodata inside ``mask``, band by band."""
    from ..training.baselines import inpaint

    return inpaint(image, mask)


# --------------------------------------------------------------------------- robust fit
def robust_linear_fit(x: np.ndarray, y: np.ndarray, iterations: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """Robust per-row fit ``y = gain * x + offset`` of (C, n) samples; returns (gain, offset), (C,).

    Theil's incomplete method (median of the slopes of the pairs (i, i + n/2) after sorting by
    x) gives the start; Tukey-biweight IRLS refines it, with the residual scale (1.4826 MAD)
    taken from the start and re-estimated once after two iterations. float64 throughout.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    c, n = x.shape
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, axis=1)
    ys = np.take_along_axis(y, order, axis=1)
    half = n // 2
    dx = xs[:, half:2 * half] - xs[:, :half]
    dy = ys[:, half:2 * half] - ys[:, :half]
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(dx > 1e-9, dy / np.where(dx > 1e-9, dx, 1.0), np.nan)
    gain = np.nanmedian(slopes, axis=1) if half else np.ones(c)
    gain = np.where(np.isfinite(gain), gain, 1.0)
    offset = np.median(y - gain[:, None] * x, axis=1)
    scale = None
    for it in range(iterations):
        r = y - gain[:, None] * x - offset[:, None]
        if it in (0, 2):  # scale of the start, re-estimated once the fit has settled
            scale = _MAD_TO_SIGMA * np.median(np.abs(r - np.median(r, axis=1, keepdims=True)), axis=1)
            scale = np.maximum(scale, 1e-6)
        u = r / (_TUKEY_C * scale[:, None])
        w = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
        sw = w.sum(axis=1)
        ok = sw > 2.0
        sw = np.where(ok, sw, 1.0)
        mx = (w * x).sum(axis=1) / sw
        my = (w * y).sum(axis=1) / sw
        sxx = (w * (x - mx[:, None]) ** 2).sum(axis=1)
        sxy = (w * (x - mx[:, None]) * (y - my[:, None])).sum(axis=1)
        ok &= sxx > 1e-12
        new_gain = np.where(ok, sxy / np.where(ok, sxx, 1.0), gain)
        new_offset = np.where(ok, my - new_gain * mx, offset)
        done = np.allclose(new_gain, gain, atol=1e-6) and np.allclose(new_offset, offset, atol=1e-7)
        gain, offset = new_gain, new_offset
        if done:
            break
    return gain, offset


def _fit_samples(x: np.ndarray, y: np.ndarray, count: int, opts: FillOptions
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gain, offset and kind per band from (C, n) samples of ``count`` common clear pixels."""
    c = x.shape[0]
    gain, offset = np.ones(c), np.zeros(c)
    kind = np.full(c, _IDENTITY, np.int8)
    if count < opts.min_offset_pixels or x.shape[1] == 0:
        return gain, offset, kind
    offset = np.median(y.astype(np.float64) - x, axis=1)
    kind[:] = _OFFSET
    if count >= opts.min_linear_pixels and x.shape[1] >= 8:
        spread = _MAD_TO_SIGMA * np.median(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1)
        g, o = robust_linear_fit(x, y, opts.irls_iterations)
        lo, hi = opts.gain_range
        good = (spread >= opts.min_spread) & np.isfinite(g) & (g >= lo) & (g <= hi) & np.isfinite(o)
        gain = np.where(good, g, 1.0)
        offset = np.where(good, o, offset)
        kind[good] = _LINEAR
    return gain, offset, kind


class _Lattice:
    """Block lattice along one axis, anchored to the scene grid, with its interpolation matrix."""

    def __init__(self, n: int, origin: int, step: int, block: int) -> None:
        off = (step - block) // 2  # scene index of the first pixel of block 0
        centre0 = off + (block - 1) / 2.0
        i_lo = int(math.floor((origin - centre0) / step))
        i_hi = int(math.ceil((origin + n - 1 - centre0) / step))
        idx = np.arange(i_lo, i_hi + 1)
        self.centres = idx * step + centre0 - origin  # local coordinates
        self.starts = np.clip(idx * step + off - origin, 0, n)
        self.stops = np.clip(idx * step + off + block - origin, 0, n)
        # interpolation support of each centre: |pixel - centre| < step
        self.sup_lo = np.clip(np.floor(self.centres - step).astype(int) + 1, 0, n)
        self.sup_hi = np.clip(np.ceil(self.centres + step).astype(int), 0, n)
        m = len(idx)
        weights = np.zeros((n, m))
        if m == 1:
            weights[:, 0] = 1.0
        else:
            u = (np.arange(n) - self.centres[0]) / step
            j0 = np.clip(np.floor(u).astype(int), 0, m - 2)
            frac = np.clip(u - j0, 0.0, 1.0)
            rows = np.arange(n)
            weights[rows, j0] = 1.0 - frac
            weights[rows, j0 + 1] += frac
        self.weights = weights

    def __len__(self) -> int:
        return len(self.centres)


def _sample_grid(shape: Tuple[int, int], origin: Tuple[int, int], stride: int) -> np.ndarray:
    rows = (np.arange(shape[0]) + origin[0]) % stride == 0
    cols = (np.arange(shape[1]) + origin[1]) % stride == 0
    return rows[:, None] & cols[None, :]


def _match_fields(target: np.ndarray, aux: np.ndarray, common: np.ndarray, needed: np.ndarray,
                  lat_r: _Lattice, lat_c: _Lattice, grid: np.ndarray, opts: FillOptions,
                  box: Tuple[slice, slice]) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
    """Gain and offset fields (C, h, w) matching ``aux`` to ``target`` over the array part ``box``."""
    c = target.shape[0]
    nr, nc = len(lat_r), len(lat_c)
    gains = np.ones((c, nr, nc))
    offsets = np.zeros((c, nr, nc))
    kinds = np.full((c, nr, nc), -1, np.int8)
    window_fit = None
    sampled = common & grid

    def window_level():
        nonlocal window_fit
        if window_fit is None:
            count = int(common.sum())
            pick = sampled
            n_pick = int(pick.sum())
            if n_pick > 8000:  # thin out further, deterministically
                flat = np.flatnonzero(pick)
                keep = flat[np.linspace(0, flat.size - 1, 8000).astype(np.int64)]
                pick = np.zeros_like(pick)
                pick.ravel()[keep] = True
            elif n_pick < 8:
                pick = common
            g, o, k = _fit_samples(aux[:, pick], target[:, pick], count, opts)
            window_fit = (g, o, np.where(k == _IDENTITY, _IDENTITY, _WINDOW).astype(np.int8))
        return window_fit

    for i in range(nr):
        r0, r1 = lat_r.starts[i], lat_r.stops[i]
        s0, s1 = lat_r.sup_lo[i], lat_r.sup_hi[i]
        for j in range(nc):
            if not needed[s0:s1, lat_c.sup_lo[j]:lat_c.sup_hi[j]].any():
                continue
            c0, c1 = lat_c.starts[j], lat_c.stops[j]
            block = common[r0:r1, c0:c1]
            count = int(block.sum()) if block.size else 0
            if count >= opts.min_offset_pixels:
                pick = sampled[r0:r1, c0:c1]
                if int(pick.sum()) < 8:
                    pick = block
                x = aux[:, r0:r1, c0:c1][:, pick]
                y = target[:, r0:r1, c0:c1][:, pick]
                g, o, k = _fit_samples(x, y, count, opts)
            else:
                g, o, k = window_level()
            gains[:, i, j], offsets[:, i, j], kinds[:, i, j] = g, o, k
    # blocks no needed pixel depends on keep the identity: their interpolation weight is 0 there
    counts = {name: int((kinds == code).sum()) for code, name in enumerate(FIT_KINDS)}
    wr, wc = lat_r.weights[box[0]], lat_c.weights[box[1]]
    gain_field = np.einsum("hi,cij,wj->chw", wr, gains, wc, optimize=True).astype(np.float32)
    offset_field = np.einsum("hi,cij,wj->chw", wr, offsets, wc, optimize=True).astype(np.float32)
    return gain_field, offset_field, counts


# --------------------------------------------------------------------------- blending
def _blend(out: np.ndarray, matched: np.ndarray, region: np.ndarray, reference: np.ndarray,
           usable: np.ndarray, opts: FillOptions) -> None:
    """Residual feathering of ``region`` (filled from one date) against ``reference`` pixels, in place.

    All arrays cover the same part of the window, with a margin of at least
    :func:`_blend_margin` px around ``region``."""
    feather, ring_px, sigma = opts.feather_px, opts.ring_px, opts.feather_sigma
    reg, ref = region, reference
    if not ref.any():
        return
    near_region = ndimage.distance_transform_edt(~reg) <= ring_px
    ring = ref & usable & near_region
    if not ring.any():
        return
    dist = ndimage.distance_transform_edt(~ref)
    zone = reg & (dist <= feather)
    if not zone.any():
        return
    den = ndimage.gaussian_filter(ring.astype(np.float64), sigma, mode="constant", cval=0.0)
    zone &= den > 1e-4
    weight = np.clip((feather + 1.0 - dist[zone]) / feather, 0.0, 1.0)
    o, m = out, matched
    for b in range(out.shape[0]):
        resid = np.where(ring, o[b].astype(np.float64) - m[b], 0.0)
        resid = np.nan_to_num(resid, nan=0.0)
        num = ndimage.gaussian_filter(resid, sigma, mode="constant", cval=0.0)
        o[b][zone] += (weight * num[zone] / den[zone]).astype(np.float32)


def _blend_margin(opts: FillOptions) -> int:
    return opts.feather_px + opts.ring_px + int(math.ceil(4 * opts.feather_sigma)) + 2


def _bounding_box(region: np.ndarray, margin: int) -> Tuple[slice, slice]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    h, w = region.shape
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)))


def seam_step(image: np.ndarray, region: np.ndarray, outside: Optional[np.ndarray] = None) -> float:
    """Mean absolute step across the border of ``region``.

    The mean, over bands and over the 4-neighbour pixel pairs with one pixel in ``region`` and
    the other outside it (and in ``outside`` when given), both finite, of ``|image[p] - image[q]|``.
    NaN when there is no such pair.
    """
    img = np.asarray(image, dtype=np.float64)
    img = img[None] if img.ndim == 2 else img
    reg = np.asarray(region, dtype=bool)
    out = ~reg if outside is None else (np.asarray(outside, dtype=bool) & ~reg)
    total, count = 0.0, 0
    for axis in (1, 2):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        ra, rb = reg[tuple(a[1:])], reg[tuple(b[1:])]
        oa, ob = out[tuple(a[1:])], out[tuple(b[1:])]
        pairs = (ra & ob) | (oa & rb)
        diff = np.abs(img[tuple(a)] - img[tuple(b)])[:, pairs]
        diff = diff[:, np.isfinite(diff).all(axis=0)]
        total += float(diff.sum())
        count += diff.size
    return total / count if count else float("nan")


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
    that are context only; the result is cropped to the core. ``origin``: scene (row, col) of the
    top-left array pixel, anchoring the fit blocks. Raises :class:`InputError` on inconsistent
    inputs and :class:`Cancelled` when ``monitor`` says so.
    """
    opts = options or FillOptions()
    opts.validate()
    tgt = _as_image(target, "target")
    c, h, w = tgt.shape
    tmask = _as_mask(target_mask, (h, w), "target")
    halo = int(halo)
    if halo < 0 or 2 * halo >= min(h, w):
        raise InputError(f"halo of {halo} px does not leave a core window in an array of {h} x {w} px")
    auxiliaries = list(auxiliaries)
    if len(auxiliaries) > MAX_AUXILIARY:
        raise InputError(f"{len(auxiliaries)} auxiliary dates given; at most {MAX_AUXILIARY} fit the uint8 source codes")
    t_day, _ = _day_number(target_date, "target")
    images, usable, days, iso = [], [], [], []
    for n, acq in enumerate(auxiliaries, start=1):
        role = f"auxiliary date {n}"
        img = _as_image(acq.image, role)
        if img.shape != tgt.shape:
            raise InputError(f"{role}: image of shape {img.shape}, expected the target's {tgt.shape} "
                             "(same bands, aligned on the target grid)")
        m = _as_mask(acq.mask, (h, w), role)
        d, s = _day_number(acq.date, role)
        images.append(img)
        usable.append(~m & np.isfinite(img).all(axis=0))
        days.append(d - t_day)
        iso.append(s)
    ranked = sorted(range(len(images)), key=lambda i: (abs(days[i]), days[i], i))
    if opts.max_days is not None:
        ranked = [i for i in ranked if abs(days[i]) <= opts.max_days]
    rank_of = {i: r for r, i in enumerate(ranked)}

    valid = np.isfinite(tgt).all(axis=0)
    observed = ~tmask & valid
    to_fill = tmask | (~valid if opts.fill_nodata else np.zeros_like(tmask))
    source = np.full((h, w), SOURCE_NODATA, np.uint8)
    source[observed] = SOURCE_OBSERVED
    out = tgt.copy()
    out[:, to_fill] = np.nan

    remaining = to_fill.copy()
    for i in ranked:
        take_here = remaining & usable[i]
        source[take_here] = i + 1
        remaining &= ~take_here

    lat_r = _Lattice(h, int(origin[0]), opts.block_step, opts.block_size)
    lat_c = _Lattice(w, int(origin[1]), opts.block_step, opts.block_size)
    grid = _sample_grid((h, w), (int(origin[0]), int(origin[1])), opts.fit_stride)
    reference = observed.copy()
    fit_counts: Dict[int, Dict[str, int]] = {}
    used = [i for i in ranked if (source == i + 1).any()]
    for step_no, i in enumerate(used):
        monitor.check()
        region = source == i + 1
        needed = ndimage.binary_dilation(region, iterations=opts.ring_px + 1) if opts.feather_px else region
        common = observed & usable[i]
        box = _bounding_box(region, _blend_margin(opts) if opts.feather_px else 0)
        gain, offset, counts = _match_fields(tgt, images[i], common, needed, lat_r, lat_c, grid, opts, box)
        fit_counts[i] = counts
        matched = gain * images[i][(slice(None),) + box] + offset
        out_box, region_box = out[(slice(None),) + box], region[box]
        out_box[:, region_box] = matched[:, region_box]
        if opts.feather_px > 0:
            _blend(out_box, matched, region_box, reference[box], usable[i][box], opts)
        reference |= region
        monitor.progress(90.0 * (step_no + 1) / max(1, len(used)))

    filled = to_fill & (source != SOURCE_NODATA)
    if opts.clip_min is not None and filled.any():
        out[:, filled] = np.maximum(out[:, filled], np.float32(opts.clip_min))

    if remaining.any() and fallback is not None:
        monitor.check()
        context_missing = remaining | ~np.isfinite(out).all(axis=0)
        work = np.where(context_missing[None], np.float32(0.0), out).astype(np.float32)
        result = np.asarray(fallback(work, context_missing), dtype=np.float32)
        if result.shape != tgt.shape:
            raise InputError(f"the fallback returned an array of shape {result.shape}, expected {tgt.shape}")
        values = result[:, remaining]
        ok = np.isfinite(values).all(axis=0)
        if opts.clip_min is not None:
            values = np.maximum(values, np.float32(opts.clip_min))
        rr, cc = np.nonzero(remaining)
        rr, cc = rr[ok], cc[ok]
        out[:, rr, cc] = values[:, ok]
        source[rr, cc] = SOURCE_FALLBACK
    monitor.progress(100.0)

    core = (slice(halo, h - halo), slice(halo, w - halo))
    src = source[core]
    fill_core = to_fill[core]
    per_date = []
    for i in range(len(images)):
        per_date.append(DateStats(index=i + 1, date=iso[i], days=float(days[i]), rank=rank_of.get(i, -1),
                                  usable_pixels=int(usable[i][core].sum()),
                                  filled_pixels=int((src == i + 1).sum()),
                                  fit_blocks=fit_counts.get(i, {})))
    from_dates = int(((src >= 1) & (src <= MAX_AUXILIARY)).sum())
    n_fallback = int((src == SOURCE_FALLBACK).sum())
    stats = FillStats(pixels=int(src.size), observed_pixels=int((src == SOURCE_OBSERVED).sum()),
                      to_fill_pixels=int(fill_core.sum()), filled_from_dates=from_dates,
                      fallback_pixels=n_fallback,
                      unfilled_pixels=int((fill_core & (src == SOURCE_NODATA)).sum()),
                      nodata_pixels=int((src == SOURCE_NODATA).sum()), per_date=per_date)
    return FillResult(image=np.ascontiguousarray(out[(slice(None),) + core]), source=np.ascontiguousarray(src),
                      stats=stats)
