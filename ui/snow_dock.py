"""The Snow cover dock: snow maps of the layer on the canvas, in the background, added styled to the map."""
from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsDoubleSpinBox, QgsRasterBandComboBox, QgsSpinBox
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QRadioButton,
                                 QVBoxLayout, QWidget)

from ..engine.snow.mapping import CloudInput, SnowParameters, SnowResult, snow_map
from ..qgis_common.layers import file_behind_layer
from ..qgis_common.styles import apply_style
from .engine_task import EngineTask
from .task_dock import TaskDock, raster_combo

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


class SnowDock(TaskDock):
    """Pick a Sentinel-2 layer (optional DEM and cloud mask), set the thresholds, run on the canvas
    extent or the whole layer; the styled snow map is added to the project and the snow area shown.

    The engine runs in an :class:`~topoclear.ui.engine_task.EngineTask` (progress bar, Cancel). ``runFinished(ok, message)``
    is emitted when a run ends, after the layer was added.
    """

    OUTPUT_PREFIX = "snowmap"

    def __init__(self, iface, parent=None) -> None:
        super().__init__("Snow cover", "TopoClearSnowDock", iface, parent)
        self._window_rows: Optional[int] = None  # smaller windows (tests of cancel)
        self.last_result: Optional[SnowResult] = None
        self._build()

    # -- widgets ------------------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        inputs = QFormLayout()
        self.layer_combo = raster_combo(False)
        inputs.addRow("Sentinel-2 layer", self.layer_combo)
        self.dem_combo = raster_combo(True)
        inputs.addRow("DEM (snowline)", self.dem_combo)
        self.cloud_mode = QComboBox()
        for key, label in CLOUD_CHOICES:
            self.cloud_mode.addItem(label, key)
        inputs.addRow("Cloud mask", self.cloud_mode)
        self.cloud_combo = raster_combo(True)
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

        self.add_output_row(layout, "Snow map")
        self.add_run_controls(layout)
        layout.addWidget(self.result_label)
        layout.addWidget(self.log)
        layout.addStretch(1)
        self.set_body(body)

        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.cloud_mode.currentIndexChanged.connect(self._cloud_changed)
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

    def run(self) -> None:
        if self._task is not None:
            return
        layer = self.layer_combo.currentLayer()
        try:
            if layer is None:
                raise ValueError("Choose a Sentinel-2 layer first")
            source = file_behind_layer(layer, "Sentinel-2 layer")
            overrides = {name: (source, combo.currentBand()) for name, combo in self.band_combos.items()
                         if combo.currentBand() > 0}
            params = self.parameters()
            dem_layer = self.dem_combo.currentLayer() if params.method == "lis" else None
            dem = file_behind_layer(dem_layer, "DEM")
            mode = self.cloud_mode.currentData()
            cloud_layer = self.cloud_combo.currentLayer() if mode != "none" else None
            if mode == "mask" and cloud_layer is None:
                raise ValueError("Choose the cloud mask raster (or another cloud mask option)")
            cloud = CloudInput(mode, file_behind_layer(cloud_layer, "Cloud mask"))
            bounds = self._canvas_bounds(layer) if self.canvas_extent.isChecked() else None
        except ValueError as exc:
            self.show_result(False, str(exc))
            return
        output = self.output_path()
        kwargs = dict(source=source, output=output, params=params, dem=dem, cloud=cloud,
                      overrides=overrides or None, bounds=bounds, window_rows=self._window_rows)
        self._layer_name = f"Snow map - {layer.name()}"
        self.start(EngineTask(f"Snow map of {layer.name()}", lambda monitor: snow_map(monitor=monitor, **kwargs),
                              self._done))

    def _done(self, ok: bool, result: Optional[SnowResult], error: Optional[str], messages: List[str]) -> None:
        if not self.task_done(ok and result is not None):
            return
        if not ok or result is None:
            self.show_result(False, error or "The snow map failed.")
            return
        self.last_result = result
        layer = QgsRasterLayer(result.output, self._layer_name, "gdal")
        if not layer.isValid():
            self.show_result(False, f"The snow map was written to {result.output} but QGIS could not open it")
            return
        apply_style(layer, "snowmap")
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        snowline = ""
        if result.method == "lis":
            snowline = (f"<br>Snowline: {result.snowline:.0f} m" if result.snowline is not None
                        else f"<br>Snowline: none ({result.snowline_note or 'not found'})")
        self.show_result(True, f"<b>Snow: {result.snow_area_km2:.3f} km²</b> = {result.snow_percent:.2f} % of the valid "
                         f"area ({result.valid_area_km2:.3f} km²)<br>Cloud: {result.cloud_percent:.2f} %"
                         f"{snowline}")
