"""Seam-free borders of the filled regions: residual feathering (step 4 of :mod:`.timeseries_fill`), and
:func:`seam_step`, the measure of a border step."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # pragma: no cover
    from .timeseries_fill import FillOptions

__all__ = ["blend", "blend_margin", "bounding_box", "seam_step"]


def blend(out: np.ndarray, matched: np.ndarray, region: np.ndarray, reference: np.ndarray,
           usable: np.ndarray, opts: "FillOptions") -> None:
    """Residual feathering of ``region`` (filled from one date) against ``reference`` pixels, in place.

    All arrays cover the same part of the window, with a margin of at least
    :func:`blend_margin` px around ``region``."""
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


def blend_margin(opts: "FillOptions") -> int:
    return opts.feather_px + opts.ring_px + int(math.ceil(4 * opts.feather_sigma)) + 2


def bounding_box(region: np.ndarray, margin: int) -> Tuple[slice, slice]:
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
