"""The layer pickers of the docks: which project layer looks like a Sentinel-2 image or a DEM, and pickers
that preselect it (a DEM picker tied to a Sentinel-2 picker only offers DEMs that overlap its image)."""
from __future__ import annotations

import re
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from qgis.core import QgsCoordinateTransform, QgsCsException, QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject

from ..engine.sentinel2.bands import BAND_DESCRIPTION, STACK_LAYOUTS, band_from_filename

# -- which layer looks like what --------------------------------------------------------------------------

#: Names of Sentinel-2 products, levels and folders (``S2B_MSIL2A_...``, ``.SAFE``, ``S2L2A``, ``sentinel-2``).
S2_WORDS = re.compile(r"MSIL1C|MSIL2A|\.SAFE(?![a-z])|SENTINEL2_L[12][AC]|sentinel[-_ ]?2"
                      r"|(?:^|[^a-z0-9])S2(?:[AB]|L1C|L2A)?(?=$|[^a-z0-9])", re.IGNORECASE)
#: Names of elevation models.
DEM_WORDS = re.compile(r"(?:^|[^a-z])(?:dem|dtm|dsm|srtm|elevations?|elev|heights?|copdem|nasadem|gdem|mnt|alos)"
                       r"(?=$|[^a-z])", re.IGNORECASE)
#: Names of Sentinel-1 / SAR layers.
S1_WORDS = re.compile(r"(?:^|[^a-z0-9])(?:S1[AB]?|S1RTC|GRDH?|VV|VH|SAR|sentinel[-_ ]?1)(?=$|[^a-z0-9])",
                      re.IGNORECASE)


def layer_facts(layer) -> Tuple[str, int, List[str]]:
    """What a raster layer tells about itself: its name and the last three parts of its file's path (one
    text), its band count and its band descriptions."""
    source = (layer.source() or "").split("|")[0]
    parts = [p for p in re.split(r"[/\\]", source) if p][-3:]
    names = " ".join([layer.name() or ""] + parts)
    count = int(layer.bandCount()) if hasattr(layer, "bandCount") else 0
    descriptions = []
    for band in range(1, count + 1):
        text = layer.bandName(band) if hasattr(layer, "bandName") else ""
        descriptions.append(text.split(": ", 1)[1] if ": " in text else "")
    return names, count, descriptions


def sentinel2_score(names: str, band_count: int, descriptions: Sequence[str] = ()) -> int:
    """How much a raster looks like Sentinel-2 (0: not at all): product names (``MSIL2A``, ``.SAFE``, ``S2``),
    a band named in the file name (``..._B03.tif``) or in the band descriptions (``B02``, ``B11``), the band
    count of a known stack (13, 12, 10) or several bands. An elevation model or a Sentinel-1 layer is not."""
    product = bool(S2_WORDS.search(names))
    band_named = any(band_from_filename(part) for part in names.split(" ") if part)
    described = sum(bool(BAND_DESCRIPTION.match(d or "")) for d in descriptions)
    if band_count == 1 and DEM_WORDS.search(names) and not band_named:
        return 0
    if band_count <= 2 and S1_WORDS.search(names) and not (product or band_named):
        return 0
    score = 4 * product + 3 * band_named + 3 * (described >= min(2, band_count) and described > 0)
    if band_count in STACK_LAYOUTS:
        score += 2
    elif band_count >= 4:
        score += 1
    return score


def dem_score(names: str, band_count: int, descriptions: Sequence[str] = ()) -> int:
    """How much a raster looks like an elevation model (0: not at all): one band, and a name (of the layer,
    its file or folder, or its band) like dem, srtm, elevation, dtm; not a Sentinel-2 band file."""
    if band_count != 1 or any(band_from_filename(part) for part in names.split(" ") if part):
        return 0
    return 2 if DEM_WORDS.search(names) or any(DEM_WORDS.search(d or "") for d in descriptions) else 0


def looks_like_sentinel2(layer) -> bool:
    return layer is not None and sentinel2_score(*layer_facts(layer)) > 0


def looks_like_dem(layer) -> bool:
    return layer is not None and dem_score(*layer_facts(layer)) > 0


def best_layer(layers: Iterable, score: Callable[[str, int, Sequence[str]], int]):
    """The layer of ``layers`` with the highest ``score`` (> 0; the first of equals), or None."""
    best, best_score = None, 0
    for layer in layers:
        value = score(*layer_facts(layer))
        if value > best_score:
            best, best_score = layer, value
    return best


