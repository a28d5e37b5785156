"""The Snow cover dock: snow maps of the layer on the canvas, in the background, added styled to the map."""
from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsDoubleSpinBox, QgsRasterBandComboBox, QgsSpinBox
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QRadioButton,
                                 QVBoxLayout, QWidget)

from ..engine.errors import InputError
from ..engine.snow.mapping import snow_map
from ..engine.snow.parameters import SnowParameters
from ..engine.snow.results import SnowResult
from ..qgis_common.layers import file_behind_layer
from ..qgis_common.snow_choices import (CLOUD_CHOICES, LIS_FIELDS, METHOD_CHOICES, SNOW_MAP_ROLES, THRESHOLD_FIELDS,
                                        ImageChoice, SnowMapChoice, Threshold, band_label, cloud_uses_raster,
                                        sentinel2_input, snow_map_request, snow_parameters)
from ..qgis_common.styles import apply_style
from .engine_task import EngineTask
from .task_dock import TaskDock, raster_combo


def _spin(field: Threshold):
    """A spin box for ``field``, at its default (also its clear value)."""
    if field.integer:
        box = QgsSpinBox()
        box.setRange(int(field.minimum), int(field.maximum))
        box.setValue(int(field.default))
        box.setClearValue(int(field.default))
        return box
    box = QgsDoubleSpinBox()
    box.setDecimals(field.decimals)
    box.setRange(field.minimum, field.maximum)
    box.setSingleStep(field.step)
    box.setValue(field.default)
    box.setClearValue(field.default)
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
        for choice in CLOUD_CHOICES:
            self.cloud_mode.addItem(choice.label, choice.key)
        inputs.addRow("Cloud mask", self.cloud_mode)
        self.cloud_combo = raster_combo(True)
        inputs.addRow("Cloud raster", self.cloud_combo)
        layout.addLayout(inputs)

        bands = QgsCollapsibleGroupBox("Bands (automatic unless chosen)")
        bands.setCollapsed(True)
        band_form = QFormLayout(bands)
        self.band_combos = {}
        for name in SNOW_MAP_ROLES:
            combo = QgsRasterBandComboBox()
            combo.setShowNotSetOption(True, "automatic")
            combo.setBand(-1)
            band_form.addRow(band_label(name), combo)
            self.band_combos[name] = combo
        layout.addWidget(bands)
        self._build_method(layout)

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

    def _build_method(self, layout: QVBoxLayout) -> None:
        """The method menu and each method's thresholds (one group shown at a time)."""
        method = QFormLayout()
        self.method_combo = QComboBox()
        for choice in METHOD_CHOICES:
            self.method_combo.addItem(choice.label, choice.key)
        method.addRow("Method", self.method_combo)
        layout.addLayout(method)

        self.threshold_box = QgsCollapsibleGroupBox("Single threshold")
        form = QFormLayout(self.threshold_box)
        ndsi, red = THRESHOLD_FIELDS
        self.ndsi_threshold = _spin(ndsi)
        self.red_test = QCheckBox(red.short_label)
        self.red_test.setChecked(True)
        self.red_threshold = _spin(red)
        form.addRow(ndsi.short_label, self.ndsi_threshold)
        form.addRow(self.red_test, self.red_threshold)
        layout.addWidget(self.threshold_box)

        self.lis_box = QgsCollapsibleGroupBox("Let It Snow thresholds (operational defaults)")
        form = QFormLayout(self.lis_box)
        self.lis_spins = {}
        for field in LIS_FIELDS:
            self.lis_spins[field.key] = _spin(field)
            form.addRow(field.short_label, self.lis_spins[field.key])
        self.band_height = self.lis_spins["band_height"]
        layout.addWidget(self.lis_box)

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
        self.cloud_combo.setEnabled(cloud_uses_raster(self.cloud_mode.currentData()))

    # -- running ------------------------------------------------------------------------------------

    def threshold_values(self):
        """The thresholds as set: :class:`~topoclear.qgis_common.snow_choices.Threshold` key -> value."""
        values = {key: box.value() for key, box in self.lis_spins.items()}
        values.update(ndsi_threshold=self.ndsi_threshold.value(), red_threshold=self.red_threshold.value())
        return values

    def parameters(self) -> SnowParameters:
        return snow_parameters(self.method_combo.currentData(), self.threshold_values(), self.red_test.isChecked())

    def _canvas_bounds(self, layer):
        canvas = self.iface.mapCanvas()
        transform = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance())
        rect = transform.transformBoundingBox(canvas.extent())
        return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()

    def choice(self, layer) -> SnowMapChoice:
        """What the widgets ask for, as the snow tools' shared choice (:class:`ValueError` for a layer
        that is not a GDAL raster)."""
        source = file_behind_layer(layer, "Sentinel-2 layer")
        bands = {name: combo.currentBand() for name, combo in self.band_combos.items()}
        bounds = self._canvas_bounds(layer) if self.canvas_extent.isChecked() else None
        method, cloud = self.method_combo.currentData(), self.cloud_mode.currentData()
        dem_layer = self.dem_combo.currentLayer() if method == "lis" else None  # the combo is off otherwise
        cloud_layer = self.cloud_combo.currentLayer() if cloud_uses_raster(cloud) else None
        return SnowMapChoice(
            image=sentinel2_input(ImageChoice(layer=source, bands=bands, bounds=bounds), SNOW_MAP_ROLES),
            output=self.output_path(), method=method, values=self.threshold_values(),
            red_test=self.red_test.isChecked(), dem=file_behind_layer(dem_layer, "DEM"), cloud=cloud,
            cloud_raster=file_behind_layer(cloud_layer, "Cloud mask"), window_rows=self._window_rows)

    def run(self) -> None:
        if self._task is not None:
            return
        layer = self.layer_combo.currentLayer()
        try:
            if layer is None:
                raise ValueError("Choose a Sentinel-2 layer first")
            request, notes = snow_map_request(self.choice(layer))
        except (ValueError, InputError) as exc:
            self.show_result(False, str(exc))
            return
        self._layer_name = f"Snow map - {layer.name()}"
        self.start(EngineTask(f"Snow map of {layer.name()}", lambda monitor: snow_map(request, monitor),
                              self._done))
        for note in notes:
            self.log_message(note)

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
