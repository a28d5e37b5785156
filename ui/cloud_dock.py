"""The Cloud removal dock: a cloud-free image of the whole scene, computed in the background, added to the map."""
from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsSpinBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..engine.clouds.methods.fill import DEFAULT_DISTANCE, DEFAULT_SMOOTHING, MAX_DISTANCE, MAX_SMOOTHING
from ..qgis_common.cloud_choices import (COVERAGE_CHOICES, CloudChoices, mask_choices, mask_reads_raster,
                                        model_choices, model_info)
from ..qgis_common.errors import user_message
from ..qgis_common.styles import apply_style
from .engine_task import EngineTask
from .task_dock import TaskDock, raster_combo

#: How the dock names each removeclouds parameter in its messages (its form labels).
LABELS = {"INPUT": "Sentinel-2 (cloudy)", "S1": "Sentinel-1 (VV, VH)", "DEM": "DEM", "METADATA": "Sun from metadata",
          "MASK_TYPE": "Cloud mask", "CLOUD_MASK": "Mask raster", "MODEL": "Method", "WEIGHTS": "Weights",
          "FILL_DISTANCE": "Fill search distance (px)", "FILL_SMOOTHING": "Fill smoothing passes",
          "OBSERVED": "What was observed",
          "DEVICE": "Device", "TILE_SIZE": "Tile size (px)", "OVERLAP": "Overlap (px)",
          "BATCH_SIZE": "Tiles per batch", "COVERAGE": "Coverage", "OUTPUT": "Cloud-free image"}


def _fill(combo: QComboBox, choices) -> None:
    for choice in choices:
        combo.addItem(choice.label, choice.key)
        if choice.tooltip:
            combo.setItemData(combo.count() - 1, choice.tooltip, Qt.ToolTipRole)


BASE_DEVICES = [("auto", "Automatic (GPU if available)"), ("cpu", "CPU")]


def _torch_imports() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # not installed, or a broken install
        return False
    return True


