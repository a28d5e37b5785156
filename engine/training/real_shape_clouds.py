"""Real cloud shapes on real clear images: the masks of real cloudy images, transplanted with cloud optics.

Synthetic fractal clouds (:mod:`.synthetic_clouds`) have the statistics of a noise field; real
clouds have the shapes, sizes and cover of real weather (cumulus fields, fronts, overcast with
a few holes). :func:`clouds_from_mask` takes the cloud mask of a *real* cloudy Sentinel-2 image
(as the rule-based detector finds it) and lays a cloud of that shape over a *clear* image, with
the optics of :func:`~.synthetic_clouds.cloud_optics` (alpha blending towards the measured cloud
spectrum, a brightness texture, a shadow cast away from the sun):

1. **Placement.** The mask is flipped and turned by a multiple of 90 degrees at random and cut
   (or mirrored) to the clear image's size, so one mask gives several shapes.
2. **Opacity** from the distance ``d`` (px) of each masked pixel to the mask's edge, a ramp
   ``clip(d / ramp, 0, 1)`` (``ramp`` 2-12 px: soft edges, opaque cores) modulated by a smooth
   texture (:func:`~.synthetic_clouds.fractal_field`):

   * ``"thick"``: peak opacity 1 (the ground is hidden);
   * ``"thin"``: peak ``thin_opacity`` 0.25-0.6 (haze: the ground stays visible);
   * ``"mixed"``: thin haze over the whole shape, thick cores where ``d`` exceeds the median
     depth of the shape.
3. **Shadow**: the opacity shifted by the cloud-height / sun-zenith offset away from the sun
   (:attr:`CloudParameters.shadow_offset_px`), darkening the ground; the sun, height and
   strength are drawn as :func:`~.synthetic_clouds.random_parameters` draws them.

The masks returned are the generator's (opacity or shadow darkening >= 0.1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .synthetic_clouds import KINDS, SyntheticClouds, cloud_optics, fractal_field, random_parameters

__all__ = ["place_mask", "clouds_from_mask"]


def place_mask(mask: np.ndarray, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """``mask`` flipped / turned at random and cut or mirrored to ``shape`` (H, W)."""
    m = np.asarray(mask, bool)
    if rng.random() < 0.5:
        m = m[:, ::-1]
    if rng.random() < 0.5:
        m = m[::-1, :]
    m = np.rot90(m, int(rng.integers(0, 4)))
    h, w = shape
    if m.shape[0] < h or m.shape[1] < w:
        m = np.pad(m, ((0, max(0, h - m.shape[0])), (0, max(0, w - m.shape[1]))), mode="symmetric")
    r = int(rng.integers(0, m.shape[0] - h + 1))
    c = int(rng.integers(0, m.shape[1] - w + 1))
    return np.ascontiguousarray(m[r:r + h, c:c + w])


def _shift(field_: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``field_`` moved by (dy, dx) px, zeros where nothing moves in."""
    out = np.zeros_like(field_)
    h, w = field_.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dy) < h and abs(dx) < w:
        out[yd, xd] = field_[ys, xs]
    return out


def clouds_from_mask(clear: np.ndarray, band_names: Sequence[str], cloud_mask: np.ndarray, seed: int = 0,
                     kind: Optional[str] = None, pixel_size_m: float = 10.0,
                     reflectance_scale: float = 10000.0) -> SyntheticClouds:
    """A cloud of the shape of the real ``cloud_mask`` laid over ``clear`` (C, H, W) (module notes).

    ``kind``: ``"thick"``, ``"thin"``, ``"mixed"`` or None (drawn). ``clear`` in reflectance x
    ``reflectance_scale``; ``band_names`` pick the cloud spectrum and shadow factors.
    """
    clear = np.asarray(clear)
    rng = np.random.default_rng(seed)
    kind = kind or str(rng.choice(KINDS))
    params = random_parameters(rng, kind=kind, pixel_size_m=float(pixel_size_m), coverage=0.5)
    h, w = clear.shape[1:]
    shape = place_mask(cloud_mask, (h, w), rng)
    depth = ndimage.distance_transform_edt(shape) if shape.any() else np.zeros((h, w))
    ramp = float(rng.uniform(2.0, 12.0))
    edge = np.clip(depth / ramp, 0.0, 1.0)
    texture = np.clip(fractal_field((h, w), rng, params.beta, 64.0) / 3.0, -1.0, 1.0)
    thickness = np.clip(0.85 + 0.15 * texture, 0.0, 1.0)
    if kind == "thick":
        alpha = params.max_opacity * edge * thickness
    elif kind == "thin":
        alpha = params.thin_opacity * edge * np.clip(0.75 + 0.25 * texture, 0.0, 1.0)
    else:
        thin = params.thin_opacity * edge
        core_depth = float(np.median(depth[shape])) if shape.any() else 0.0
        core = np.clip((depth - core_depth) / ramp, 0.0, 1.0) * thickness
        alpha = 1.0 - (1.0 - thin) * (1.0 - core)
    dy, dx = params.shadow_offset_px
    shadow = params.shadow_strength * _shift(alpha, dy, dx)
    brightness = 1.0 + params.brightness_variation * np.clip(
        fractal_field((h, w), rng, params.beta, 32.0) / 3.0, -1.0, 1.0)
    return cloud_optics(clear, band_names, alpha, shadow, brightness, params, seed, reflectance_scale)