def _ids(items) -> set:
    return {item if isinstance(item, str) else item.id() for item in items}


class AutoPick(QObject):
    """Keeps an optional layer picker on the project's layer that scores best (``score``) while it is empty
    and the user has not picked anything: when the picker is made and whenever layers are added or removed.
    When its layer is removed, the picker goes back to the best other layer or none (not to a neighbour)."""

    def __init__(self, combo: QgsMapLayerComboBox, score, anchor: Optional[QgsMapLayerComboBox] = None) -> None:
        super().__init__(combo)
        self.combo, self.score, self.anchor = combo, score, anchor
        self.user_chose = False
        self._current: Optional[str] = None  # the id of the layer last chosen (by setLayer or the user)
        combo.activated.connect(self._user_chose)  # the user's own choices only, not setLayer()
        combo.layerChanged.connect(self._changed)
        project = QgsProject.instance()
        project.layersAdded.connect(self.pick)
        project.layersRemoved.connect(self._removed)
        project.cleared.connect(self._project_cleared)
        if anchor is not None:
            anchor.layerChanged.connect(self._anchor_changed)
        self.pick()

    def _anchor_changed(self, layer) -> None:
        """Another image: a preselected layer that does not overlap it gives way to the best one that does."""
        if sip.isdeleted(self) or sip.isdeleted(self.combo) or self.user_chose:
            return
        current = self.combo.currentLayer()
        if current is not None and not overlaps(current, layer):
            self.combo.setLayer(None)
        self.pick()

    def _user_chose(self, *_) -> None:
        self.user_chose = True

    def _project_cleared(self) -> None:
        self.user_chose = False

    def _changed(self, layer) -> None:
        self._current = layer.id() if layer is not None else None

    def _removed(self, items) -> None:
        if sip.isdeleted(self) or sip.isdeleted(self.combo):
            return
        if self._current is not None and self._current in _ids(items):
            # the picker's list moved it to a neighbour (without layerChanged): back to none, then the best
            self.user_chose = False
            self.combo.setLayer(None)
        self.pick()

    def pick(self, *_) -> None:
        if sip.isdeleted(self) or sip.isdeleted(self.combo):
            return
        if self.user_chose or self.combo.currentLayer() is not None:
            return
        image = self.anchor.currentLayer() if self.anchor is not None and not sip.isdeleted(self.anchor) else None
        layers = [self.combo.layer(i) for i in range(self.combo.count())]
        layer = best_layer([lyr for lyr in layers if lyr is not None and overlaps(lyr, image)], self.score)
        if layer is not None:
            self.combo.setLayer(layer)


def raster_combo(allow_empty: bool) -> QgsMapLayerComboBox:
    """A raster layer picker; ``allow_empty`` for optional inputs (starts empty)."""
    combo = QgsMapLayerComboBox()
    combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
    if allow_empty:
        combo.setAllowEmptyLayer(True)
        combo.setLayer(None)
    return combo


def sentinel2_combo() -> QgsMapLayerComboBox:
    """The Sentinel-2 picker: empty unless a raster of the project looks like Sentinel-2 (:func:`sentinel2_score`),
    which it preselects (also when such a layer is added later, until the user picks one)."""
    combo = raster_combo(True)
    combo.auto_pick = AutoPick(combo, sentinel2_score)
    return combo


def dem_combo(image: Optional[QgsMapLayerComboBox] = None) -> QgsMapLayerComboBox:
    """The DEM picker: empty unless a single-band raster of the project is named like a DEM (:func:`dem_score`),
    which it preselects (also when such a layer is added later, until the user picks one); with the ``image``
    picker, only a DEM that overlaps the chosen image, picked again when the image changes."""
    combo = raster_combo(True)
    combo.auto_pick = AutoPick(combo, dem_score, image)
    return combo


def overlaps(layer, other) -> bool:
    """Whether ``layer`` overlaps ``other`` (True when ``other`` is None; False when the extents cannot be
    compared, e.g. a CRS transform fails)."""
    if other is None:
        return True
    try:
        transform = QgsCoordinateTransform(other.crs(), layer.crs(), QgsProject.instance())
        return transform.transformBoundingBox(other.extent()).intersects(layer.extent())
    except QgsCsException:
        return False
