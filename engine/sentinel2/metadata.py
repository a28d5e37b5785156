"""Sentinel-2 product metadata: sun angles (``MTD_TL.xml``) and radiometric offsets (``MTD_MSI*.xml``).

A user may point at the tile metadata file itself, at the product metadata file, at a ``.SAFE``
folder (or an unpacked product folder), or at any file inside the product such as a band JP2:
:func:`find_tile_metadata` and :func:`find_product_metadata` find the XML in each case.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import InputError


@dataclass(frozen=True)
class SunAngles:
    """Mean sun position over a tile, in degrees: zenith from vertical, azimuth clockwise from north."""

    zenith: float
    azimuth: float
    source: str = ""

    @property
    def altitude(self) -> float:
        """Sun elevation above the horizon, degrees (= 90 - zenith)."""
        return 90.0 - self.zenith


@dataclass(frozen=True)
class RadiometricOffsets:
    """DN -> reflectance conversion of a product: ``reflectance = (DN + offset[band]) / quantification``.

    Processing baseline 04.00 and later (products from 25 January 2022) add an offset of -1000
    (``BOA_ADD_OFFSET`` in L2A, ``RADIO_ADD_OFFSET`` in L1C); earlier baselines have none.
    """

    processing_baseline: str
    quantification: float
    offsets: dict  # band id (0-12, the metadata's numbering) -> additive offset in DN
    level: str  # "L1C" or "L2A"

    def offset_for(self, band_id: int) -> float:
        return float(self.offsets.get(band_id, 0.0))


def _ancestors(path: Path, levels: int = 6):
    yield path
    for parent in list(path.parents)[:levels]:
        yield parent


def _search_down(folder: Path, name: str) -> Optional[Path]:
    direct = folder / name
    if direct.is_file():
        return direct
    granules = sorted((folder / "GRANULE").glob(f"*/{name}")) if (folder / "GRANULE").is_dir() else []
    return granules[0] if granules else None


def find_tile_metadata(path: os.PathLike | str) -> Path:
    """Locate the ``MTD_TL.xml`` belonging to ``path`` (the XML itself, a SAFE folder or a file inside one)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Sentinel-2 metadata: {path} does not exist")
    if path.is_file() and path.suffix.lower() == ".xml" and path.name.upper().startswith("MTD_TL"):
        return path
    # a folder is the product (or granule) itself; a file inside a product is searched upwards
    for candidate in [path] if path.is_dir() else _ancestors(path.parent):
        found = _search_down(candidate, "MTD_TL.xml")
        if found is not None:
            return found
    raise InputError(f"Sentinel-2 metadata: no MTD_TL.xml found at or around {path}; "
                     "choose the tile's MTD_TL.xml or the product's .SAFE folder")


def find_product_metadata(path: os.PathLike | str) -> Optional[Path]:
    """Locate the product's ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` near ``path``, or None."""
    path = Path(path)
    start = path if path.is_dir() else path.parent
    for candidate in _ancestors(start):
        for name in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
            if (candidate / name).is_file():
                return candidate / name
    return None


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"Sentinel-2 metadata: {path} is not valid XML ({exc})") from exc


def _first(root: ET.Element, local_name: str) -> Optional[ET.Element]:
    """First element whose tag (namespace stripped) is ``local_name``."""
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == local_name:
            return element
    return None


def read_sun_angles(path: os.PathLike | str) -> SunAngles:
    """Mean sun zenith and azimuth (degrees) of the tile that ``path`` belongs to."""
    xml_path = find_tile_metadata(path)
    root = _parse(xml_path)
    mean = _first(root, "Mean_Sun_Angle")
    if mean is None:
        raise InputError(f"Sentinel-2 metadata: {xml_path} has no Tile_Angles/Mean_Sun_Angle element "
                         "(is it an MTD_TL.xml of a Sentinel-2 L1C or L2A tile?)")
    zen, azi = _first(mean, "ZENITH_ANGLE"), _first(mean, "AZIMUTH_ANGLE")
    try:
        zenith, azimuth = float(zen.text), float(azi.text)  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"Sentinel-2 metadata: {xml_path} has no numeric ZENITH_ANGLE/AZIMUTH_ANGLE "
                         "in Mean_Sun_Angle") from exc
    if not (0.0 <= zenith < 90.0 and 0.0 <= azimuth <= 360.0):
        raise InputError(f"Sentinel-2 metadata: {xml_path} gives sun zenith {zenith} / azimuth {azimuth} deg; "
                         "expected zenith in [0, 90) and azimuth in [0, 360]")
    return SunAngles(zenith=zenith, azimuth=azimuth % 360.0, source=str(xml_path))


def read_radiometric_offsets(path: os.PathLike | str) -> Optional[RadiometricOffsets]:
    """Quantification value and per-band additive offsets of the product near ``path`` (None if not found)."""
    xml_path = find_product_metadata(path)
    if xml_path is None:
        return None
    root = _parse(xml_path)
    level = "L2A" if "L2A" in xml_path.name.upper() else "L1C"
    baseline_el = _first(root, "PROCESSING_BASELINE")
    baseline = baseline_el.text.strip() if baseline_el is not None and baseline_el.text else ""
    quant_el = _first(root, "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE")
    quantification = float(quant_el.text) if quant_el is not None and quant_el.text else 10000.0
    offsets = {}
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == tag and element.text:
            offsets[int(element.get("band_id", "-1"))] = float(element.text)
    return RadiometricOffsets(baseline, quantification, offsets, level)


@dataclass(frozen=True)
class TileGrid:
    """The pixel grid of a Sentinel-2 tile at one resolution, from its ``MTD_TL.xml``."""

    epsg: int
    ulx: float
    uly: float
    resolution: float
    width: int
    height: int


def read_tile_grid(path: os.PathLike | str, resolution: int = 10) -> TileGrid:
    """The tile's grid at ``resolution`` (10, 20 or 60 m): CRS, upper-left corner and size."""
    xml_path = find_tile_metadata(path)
    root = _parse(xml_path)
    code = _first(root, "HORIZONTAL_CS_CODE")
    size = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Size"
                 and e.get("resolution") == str(resolution)), None)
    position = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Geoposition"
                     and e.get("resolution") == str(resolution)), None)
    if code is None or size is None or position is None:
        raise InputError(f"Sentinel-2 metadata: {xml_path} has no Tile_Geocoding for {resolution} m "
                         "(expected HORIZONTAL_CS_CODE, Size and Geoposition elements)")
    try:
        return TileGrid(epsg=int(code.text.split(":")[-1]), ulx=float(_first(position, "ULX").text),
                        uly=float(_first(position, "ULY").text), resolution=float(resolution),
                        width=int(_first(size, "NCOLS").text), height=int(_first(size, "NROWS").text))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"Sentinel-2 metadata: {xml_path} has an unreadable Tile_Geocoding ({exc})") from exc
