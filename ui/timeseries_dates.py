"""The Cloud removal dock's "Other dates" group: clear the chosen Sentinel-2 layer with other dates of the project.

A checkable list of the project's other Sentinel-2 raster layers (the target excluded); with at least one
checked, the dock runs the multi-date removal (:func:`topoclear.engine.clouds.timeseries.remove_clouds_timeseries`,
as ``topoclear:removeclouds_timeseries`` does) instead of the single-image one. The group also holds the
multi-date method (Automatic first) and an optional dates text; the dock's cloud-mask choice, mask raster,
Sentinel-1 layer, device and extent apply as they are.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from qgis.core import QgsMapLayerType, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem

from ..engine.clouds.timeseries_methods import SERIES_METHODS
from ..qgis_common.cloud_choices import Choice
from ..qgis_common.i18n import tr
from ..qgis_common.layers import file_behind_layer
from .task_dock import add_row, fill_menu, looks_like_sentinel2

LAYER_ID_ROLE = Qt.UserRole + 1


def series_choices() -> List[Choice]:
    """The multi-date methods, in menu order (Automatic first)."""
    return [Choice(m.key, m.title, m.description) for m in SERIES_METHODS]


class OtherDatesGroup(QgsCollapsibleGroupBox):
    """The project's other Sentinel-2 layers to check as other dates, the multi-date method and the dates;
    ``checksChanged`` when the checked layers change."""

    checksChanged = pyqtSignal()

    def __init__(self, target_combo, parent=None) -> None:
        super().__init__(tr("Other dates"), parent)
        self.setToolTip(tr("Fill the clouds of the Sentinel-2 layer from other dates of the same place: check them "
                           "in the list; none checked: single-image cloud removal"))
        self.setCollapsed(True)
        self.target_combo = target_combo
        form = QFormLayout(self)
        self.layers = QListWidget()
        self.layers.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.layers.setTextElideMode(Qt.ElideMiddle)
        self.layers.setMinimumWidth(60)
        self.layers.setMaximumHeight(120)
        self.layers.setToolTip(tr("The project's other Sentinel-2 layers: check those of other dates of the same "
                                  "place (any order, any grid); with one or more checked, the clouds are filled from "
                                  "them"))
        form.addRow(self.layers)
        self.method = QComboBox()
        fill_menu(self.method, series_choices(), tr("How the other dates fill the clouds:"))
        add_row(form, tr("Method"), self.method, self.method.toolTip())
        self.dates = QLineEdit()
        self.dates.setPlaceholderText(tr("[from metadata or names] YYYY-MM-DD, ..."))
        add_row(form, tr("Dates"), self.dates, tr(
            "The date of the Sentinel-2 layer first, then of each checked layer in list order (YYYY-MM-DD, "
            "comma-separated; an empty entry is read); empty: read from the metadata or the file names"))
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setToolTip(tr("Which cloud removal Run starts"))
        form.addRow(self.note)
        self.target_combo.layerChanged.connect(self.refresh)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh)
        project.layersRemoved.connect(self.refresh)
        self.layers.itemChanged.connect(self._update_note)
        self.refresh()

    def refresh(self, *_) -> None:
        """The project's Sentinel-2 raster layers but the target, keeping the checks."""
        if sip.isdeleted(self) or sip.isdeleted(self.layers):
            return
        checked = set(self.checked_ids())
        target = self.target_combo.currentLayer()
        self.layers.blockSignals(True)
        self.layers.clear()
        for layer in QgsProject.instance().mapLayers().values():
            if layer.type() != QgsMapLayerType.RasterLayer or not looks_like_sentinel2(layer) or \
                    (target is not None and layer.id() == target.id()):
                continue
            item = QListWidgetItem(layer.name())
            item.setData(LAYER_ID_ROLE, layer.id())
            item.setToolTip(layer.source())
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer.id() in checked else Qt.Unchecked)
            self.layers.addItem(item)
        self.layers.blockSignals(False)
        self._update_note()

    def listed_ids(self) -> List[str]:
        return [self.layers.item(i).data(LAYER_ID_ROLE) for i in range(self.layers.count())]

    def checked_ids(self) -> List[str]:
        return [self.layers.item(i).data(LAYER_ID_ROLE) for i in range(self.layers.count())
                if self.layers.item(i).checkState() == Qt.Checked]

    def check(self, layers) -> None:
        """Check ``layers`` (map layers or ids) and uncheck the others."""
        ids = {layer if isinstance(layer, str) else layer.id() for layer in layers}
        for i in range(self.layers.count()):
            item = self.layers.item(i)
            item.setCheckState(Qt.Checked if item.data(LAYER_ID_ROLE) in ids else Qt.Unchecked)

    def checked_layers(self):
        project = QgsProject.instance()
        return [project.mapLayer(i) for i in self.checked_ids() if project.mapLayer(i) is not None]

    def active(self) -> bool:
        return bool(self.checked_ids())

    def _update_note(self, *_) -> None:
        if sip.isdeleted(self) or sip.isdeleted(self.note) or sip.isdeleted(self.layers):
            return
        n = len(self.checked_ids())
        self.note.setText(tr("{n} other date(s) checked: Run fills the clouds from them.").format(n=n) if n else
                          tr("No other date checked: Run removes the clouds of the single image."))
        self.checksChanged.emit()

    def request(self, target: str, s1, mask_kind: str, mask, weights: str, device: str, output: str):
        """The engine request of a multi-date run (errors name the dock's fields); ``target``: the Sentinel-2
        file (clipped to the extent when one was chosen), ``s1`` / ``mask``: layers or None."""
        from ..engine.clouds.request import InferenceOptions
        from ..engine.clouds.timeseries import TimeSeriesRequest
        from ..engine.snow.dates import parse_date_list

        aux = [file_behind_layer(layer, tr("Other dates: {name}").format(name=layer.name()))
               for layer in self.checked_layers()]
        text = self.dates.text().strip()
        dates = parse_date_list(text, 1 + len(aux), tr("Dates")) if text else None
        source = (output[:-4] if output.lower().endswith(".tif") else output) + "_source.tif"
        s1_file = file_behind_layer(s1, tr("Sentinel-1"))
        return TimeSeriesRequest(
            target=target, auxiliary=aux, output=output, source_output=source, dates=dates,
            s1=[s1_file] if s1_file else [], method=self.method.currentData(), mask_kind=mask_kind or "auto",
            mask=file_behind_layer(mask, tr("Cloud raster")), weights=weights or None,
            inference=InferenceOptions(tile=256, overlap=64, device=device or "auto"))


