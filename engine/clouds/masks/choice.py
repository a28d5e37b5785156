"""Which cloud-mask method runs on a Sentinel-2 product, and how each method's values become classes.

:func:`choose_method` decides a method of :mod:`.kinds` for a product (``"auto"`` included: the
given mask raster, else the product's SCL band, else the pretrained detector when installed and
the bands are there, else the DSen2-CR rules, else none) and says why; :func:`detector_level`
picks the detector's Level-1C or Level-2A model; :func:`pixel_size_metres` gives the metres of a
pixel (geographic grids included); :func:`raster_classes` and :func:`scl_classes` are the reading
rules of mask rasters and SCL bands. The classes: 0 clear, 1 cloud, 2 shadow, 255 nodata.
The engine that computes them is :mod:`.engine`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ...errors import InputError
from ...io.raster import Grid
from ...sentinel2.bands import S2Product, is_scl_name
from .detector import CLEAR, CLOUD, INSTALL_HINT, NODATA, SHADOW, DetectorUnavailable, model_folder
from .kinds import AUTO, DETECTOR, NONE, RASTER, RULES, SCL, MaskMethod, mask_method
from .scl import SCL_CIRRUS, SCL_CLOUD_HIGH, SCL_CLOUD_MEDIUM, SCL_NODATA, SCL_SHADOW

__all__ = ["CLASS_NAMES", "DETECTOR_BANDS", "DETECTOR_BANDS_4", "RULES_BANDS", "INSTALL_HELP", "detector_status",
           "detector_level", "pixel_size_metres", "raster_classes", "scl_classes", "MaskChoice", "method_bands",
           "choose_method"]

#: Names of the classes, by value.
CLASS_NAMES = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "shadow", NODATA: "nodata"}
#: Bands of the detector's 6-band model (blue, green, red, nir, swir16, swir22) and of its 4-band model.
DETECTOR_BANDS: Tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")
DETECTOR_BANDS_4: Tuple[str, ...] = ("B2", "B3", "B4", "B8")
#: Bands the DSen2-CR rules read (Level-1C, with B1 and B10).
RULES_BANDS: Tuple[str, ...] = ("B1", "B2", "B3", "B4", "B8", "B10", "B11")
#: How to get the detector, for messages.
INSTALL_HELP = (f"install it with `{INSTALL_HINT}` for the Python QGIS uses, or with the plugin's dialog "
                "(Plugins > TopoClear > Install dependencies...), then restart QGIS")

def detector_status() -> Tuple[bool, str]:
    """(whether the pretrained detector can run here, why not), checked without importing anything."""
    try:
        folder = model_folder()
    except DetectorUnavailable as exc:
        return False, str(exc)
    missing = [name for name in ("model_6b_l1c", "model_6b_l2a", "model_4b_l1c", "model_4b_l2a")
               if not (folder / f"{name}.onnx").is_file()]
    if missing:
        return False, f"the installed ukis-csmask lacks its model files ({', '.join(missing)})"
    return True, ""


_LEVEL_IN_NAME = re.compile(r"(?:MSIL(1C|2A))|(?:(?:^|_)L(1C|2A)_T\d{2}[A-Z]{3})", re.IGNORECASE)


def detector_level(product: S2Product, override: Optional[str] = None) -> Tuple[str, str]:
    """(``"l1c"`` or ``"l2a"``, why) for the detector's model: the level given, else the product's
    metadata (:attr:`S2Product.level`), else the product name (``MSIL2A``), else an SCL band (Level-2A),
    else B10 (13-band stacks: only Level-1C has the cirrus band), else the 12-band Level-2A stack
    layout, else Level-1C."""
    if override:
        level = str(override).strip().lower()
        if level not in ("l1c", "l2a"):
            raise InputError(f"product level {override!r} is not 'l1c' or 'l2a'")
        return level, "as chosen"
    if product.level:
        return product.level.lower(), f"the product metadata says {product.level.upper()}"
    for src in product.bands.values():
        path = Path(src.path)
        for part in [path.name] + [p.name for p in path.parents][:6]:
            match = _LEVEL_IN_NAME.search(part)
            if match:
                level = "l" + (match.group(1) or match.group(2)).lower()
                return level, f"the product name {part} says {level.upper()}"
    if product.scl is not None:
        return "l2a", "the product has an SCL band (Level-2A)"
    if "B10" in product.bands:
        return "l1c", "the input has B10 (the cirrus band exists only in Level-1C products)"
    if product.layout.startswith("12-band"):
        return "l2a", "12-band stack without B10 (the Level-2A layout)"
    return "l1c", "the product level is unknown (no metadata, no B10, no SCL): Level-1C (top of atmosphere)"


def pixel_size_metres(grid: Grid) -> Tuple[float, str]:
    """(pixel size in metres, how it was found) of ``grid``: its CRS units for projected grids; for
    geographic grids the size of a pixel at the centre latitude (WGS 84 ellipsoid), the geometric
    mean of its east-west and north-south sizes."""
    px, py = grid.pixel_size
    crs = grid.crs
    if crs is None:
        raise InputError("the Sentinel-2 grid has no coordinate reference system: its pixel size in metres is "
                         "unknown")
    if crs.is_geographic:
        left, bottom, right, top = grid.bounds
        lat = math.radians(max(-89.9, min(89.9, (bottom + top) / 2.0)))
        a, e2 = 6378137.0, 6.69437999014e-3
        w = math.sqrt(1.0 - e2 * math.sin(lat) ** 2)
        per_deg_y = math.pi / 180.0 * a * (1.0 - e2) / w ** 3
        per_deg_x = math.pi / 180.0 * a * math.cos(lat) / w
        mx, my = px * per_deg_x, py * per_deg_y
        size = math.sqrt(mx * my)
        return size, (f"geographic grid: {px:.3g} x {py:.3g} deg = {mx:.1f} m east-west x {my:.1f} m north-south at "
                      f"latitude {math.degrees(lat):.2f}; {size:.1f} m used")
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - CRS without units: taken as metres
        factor = 1.0
    mx, my = px * factor, py * factor
    size = math.sqrt(mx * my)
    if abs(mx - my) > 1e-6 * max(mx, my):
        return size, f"{mx:g} x {my:g} m pixels; {size:.2f} m used"
    return size, f"{size:g} m pixels"


def raster_classes(values: np.ndarray) -> np.ndarray:
    """Classes of a mask raster's values (float, its nodata already NaN): the reading rule of the
    ``"raster"`` method. 0 -> clear, 2 -> shadow, any other finite value -> cloud, NaN -> nodata."""
    values = np.asarray(values, dtype=np.float32)
    out = np.full(values.shape, CLOUD, np.uint8)
    out[values == 0] = CLEAR
    out[values == 2] = SHADOW
    out[~np.isfinite(values)] = NODATA
    return out


def scl_classes(codes: np.ndarray, cirrus: bool = True, shadow: bool = True) -> np.ndarray:
    """Classes of Sen2Cor SCL codes (float with NaN outside the raster, or integers): 8, 9 (and 10 with
    ``cirrus``) cloud, 3 shadow with ``shadow``, 0 and NaN nodata, every other class clear."""
    lut = np.full(256, CLEAR, np.uint8)
    lut[[SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH]] = CLOUD
    if cirrus:
        lut[SCL_CIRRUS] = CLOUD
    if shadow:
        lut[SCL_SHADOW] = SHADOW
    lut[SCL_NODATA] = NODATA
    codes = np.asarray(codes)
    if codes.dtype.kind == "f":
        bad = ~np.isfinite(codes)
        idx = np.where(bad, 0, codes).astype(np.int64)
    else:
        bad = None
        idx = codes.astype(np.int64)
    idx = np.clip(idx, 0, 255)
    out = lut[idx]
    if bad is not None:
        out[bad] = NODATA
    return out


@dataclass(frozen=True)
class MaskChoice:
    """A mask method decided (never ``"auto"``): the method, why, the raster it reads and the detector's level.

    ``raster``/``band``: the mask raster (the given one or the product's SCL band); ``level``: ``"l1c"`` or
    ``"l2a"`` for the detector; ``asked``: the method key that was asked for.
    """

    method: MaskMethod
    reason: str
    asked: str
    raster: Optional[str] = None
    band: int = 1
    level: Optional[str] = None
    level_reason: str = ""

    @property
    def key(self) -> str:
        return self.method.key

    def describe(self) -> str:
        head = (f"Cloud mask: {AUTO.title} -> {self.method.title}" if self.asked == AUTO.key
                else f"Cloud mask: {self.method.title}")
        return f"{head} ({self.reason})" if self.reason else head


def method_bands(key: str, product: S2Product) -> Tuple[str, ...]:
    """The Sentinel-2 bands method ``key`` reads from ``product`` (the detector: its 6-band set when all
    are there, else the 4-band one)."""
    if key == DETECTOR.key:
        return DETECTOR_BANDS if all(b in product.bands for b in DETECTOR_BANDS) else DETECTOR_BANDS_4
    if key == RULES.key:
        return RULES_BANDS
    return ()


def _missing(bands: Sequence[str], product: S2Product) -> List[str]:
    return [b for b in bands if b not in product.bands]


def choose_method(product: S2Product, method: str = AUTO.key, mask: Optional[str] = None, mask_band: int = 1,
                  consumer: str = "cloudmask", level: Optional[str] = None,
                  detector_problem: Optional[str] = None) -> MaskChoice:
    """The method ``method`` (a key of :func:`~.kinds.mask_methods` ``(consumer)``) decided for ``product``.

    ``"auto"``: see the module notes; the reason says why each better method was not taken.
    ``detector_problem``: why the detector cannot run here (default: :func:`detector_status`).
    Explicit methods that cannot run raise :class:`InputError` (:class:`~.detector.DetectorUnavailable` for
    the detector) saying what is missing and what to do. The ``"none"`` choice is returned as NONE;
    the cloud mask tool (``consumer="cloudmask"``) gets an error instead.
    """
    asked = mask_method(method, consumer).key
    if asked in (DETECTOR.key, AUTO.key) and detector_problem is None:
        ok, problem = detector_status()
        detector_problem = None if ok else problem
    if asked == SCL.key:
        if mask:
            return MaskChoice(SCL, f"{os.path.basename(str(mask))} band {mask_band}", asked, str(mask), int(mask_band))
        if product.scl is None:
            raise InputError("cloud mask: SCL chosen but no SCL raster was given and the product has none beside its "
                             "bands; give the SCL raster (…_SCL_20m.jp2) or choose another method")
        return MaskChoice(SCL, f"the product's SCL band {os.path.basename(product.scl.path)}", asked,
                          product.scl.path, product.scl.index)
    if asked == RASTER.key:
        if not mask:
            raise InputError("cloud mask: 'Cloud mask raster' chosen but no raster was given")
        return MaskChoice(RASTER, f"{os.path.basename(str(mask))} band {mask_band}: 0 clear, 2 shadow, other values "
                                  "cloud, its nodata no data", asked, str(mask), int(mask_band))
    if asked == RULES.key:
        missing = _missing(RULES_BANDS, product)
        if missing:
            raise InputError(f"the DSen2-CR rules need the Level-1C bands {', '.join(RULES_BANDS)}; the input lacks "
                             f"{', '.join(missing)}. Give an SCL band or a mask raster, or use the pretrained "
                             "detector instead")
        return MaskChoice(RULES, "cloud score >= 0.2 and Zhai shadows on the Level-1C bands", asked)
    if asked == DETECTOR.key:
        if detector_problem:
            raise DetectorUnavailable(f"the pretrained cloud detector cannot run: {detector_problem}. To use it, "
                                      f"{INSTALL_HELP}; or choose another cloud mask method")
        missing = _missing(DETECTOR_BANDS_4, product)
        if missing:
            raise InputError(f"the pretrained cloud detector needs the bands B2, B3, B4, B8 (and B11, B12 for its "
                             f"better model); the input lacks {', '.join(missing)}")
        lvl, why = detector_level(product, level)
        return MaskChoice(DETECTOR, _detector_reason(product, lvl, why), asked, level=lvl, level_reason=why)
    if asked == NONE.key:
        return MaskChoice(NONE, "every pixel counts as clear", asked)

    # automatic
    if mask:
        if is_scl_name(mask):
            return MaskChoice(SCL, f"the given raster {os.path.basename(str(mask))} is an SCL band (its name says "
                                   "SCL)", asked, str(mask), int(mask_band))
        return MaskChoice(RASTER, f"the given raster {os.path.basename(str(mask))} band {mask_band}: 0 clear, 2 "
                                  "shadow, other values cloud, its nodata no data", asked, str(mask), int(mask_band))
    if product.scl is not None:
        return MaskChoice(SCL, f"the product's own SCL band {os.path.basename(product.scl.path)} (Sen2Cor's "
                               "classification)", asked, product.scl.path, product.scl.index)
    not_detector = None
    if detector_problem:
        not_detector = f"the pretrained detector is not available ({detector_problem}); {INSTALL_HELP}"
    elif _missing(DETECTOR_BANDS_4, product):
        not_detector = (f"the pretrained detector needs B2, B3, B4, B8 and the input lacks "
                        f"{', '.join(_missing(DETECTOR_BANDS_4, product))}")
    if not_detector is None:
        lvl, why = detector_level(product, level)
        return MaskChoice(DETECTOR, "no SCL band; " + _detector_reason(product, lvl, why), asked, level=lvl,
                          level_reason=why)
    missing = _missing(RULES_BANDS, product)
    if not missing:
        return MaskChoice(RULES, f"no SCL band and {not_detector}; the DSen2-CR rules on the Level-1C bands instead "
                                 "(they flag bright snow and dark ground more often)", asked)
    text = (f"no SCL band, {not_detector}, and the DSen2-CR rules need {', '.join(missing)}, which the input lacks")
    if consumer == "cloudmask":
        raise InputError(f"no cloud mask can be made: {text}. Give an SCL band or a mask raster")
    return MaskChoice(NONE, text + ": no cloud mask, every pixel counts as clear", asked)


def _detector_reason(product: S2Product, level: str, why: str) -> str:
    kind = "6-band" if all(b in product.bands for b in DETECTOR_BANDS) else "4-band (no B11/B12)"
    return f"ukis-csmask {level.upper()} {kind} model; {level.upper()} because {why}"
