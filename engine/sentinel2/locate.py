"""Sentinel-2 band roles, product layouts and DN -> reflectance, read window by window.

:func:`locate_bands` finds where each Sentinel-2 band (``"B3"``, ``"B11"``...) of a product lives,
whatever the layout the user has:

* a **band stack** in one file: 13 bands (L1C order B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B10,
  B11, B12, as SEN12MS-CR and DSen2-CR), 12 bands (L2A order, no B10) or 10 bands (B2, B3, B4,
  B5, B6, B7, B8, B8A, B11, B12, the 10 m + 20 m set of CRT-UNet). Band descriptions naming the
  bands (``"B3"``, ``"B03"``, ``"B11, central wavelength 1610 nm"``...) take precedence over
  the band count;
* **separate band files**, one band per file named with the band (``..._B03.tif``,
  ``T32TLR_20220105T103421_B11_20m.jp2``): the other bands are the files beside it;
* a **SAFE folder** (or an unpacked product folder, or the product's ``MTD_MSIL*.xml``, or a
  GDAL ``SENTINEL2_L2A:...`` subdataset name): the band files under ``GRANULE/*/IMG_DATA``
  (L2A: the 20 m files are preferred, as Let It Snow works at 20 m, then 10 m, then 60 m), and
  the L2A scene classification (SCL) band;
* a plain folder of band files (a BigEarthNet patch folder).

Any band can be given explicitly (a band of the input stack, or a band of another file); a
layer that is not Sentinel-2-like needs explicit bands for every role.

**Reflectance** = ``(DN + offset) / quantification``. Integer bands: quantification 10000 and
offset 0, except from processing baseline 04.00 (products from 25 January 2022) where the
metadata gives ``BOA_ADD_OFFSET`` (L2A) / ``RADIO_ADD_OFFSET`` (L1C) = -1000. The offsets are
read from the product's ``MTD_MSIL*.xml`` when one is found near the band files; without the
XML, a processing baseline read from the product name (``_N0400_``, or BigEarthNet's
``tile_source`` in the patch JSON) of 04.00 or later applies ESA's -1000. Floating-point layers
are taken as reflectance already (quantification 1). Explicit values override all of this.
8-bit bands (uint8, int8) are refused unless a quantification is given: Sentinel-2 numbers are
16-bit DN or floating-point reflectance, so an 8-bit raster is a scaled or quick-look product.
DN 0 is Sentinel-2's no-data value: integer bands without a declared nodata treat 0 as nodata.

This module imports no ``qgis``: the snow tools and cloud removal share it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio

from ..errors import InputError
from ..io.raster import check_band, open_raster
from .bands import (BAND_DESCRIPTION, BASELINE_04_OFFSET, BASELINE_IN_NAME, DEFAULT_QUANTIFICATION, METADATA_BAND_ID,
                    RASTER_SUFFIXES, RES_IN_NAME, STACK_LAYOUTS, BandSource, Override, S2Product,
                    band_from_filename, is_scl_name, normalise_band_number)
from ...models.bands import ROLE_LABELS
from .metadata import RadiometricOffsets, read_radiometric_offsets


def _is_subdataset_name(text: str) -> bool:
    return bool(re.match(r"^SENTINEL2_L(1C|2A)", text, re.IGNORECASE))


def _subdataset_xml(text: str) -> str:
    # SENTINEL2_L2A:/path/MTD_MSIL2A.xml:20m:EPSG_32632 (the path may itself hold a drive colon)
    body = text.split(":", 1)[1]
    if body.startswith('"'):
        return body[1:].split('"', 1)[0]
    match = re.match(r"(.+?\.xml)", body, re.IGNORECASE)
    if not match:
        raise InputError(f"Sentinel-2 input: cannot find the metadata file in the subdataset name {text}")
    return match.group(1)


def _raster_files(folder: Path, max_depth: int = 6) -> List[Path]:
    found: List[Path] = []
    base_depth = len(folder.parts)
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).parts) - base_depth
        if depth >= max_depth:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if d not in ("QI_DATA", "AUX_DATA", "HTML", "rep_info", "DATASTRIP"))
        for name in sorted(files):
            if name.lower().endswith(RASTER_SUFFIXES) and not name.lower().endswith(".aux.xml"):
                found.append(Path(root) / name)
    return found


def _resolution_rank(path: Path, preferred: Sequence[int]) -> int:
    match = RES_IN_NAME.search(path.name)
    if match is None:
        parent = re.fullmatch(r"R(10|20|60)m", path.parent.name)
        res = int(parent.group(1)) if parent else None
    else:
        res = int(match.group(1))
    if res is None:
        return len(preferred)
    return preferred.index(res) if res in preferred else len(preferred) + 1


def _band_files(folder: Path, preferred: Sequence[int]) -> Tuple[Dict[str, Path], Optional[Path]]:
    """Band name -> file among the rasters under ``folder`` (preferred resolutions first), and the SCL file."""
    bands: Dict[str, List[Path]] = {}
    scl: List[Path] = []
    for path in _raster_files(folder):
        stem = path.name
        if is_scl_name(stem):
            scl.append(path)
            continue
        if re.search(r"(?:^|_)(TCI|AOT|WVP|PVI|CLD|SNW|MSK)(?=$|[_.])", stem, re.IGNORECASE):
            continue
        name = band_from_filename(path)
        if name is not None:
            bands.setdefault(name, []).append(path)
    chosen = {name: sorted(paths, key=lambda p: (_resolution_rank(p, preferred), str(p)))[0]
              for name, paths in bands.items()}
    scl_file = sorted(scl, key=lambda p: (_resolution_rank(p, (20, 60, 10)), str(p)))[0] if scl else None
    return chosen, scl_file


def bands_named_in_descriptions(ds: rasterio.DatasetReader) -> Dict[str, int]:
    """Band name -> band number for the bands whose description names them (``"B03"``, ``"B11, 1610 nm"``)."""
    named: Dict[str, int] = {}
    for i, text in enumerate(ds.descriptions, start=1):
        if not text:
            continue
        match = BAND_DESCRIPTION.match(text)
        if match:
            named.setdefault(normalise_band_number(match.group(1)), i)
    return named


def _baseline_from_names(paths: Iterable[Path]) -> Optional[Tuple[str, str]]:
    """(baseline "NN.NN", where) from product names or a BigEarthNet patch JSON near ``paths``."""
    for path in paths:
        for part in [path.name] + [p.name for p in path.parents][:6]:
            match = BASELINE_IN_NAME.search(part)
            if match:
                return f"{match.group(1)}.{match.group(2)}", part
        folder = path if path.is_dir() else path.parent
        for js in sorted(folder.glob("*metadata*.json"))[:3]:
            try:
                meta = json.loads(js.read_text())
            except (OSError, ValueError):
                continue
            source = str(meta.get("tile_source", "")) if isinstance(meta, dict) else ""
            match = BASELINE_IN_NAME.search(source)
            if match:
                return f"{match.group(1)}.{match.group(2)}", js.name
    return None


def _radiometry(bands: Dict[str, BandSource], anchor: List[Path], offset: Optional[float],
                quantification: Optional[float]) -> Tuple[Dict[str, BandSource], str, Optional[str]]:
    """Fill offsets/quantification of integer bands from explicit values, the metadata or the name."""
    level = None
    metadata: Optional[RadiometricOffsets] = None
    for path in anchor:
        try:
            metadata = read_radiometric_offsets(path)
        except InputError:
            metadata = None
        if metadata is not None:
            level = metadata.level
            break
    baseline = None if metadata is not None else _baseline_from_names(anchor)
    out: Dict[str, BandSource] = {}
    notes = set()
    for name, src in bands.items():
        with rasterio.open(src.path) as ds:
            dtype = np.dtype(ds.dtypes[src.index - 1])
            declared = ds.nodatavals[src.index - 1]
        is_float = dtype.kind == "f"
        if dtype.itemsize == 1 and quantification is None:
            raise InputError(f"{src.path} is 8-bit ({dtype.name}): Sentinel-2 numbers are 16-bit digital numbers or "
                             "floating-point reflectance; give the quantification value (QUANTIFICATION) if this is "
                             "a scaled product")
        nodata = declared if declared is not None else (None if is_float else 0.0)
        if is_float:
            q = quantification if quantification is not None else 1.0
            off = offset if offset is not None else 0.0
            notes.add("floating-point bands taken as reflectance" if quantification is None and offset is None
                      else f"(value + {off:g}) / {q:g} (given)")
        else:
            if metadata is not None:
                q = quantification if quantification is not None else metadata.quantification
                off = offset if offset is not None else metadata.offset_for(METADATA_BAND_ID.get(name, -1))
                notes.add(f"(DN {off:+g}) / {q:g}: {'offset given' if offset is not None else 'offset'} "
                          f"with {metadata.level} metadata, processing baseline "
                          f"{metadata.processing_baseline or 'unknown'}")
            else:
                q = quantification if quantification is not None else DEFAULT_QUANTIFICATION
                if offset is not None:
                    off = offset
                    notes.add(f"(DN + {off:g}) / {q:g} (offset given)")
                elif baseline is not None and baseline[0] >= "04.00":
                    off = BASELINE_04_OFFSET
                    notes.add(f"(DN - 1000) / {q:g}: processing baseline {baseline[0]} (from {baseline[1]}) "
                              "uses ESA's offset of -1000")
                else:
                    off = 0.0
                    why = (f"processing baseline {baseline[0]} from {baseline[1]}" if baseline
                           else "no product metadata found")
                    notes.add(f"DN / {q:g} ({why}: no offset)")
        out[name] = replace(src, offset=float(off), quantification=float(q), nodata=nodata)
    return out, "; ".join(sorted(notes)), level


@dataclass
class FoundBands:
    """What one Sentinel-2 input gave: its bands by name, its SCL band, its layout and, for a
    stack, its path (explicit band choices refer to it)."""

    bands: Dict[str, BandSource] = field(default_factory=dict)
    scl: Optional[BandSource] = None
    layout: str = "explicit band choices"
    stack_path: Optional[str] = None


def bands_in_folder(path: Path, wanted: Sequence[str], preferred_resolutions: Sequence[int]) -> FoundBands:
    """The bands of a SAFE product folder or a folder of separate band files."""
    files, scl_file = _band_files(path, preferred_resolutions)
    if not files:
        raise InputError(f"Sentinel-2 input: no band files (names with _B03, _B11...) found in folder {path}; "
                         "choose a band stack or a band file instead")
    is_safe = path.name.upper().endswith(".SAFE") or (path / "GRANULE").is_dir()
    found = FoundBands(layout="SAFE product folder" if is_safe else "folder of separate band files")
    for name in wanted:
        if name in files:
            found.bands[name] = BandSource(name, str(files[name]), 1, found_by="file name in folder")
    if scl_file is not None:
        found.scl = BandSource("SCL", str(scl_file), 1, found_by="SCL file")
    return found


def bands_beside_file(path: Path, own_band: str, wanted: Sequence[str],
                      preferred_resolutions: Sequence[int]) -> FoundBands:
    """The bands of a product whose bands are separate files, from one of them (``own_band``)."""
    files, scl_file = _band_files(path.parent, preferred_resolutions)
    if path.parent.name.upper() in ("R10M", "R20M", "R60M"):
        more, more_scl = _band_files(path.parent.parent, preferred_resolutions)
        for name, other in more.items():
            files.setdefault(name, other)
        scl_file = scl_file or more_scl
    files[own_band] = path
    found = FoundBands(layout="separate band files")
    for name in wanted:
        if name in files:
            how = "the chosen file" if files[name] == path else "file name beside it"
            found.bands[name] = BandSource(name, str(files[name]), 1, found_by=how)
    if scl_file is not None:
        found.scl = BandSource("SCL", str(scl_file), 1, found_by="SCL file beside the bands")
    return found


def bands_in_file(path: Path, names: Sequence[str], wanted: Sequence[str], overrides: Mapping[str, Override],
                  preferred_resolutions: Sequence[int]) -> FoundBands:
    """The bands of a raster file: a stack with named bands, a stack of a known layout, one band file
    of a product or (with every band chosen explicitly) any raster."""
    with open_raster(path, "Sentinel-2 input") as ds:
        count = ds.count
        named = bands_named_in_descriptions(ds)
    own_band = band_from_filename(path)
    if count > 1 and len(named) >= 2:
        found = FoundBands(layout=f"{count}-band stack with named bands", stack_path=str(path))
        for name in wanted:
            if name in named:
                found.bands[name] = BandSource(name, str(path), named[name], found_by="band description")
        return found
    if count in STACK_LAYOUTS:
        layout, order = STACK_LAYOUTS[count]
        found = FoundBands(layout=layout, stack_path=str(path))
        for name in wanted:
            if name in order:
                found.bands[name] = BandSource(name, str(path), order.index(name) + 1, found_by=layout.split(" (")[0])
        return found
    if count == 1 and own_band is not None:
        return bands_beside_file(path, own_band, wanted, preferred_resolutions)
    if count == 1 and is_scl_name(path.name):
        raise InputError(f"Sentinel-2 input: {path.name} is a scene classification (SCL) band; choose a "
                         "reflectance band file or the product instead, and give the SCL as the cloud mask")
    if not all(n in overrides for n in names):
        missing = [ROLE_LABELS.get(n, n) for n in names if n not in overrides]
        raise InputError(
            f"Sentinel-2 input: {path.name} has {count} band(s) and does not look like a Sentinel-2 "
            f"product (expected a 13-, 12- or 10-band stack, named bands, a band file named like "
            f"..._B03.tif or a SAFE folder); choose the band(s) explicitly: {', '.join(missing)}")
    return FoundBands(layout=f"{count}-band raster with explicit band choices", stack_path=str(path))


def input_path(source: os.PathLike | str) -> Path:
    """The file or folder of a Sentinel-2 input (a GDAL subdataset name or a metadata XML: its folder)."""
    text = str(source)
    if _is_subdataset_name(text):
        text = str(Path(_subdataset_xml(text)).parent)
    path = Path(text)
    if path.is_file() and path.suffix.lower() == ".xml":
        path = path.parent
    if not path.exists():
        raise InputError(f"Sentinel-2 input: {path} does not exist")
    return path


def locate_bands(source: Optional[os.PathLike | str], names: Sequence[str] = ("B3", "B4", "B11"),
                 overrides: Optional[Mapping[str, Override]] = None, offset: Optional[float] = None,
                 quantification: Optional[float] = None, preferred_resolutions: Sequence[int] = (20, 10, 60),
                 optional: Sequence[str] = ()) -> S2Product:
    """Find bands ``names`` of the Sentinel-2 product ``source`` (see the module docstring).

    ``overrides`` maps a band name to ``(file or None, band number)``: None means a band of
    ``source`` itself. ``optional`` bands may be missing. Raises :class:`InputError` naming the
    missing band and what to do when a band cannot be found or the layer is not Sentinel-2-like.
    """
    overrides = dict(overrides or {})
    wanted = list(dict.fromkeys(list(names) + list(optional)))
    anchor: List[Path] = []
    found = FoundBands()
    if source is not None and str(source) != "":
        path = input_path(source)
        anchor.append(path)
        found = (bands_in_folder(path, wanted, preferred_resolutions) if path.is_dir()
                 else bands_in_file(path, names, wanted, overrides, preferred_resolutions))

    for name, (file, index) in overrides.items():
        target = file if file else found.stack_path
        if target is None and source is not None and not file:
            target = str(source)
        if not target:
            raise InputError(f"{ROLE_LABELS.get(name, name)}: band {index} chosen but no input layer or file given")
        with open_raster(target, ROLE_LABELS.get(name, name)) as ds:
            check_band(ds, int(index), ROLE_LABELS.get(name, name))
        found.bands[name] = BandSource(name, str(target), int(index), found_by="chosen explicitly")
        anchor.append(Path(target))

    missing = [n for n in names if n not in found.bands]
    if missing:
        labels = ", ".join(ROLE_LABELS.get(n, n) for n in missing)
        raise InputError(f"Sentinel-2 input ({found.layout}): missing band(s) {labels}; the tools need "
                         f"{', '.join(ROLE_LABELS.get(n, n) for n in names)}. Choose the missing band explicitly "
                         "(a band of the input or a separate band file)")
    for src in found.bands.values():
        anchor.append(Path(src.path))
    bands, radiometry, level = _radiometry(found.bands, anchor, offset, quantification)
    if level is None and found.scl is not None:
        level = "L2A"
    return S2Product(layout=found.layout, bands=bands, scl=found.scl, level=level, radiometry=radiometry, notes=[])
