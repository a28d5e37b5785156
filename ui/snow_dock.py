"""The Snow cover dock: snow maps of the layer on the canvas, in the background, added styled to the map."""
from __future__ import annotations

import os
import time
from typing import Optional

from qgis.core import (QgsApplication, QgsCoordinateTransform, QgsMapLayerProxyModel, QgsProcessingUtils,
                       QgsProject, QgsRasterLayer)
from qgis.gui import (QgsCollapsibleGroupBox, QgsDockWidget, QgsDoubleSpinBox, QgsFileWidget, QgsMapLayerComboBox,
                      QgsRasterBandComboBox, QgsSpinBox)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar,
                                 QPushButton, QRadioButton, QScrollArea, QVBoxLayout, QWidget)

from ..engine.snow import CloudInput, SnowParameters, SnowResult
from .snow_task import SnowMapTask
from .styles import style_from_qml

CLOUD_CHOICES = [("auto", "Automatic (the product's SCL band, if found)"), ("scl", "SCL raster below"),
                 ("mask", "Mask raster below (non-zero = cloud)"), ("none", "No cloud mask")]


def _spin(value: float, minimum: float, maximum: float, step: float = 0.01, decimals: int = 3) -> QgsDoubleSpinBox:
    box = QgsDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    box.setValue(value)
    box.setClearValue(value)
    box.setShowClearButton(True)
    return box


