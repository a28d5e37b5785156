"""Acquisition dates of the images of a snow series: from the product metadata, the file name, or the user.

:func:`acquisition_date` looks, in this order, at

1. the product metadata near the image: ``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``
   (``PRODUCT_START_TIME``, else ``DATATAKE_SENSING_START``), else the tile's ``MTD_TL.xml``
   (``SENSING_TIME``); a BigEarthNet patch's ``*_labels_metadata.json`` (``acquisition_date``);
   the raster's own tags (``ACQUISITION_DATE``, ``SENSING_TIME``, ``DATE_ACQUIRED``...);
2. the file name, then the names of the two folders above it: the first ``YYYY-MM-DD`` or
   ``YYYYMMDD`` (not part of a longer number; ``20180204T094161`` counts) that is a real date
   between 1972 and 2100. In a SAFE name the sensing date comes before the processing date.

Dates are the UTC calendar date of the sensing time, as Sentinel-2 names them.
:func:`parse_date_list` reads the dates a user types, one per image, in input order.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..errors import InputError
from ..sentinel2.metadata import find_product_metadata

#: ``YYYY-MM-DD`` (also with ``/`` or ``.``) and ``YYYYMMDD`` not inside a longer number.
_ISO = re.compile(r"(?<!\d)(\d{4})[-/.](\d{2})[-/.](\d{2})(?!\d)")
_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?=T\d|[^\d]|$)")
#: Tags of a raster that may hold its acquisition time.
DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITION_TIME", "SENSING_TIME", "SENSING_DATE", "DATE_ACQUIRED",
             "PRODUCT_START_TIME", "DATATAKE_SENSING_START")
#: Metadata elements holding the sensing time, by file.
_PRODUCT_TIMES = ("PRODUCT_START_TIME", "DATATAKE_SENSING_START")
_TILE_TIMES = ("SENSING_TIME",)
FIRST_YEAR, LAST_YEAR = 1972, 2100
DATE_HELP = "YYYY-MM-DD or YYYYMMDD"


def _valid(year: str, month: str, day: str) -> Optional[date]:
    try:
        value = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return value if FIRST_YEAR <= value.year <= LAST_YEAR else None


def date_in_text(text: str) -> Optional[date]:
    """The first real date written ``YYYY-MM-DD`` or ``YYYYMMDD`` in ``text``, or None."""
    found = []
    for pattern in (_ISO, _COMPACT):
        for match in pattern.finditer(text):
            value = _valid(*match.groups())
            if value is not None:
                found.append((match.start(), value))
                break
    return min(found)[1] if found else None


def _time_text(text: Optional[str]) -> Optional[date]:
    """The date of a metadata time (``2021-01-22T13:32:29.024Z``, ``2018-02-04 09:41:56``)."""
    if not text:
        return None
    text = text.strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")[:26]).date()
    except ValueError:
        return date_in_text(text)


def _xml_time(path: Path, names: Sequence[str]) -> Optional[date]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    for name in names:
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == name and element.text and element.text.strip():
                found = _time_text(element.text)
                if found is not None:
                    return found
    return None


def _tile_metadata(path: Path) -> Optional[Path]:
    start = path if path.is_dir() else path.parent
    for folder in [start] + list(start.parents)[:5]:
        if (folder / "MTD_TL.xml").is_file():
            return folder / "MTD_TL.xml"
        granules = sorted((folder / "GRANULE").glob("*/MTD_TL.xml")) if (folder / "GRANULE").is_dir() else []
        if granules:
            return granules[0]
    return None


def _bigearthnet_json(path: Path) -> Optional[Path]:
    folder = path if path.is_dir() else path.parent
    found = sorted(folder.glob("*_labels_metadata.json"))
    return found[0] if len(found) == 1 else None


def _tag_time(path: Path) -> Optional[date]:
    if not path.is_file():
        return None
    try:
        import rasterio

        with rasterio.open(str(path)) as ds:
            tags = {k.upper(): v for k, v in ds.tags().items()}
    except Exception:  # not a raster GDAL opens: no tags to read
        return None
    for name in DATE_TAGS:
        found = _time_text(tags.get(name))
        if found is not None:
            return found
    return None


def _source_path(source) -> Path:
    text = str(source)
    if re.match(r"^SENTINEL2_L(1C|2A)", text, re.IGNORECASE):
        body = text.split(":", 1)[1].strip('"')
        match = re.match(r"(.+?\.xml)", body, re.IGNORECASE)
        text = match.group(1) if match else body
    return Path(text)


def metadata_date(source) -> Optional[Tuple[date, str]]:
    """(date, where it was read) from the metadata of the image ``source``, or None."""
    path = _source_path(source)
    if not path.exists():
        return None
    product = find_product_metadata(path)
    if product is not None:
        found = _xml_time(product, _PRODUCT_TIMES)
        if found is not None:
            return found, f"the product metadata {product.name}"
    tile = _tile_metadata(path)
    if tile is not None:
        found = _xml_time(tile, _TILE_TIMES)
        if found is not None:
            return found, f"the tile metadata {tile.name}"
    patch = _bigearthnet_json(path)
    if patch is not None:
        try:
            found = _time_text(json.loads(patch.read_text(encoding="utf-8")).get("acquisition_date"))
        except (OSError, ValueError, AttributeError):
            found = None
        if found is not None:
            return found, f"the patch metadata {patch.name}"
    found = _tag_time(path)
    if found is not None:
        return found, "the raster's tags"
    return None


def name_date(source) -> Optional[Tuple[date, str]]:
    """(date, where it was read) from the file name of ``source`` or the two folders above it, or None."""
    path = _source_path(source)
    for part, what in ((path.name, "the file name"), (path.parent.name, "the folder name"),
                       (path.parent.parent.name, "the folder name")):
        found = date_in_text(part)
        if found is not None:
            return found, f"{what} {part}"
    return None


def acquisition_date(source, role: str) -> Tuple[date, str]:
    """(date, where it was read) of the image ``source`` (see the module docstring); :class:`InputError`
    naming ``role`` when neither its metadata nor its name gives one."""
    found = metadata_date(source) or name_date(source)
    if found is None:
        raise InputError(f"{role}: no acquisition date found for {source}: none in its metadata (MTD_MSIL*.xml, "
                         f"MTD_TL.xml, a BigEarthNet JSON, the raster's tags) nor in its file name ({DATE_HELP}); "
                         "give the dates of the images in input order (e.g. 2018-01-06, 2018-01-21, ...)")
    return found


def parse_date(text, role: str) -> date:
    """``text`` (``YYYY-MM-DD``, ``YYYY/MM/DD`` or ``YYYYMMDD``, or a date) as a date; :class:`InputError`."""
    if isinstance(text, datetime):
        return text.date()
    if isinstance(text, date):
        return text
    value = str(text).strip()
    match = _ISO.fullmatch(value) or re.fullmatch(r"(\d{4})(\d{2})(\d{2})", value)
    found = _valid(*match.groups()) if match else None
    if found is None:
        raise InputError(f"{role}: {value!r} is not a date: write it {DATE_HELP} (e.g. 2018-02-04)")
    return found


def parse_date_list(text: Optional[str], count: int, role: str = "dates") -> List[Optional[date]]:
    """The dates typed for ``count`` images, in input order: separated by commas, semicolons, new
    lines (or spaces when there is no comma or semicolon); an empty entry between commas means "from
    the image's metadata or name". Empty ``text``: all None. :class:`InputError` for a bad date or count."""
    if text is None or not str(text).strip():
        return [None] * count
    body = str(text).strip()
    parts = re.split(r"[,;\n]", body) if re.search(r"[,;\n]", body) else body.split()
    parts = [p.strip() for p in parts]
    if len(parts) == count + 1 and not parts[-1]:
        parts = parts[:-1]
    if len(parts) != count:
        raise InputError(f"{role}: {len(parts)} date(s) given for {count} image(s): give one date per image, in "
                         "input order, separated by commas (leave an entry empty to read that image's date from "
                         "its metadata or file name)")
    return [parse_date(p, f"{role}, entry {i + 1}") if p else None for i, p in enumerate(parts)]
