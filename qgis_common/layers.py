"""The file behind a map layer: TopoClear reads rasters through GDAL, from files."""
from __future__ import annotations

import os
from typing import Optional


class LayerError(ValueError):
    """A layer that TopoClear cannot read (not file-based, or not a raster)."""


def file_behind_layer(layer, role: str) -> Optional[str]:
    """The file of a GDAL raster layer (None for no layer); :class:`LayerError` naming ``role`` and the
    layer for layers of other providers."""
    if layer is None:
        return None
    if layer.providerType() != "gdal":
        raise LayerError(f"{role}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
                         "TopoClear reads rasters through GDAL: save it as a GeoTIFF first")
    return layer.source().split("|")[0]


def display_name(layer, path: Optional[str] = None) -> str:
    """How the user knows a layer: its name in the project, else its file's name without the extension
    (``path``, or the layer's source; a product folder keeps its name without ``.SAFE``); '' for none."""
    if layer is not None and layer.name():
        return layer.name()
    source = path or (layer.source().split("|")[0] if layer is not None else "")
    name = os.path.basename(str(source or "").rstrip("/\\"))
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in (".tif", ".tiff", ".jp2", ".vrt", ".img", ".safe", ".xml") else name
