"""Sentinel-2 band names, stack layouts and file-name rules, and where a product's bands live.

The band tables themselves (orders, native resolutions, roles) are in :mod:`topoclear.models.bands`;
:func:`~.locate.locate_bands` finds a product's bands, :class:`~.reader.BandReader` reads them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ...models.bands import S2_BANDS_10_20M, S2_BANDS_L1C, S2_BANDS_L2A

#: Stack layouts recognised by their band count.
STACK_LAYOUTS: Dict[int, Tuple[str, Tuple[str, ...]]] = {
    13: ("13-band L1C stack (B1..B12 with B8A and B10)", S2_BANDS_L1C),
    12: ("12-band L2A stack (B1..B12 with B8A, no B10)", S2_BANDS_L2A),
    10: ("10-band stack (B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12)", S2_BANDS_10_20M),
}
#: Band id of each band in the product metadata (``band_id`` attributes, 0-12).
METADATA_BAND_ID: Dict[str, int] = {name: i for i, name in enumerate(S2_BANDS_L1C)}
#: ESA's additive offset from processing baseline 04.00 on.
BASELINE_04_OFFSET = -1000.0
DEFAULT_QUANTIFICATION = 10000.0

BAND_IN_NAME = re.compile(r"(?:^|[_\-. ])B(0?[1-9]|1[0-2]|8A)(?=$|[_\-. ])", re.IGNORECASE)
BAND_DESCRIPTION = re.compile(r"^\s*B(?:AND)?[ _]?(0?[1-9]|1[0-2]|8A)\b", re.IGNORECASE)
SCL_IN_NAME = re.compile(r"(?:^|[_\-. ])SCL(?=$|[_\-. ])", re.IGNORECASE)
RES_IN_NAME = re.compile(r"_(10|20|60)m(?=$|[_.])", re.IGNORECASE)
BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})(?=_)")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


def canonical_band(text: str) -> Optional[str]:
    """``"B03"``, ``"b3"``, ``"B8a"`` -> ``"B3"``, ``"B3"``, ``"B8A"``; None if not a band name."""
    match = re.fullmatch(r"\s*B(?:AND)?[ _]?(0?[1-9]|1[0-2]|8A)\s*", text, re.IGNORECASE)
    return normalise_band_number(match.group(1)) if match else None


def normalise_band_number(number: str) -> str:
    number = number.upper()
    return "B8A" if number == "8A" else f"B{int(number)}"


def band_from_filename(path: os.PathLike | str) -> Optional[str]:
    """The band a file holds according to its name (``..._B03_20m.jp2`` -> ``"B3"``), or None."""
    stem = Path(path).name
    for suffix in RASTER_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    matches = BAND_IN_NAME.findall(stem)
    return normalise_band_number(matches[-1]) if matches else None


def is_scl_name(path: os.PathLike | str) -> bool:
    """Whether a file name says it holds a Sen2Cor scene classification (``..._SCL_20m.jp2``)."""
    return bool(SCL_IN_NAME.search(Path(str(path)).name))


@dataclass(frozen=True)
class BandSource:
    """Where one band lives and how its DN become reflectance: ``(DN + offset) / quantification``."""

    name: str
    path: str
    index: int = 1
    offset: float = 0.0
    quantification: float = DEFAULT_QUANTIFICATION
    nodata: Optional[float] = None
    found_by: str = ""

    def describe(self) -> str:
        where = f"{os.path.basename(self.path)} band {self.index}"
        return f"{self.name}: {where} ({self.found_by})"


@dataclass
class S2Product:
    """The bands found for a product, its layout and how its DN were converted."""

    layout: str
    bands: Dict[str, BandSource]
    scl: Optional[BandSource] = None
    level: Optional[str] = None
    radiometry: str = ""
    notes: List[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"Sentinel-2 layout: {self.layout}"]
        lines += [f"  {src.describe()}" for src in self.bands.values()]
        if self.scl is not None:
            lines.append(f"  SCL: {os.path.basename(self.scl.path)}")
        if self.radiometry:
            lines.append(f"  reflectance: {self.radiometry}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


#: An explicit band choice: (file or None for the input itself, 1-based band number).
Override = Tuple[Optional[str], int]