class SnowDock(QgsDockWidget):
    """Pick a Sentinel-2 layer (optional DEM and cloud mask), set the thresholds, run on the canvas
    extent or the whole layer; the styled snow map is added to the project and the snow area shown.

    The engine runs in a :class:`SnowMapTask` (progress bar, Cancel). ``runFinished(ok, message)``
    is emitted when a run ends, after the layer was added.
    """

    runFinished = pyqtSignal(bool, str)

    def __init__(self, iface, parent=None) -> None:
        super().__init__("Snow cover", parent or (iface.mainWindow() if iface is not None else None))
        self.setObjectName("TopoClearSnowDock")
        self.iface = iface
        self._task: Optional[SnowMapTask] = None
        self._window_rows: Optional[int] = None  # smaller windows (tests of cancel)
        self.last_result: Optional[SnowResult] = None
        self.last_layer_id: Optional[str] = None
        self._build()

    # -- widgets ------------------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        inputs = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        inputs.addRow("Sentinel-2 layer", self.layer_combo)
        self.dem_combo = QgsMapLayerComboBox()
        self.dem_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.dem_combo.setAllowEmptyLayer(True)
        self.dem_combo.setLayer(None)
        inputs.addRow("DEM (snowline)", self.dem_combo)
        self.cloud_mode = QComboBox()
        for key, label in CLOUD_CHOICES:
            self.cloud_mode.addItem(label, key)
        inputs.addRow("Cloud mask", self.cloud_mode)
        self.cloud_combo = QgsMapLayerComboBox()
        self.cloud_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.cloud_combo.setAllowEmptyLayer(True)
        self.cloud_combo.setLayer(None)
        inputs.addRow("Cloud raster", self.cloud_combo)
        layout.addLayout(inputs)

        bands = QgsCollapsibleGroupBox("Bands (automatic unless chosen)")
        bands.setCollapsed(True)
        band_form = QFormLayout(bands)
        self.band_combos = {}
        for name, label in (("B3", "Green (B3)"), ("B4", "Red (B4)"), ("B11", "SWIR1 (B11)")):
            combo = QgsRasterBandComboBox()
            combo.setShowNotSetOption(True, "automatic")
            combo.setBand(-1)
            band_form.addRow(label, combo)
            self.band_combos[name] = combo
        layout.addWidget(bands)

        method = QFormLayout()
        self.method_combo = QComboBox()
        self.method_combo.addItem("Let It Snow (two passes, DEM snowline)", "lis")
        self.method_combo.addItem("Single NDSI threshold", "threshold")
        method.addRow("Method", self.method_combo)
        layout.addLayout(method)

        self.threshold_box = QgsCollapsibleGroupBox("Single threshold")
        form = QFormLayout(self.threshold_box)
        self.ndsi_threshold = _spin(0.40, -1.0, 1.0)
        self.red_test = QCheckBox("require red above")
        self.red_test.setChecked(True)
        self.red_threshold = _spin(0.20, 0.0, 2.0)
        form.addRow("NDSI above", self.ndsi_threshold)
        form.addRow(self.red_test, self.red_threshold)
        layout.addWidget(self.threshold_box)

        self.lis_box = QgsCollapsibleGroupBox("Let It Snow thresholds (operational defaults)")
        form = QFormLayout(self.lis_box)
        self.lis_spins = {
            "ndsi_pass1": _spin(0.40, -1.0, 1.0), "red_pass1": _spin(0.20, 0.0, 2.0),
            "ndsi_pass2": _spin(0.15, -1.0, 1.0), "red_pass2": _spin(0.04, 0.0, 2.0),
            "fsnow_lim": _spin(0.10, 0.0, 1.0), "fclear_lim": _spin(0.10, 0.0, 1.0),
            "fsnow_total_lim": _spin(0.001, 0.0, 1.0, 0.001, 4), "red_darkcloud": _spin(0.30, 0.0, 2.0),
            "darkcloud_scale": _spin(240.0, 0.0, 100000.0, 20.0, 0), "red_backtocloud": _spin(0.10, 0.0, 2.0)}
        labels = {"ndsi_pass1": "Pass 1: NDSI above", "red_pass1": "Pass 1: red above",
                  "ndsi_pass2": "Pass 2: NDSI above", "red_pass2": "Pass 2: red above",
                  "fsnow_lim": "Snowline: band snow fraction above", "fclear_lim": "Snowline: band cloud-free above",
                  "fsnow_total_lim": "Snowline: scene snow fraction above",
                  "red_darkcloud": "Dark cloud: mean red below", "darkcloud_scale": "Dark cloud: block (m)",
                  "red_backtocloud": "Back to cloud: red above"}
        for key, box in self.lis_spins.items():
            form.addRow(labels[key], box)
        self.band_height = QgsSpinBox()
        self.band_height.setRange(1, 10000)
        self.band_height.setValue(100)
        self.band_height.setClearValue(100)
        form.addRow("Elevation band (m)", self.band_height)
        layout.addWidget(self.lis_box)

        where = QHBoxLayout()
        self.extent_group = QButtonGroup(self)
        self.whole_layer = QRadioButton("Whole layer")
        self.canvas_extent = QRadioButton("Canvas extent")
        self.whole_layer.setChecked(True)
        for button in (self.whole_layer, self.canvas_extent):
            self.extent_group.addButton(button)
            where.addWidget(button)
        layout.addLayout(where)

        out = QFormLayout()
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output_widget.lineEdit().setPlaceholderText("[temporary file]")
        out.addRow("Snow map", self.output_widget)
        layout.addLayout(out)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.result_label)
        layout.addStretch(1)

        for combo in body.findChildren(QComboBox):  # long layer names must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.output_widget.setMinimumWidth(120)
        scroll = QScrollArea()
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.setWidget(scroll)

        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.cloud_mode.currentIndexChanged.connect(self._cloud_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._layer_changed(self.layer_combo.currentLayer())
        self._method_changed()
        self._cloud_changed()

    def _layer_changed(self, layer) -> None:
        for combo in self.band_combos.values():
            combo.setLayer(layer)
            combo.setBand(-1)

    def _method_changed(self, *_) -> None:
        lis = self.method_combo.currentData() == "lis"
        self.lis_box.setVisible(lis)
        self.threshold_box.setVisible(not lis)
        self.dem_combo.setEnabled(lis)

    def _cloud_changed(self, *_) -> None:
        self.cloud_combo.setEnabled(self.cloud_mode.currentData() in ("scl", "mask", "auto"))

    # -- running ------------------------------------------------------------------------------------

    @staticmethod
    def _file_of(layer, role: str) -> str:
        if layer.providerType() != "gdal":
            raise ValueError(f"{role}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
                             "save it as a GeoTIFF first")
        return layer.source().split("|")[0]

    def parameters(self) -> SnowParameters:
        if self.method_combo.currentData() == "threshold":
            return SnowParameters(method="threshold", ndsi_threshold=self.ndsi_threshold.value(),
                                  red_threshold=self.red_threshold.value() if self.red_test.isChecked() else None)
        values = {key: box.value() for key, box in self.lis_spins.items()}
        return SnowParameters(method="lis", band_height=self.band_height.value(), **values)

    def _canvas_bounds(self, layer):
        canvas = self.iface.mapCanvas()
        transform = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance())
        rect = transform.transformBoundingBox(canvas.extent())
        return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()

    def _output_path(self) -> str:
        chosen = self.output_widget.filePath().strip()
        if chosen:
            return chosen if chosen.lower().endswith((".tif", ".tiff")) else chosen + ".tif"
        return os.path.join(QgsProcessingUtils.tempFolder(), f"snowmap_{time.strftime('%Y%m%d_%H%M%S')}_"
                                                             f"{int(time.time() * 1000) % 1000:03d}.tif")

    def run(self) -> None:
        if self._task is not None:
            return
        layer = self.layer_combo.currentLayer()
        try:
            if layer is None:
                raise ValueError("Choose a Sentinel-2 layer first")
            source = self._file_of(layer, "Sentinel-2 layer")
            overrides = {name: (source, combo.currentBand()) for name, combo in self.band_combos.items()
                         if combo.currentBand() > 0}
            params = self.parameters()
            dem_layer = self.dem_combo.currentLayer() if params.method == "lis" else None
            dem = self._file_of(dem_layer, "DEM") if dem_layer is not None else None
            mode = self.cloud_mode.currentData()
            cloud_layer = self.cloud_combo.currentLayer() if mode != "none" else None
            if mode == "mask" and cloud_layer is None:
                raise ValueError("Choose the cloud mask raster (or another cloud mask option)")
            cloud = CloudInput(mode, self._file_of(cloud_layer, "Cloud mask") if cloud_layer is not None else None)
            bounds = self._canvas_bounds(layer) if self.canvas_extent.isChecked() else None
        except ValueError as exc:
            self._show(False, str(exc))
            return
        output = self._output_path()
        kwargs = dict(source=source, output=output, params=params, dem=dem, cloud=cloud,
                      overrides=overrides or None, bounds=bounds, window_rows=self._window_rows)
        self._layer_name = f"Snow map - {layer.name()}"
        self._task = SnowMapTask(f"Snow map of {layer.name()}", kwargs, self._done)
        self._task.progressChanged.connect(self._progress)
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.result_label.setText("Running...")
        QgsApplication.taskManager().addTask(self._task)

    def _progress(self, value: float) -> None:
        if not sip.isdeleted(self):
            self.progress.setValue(int(value))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _done(self, ok: bool, result: Optional[SnowResult], error: Optional[str]) -> None:
        self._task = None
        if sip.isdeleted(self):
            return
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if not ok or result is None:
            self.progress.setValue(0)
            self._show(False, error or "The snow map failed.")
            return
        self.progress.setValue(100)
        self.last_result = result
        layer = QgsRasterLayer(result.output, self._layer_name, "gdal")
        if not layer.isValid():
            self._show(False, f"The snow map was written to {result.output} but QGIS could not open it")
            return
        style_from_qml("snowmap")(layer)
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        snowline = ""
        if result.method == "lis":
            snowline = (f"<br>Snowline: {result.snowline:.0f} m" if result.snowline is not None
                        else f"<br>Snowline: none ({result.snowline_note or 'not found'})")
        self._show(True, f"<b>Snow: {result.snow_area_km2:.3f} km²</b> = {result.snow_percent:.2f} % of the valid "
                         f"area ({result.valid_area_km2:.3f} km²)<br>Cloud: {result.cloud_percent:.2f} %"
                         f"{snowline}")

    def _show(self, ok: bool, text: str) -> None:
        self.result_label.setText(text if ok else f"<span style='color:#b00020'>{text}</span>")
        self.runFinished.emit(ok, text)
        if not ok and self.iface is not None and hasattr(self.iface, "messageBar"):
            try:
                self.iface.messageBar().pushWarning("Snow cover", text)
            except Exception:  # a stub interface without a real message bar
                pass
