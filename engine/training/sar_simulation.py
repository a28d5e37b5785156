"""The Sentinel-1 side of a semi-synthetic scene: VV and VH backscatter following the local
incidence angle of the radar on the relief (see :mod:`topoclear.engine.training.semisynthetic`).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import numpy as np

from ...models.bands import S1_BANDS
from ..errors import InputError
from .optical_simulation import cos_incidence
from .spectral_library import CLASSES, SpectralLibrary

__all__ = ["DEFAULT_BACKSCATTER_DB", "BACKSCATTER_SLOPE_DB", "NOISE_FLOOR_DB", "ORBITS", "local_incidence",
           "backscatter_levels", "backscatter"]

#: Sentinel-1 sigma0 (dB) of each class at the reference incidence, used when the real
#: BigEarthNet-MM pairs are absent: the medians those pairs give (see the module docstring),
#: rounded to 0.1 dB; snow is the dry-snow level of the Finland February pair.
DEFAULT_BACKSCATTER_DB: Dict[str, Dict[str, float]] = {
    "vegetation": {"VV": -11.3, "VH": -16.5},
    "rock": {"VV": -11.5, "VH": -19.6},
    "snow": {"VV": -8.3, "VH": -16.4},
}
#: Angular sensitivity b (dB per unit of cos(theta_loc)) of each class and polarisation.
BACKSCATTER_SLOPE_DB: Dict[str, Dict[str, float]] = {
    "vegetation": {"VV": 6.0, "VH": 5.0},
    "rock": {"VV": 14.0, "VH": 11.0},
    "snow": {"VV": 10.0, "VH": 8.0},
}
#: Backscatter of radar-shadowed slopes (about Sentinel-1 IW's noise-equivalent sigma0).
NOISE_FLOOR_DB: Dict[str, float] = {"VV": -24.0, "VH": -29.0}
#: Azimuth (deg clockwise from north) from the ground towards the satellite for each pass.
ORBITS: Dict[str, float] = {"ascending": 258.0, "descending": 102.0}


def local_incidence(slope_deg: np.ndarray, aspect_deg: np.ndarray, incidence_deg: float = 39.0,
                    orbit: str = "ascending") -> np.ndarray:
    """Local incidence angle (degrees, 0-180) of the radar beam on the terrain for a pass."""
    if orbit not in ORBITS:
        raise InputError(f"orbit must be one of {', '.join(ORBITS)}, got {orbit!r}")
    cos_loc = cos_incidence(slope_deg, aspect_deg, incidence_deg, ORBITS[orbit])
    return np.degrees(np.arccos(np.clip(cos_loc, -1.0, 1.0))).astype(np.float32)


def backscatter_levels(library: Optional[SpectralLibrary] = None) -> Dict[str, Dict[str, float]]:
    """Reference sigma0 (dB) per class and polarisation: measured where the library has it."""
    levels = {k: dict(v) for k, v in DEFAULT_BACKSCATTER_DB.items()}
    if library is not None:
        for cls, pols in library.backscatter.items():
            levels[cls].update(pols)
    return levels


def backscatter(theta_loc_deg: np.ndarray, ground: np.ndarray, snow: np.ndarray, incidence_deg: float,
                levels: Mapping[str, Mapping[str, float]], rng: Optional[np.random.Generator],
                looks: float = 4.4) -> np.ndarray:
    """(2, H, W) VV, VH sigma0 in dB (module docstring model); ``rng`` None: no speckle."""
    cos_loc = np.cos(np.radians(theta_loc_deg))
    cos_ref = math.cos(math.radians(incidence_deg))
    shadowed = theta_loc_deg >= 90.0
    out = np.empty((2,) + ground.shape, np.float32)
    for p, pol in enumerate(S1_BANDS):
        def linear(cls):
            b = BACKSCATTER_SLOPE_DB[cls][pol]
            a = levels[cls][pol] - b * cos_ref
            return 10.0 ** ((a + b * cos_loc) / 10.0)

        ground_lin = np.where(ground == CLASSES["rock"], linear("rock"), linear("vegetation"))
        power = snow * linear("snow") + (1.0 - snow) * ground_lin
        power = np.where(shadowed, 10.0 ** (NOISE_FLOOR_DB[pol] / 10.0), power)
        if rng is not None:
            power = power * rng.gamma(looks, 1.0 / looks, size=power.shape)
        out[p] = 10.0 * np.log10(np.maximum(power, 1e-6))
    return out
