"""Spectral indices of the snow tools, computed in one place."""
from __future__ import annotations

import numpy as np


def ndsi(green: np.ndarray, swir: np.ndarray) -> np.ndarray:
    """NDSI = (green - SWIR1) / (green + SWIR1); NaN where either is NaN or the sum is not positive."""
    total = green + swir
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (green - swir) / total
    out[~(total > 0)] = np.nan
    return out