def _cuda_devices() -> List[tuple]:
    """(key, label) of the CUDA devices PyTorch can use (none without CUDA, or without PyTorch)."""
    if not _torch_imports():
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [(f"cuda:{i}", f"cuda:{i} - {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]


class CloudDock(TaskDock):
    """Pick the Sentinel-2 layer (and Sentinel-1, DEM, cloud mask), the method and the device, and run.

    The methods offered are the catalogue's that can run on the chosen inputs (Automatic first, the
    default: the info line says what it will run for these inputs and why); the widgets' values
    become the engine request through :class:`~topoclear.qgis_common.cloud_choices.CloudChoices`,
    as the removeclouds algorithm's parameters do.

    The run is an :class:`~topoclear.ui.engine_task.EngineTask` in QGIS's task manager (progress bar, Cancel, the device
    shown as soon as it is chosen); the cloud-free image is added to the project in true colour.
    ``runFinished(ok, message)`` is emitted when a run ends, after the layer was added.
    """

    OUTPUT_PREFIX = "cloudfree"

    def __init__(self, iface, parent=None) -> None:
        super().__init__("Cloud removal", "TopoClearCloudDock", iface, parent)
        self.last_report = None
        self._torch_checked = False  # PyTorch is imported when the dock is first shown, not at QGIS start
        self._torch_missing = False
        self._build()

    # -- widgets ------------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        form = QFormLayout()
        self.s2_combo = raster_combo(False)
        form.addRow(LABELS["INPUT"], self.s2_combo)
        self.s1_combo = raster_combo(True)
        form.addRow(LABELS["S1"], self.s1_combo)
        self.dem_combo = raster_combo(True)
        form.addRow(LABELS["DEM"], self.dem_combo)
        self.metadata_widget = QgsFileWidget()
        self.metadata_widget.setFilter("Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml)")
        self.metadata_widget.lineEdit().setPlaceholderText("[sun 315 / 45 deg]")
        form.addRow(LABELS["METADATA"], self.metadata_widget)
        self.mask_mode = QComboBox()
        _fill(self.mask_mode, mask_choices("removal"))
        form.addRow(LABELS["MASK_TYPE"], self.mask_mode)
        self.mask_combo = raster_combo(True)
        form.addRow(LABELS["CLOUD_MASK"], self.mask_combo)
        self.model_combo = QComboBox()
        form.addRow(LABELS["MODEL"], self.model_combo)
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        self.fill_distance = QgsSpinBox()
        self.fill_distance.setRange(1, MAX_DISTANCE)
        self.fill_distance.setValue(DEFAULT_DISTANCE)
        self.fill_distance.setClearValue(DEFAULT_DISTANCE)
        self.fill_distance.setToolTip("GDAL FillNodata's search distance: how far the fill looks for clear pixels")
        form.addRow(LABELS["FILL_DISTANCE"], self.fill_distance)
        self.fill_smoothing = QgsSpinBox()
        self.fill_smoothing.setRange(0, MAX_SMOOTHING)
        self.fill_smoothing.setValue(DEFAULT_SMOOTHING)
        self.fill_smoothing.setClearValue(DEFAULT_SMOOTHING)
        form.addRow(LABELS["FILL_SMOOTHING"], self.fill_smoothing)
        self.weights_widget = QgsFileWidget()
        self.weights_widget.setFilter("Model weights (*.safetensors)")
        self.weights_widget.lineEdit().setPlaceholderText("[shipped default]")
        form.addRow(LABELS["WEIGHTS"], self.weights_widget)
        self.device_combo = QComboBox()
        for key, label in BASE_DEVICES:
            self.device_combo.addItem(label, key)
        form.addRow(LABELS["DEVICE"], self.device_combo)
        self.keep_clear = QCheckBox("Keep clear pixels")
        self.keep_clear.setToolTip("Copy the input unchanged wherever the cloud mask says clear")
        self.keep_clear.setChecked(True)
        form.addRow(self.keep_clear)
        layout.addLayout(form)

        tiles = QgsCollapsibleGroupBox("Tiles (0 / -1 = the model's defaults)")
        tiles.setCollapsed(True)
        tform = QFormLayout(tiles)
        self.tile_spin = QgsSpinBox()
        self.tile_spin.setRange(0, 16384)
        self.tile_spin.setClearValue(0)
        tform.addRow(LABELS["TILE_SIZE"], self.tile_spin)
        self.overlap_spin = QgsSpinBox()
        self.overlap_spin.setRange(-1, 4096)
        self.overlap_spin.setValue(-1)
        self.overlap_spin.setClearValue(-1)
        tform.addRow(LABELS["OVERLAP"], self.overlap_spin)
        self.batch_spin = QgsSpinBox()
        self.batch_spin.setRange(0, 1024)
        self.batch_spin.setClearValue(0)
        tform.addRow(LABELS["BATCH_SIZE"], self.batch_spin)
        self.coverage_combo = QComboBox()
        _fill(self.coverage_combo, COVERAGE_CHOICES)
        tform.addRow(LABELS["COVERAGE"], self.coverage_combo)
        layout.addWidget(tiles)

        self.add_output_row(layout, LABELS["OUTPUT"])
        self.add_run_controls(layout)
        self.device_label = QLabel("Device: -")
        layout.addWidget(self.device_label)
        layout.addWidget(self.result_label)
        layout.addWidget(self.log)

        self.set_body(body)

        self.s1_combo.layerChanged.connect(self._inputs_changed)
        self.dem_combo.layerChanged.connect(self._inputs_changed)
        self.s2_combo.layerChanged.connect(self._model_changed)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.mask_mode.currentIndexChanged.connect(self._mask_changed)
        self._inputs_changed()
        self._mask_changed()

    # -- model choice -------------------------------------------------------------------------------
    def available_models(self) -> List[str]:
        """The catalogue's methods that can run on the chosen inputs (with or without Sentinel-1 and a DEM)."""
        return [c.key for c in self._model_choices()]

    def _model_choices(self):
        return model_choices(has_s1=self.s1_combo.currentLayer() is not None,
                             has_dem=self.dem_combo.currentLayer() is not None)

    def _inputs_changed(self, *_) -> None:
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        _fill(self.model_combo, self._model_choices())
        index = self.model_combo.findData(current)
        self.model_combo.setCurrentIndex(index if index >= 0 else 0)
        self.model_combo.blockSignals(False)
        self._model_changed()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        super().showEvent(event)
        if not self._torch_checked:
            self._torch_checked = True
            self._torch_missing = not _torch_imports()
            for key, label in _cuda_devices():
                self.device_combo.addItem(label, key)
            self._model_changed()

    def _model_changed(self, *_) -> None:
        key = self.model_combo.currentData()
        if not self._torch_checked:
            return
        if key is None:
            self.model_info.setText("")
        elif self._torch_missing:
            self.model_info.setText("PyTorch is not installed: cloud removal needs it (see the README).")
        else:
            self.model_info.setText(model_info(key, self.s1_combo.currentLayer() is not None,
                                               self.dem_combo.currentLayer() is not None))

    def _mask_changed(self, *_) -> None:
        self.mask_combo.setEnabled(mask_reads_raster(self.mask_mode.currentData()))

    # -- running ------------------------------------------------------------------------------------
    def choices(self) -> CloudChoices:
        """What the dock's widgets choose, for :meth:`CloudChoices.request`."""
        return CloudChoices(
            s2=self.s2_combo.currentLayer(), s1=self.s1_combo.currentLayer(), dem=self.dem_combo.currentLayer(),
            metadata=self.metadata_widget.filePath().strip(), mask=self.mask_combo.currentLayer(),
            mask_method=self.mask_mode.currentData(), model=self.model_combo.currentData(),
            weights=self.weights_widget.filePath().strip(), device=self.device_combo.currentData(),
            tile_size=self.tile_spin.value(), overlap=self.overlap_spin.value(), batch_size=self.batch_spin.value(),
            keep_clear=self.keep_clear.isChecked(), coverage=self.coverage_combo.currentData(),
            fill_distance=self.fill_distance.value(), fill_smoothing=self.fill_smoothing.value(),
            output=self.output_path(), names=LABELS)

    def run(self) -> None:
        if self._task is not None:
            return
        choices = self.choices()
        try:
            request = choices.request()
        except Exception as exc:  # a choice that cannot run (ChoiceError), or a bug: the user reads why
            self.show_result(False, user_message(exc))
            return
        layer = self.s2_combo.currentLayer()
        self._layer_name = f"Cloud-free - {layer.name()}"
        from ..engine.clouds.removal import run_cloud_removal

        notes = choices.notes()

        def call(monitor):
            for note in notes:
                monitor.message(note)
            return run_cloud_removal(request, monitor)

        task = EngineTask(f"Cloud removal of {layer.name()}", call, self._done)
        task.message.connect(self._show_device)
        self.device_label.setText("Device: starting...")
        self.start(task)

    def _show_device(self, text: str) -> None:
        if not sip.isdeleted(self) and text.startswith("Device: "):
            self.device_label.setText(text)

    def _done(self, ok: bool, report, error: Optional[str], messages: List[str]) -> None:
        if not self.task_done(ok and report is not None):
            return
        if not ok or report is None:
            self.show_result(False, error or "Cloud removal failed.")
            return
        self.last_report = report
        self.device_label.setText(f"Device: {report.device}")
        layer = QgsRasterLayer(report.output, self._layer_name, "gdal")
        if not layer.isValid():
            self.show_result(False, f"The image was written to {report.output} but QGIS could not open it")
            return
        apply_style(layer, "sentinel2")
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        if report.observed:
            observed = QgsRasterLayer(report.observed, f"What was observed - {self._layer_name}", "gdal")
            if observed.isValid():
                apply_style(observed, "observed")
                observed.setOpacity(0.6)
                QgsProject.instance().addMapLayer(observed)
                self.last_observed_id = observed.id()
        cloud = f"; cloud/shadow {report.cloud_percent:.1f} %" if report.cloud_percent is not None else ""
        warning = report.no_information_warning
        self.show_result(True, f"<b>Done</b> in {report.seconds:.1f} s with {report.model} on {report.device}{cloud}."
                         f"<br>{report.output}<br>What was observed: {report.observed}"
                         + (f"<br><b>{warning}</b>" if warning else ""))
