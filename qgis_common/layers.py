"""The file behind a map layer: TopoClear reads rasters through GDAL, from files."""
from __future__ import annotations

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
