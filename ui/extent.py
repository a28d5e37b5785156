"""Where a dock runs: the whole layer or the part of it shown in the map canvas.

:class:`ExtentChoice` is the pair of radio buttons a dock shows; :func:`canvas_bounds` is the canvas extent in
a layer's CRS. An engine that takes an extent gets those bounds; for one that reads whole files (cloud
removal), :func:`clip_sentinel2` writes a clipped copy of a Sentinel-2 input as GDAL virtual rasters (VRT,
a few kilobytes: the pixels stay in the original files) that the engine reads as it would the original: band
stacks keep their bands and descriptions, a band file of a product keeps the other band files beside it, a
product folder keeps its layout, and the product's metadata files (``MTD_MSIL*.xml``, ``MTD_TL.xml``, patch
JSON) are copied beside them so radiometric offsets, sun angles and dates are read as before. Every clipped
file is cut to the same whole pixels of the product's coarsest grid, so the bands still line up.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import List, Optional, Tuple

from qgis.core import QgsCoordinateTransform, QgsProcessingUtils, QgsProject
from qgis.PyQt.QtWidgets import QButtonGroup, QRadioButton, QVBoxLayout

from ..engine.errors import InputError
from ..engine.sentinel2.bands import RASTER_SUFFIXES
from ..engine.sentinel2.metadata import find_product_metadata
from ..qgis_common.i18n import tr

Bounds = Tuple[float, float, float, float]
#: Folders of one resolution inside a product (their band files are searched beside the parent's too).
RESOLUTION_FOLDERS = ("R10M", "R20M", "R60M")
#: Metadata files copied beside the clipped rasters.
METADATA_SUFFIXES = (".xml", ".json")


class ExtentChoice:
    """"Whole layer" and "Canvas extent" radio buttons, one above the other (the dock stays narrow)."""

    def __init__(self, layout, parent, whole_tip: str, canvas_tip: str) -> None:
        where = QVBoxLayout()
        self.group = QButtonGroup(parent)
        self.whole_layer = QRadioButton(tr("Whole layer"))
        self.whole_layer.setToolTip(whole_tip)
        self.canvas_extent = QRadioButton(tr("Canvas extent"))
        self.canvas_extent.setToolTip(canvas_tip)
        self.whole_layer.setChecked(True)
        for button in (self.whole_layer, self.canvas_extent):
            self.group.addButton(button)
            where.addWidget(button)
        layout.addLayout(where)

    def bounds(self, iface, layer) -> Optional[Bounds]:
        """The canvas extent in ``layer``'s CRS when "Canvas extent" is chosen, else None (the whole layer)."""
        return canvas_bounds(iface, layer) if self.canvas_extent.isChecked() else None


def canvas_bounds(iface, layer) -> Bounds:
    """(left, bottom, right, top) of the map canvas's extent in ``layer``'s CRS."""
    canvas = iface.mapCanvas()
    transform = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance())
    rect = transform.transformBoundingBox(canvas.extent())
    return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()


# -- clipping a Sentinel-2 input ------------------------------------------------------------------------------

def _band_file(path: Path) -> bool:
    from ..engine.sentinel2.bands import band_from_filename, is_scl_name

    return path.is_file() and path.suffix.lower() in RASTER_SUFFIXES and (band_from_filename(path) is not None
                                                                          or is_scl_name(path))


def _rasters(source: Path) -> Tuple[Path, List[Path]]:
    """(the folder mirrored, the raster files to clip) of a Sentinel-2 input: a band stack itself; the band and
    SCL files of a product folder, or beside a band file (and in its product's other resolution folders)."""
    from ..engine.sentinel2.bands import band_from_filename

    if source.is_dir():
        return source, [p for p in sorted(source.rglob("*")) if len(p.relative_to(source).parts) <= 7
                        and _band_file(p)]
    if band_from_filename(source) is None:  # a band stack: itself
        return source.parent, [source]
    root = source.parent.parent if source.parent.name.upper() in RESOLUTION_FOLDERS else source.parent
    return root, [p for p in sorted(root.rglob("*")) if len(p.relative_to(root).parts) <= 2 and _band_file(p)]


def _window(transform, width: int, height: int, bounds: Bounds) -> Tuple[int, int, int, int]:
    """(col, row, cols, rows) of the whole pixels covering ``bounds``, cut to the raster."""
    left, bottom, right, top = bounds
    eps = 1e-6
    col0 = max(0, math.floor((left - transform.c) / transform.a + eps))
    col1 = min(width, math.ceil((right - transform.c) / transform.a - eps))
    row0 = max(0, math.floor((transform.f - top) / -transform.e + eps))
    row1 = min(height, math.ceil((transform.f - bottom) / -transform.e - eps))
    return col0, row0, col1 - col0, row1 - row0


