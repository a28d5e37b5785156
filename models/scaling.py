"""Value scalings between physical Sentinel units and network inputs/outputs.

Pure functions that work on numpy arrays and on torch tensors alike (the result has the type,
dtype and device of the input; integer inputs come back as float32). This module imports
neither torch nor qgis.

Units in:

* Sentinel-2: reflectance x 10000 (the L1C/L2A digital numbers *after* the processing-baseline
  offset has been applied, i.e. ``reflectance = value / 10000``). Converting raw DN with
  ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` is the engine's job, not this module's.
* Sentinel-1: backscatter sigma0 in dB.
* Terrain: elevation in metres, slope in degrees, aspect in degrees clockwise from north,
  hillshade 0-255 (the band order of ``engine.terrain_stack``).

Named scalings (:data:`SCALINGS`):

``"dsen2cr"`` (Meraner et al. 2020)
    S2 clipped to [0, 10000] then divided by 2000 (range [0, 5]). S1 VV clipped to [-25, 0] dB,
    VH to [-32.5, 0] dB, each shifted to positive, divided by its range and multiplied by 2
    (range [0, 2]).
``"unit"`` (UnCRtainTS "default", CA-MTCR, CRT-UNet's "normalised to [0, 1]")
    S2 clipped to [0, 10000] then divided by 10000 (range [0, 1]). S1 (VV and VH) clipped to
    [-25, 0] dB and mapped linearly to [0, 1].
``"signed"`` (pix2pix-style GANs: Darbaghshahi et al. normalise everything to [-1, 1])
    S2 clipped to [0, 10000] and mapped linearly to [-1, 1]; S1 (VV and VH) clipped to
    [-25, 0] dB and mapped linearly to [-1, 1]. Matches a tanh output layer.

Terrain (:func:`scale_terrain`) uses fixed, scene-independent ranges so that a trained network
sees the same numbers on every scene: elevation [0, 9000] m, slope [0, 90] deg, aspect
[0, 360] deg, hillshade [0, 255], each mapped linearly to [0, 1] (to [-1, 1] under ``"signed"``).
CRT-UNet only says its inputs were "normalised to [0, 1]"; these ranges are this plugin's choice.

The unscale functions are exact inverses inside the clipping ranges; values outside them are
lost by the clipping (that is the point of the clipping).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

import numpy as np

#: Sentinel-2 clipping range, in reflectance x 10000.
S2_RANGE: Tuple[float, float] = (0.0, 10000.0)

#: Terrain ranges used by :func:`scale_terrain` (physical units, see module docstring).
TERRAIN_RANGES: Dict[str, Tuple[float, float]] = {
    "elevation": (0.0, 9000.0),
    "slope": (0.0, 90.0),
    "aspect": (0.0, 360.0),
    "hillshade": (0.0, 255.0),
}
#: Other spellings accepted for terrain band names.
TERRAIN_ALIASES: Dict[str, str] = {"dem": "elevation", "height": "elevation", "altitude": "elevation"}


@dataclass(frozen=True)
class Scaling:
    """One named scaling: S2 ``y = x / s2_divisor + s2_offset`` after clipping to
    :data:`S2_RANGE`; S1 band ``b``: ``y = (clip(x, lo_b, 0) - lo_b) / (-lo_b) * s1_span + s1_offset``.
    """

    name: str
    description: str
    s2_divisor: float
    s2_offset: float
    #: lower dB clipping bound per polarisation (upper bound is 0 dB for all)
    s1_lower_db: Dict[str, float]
    #: width of the S1 output interval (2 for [0, 2] and [-1, 1], 1 for [0, 1])
    s1_span: float
    s1_offset: float
    #: output interval of the terrain scaling
    terrain_interval: Tuple[float, float]


SCALINGS: Dict[str, Scaling] = {
    "dsen2cr": Scaling(
        name="dsen2cr",
        description="S2 clip [0, 10000] / 2000 -> [0, 5]; S1 VV clip [-25, 0] dB, VH clip [-32.5, 0] dB, "
        "shifted and scaled to [0, 2]",
        s2_divisor=2000.0,
        s2_offset=0.0,
        s1_lower_db={"VV": -25.0, "VH": -32.5},
        s1_span=2.0,
        s1_offset=0.0,
        terrain_interval=(0.0, 1.0),
    ),
    "unit": Scaling(
        name="unit",
        description="S2 clip [0, 10000] / 10000 -> [0, 1]; S1 clip [-25, 0] dB -> [0, 1]",
        s2_divisor=10000.0,
        s2_offset=0.0,
        s1_lower_db={"VV": -25.0, "VH": -25.0},
        s1_span=1.0,
        s1_offset=0.0,
        terrain_interval=(0.0, 1.0),
    ),
    "signed": Scaling(
        name="signed",
        description="S2 clip [0, 10000] -> [-1, 1]; S1 clip [-25, 0] dB -> [-1, 1] (tanh outputs)",
        s2_divisor=5000.0,
        s2_offset=-1.0,
        s1_lower_db={"VV": -25.0, "VH": -25.0},
        s1_span=2.0,
        s1_offset=-1.0,
        terrain_interval=(-1.0, 1.0),
    ),
}


def get_scaling(name: str) -> Scaling:
    """The :class:`Scaling` called ``name``; ValueError naming the known ones otherwise."""
    try:
        return SCALINGS[name]
    except KeyError:
        raise ValueError(f"unknown scaling {name!r}; known scalings: {', '.join(sorted(SCALINGS))}") from None


# --------------------------------------------------------------------------------------------
# array helpers that work for numpy and torch without importing torch
# --------------------------------------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _as_float(x: Any) -> Any:
    """``x`` as a floating array/tensor (float32 for integer inputs), never modified in place."""
    if _is_torch(x):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _per_channel(values: Sequence[float], like: Any, channel_axis: int) -> Any:
    """Column of per-channel constants that broadcasts against ``like`` along ``channel_axis``."""
    ndim = like.ndim
    axis = channel_axis % ndim
    shape = [1] * ndim
    shape[axis] = len(values)
    if _is_torch(like):
        import torch  # only reached when the caller already uses torch

        return torch.tensor(list(values), dtype=like.dtype, device=like.device).reshape(shape)
    return np.asarray(values, dtype=like.dtype).reshape(shape)


def _clamp(x: Any, low: Any, high: Any) -> Any:
    """Element-wise ``min(max(x, low), high)`` with broadcasting bounds; returns a new array."""
    if _is_torch(x):
        import torch

        return torch.minimum(torch.maximum(x, low), high)
    return np.minimum(np.maximum(x, low), high)


def _check_channels(x: Any, names: Sequence[str], channel_axis: int, what: str) -> None:
    if x.ndim == 0:
        raise ValueError(f"{what}: expected an array with a channel axis, got a scalar")
    n = x.shape[channel_axis]
    if n != len(names):
        raise ValueError(
            f"{what}: array has {n} channels on axis {channel_axis}, expected {len(names)} ({', '.join(names)})"
        )


# --------------------------------------------------------------------------------------------
# Sentinel-2
# --------------------------------------------------------------------------------------------
def scale_s2(x: Any, scaling: str = "unit") -> Any:
    """Sentinel-2 reflectance x 10000 -> network values (clipped to [0, 10000] first)."""
    s = get_scaling(scaling)
    x = _as_float(x).clip(S2_RANGE[0], S2_RANGE[1])
    return x / s.s2_divisor + s.s2_offset


def unscale_s2(y: Any, scaling: str = "unit") -> Any:
    """Network values -> Sentinel-2 reflectance x 10000 (no clipping: the network's own output)."""
    s = get_scaling(scaling)
    return (_as_float(y) - s.s2_offset) * s.s2_divisor


# --------------------------------------------------------------------------------------------
# Sentinel-1
# --------------------------------------------------------------------------------------------
def _s1_bounds(s: Scaling, bands: Sequence[str]) -> list:
    lows = []
    for band in bands:
        key = band.upper()
        if key not in s.s1_lower_db:
            raise ValueError(
                f"scaling {s.name!r} has no range for Sentinel-1 band {band!r}; known: {', '.join(s.s1_lower_db)}"
            )
        lows.append(s.s1_lower_db[key])
    return lows


def scale_s1(x: Any, scaling: str = "unit", bands: Sequence[str] = ("VV", "VH"), channel_axis: int = -3) -> Any:
    """Sentinel-1 sigma0 in dB -> network values.

    ``bands`` names the polarisation of each channel along ``channel_axis`` (default -3, i.e.
    (C, H, W) or (N, C, H, W) arrays).
    """
    s = get_scaling(scaling)
    x = _as_float(x)
    _check_channels(x, bands, channel_axis, "scale_s1")
    low = _per_channel(_s1_bounds(s, bands), x, channel_axis)
    clipped = _clamp(x, low, _per_channel([0.0] * len(bands), x, channel_axis))
    return (clipped - low) / (-low) * s.s1_span + s.s1_offset


def unscale_s1(y: Any, scaling: str = "unit", bands: Sequence[str] = ("VV", "VH"), channel_axis: int = -3) -> Any:
    """Network values -> Sentinel-1 sigma0 in dB (inverse of :func:`scale_s1` inside its range)."""
    s = get_scaling(scaling)
    y = _as_float(y)
    _check_channels(y, bands, channel_axis, "unscale_s1")
    low = _per_channel(_s1_bounds(s, bands), y, channel_axis)
    return (y - s.s1_offset) / s.s1_span * (-low) + low


# --------------------------------------------------------------------------------------------
# Terrain
# --------------------------------------------------------------------------------------------
def canonical_terrain_name(name: str) -> str:
    """``"DEM"`` -> ``"elevation"``; other names lower-cased."""
    key = name.lower()
    return TERRAIN_ALIASES.get(key, key)


def _terrain_bounds(bands: Sequence[str]) -> Tuple[list, list]:
    lows, highs = [], []
    for band in bands:
        key = canonical_terrain_name(band)
        if key not in TERRAIN_RANGES:
            raise ValueError(f"no terrain range for band {band!r}; known: {', '.join(TERRAIN_RANGES)}")
        lo, hi = TERRAIN_RANGES[key]
        lows.append(lo)
        highs.append(hi)
    return lows, highs


def scale_terrain(
    x: Any,
    scaling: str = "unit",
    bands: Sequence[str] = ("elevation", "slope", "aspect", "hillshade"),
    channel_axis: int = -3,
) -> Any:
    """Terrain stack in physical units -> network values (clipped to :data:`TERRAIN_RANGES`)."""
    s = get_scaling(scaling)
    x = _as_float(x)
    _check_channels(x, bands, channel_axis, "scale_terrain")
    lows, highs = _terrain_bounds(bands)
    lo = _per_channel(lows, x, channel_axis)
    hi = _per_channel(highs, x, channel_axis)
    x = _clamp(x, lo, hi)
    a, b = s.terrain_interval
    return (x - lo) / (hi - lo) * (b - a) + a


def unscale_terrain(
    y: Any,
    scaling: str = "unit",
    bands: Sequence[str] = ("elevation", "slope", "aspect", "hillshade"),
    channel_axis: int = -3,
) -> Any:
    """Inverse of :func:`scale_terrain` inside the ranges."""
    s = get_scaling(scaling)
    y = _as_float(y)
    _check_channels(y, bands, channel_axis, "unscale_terrain")
    lows, highs = _terrain_bounds(bands)
    lo = _per_channel(lows, y, channel_axis)
    hi = _per_channel(highs, y, channel_axis)
    a, b = s.terrain_interval
    return (y - a) / (b - a) * (hi - lo) + lo
