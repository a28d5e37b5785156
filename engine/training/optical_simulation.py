"""The optical side of a semi-synthetic scene: land cover from the terrain, surface reflectance
from real spectra, and the illumination of the relief by the sun (see
:mod:`topoclear.engine.training.semisynthetic` for the model).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.special import ndtr

from ...models.bands import S2_BANDS_10_20M
from .spectral_library import CLASSES, SpectralLibrary
from .synthetic_clouds import fractal_field

if TYPE_CHECKING:  # the scene configuration imports this module
    from .semisynthetic import SemiSyntheticConfig

__all__ = ["DIFFUSE_FRACTION", "component_rng", "land_cover", "surface_reflectance",
           "cos_incidence", "cast_shadow", "illumination"]

#: Fraction of the irradiance that is diffuse skylight, per band (clear sky, typical values).
DIFFUSE_FRACTION: Dict[str, float] = {"B2": 0.25, "B3": 0.18, "B4": 0.14, "B5": 0.12, "B6": 0.10, "B7": 0.09,
                                      "B8": 0.08, "B8A": 0.08, "B11": 0.05, "B12": 0.04}


def component_rng(seed: int, component: int) -> np.random.Generator:
    """The random generator of one component (land cover, texture, speckle...) of a scene."""
    return np.random.default_rng([int(seed), int(component)])


def _smooth_field(shape, rng, scale_px: float) -> np.ndarray:
    """Unit-variance smooth field with features up to ``scale_px`` pixels."""
    return fractal_field(shape, rng, beta=3.0, max_scale_px=max(4.0, scale_px))


def land_cover(elevation: np.ndarray, slope: np.ndarray, aspect: np.ndarray, config: "SemiSyntheticConfig",
               latitude: float = 45.0, valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Ground class (1 vegetation, 2 rock; 0 invalid) and snow fraction (0-1) from the terrain.

    ``aspect`` may be NaN on flat cells. Returns ``(ground, snow_fraction, parameters)`` where
    ``parameters`` records the snowline and treeline used.
    """
    if valid is None:
        valid = np.isfinite(elevation) & np.isfinite(slope)
    shape = elevation.shape
    z = np.where(valid, elevation, np.nan)
    snowline = config.snowline_m if config.snowline_m is not None else float(np.nanpercentile(z, 60))
    poleward = 0.0 if latitude >= 0 else 180.0
    s = np.where(valid, slope, 0.0)
    a = np.where(np.isfinite(aspect), aspect, poleward + 90.0)
    facing = np.cos(np.radians(a - poleward)) * np.minimum(1.0, s / 20.0)
    snow_noise = _smooth_field(shape, component_rng(config.seed, 1), 4000.0 / config.resolution_m)
    local_snowline = snowline + config.snowline_noise_m * snow_noise - config.aspect_snow_shift_m * facing
    f_elev = np.clip((np.nan_to_num(z, nan=-1e9) - local_snowline) / config.snow_transition_m + 0.5, 0.0, 1.0)
    f_slope = np.clip((config.max_snow_slope_deg - s) / 10.0 + 0.5, 0.0, 1.0)
    snow = np.where(valid, f_elev * f_slope, 0.0).astype(np.float32)

    rock_noise = _smooth_field(shape, component_rng(config.seed, 2), 1500.0 / config.resolution_m)
    rock = s > config.rock_slope_deg + 5.0 * rock_noise
    if config.treeline_m is not None:
        tree_noise = _smooth_field(shape, component_rng(config.seed, 3), 3000.0 / config.resolution_m)
        rock |= np.nan_to_num(z, nan=-1e9) > config.treeline_m + config.treeline_noise_m * tree_noise
    ground = np.where(valid, np.where(rock, CLASSES["rock"], CLASSES["vegetation"]), 0).astype(np.uint8)
    return ground, snow, {"snowline_m": round(float(snowline), 1), "treeline_m": config.treeline_m,
                          "poleward_aspect_deg": poleward}


def _pick_spectra(pool: np.ndarray, selected: np.ndarray, rng: np.random.Generator,
                  scale_px: float) -> np.ndarray:
    """(N_selected, 10) spectra for the True cells of ``selected``: a smooth field indexes the
    PC1-sorted pool, so neighbours get similar real spectra."""
    smooth = _smooth_field(selected.shape, rng, scale_px)
    white = rng.standard_normal(selected.shape)
    u = ndtr(0.92 * smooth + 0.39 * white)  # unit variance -> uniform in (0, 1)
    idx = np.minimum((u[selected] * pool.shape[0]).astype(np.int64), pool.shape[0] - 1)
    return pool[idx]