def clip_sentinel2(source: str, bounds: Bounds, folder: Optional[str] = None, label: str = "Sentinel-2") -> str:
    """A copy of the Sentinel-2 input ``source`` (band stack, band file of a product, product folder) cut to
    ``bounds`` (its CRS), as VRTs in a new folder (default: in QGIS's temporary folder); the path to give the
    engine in place of ``source``. :class:`InputError` when ``bounds`` does not overlap it."""
    import rasterio
    from osgeo import gdal

    path = Path(source)
    subdataset = re.match(r"^SENTINEL2_L(?:1C|2A):(.+?\.xml)", str(source), re.IGNORECASE)
    if subdataset:  # a product opened through GDAL's SENTINEL2 driver: its folder
        path = Path(subdataset.group(1)).parent
    if not path.exists():
        raise InputError(tr("{label}: {path} does not exist").format(label=label, path=source))
    root, files = _rasters(path)
    with rasterio.open(path if path.is_file() else files[0]) as ds:
        crs = ds.crs
    grids = {}
    for file in files:
        try:
            with rasterio.open(file) as ds:
                if ds.crs == crs and not ds.transform.b and not ds.transform.d:
                    grids[file] = (ds.transform, ds.width, ds.height)
        except rasterio.errors.RasterioError:
            continue
    if not grids:
        raise InputError(tr("{label}: {path} has no band that can be clipped to the canvas extent").format(
            label=label, path=source))
    # snap the bounds outward to the coarsest grid, so every band is cut to the same extent
    coarse = max(grids, key=lambda f: abs(grids[f][0].a))
    transform, width, height = grids[coarse]
    col, row, cols, rows = _window(transform, width, height, bounds)
    if cols <= 0 or rows <= 0:
        raise InputError(tr("{label}: the canvas extent does not overlap the layer; pan the map to the layer or "
                            "choose Whole layer").format(label=label))
    snapped = (transform.c + col * transform.a, transform.f + (row + rows) * transform.e,
               transform.c + (col + cols) * transform.a, transform.f + row * transform.e)
    stamp = f"{time.strftime('%Y%m%d_%H%M%S')}_{int(time.time() * 1000) % 1000:03d}"
    base = Path(folder or QgsProcessingUtils.tempFolder()) / f"extent_{stamp}"
    out_root = base / root.name if path.is_dir() else base
    for file, (t, w, h) in grids.items():
        c, r, nc, nr = _window(t, w, h, snapped)
        if nc <= 0 or nr <= 0:
            continue
        target = (out_root / file.relative_to(root)).with_suffix(".vrt")
        target.parent.mkdir(parents=True, exist_ok=True)
        if gdal.Translate(str(target), str(file), format="VRT", srcWin=[c, r, nc, nr]) is None:
            raise InputError(tr("{label}: GDAL could not clip {path}").format(label=label, path=file))
    _copy_metadata(path, root, out_root)
    return str(out_root if path.is_dir() else (out_root / path.relative_to(root)).with_suffix(".vrt"))


def _copy_metadata(path: Path, root: Path, out_root: Path) -> None:
    """The metadata files of the product beside the clipped rasters (same layout), and its product and tile
    metadata found above it at the clip's root."""
    from ..engine.sentinel2.bands import band_from_filename

    stack = path.is_file() and band_from_filename(path) is None
    for item in sorted(root.rglob("*")) if path.is_dir() else sorted(root.iterdir()):
        name = item.name.lower()
        if not item.is_file() or item.suffix.lower() not in METADATA_SUFFIXES or name.endswith(".aux.xml") \
                or len(item.relative_to(root).parts) > 7:
            continue
        if stack and not (name.startswith("mtd") or name.startswith(path.stem.lower())):
            continue  # beside a band stack: only its own metadata
        target = out_root / item.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item, target)
    product = find_product_metadata(path)
    if product is not None and not (out_root / product.name).exists():
        shutil.copy2(product, out_root / product.name)
    for parent in [path.parent, *list(path.parent.parents)[:6]]:
        tile = parent / "MTD_TL.xml"
        if tile.is_file():
            if not (out_root / tile.name).exists():
                shutil.copy2(tile, out_root / tile.name)
            break
    os.makedirs(out_root, exist_ok=True)
