"""Fractional snow cover (FSC, 0-1) from the NDSI of the snow pixels.

``"salomonson"`` FSC = 1.45 NDSI - 0.01 (Salomonson & Appel 2004, MODIS) or ``"gascoin"``
FSC = 0.5 tanh(2.65 NDSI - 1.42) + 0.5 (Gascoin et al. 2020, Sentinel-2 / LIS), both clipped to
[0, 1]. The FSC raster holds it on snow pixels, 0 on no-snow pixels and nodata on cloud and nodata.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid
from .classes import CLOUD, FLOAT_NODATA, NODATA, SNOW

FSC_FORMULAS = ("salomonson", "gascoin")
FORMULA_TEXT = {"gascoin": "FSC = 0.5 tanh(2.65 NDSI - 1.42) + 0.5 (Gascoin et al. 2020)",
                "salomonson": "FSC = 1.45 NDSI - 0.01 (Salomonson & Appel 2004)"}


def check_formula(formula: str) -> None:
    """:class:`InputError` unless ``formula`` is one of :data:`FSC_FORMULAS`."""
    if formula not in FSC_FORMULAS:
        raise InputError(f"FSC formula {formula!r} is not one of {FSC_FORMULAS}")


def fractional_snow_cover(nd: np.ndarray, formula: str) -> np.ndarray:
    """FSC (float32, 0-1) of NDSI ``nd`` with ``formula``."""
    check_formula(formula)
    if formula == "salomonson":
        value = 1.45 * nd - 0.01
    else:
        value = 0.5 * np.tanh(2.65 * nd - 1.42) + 0.5
    return np.clip(value, 0.0, 1.0).astype(np.float32)


def fsc_of_map(classes: np.ndarray, nd: np.ndarray, formula: str) -> np.ndarray:
    """The FSC raster of a window: FSC of ``nd`` on snow, 0 on no snow, nodata on cloud and nodata."""
    fsc = np.where(classes == SNOW, fractional_snow_cover(nd, formula), np.float32(0.0)).astype(np.float32)
    fsc[(classes == CLOUD) | (classes == NODATA)] = FLOAT_NODATA
    return fsc


def fsc_writer(path: str, grid: Grid, formula: str) -> AtomicRasterWriter:
    """The writer of the FSC raster of ``grid``."""
    source = "Gascoin 2020" if formula == "gascoin" else "Salomonson 2004"
    # short: QGIS's band menus are as wide as the longest description (the formulas: FORMULA_TEXT)
    return AtomicRasterWriter(path, grid, 1, "float32", FLOAT_NODATA, [f"FSC 0-1 ({source})"])