def surface_reflectance(ground: np.ndarray, snow: np.ndarray, library: SpectralLibrary, seed: int,
                        resolution_m: float) -> np.ndarray:
    """(10, H, W) float32 flat-terrain reflectance: ground spectra mixed with snow by fraction."""
    h, w = ground.shape
    out = np.zeros((len(S2_BANDS_10_20M), h, w), np.float32)
    flat = out.reshape(len(S2_BANDS_10_20M), -1)
    g = ground.ravel()
    for code, cls in ((CLASSES["vegetation"], "vegetation"), (CLASSES["rock"], "rock")):
        sel = ground == code
        if sel.any():
            rng = component_rng(seed, 10 + code)
            flat[:, np.flatnonzero(g == code)] = _pick_spectra(library.spectra[cls], sel, rng, 800.0 / resolution_m).T
    has_snow = snow > 0
    if has_snow.any():
        rng = component_rng(seed, 20)
        snow_spec = _pick_spectra(library.spectra["snow"], has_snow, rng, 1500.0 / resolution_m).T
        cells = np.flatnonzero(has_snow.ravel())
        f = snow.ravel()[cells]
        flat[:, cells] = f * snow_spec + (1.0 - f) * flat[:, cells]
    return out


def cos_incidence(slope_deg: np.ndarray, aspect_deg: np.ndarray, zenith_deg: float, azimuth_deg: float) -> np.ndarray:
    """cos of the angle between the surface normal and a direction (zenith, azimuth).

    ``cos Z cos S + sin Z sin S cos(Az - A)``; flat cells (NaN aspect) count as slope 0.
    """
    s = np.radians(np.where(np.isfinite(aspect_deg), slope_deg, 0.0))
    a = np.radians(np.where(np.isfinite(aspect_deg), aspect_deg, 0.0))
    z, az = math.radians(zenith_deg), math.radians(azimuth_deg)
    return (math.cos(z) * np.cos(s) + math.sin(z) * np.sin(s) * np.cos(az - a)).astype(np.float32)


def cast_shadow(elevation: np.ndarray, pixel_size_m: float, zenith_deg: float, azimuth_deg: float,
                max_distance_px: int = 1000) -> np.ndarray:
    """True where the relief hides the sun: some cell towards the sun rises above the sun's ray.

    Ray marching over the elevation grid (1-pixel steps to 64 px, then steps growing by 3 %),
    up to the distance at which the scene's relief can no longer block a sun at that
    altitude. Cells outside the grid or NaN do not cast shadows.
    """
    z = np.where(np.isfinite(elevation), elevation, -np.inf).astype(np.float32)
    altitude = math.radians(90.0 - zenith_deg)
    if altitude <= 0:
        return np.isfinite(elevation)
    tan_alt = math.tan(altitude)
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return np.zeros(z.shape, bool)
    relief = float(finite.max() - finite.min())
    reach = min(max_distance_px, int(math.ceil(relief / (tan_alt * pixel_size_m))) + 1)
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    h, w = z.shape
    shadow = np.zeros(z.shape, bool)
    seen = set()
    d = 1.0
    while d <= reach:
        dr, dc = int(round(d * d_row)), int(round(d * d_col))
        d = d + 1.0 if d < 64 else d * 1.03
        if (dr, dc) in seen or (dr == 0 and dc == 0) or abs(dr) >= h or abs(dc) >= w:
            continue
        seen.add((dr, dc))
        rise = math.hypot(dr, dc) * pixel_size_m * tan_alt
        # value at p: elevation at p + (dr, dc)
        tr0, tr1 = max(0, -dr), min(h, h - dr)
        tc0, tc1 = max(0, -dc), min(w, w - dc)
        target = z[tr0:tr1, tc0:tc1]
        source = z[tr0 + dr:tr1 + dr, tc0 + dc:tc1 + dc]
        shadow[tr0:tr1, tc0:tc1] |= source - target > rise
    return shadow & np.isfinite(elevation)


def illumination(slope_deg: np.ndarray, aspect_deg: np.ndarray, zenith_deg: float, azimuth_deg: float,
                 cast: Optional[np.ndarray] = None, bands: Sequence[str] = S2_BANDS_10_20M) -> np.ndarray:
    """(bands, H, W) illumination factor (1 on flat open ground; module docstring formula)."""
    cos_i = np.maximum(cos_incidence(slope_deg, aspect_deg, zenith_deg, azimuth_deg), 0.0)
    if cast is not None:
        cos_i = np.where(cast, 0.0, cos_i)
    s = np.radians(np.where(np.isfinite(slope_deg), slope_deg, 0.0))
    sky_view = (1.0 + np.cos(s)) / 2.0
    direct = cos_i / max(math.cos(math.radians(zenith_deg)), 1e-3)
    out = np.empty((len(bands),) + np.shape(slope_deg), np.float32)
    for i, b in enumerate(bands):
        d = DIFFUSE_FRACTION.get(b, 0.1)
        out[i] = d * sky_view + (1.0 - d) * direct
    return out
