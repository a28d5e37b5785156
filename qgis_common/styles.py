"""How every TopoClear output looks in the map canvas: the one owner of styles.

The Processing algorithms style their outputs through :func:`style_when_loaded` (a layer
post-processor, run on the main thread after the algorithm), the docks through
:func:`apply_style`; both look the style up by name in :data:`STYLES` (or a QML file of
``qgis_common/qml``).
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple

from qgis.core import (QgsColorRampShader, QgsContrastEnhancement, QgsMultiBandColorRenderer,
                       QgsPalettedRasterRenderer, QgsProcessingLayerPostProcessorInterface, QgsRasterShader,
                       QgsSingleBandGrayRenderer, QgsSingleBandPseudoColorRenderer)
from qgis.PyQt.QtGui import QColor

STYLE_DIR = os.path.join(os.path.dirname(__file__), "qml")

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
    """A style function loading ``qgis_common/qml/<name>.qml``."""
    path = os.path.join(STYLE_DIR, f"{name}.qml")

    def apply(layer) -> None:
        layer.loadNamedStyle(path)

    return apply


def style_true_colour(layer, bands: Sequence[int], maximum: float) -> None:
    """Red, green, blue from band numbers ``bands``, each stretched from 0 to ``maximum``."""
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    enhancements = []
    for band in bands:
        enhancement = QgsContrastEnhancement(provider.dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(0.0)
        enhancement.setMaximumValue(maximum)
        enhancements.append(enhancement)
    renderer.setRedContrastEnhancement(enhancements[0])
    renderer.setGreenContrastEnhancement(enhancements[1])
    renderer.setBlueContrastEnhancement(enhancements[2])
    layer.setRenderer(renderer)


def true_colour_bands(path: str) -> Tuple[Tuple[int, int, int], float]:
    """(red, green, blue) band numbers of a Sentinel-2 raster and its stretch maximum (0.3 reflectance)."""
    import numpy as np
    import rasterio

    from ..engine.clouds.evaluation import rgb_band_numbers

    with rasterio.open(path) as ds:
        bands = tuple(rgb_band_numbers(ds, ds.count))
        maximum = 0.3 if np.dtype(ds.dtypes[0]).kind == "f" else 3000.0
    return bands, maximum


def style_sentinel2(layer) -> None:
    """True colour (B4, B3, B2), reflectance 0-0.3."""
    bands, maximum = true_colour_bands(layer.source().split("|")[0])
    style_true_colour(layer, bands, maximum)


#: The cloud mask classes (value, colour, opacity 0-255, label); 255 (nodata) is transparent as the raster's nodata.
CLOUD_MASK_CLASSES = [(0, "#000000", 0, "Clear (0)"), (1, "#ffffff", 255, "Cloud (1)"),
                      (2, "#1f1f3d", 220, "Cloud shadow (2)")]


def style_cloudmask(layer) -> None:
    """The cloud mask classes: cloud white, shadow dark, clear transparent (the image shows through)."""
    classes = []
    for value, colour, alpha, label in CLOUD_MASK_CLASSES:
        c = QColor(colour)
        c.setAlpha(alpha)
        classes.append(QgsPalettedRasterRenderer.Class(value, c, label))
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))


def style_observed(layer) -> None:
    """The observed codes of a cloud-removal output (:mod:`topoclear.engine.clouds.observed`), one colour each."""
    from ..engine.clouds.observed import CODES, NODATA

    classes = []
    for code, (label, _, rgb) in CODES.items():
        if code == NODATA:
            continue
        classes.append(QgsPalettedRasterRenderer.Class(code, QColor(*rgb), f"{label} ({code})"))
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))


#: How each band of a snow cover duration GeoTIFF (:mod:`topoclear.engine.snow.duration`) is drawn: (band,
#: style name, colours, what the values are). Each band is one named style of the layer (its Styles menu).
DURATION_STYLES = (
    (1, "Snow cover duration (SCD, days)", ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b"), "days"),
    (3, "Melt-out date (SMOD)", ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"), "date"),
    (2, "Snow onset date (SOD)", ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"), "date"),
    (4, "First snow day", ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"), "date"),
    (5, "Last snow day", ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"), "date"),
    (6, "Clear observations (NOBS)", ("#fff5eb", "#fdbe85", "#fd8d3c", "#d94701", "#8c2d04"), "count"),
    (7, "Unknown days", ("#f0f0f0", "#bdbdbd", "#fc9272", "#de2d26", "#a50f15"), "days"),
)


def duration_period(path: str) -> Tuple[int, Optional[str], int]:
    """(days of the period, its start date ISO or None, number of snow map dates) of a duration GeoTIFF."""
    import rasterio

    with rasterio.open(path) as ds:
        tags = ds.tags()
    try:
        days = max(1, int(tags.get("PERIOD_DAYS", "365")))
    except ValueError:
        days = 365
    dates = [d for d in tags.get("SNOW_MAP_DATES", "").split(";") if d]
    return days, tags.get("PERIOD_START") or None, max(1, len(dates))


def _duration_ramp(colours: Sequence[str], kind: str, days: int, start: Optional[str], dates: int) -> Ramp:
    import datetime

    top = dates if kind == "count" else days if kind == "days" else days - 1
    top = max(1, top)
    ramp = []
    for i, colour in enumerate(colours):
        value = round(top * i / (len(colours) - 1))
        if kind == "date" and start:
            label = (datetime.date.fromisoformat(start) + datetime.timedelta(days=value)).isoformat()
        else:
            label = f"{value}" + (" days" if kind == "days" else "")
        ramp.append((value, colour, label))
    return ramp


def style_snow_duration(layer) -> None:
    """Each band of a snow cover duration GeoTIFF as a named style of the layer (SCD shown; the others in
    the layer's Styles menu): day counts and days of the period (labelled with their dates) on colour ramps."""
    days, start, dates = duration_period(layer.source().split("|")[0])
    styles = [(name, band, _duration_ramp(colours, kind, days, start, dates))
              for band, name, colours, kind in DURATION_STYLES if band <= layer.bandCount()]
    manager = layer.styleManager()
    for name in [n for n, _, _ in styles if n in manager.styles() and n != manager.currentStyle()]:
        manager.removeStyle(name)
    if manager.currentStyle() != styles[0][0]:
        manager.renameStyle(manager.currentStyle(), styles[0][0])
    for name, band, ramp in styles[1:]:
        _pseudocolor(layer, ramp, band)
        manager.addStyleFromLayer(name)
    _pseudocolor(layer, styles[0][2], styles[0][1])


STYLES = {
    "slope_degrees": style_slope_degrees,
    "slope_percent": style_slope_percent,
    "aspect": style_aspect,
    "hillshade": style_hillshade,
    "terrain_stack": style_terrain_stack,
    "ndsi": style_ndsi,
    "fsc": style_fsc,
    "sentinel2": style_sentinel2,
    "snow_duration": style_snow_duration,
    "cloudmask": style_cloudmask,
    "observed": style_observed,
}


def style_function(name: str) -> Callable:
    """The function that applies style ``name`` (:data:`STYLES` or ``qml/<name>.qml``)."""
    return STYLES.get(name) or style_from_qml(name)


def apply_style(layer, name: str) -> None:
    """Style ``layer`` (main thread) and repaint it."""
    style_function(name)(layer)
    layer.triggerRepaint()


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a named TopoClear style to an output layer once Processing has loaded it.

    QGIS deletes a post-processor after it ran, so a new one is made for every output
    (:func:`style_when_loaded`) and kept alive by :attr:`_alive` until QGIS is done with it.
    """

    _alive: List["StylePostProcessor"] = []

    def __init__(self, style: str, layer_name: Optional[str] = None):
        super().__init__()
        self.style = style
        self.layer_name = layer_name

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        apply_style(layer, self.style)
        if self.layer_name:
            layer.setName(self.layer_name)


def style_when_loaded(context, output_path: str, style: str, layer_name: Optional[str] = None) -> None:
    """Style ``output_path`` (and name its layer) when Processing loads it into the project."""
    if not context.willLoadLayerOnCompletion(output_path):
        return
    processor = StylePostProcessor(style, layer_name)
    alive = StylePostProcessor._alive
    alive.append(processor)
    del alive[:-64]  # QGIS has long run the older ones
    details = context.layerToLoadOnCompletionDetails(output_path)
    details.setPostProcessor(processor)
    if layer_name:
        details.name = layer_name