def add_results(report, name: str) -> Optional[Tuple[str, Optional[str]]]:
    """Add the cloud-free image (true colour) and the source raster (a legend of the dates) to the project; the
    ids of the image layer and of the source layer (None when not written), or None when QGIS cannot open the
    image."""
    from ..qgis_common.source_style import style_source
    from ..qgis_common.styles import apply_style

    layer = QgsRasterLayer(report.output, name, "gdal")
    if not layer.isValid():
        return None
    apply_style(layer, "sentinel2")
    project = QgsProject.instance()
    project.addMapLayer(layer)
    source_id = None
    if report.source_output and os.path.exists(report.source_output):
        source = QgsRasterLayer(report.source_output, tr("Source of each pixel - {name}").format(name=name), "gdal")
        if source.isValid():
            style_source(source)
            project.addMapLayer(source)
            source_id = source.id()
    return layer.id(), source_id


def series_warning(report) -> Optional[str]:
    """The warning every cloud-removal run gives when a large share of the scene had no information (pixels
    clear on no date and beyond the single-image fill's reach), or None."""
    from ..engine.clouds.observed import NO_INFORMATION, OBSERVED_CLEAR, ObservedCounts

    valid, unreached = int(report.valid_pixels), int(report.unreached_pixels)
    return ObservedCounts({OBSERVED_CLEAR: max(0, valid - unreached), NO_INFORMATION: unreached}).warning()


def result_text(report) -> str:
    real = f"{100 * report.real_fraction:.1f} %" if report.real_fraction is not None else "-"
    return tr("<b>Done</b> in {s:.1f} s with {method} ({n} other date(s)); cloudy pixels filled from real "
              "observations: {real}.<br>{reason}<br>{output}").format(
        s=report.seconds, method=report.method, n=len(report.dates), real=real, reason=report.method_reason,
        output=report.output)
