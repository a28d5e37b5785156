"""Spectral indices of the snow tools, computed in one place."""
from __future__ import annotations

import numpy as np


def ndsi(green: np.ndarray, swir: np.ndarray, *, reuse_green: bool = False,
         nonnegative: bool = False) -> np.ndarray:
    """NDSI = (green - SWIR1) / (green + SWIR1); NaN where either is NaN or the sum is not positive.

    ``green`` and ``swir`` are in the same units (reflectance, or DN on the same scale).
    ``reuse_green``: compute in ``green``'s buffer (a float array the caller owns; it then holds the
    result), which saves a copy of the window. ``nonnegative``: the caller knows that no value is
    negative or NaN (unsigned DN without a negative offset), so a sum that is not positive is 0 and
    gives 0 / 0 = NaN already: the sum test is skipped.
    """
    total = green + swir
    with np.errstate(invalid="ignore", divide="ignore"):
        if reuse_green:
            out = green
            out -= swir
            out /= total
        else:
            out = (green - swir) / total
    if not nonnegative:
        out[~(total > 0)] = np.nan
    return out
