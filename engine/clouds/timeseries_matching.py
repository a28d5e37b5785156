"""Radiometric matching of an auxiliary date to the target: robust per-band linear fits on a block
lattice anchored to the scene grid, interpolated into smooth gain and offset fields.

The method is described in :mod:`.timeseries_fill` (step 3); this module holds its pieces:
:func:`robust_linear_fit` (Theil start, Tukey-biweight IRLS), :func:`fit_samples` (the thresholds
that choose a linear, offset-only or identity fit), :class:`Lattice` (the blocks along one axis
and their bilinear interpolation weights) and :func:`match_fields` (the per-pixel fields of one
date over a part of the window).

A block with too few pixels clear in both images takes a wider fit: the ``scene_fit`` given by
the caller (one fit of the whole scene, the same for every window, so the result does not depend
on the window layout), else the fit of the whole window by the same rules.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .timeseries_fill import FillOptions

__all__ = ["FIT_KINDS", "LINEAR", "OFFSET", "WINDOW", "IDENTITY", "SCENE", "robust_linear_fit", "fit_samples",
           "Lattice", "sample_grid", "match_fields", "scene_fit_of"]

#: Names of the radiometric fit kinds, in the order of their internal codes.
FIT_KINDS = ("linear", "offset", "window", "identity", "scene")
LINEAR, OFFSET, WINDOW, IDENTITY, SCENE = range(5)
_LINEAR, _OFFSET, _WINDOW, _IDENTITY = LINEAR, OFFSET, WINDOW, IDENTITY
_TUKEY_C = 4.685
_MAD_TO_SIGMA = 1.4826


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


def fit_samples(x: np.ndarray, y: np.ndarray, count: int, opts: "FillOptions"
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


class Lattice:
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


def sample_grid(shape: Tuple[int, int], origin: Tuple[int, int], stride: int) -> np.ndarray:
    rows = (np.arange(shape[0]) + origin[0]) % stride == 0
    cols = (np.arange(shape[1]) + origin[1]) % stride == 0
    return rows[:, None] & cols[None, :]


def match_fields(target: np.ndarray, aux: np.ndarray, common: np.ndarray, needed: np.ndarray,
                  lat_r: Lattice, lat_c: Lattice, grid: np.ndarray, opts: "FillOptions",
                 box: Tuple[slice, slice], scene_fit: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
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
        if window_fit is None and scene_fit is not None:
            g, o = (np.asarray(v, np.float64).reshape(c) for v in scene_fit)
            window_fit = (g, o, np.full(c, SCENE, np.int8))
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
            g, o, k = fit_samples(aux[:, pick], target[:, pick], count, opts)
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
                g, o, k = fit_samples(x, y, count, opts)
            else:
                g, o, k = window_level()
            gains[:, i, j], offsets[:, i, j], kinds[:, i, j] = g, o, k
    # blocks no needed pixel depends on keep the identity: their interpolation weight is 0 there
    counts = {name: int((kinds == code).sum()) for code, name in enumerate(FIT_KINDS)}
    wr, wc = lat_r.weights[box[0]], lat_c.weights[box[1]]
    gain_field = np.einsum("hi,cij,wj->chw", wr, gains, wc, optimize=True).astype(np.float32)
    offset_field = np.einsum("hi,cij,wj->chw", wr, offsets, wc, optimize=True).astype(np.float32)
    return gain_field, offset_field, counts



def scene_fit_of(target: np.ndarray, aux: np.ndarray, common: np.ndarray, opts: "FillOptions",
                 max_samples: int = 20000) -> Tuple[np.ndarray, np.ndarray]:
    """One (gain, offset) per band for a whole scene from decimated images (C, h, w) of the target and of
    an auxiliary date and the pixels ``common`` clear in both (the rules of :func:`fit_samples`, counting
    pixels at full resolution as the decimated ones); identity when they share too few clear pixels."""
    t = np.asarray(target, np.float64)
    a = np.asarray(aux, np.float64)
    pick = np.asarray(common, bool) & np.isfinite(t).all(axis=0) & np.isfinite(a).all(axis=0)
    flat = np.flatnonzero(pick)
    if flat.size > max_samples:
        flat = flat[np.linspace(0, flat.size - 1, max_samples).astype(np.int64)]
    x = a.reshape(a.shape[0], -1)[:, flat]
    y = t.reshape(t.shape[0], -1)[:, flat]
    # the decimated sample stands for many more pixels: the linear fit needs a reasonable sample only
    count = opts.min_linear_pixels if flat.size >= 64 else (opts.min_offset_pixels if flat.size >= 8 else 0)
    g, o, _ = fit_samples(x, y, count, opts)
    return g, o
