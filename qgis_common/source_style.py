"""The style of a multi-temporal SOURCE raster: one class per code, labelled with its date or method.

The codes and their labels are in the raster's metadata (``TOPOCLEAR_SOURCE_CODES``, JSON, written by
:mod:`topoclear.engine.clouds.timeseries`); dates get colours along a ramp from the earliest to the
latest, observed pixels are transparent (the image shows through), the single-image fill and the
network get their own colours.
"""
from __future__ import annotations

import json
from typing import Dict, List, Tuple

from qgis.core import QgsPalettedRasterRenderer, QgsProcessingLayerPostProcessorInterface
from qgis.PyQt.QtGui import QColor

#: Colours of the method codes.
METHOD_COLOURS = {0: ("#000000", 0), 253: ("#1f78b4", 255), 254: ("#e31a1c", 255)}
DATE_RAMP = ("#fde725", "#5ec962", "#21918c", "#3b528b", "#440154")


def source_codes(path: str) -> Dict[int, str]:
    """{code: label} of a SOURCE raster (empty when it has none)."""
    import rasterio

    with rasterio.open(path) as ds:
        text = ds.tags().get("TOPOCLEAR_SOURCE_CODES", "")
    try:
        return {int(k): str(v) for k, v in json.loads(text).items()} if text else {}
    except (ValueError, TypeError):
        return {}


def _ramp(fraction: float) -> QColor:
    stops = [QColor(c) for c in DATE_RAMP]
    x = max(0.0, min(1.0, fraction)) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    t = x - i
    a, b = stops[i], stops[i + 1]
    return QColor(round(a.red() + t * (b.red() - a.red())), round(a.green() + t * (b.green() - a.green())),
                  round(a.blue() + t * (b.blue() - a.blue())))


def source_classes(codes: Dict[int, str]) -> List[Tuple[int, QColor, str]]:
    dates = sorted((k for k in codes if 1 <= k <= 252), key=lambda k: codes[k])
    out = []
    for code, label in sorted(codes.items()):
        if code == 255:
            continue
        if code in METHOD_COLOURS:
            colour, alpha = METHOD_COLOURS[code]
            c = QColor(colour)
            c.setAlpha(alpha)
        else:
            c = _ramp(dates.index(code) / max(1, len(dates) - 1) if code in dates else 0.5)
        out.append((code, c, f"{code}: {label}"))
    return out


def style_source(layer) -> None:
    """Paletted classes of a SOURCE raster, labelled from its metadata."""
    codes = source_codes(layer.source().split("|")[0])
    classes = [QgsPalettedRasterRenderer.Class(v, c, label) for v, c, label in source_classes(codes)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


class SourceStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles a SOURCE output once Processing has loaded it (kept alive in :attr:`_alive`)."""

    _alive: List["SourceStylePostProcessor"] = []

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        style_source(layer)
        layer.setName("Source of each pixel (date or method)")


def style_source_when_loaded(context, path: str) -> None:
    if not context.willLoadLayerOnCompletion(path):
        return
    processor = SourceStylePostProcessor()
    alive = SourceStylePostProcessor._alive
    alive.append(processor)
    del alive[:-64]  # QGIS has long run the older ones
    details = context.layerToLoadOnCompletionDetails(path)
    details.setPostProcessor(processor)
    details.name = "Source of each pixel (date or method)"
