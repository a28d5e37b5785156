"""Renderers for TopoClear outputs, so every output opens styled in the map canvas.

Styles are applied by Processing layer post-processors (main thread, after the algorithm ran),
never from inside ``processAlgorithm``.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

from qgis.core import (QgsColorRampShader, QgsContrastEnhancement,
                       QgsProcessingLayerPostProcessorInterface, QgsRasterShader,
                       QgsSingleBandGrayRenderer, QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtGui import QColor

STYLE_DIR = os.path.join(os.path.dirname(__file__), "styles")

Ramp = List[Tuple[float, str, str]]  # (value, colour, label)

SLOPE_DEGREES: Ramp = [(0, "#ffffcc", "0°"), (10, "#a1dab4", "10°"), (20, "#41b6c4", "20°"),
                       (30, "#fdae61", "30°"), (45, "#d7191c", "45°"), (90, "#5e0000", "90°")]
SLOPE_PERCENT: Ramp = [(0, "#ffffcc", "0 %"), (18, "#a1dab4", "18 %"), (36, "#41b6c4", "36 %"),
                       (58, "#fdae61", "58 %"), (100, "#d7191c", "100 %"), (300, "#5e0000", "300 %")]
ASPECT: Ramp = [(0, "#e41a1c", "N"), (90, "#4daf4a", "E"), (180, "#377eb8", "S"), (270, "#ff7f00", "W"),
                (360, "#e41a1c", "N")]


def _pseudocolor(layer, ramp: Ramp, band: int = 1, discrete: bool = False) -> None:
    shader_fn = QgsColorRampShader()
    shader_fn.setColorRampType(QgsColorRampShader.Discrete if discrete else QgsColorRampShader.Interpolated)
    shader_fn.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(c), lbl) for v, c, lbl in ramp])
    shader_fn.setClassificationMode(QgsColorRampShader.Continuous)
    shader_fn.setMinimumValue(ramp[0][0])
    shader_fn.setMaximumValue(ramp[-1][0])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(ramp[0][0])
    renderer.setClassificationMax(ramp[-1][0])
    layer.setRenderer(renderer)


def _grey(layer, band: int = 1, minimum: float = 0.0, maximum: float = 255.0) -> None:
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), band)
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    enhancement.setMinimumValue(minimum)
    enhancement.setMaximumValue(maximum)
    renderer.setContrastEnhancement(enhancement)
    layer.setRenderer(renderer)


def style_slope_degrees(layer) -> None:
    _pseudocolor(layer, SLOPE_DEGREES)


def style_slope_percent(layer) -> None:
    _pseudocolor(layer, SLOPE_PERCENT)


def style_aspect(layer) -> None:
    _pseudocolor(layer, ASPECT)


def style_hillshade(layer) -> None:
    _grey(layer, 1, 0.0, 255.0)


def style_terrain_stack(layer) -> None:
    """Hillshade band (4) in grey: the stack's most readable view."""
    _grey(layer, 4, 0.0, 255.0)


NDSI: Ramp = [(-1.0, "#8c510a", "-1 (dark, wet or vegetated)"), (0.0, "#dfc27d", "0"),
              (0.4, "#f5f5f5", "0.4 (snow threshold)"), (0.7, "#80cdf1", "0.7"), (1.0, "#08519c", "1 (snow)")]
FSC: Ramp = [(0.0, "#d6c8aa", "0 % snow"), (0.25, "#c7e9f8", "25 %"), (0.5, "#7fcdf4", "50 %"),
             (0.75, "#2b9ee6", "75 %"), (1.0, "#08306b", "100 % snow")]


def style_ndsi(layer) -> None:
    _pseudocolor(layer, NDSI)


def style_fsc(layer) -> None:
    _pseudocolor(layer, FSC)


def style_from_qml(name: str):
    """A style function loading ``ui/styles/<name>.qml``."""
    path = os.path.join(STYLE_DIR, f"{name}.qml")

    def apply(layer) -> None:
        layer.loadNamedStyle(path)

    return apply


STYLES = {
    "slope_degrees": style_slope_degrees,
    "slope_percent": style_slope_percent,
    "aspect": style_aspect,
    "hillshade": style_hillshade,
    "terrain_stack": style_terrain_stack,
    "ndsi": style_ndsi,
    "fsc": style_fsc,
}


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a named TopoClear style to an output layer once Processing has loaded it."""

    def __init__(self, style: str):
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        apply = STYLES.get(self.style) or style_from_qml(self.style)
        apply(layer)
        layer.triggerRepaint()


_POST_PROCESSORS: Dict[str, StylePostProcessor] = {}


def post_processor(style: str) -> StylePostProcessor:
    """A long-lived post-processor for ``style`` (QGIS does not own it; this module keeps it alive)."""
    if style not in _POST_PROCESSORS:
        _POST_PROCESSORS[style] = StylePostProcessor(style)
    return _POST_PROCESSORS[style]
