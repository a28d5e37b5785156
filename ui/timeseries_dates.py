"""The Cloud removal dock's "Other dates" group: clear the chosen Sentinel-2 layer with other dates of the project.

A checkable list of the project's raster layers (the target excluded); with at least one checked,
the dock runs the multi-temporal removal (:func:`topoclear.engine.clouds.timeseries.remove_clouds_timeseries`,
as ``topoclear:removeclouds_timeseries`` does) instead of the single-image one. The group also holds
the multi-temporal method (Automatic first) and an optional DATES text; the dock's cloud-mask
choice, mask raster, weights file and device apply as they are.
"""
from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsMapLayer, QgsProject
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton

from ..qgis_common.layers import file_behind_layer

LAYER_ID_ROLE = Qt.UserRole + 1


class OtherDatesGroup(QgsCollapsibleGroupBox):
    """Checkable project layers as the other dates, the method and the dates text."""

    def __init__(self, target_combo, parent=None) -> None:
        super().__init__("Other dates (multi-temporal: fill the clouds from them)", parent)
        self.setCollapsed(True)
        self.target_combo = target_combo
        form = QFormLayout(self)
        self.layers = QListWidget()
        self.layers.setToolTip("Check the Sentinel-2 layers of other dates of the same place; with one or more "
                               "checked, the clouds are filled from them (time-series fill or CA-MTCR)")
        form.addRow(self.layers)
        self.refresh_button = QPushButton("Refresh the list")
        form.addRow(self.refresh_button)
        self.method = QComboBox()
        from ..engine.clouds.timeseries_methods import SERIES_METHODS

        for m in SERIES_METHODS:
            self.method.addItem(m.title, m.key)
            self.method.setItemData(self.method.count() - 1, m.description, Qt.ToolTipRole)
        form.addRow("Method", self.method)
        self.dates = QLineEdit()
        self.dates.setPlaceholderText("[from metadata or file names] target first, then the checked layers")
        form.addRow("Dates", self.dates)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        form.addRow(self.note)
        self.refresh_button.clicked.connect(self.refresh)
        self.target_combo.layerChanged.connect(self.refresh)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh)
        project.layersRemoved.connect(self.refresh)
        self.layers.itemChanged.connect(self._update_note)
        self.refresh()

    def refresh(self, *_) -> None:
        """The project's raster layers but the target, keeping the checks."""
        checked = set(self.checked_ids())
        target = self.target_combo.currentLayer()
        self.layers.blockSignals(True)
        self.layers.clear()
        for layer in QgsProject.instance().mapLayers().values():
            if layer.type() != QgsMapLayer.RasterLayer or (target is not None and layer.id() == target.id()):
                continue
            item = QListWidgetItem(layer.name())
            item.setData(LAYER_ID_ROLE, layer.id())
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer.id() in checked else Qt.Unchecked)
            self.layers.addItem(item)
        self.layers.blockSignals(False)
        self._update_note()

    def checked_ids(self) -> List[str]:
        return [self.layers.item(i).data(LAYER_ID_ROLE) for i in range(self.layers.count())
                if self.layers.item(i).checkState() == Qt.Checked]

    def check(self, layers) -> None:
        """Check ``layers`` (map layers or ids) in the list (for scripts and tests)."""
        ids = {getattr(layer, "id", lambda: layer)() if not isinstance(layer, str) else layer for layer in layers}
        for i in range(self.layers.count()):
            item = self.layers.item(i)
            item.setCheckState(Qt.Checked if item.data(LAYER_ID_ROLE) in ids else Qt.Unchecked)

    def checked_layers(self):
        project = QgsProject.instance()
        return [project.mapLayer(i) for i in self.checked_ids() if project.mapLayer(i) is not None]

    def active(self) -> bool:
        return bool(self.checked_ids())

    def _update_note(self, *_) -> None:
        n = len(self.checked_ids())
        self.note.setText(f"{n} other date(s) checked: the run fills the clouds from them." if n else
                          "No other date checked: single-image cloud removal.")

    def request(self, target_layer, mask_kind: str, mask_layer, weights: str, device: str, output: str):
        """The engine request of a multi-temporal run (errors name the dock's fields)."""
        from ..engine.clouds.request import InferenceOptions
        from ..engine.clouds.timeseries import TimeSeriesRequest
        from ..engine.snow.dates import parse_date_list

        target = file_behind_layer(target_layer, "Sentinel-2 (cloudy)")
        aux = [file_behind_layer(layer, f"Other dates: {layer.name()}") for layer in self.checked_layers()]
        text = self.dates.text().strip()
        dates = parse_date_list(text, 1 + len(aux), "Dates") if text else None
        mask = file_behind_layer(mask_layer, "Mask raster") if mask_layer is not None else None
        source = output[:-4] + "_source.tif" if output.lower().endswith(".tif") else output + "_source.tif"
        return TimeSeriesRequest(target=target, auxiliary=aux, output=output, source_output=source, dates=dates,
                                 method=self.method.currentData(), mask_kind=mask_kind or "auto", mask=mask,
                                 weights=weights or None,
                                 inference=InferenceOptions(tile=256, overlap=64, device=device or "auto"))


def add_results(report) -> Optional[str]:
    """Add the cloud-free image (true colour) and the SOURCE raster (legend of the dates) to the project; the
    id of the image layer, or None when QGIS cannot open it."""
    import os

    from qgis.core import QgsRasterLayer

    from ..qgis_common.source_style import style_source
    from ..qgis_common.styles import apply_style

    layer = QgsRasterLayer(report.output, f"Cloud-free ({report.target_date}, {len(report.dates) + 1} dates)", "gdal")
    if not layer.isValid():
        return None
    apply_style(layer, "sentinel2")
    QgsProject.instance().addMapLayer(layer)
    if report.source_output and os.path.exists(report.source_output):
        source = QgsRasterLayer(report.source_output, f"Source of each pixel ({report.target_date})", "gdal")
        if source.isValid():
            style_source(source)
            QgsProject.instance().addMapLayer(source)
    return layer.id()


def result_text(report) -> str:
    real = f"{100 * report.real_fraction:.1f} %" if report.real_fraction is not None else "-"
    return (f"<b>Done</b> in {report.seconds:.1f} s with {report.method} ({len(report.dates)} other date(s)); cloudy "
            f"pixels filled from real observations: {real}.<br>{report.method_reason}<br>{report.output}")
