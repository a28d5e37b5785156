"""The Cloud removal dock: a cloud-free image of the whole scene, computed in the background, added to the map."""
from __future__ import annotations

import os
from typing import List, Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsSpinBox
from qgis.PyQt import sip
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..qgis_common.styles import apply_style
from ..qgis_common.layers import file_behind_layer
from .engine_task import EngineTask
from .task_dock import TaskDock, raster_combo

MODELS = [("crt_unet", "CRT-UNet (S2 + S1 + terrain)"), ("unet", "UNet (S2 + S1)"),
          ("dsen2cr", "DSen2-CR (S2 + S1, residual)"), ("cr_gan", "Cloud-removal GAN (RGB + S1)"),
          ("sar2opt_gan", "SAR-to-optical GAN (S1 only)")]
MASKS = [("auto", "Automatic (mask raster below, the product's SCL, or computed)"),
         ("scl", "SCL raster below"), ("raster", "Mask raster below (non-zero = cloud)"),
         ("computed", "Computed (DSen2-CR rules, Level-1C bands)"), ("none", "None (predict every pixel)")]


BASE_DEVICES = [("auto", "Automatic (GPU if available)"), ("cpu", "CPU")]


def _cuda_devices() -> List[tuple]:
    """(key, label) of the CUDA devices PyTorch can use (none without CUDA, or without PyTorch)."""
    try:
        import torch
    except Exception:
        return []
    if not torch.cuda.is_available():
        return []
    return [(f"cuda:{i}", f"cuda:{i} - {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]


class CloudDock(TaskDock):
    """Pick the Sentinel-2 layer (and Sentinel-1, DEM, cloud mask), the model and the device, and run.

    The run is an :class:`~topoclear.ui.engine_task.EngineTask` in QGIS's task manager (progress bar, Cancel, the device
    shown as soon as it is chosen); the cloud-free image is added to the project in true colour.
    ``runFinished(ok, message)`` is emitted when a run ends, after the layer was added.
    """

    OUTPUT_PREFIX = "cloudfree"

    def __init__(self, iface, parent=None) -> None:
        super().__init__("Cloud removal", "TopoClearCloudDock", iface, parent)
        self.last_report = None
        self.extra_options: dict = {}  # engine keyword arguments added to every run (tests)
        self._torch_checked = False  # PyTorch is imported when the dock is first shown, not at QGIS start
        self._build()

    # -- widgets ------------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        form = QFormLayout()
        self.s2_combo = raster_combo(False)
        form.addRow("Sentinel-2 (cloudy)", self.s2_combo)
        self.s1_combo = raster_combo(True)
        form.addRow("Sentinel-1 (VV, VH)", self.s1_combo)
        self.dem_combo = raster_combo(True)
        form.addRow("DEM", self.dem_combo)
        self.metadata_widget = QgsFileWidget()
        self.metadata_widget.setFilter("Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml)")
        self.metadata_widget.lineEdit().setPlaceholderText("[sun 315 / 45 deg]")
        form.addRow("Sun from metadata", self.metadata_widget)
        self.mask_mode = QComboBox()
        for key, label in MASKS:
            self.mask_mode.addItem(label, key)
        form.addRow("Cloud mask", self.mask_mode)
        self.mask_combo = raster_combo(True)
        form.addRow("Mask raster", self.mask_combo)
        self.model_combo = QComboBox()
        form.addRow("Model", self.model_combo)
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        self.weights_widget = QgsFileWidget()
        self.weights_widget.setFilter("Model weights (*.safetensors)")
        self.weights_widget.lineEdit().setPlaceholderText("[shipped default]")
        form.addRow("Weights", self.weights_widget)
        self.device_combo = QComboBox()
        for key, label in BASE_DEVICES:
            self.device_combo.addItem(label, key)
        form.addRow("Device", self.device_combo)
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
        tform.addRow("Tile size (px)", self.tile_spin)
        self.overlap_spin = QgsSpinBox()
        self.overlap_spin.setRange(-1, 4096)
        self.overlap_spin.setValue(-1)
        self.overlap_spin.setClearValue(-1)
        tform.addRow("Overlap (px)", self.overlap_spin)
        self.batch_spin = QgsSpinBox()
        self.batch_spin.setRange(0, 1024)
        self.batch_spin.setClearValue(0)
        tform.addRow("Tiles per batch", self.batch_spin)
        self.coverage_combo = QComboBox()
        self.coverage_combo.addItem("Refuse partial Sentinel-1 / DEM coverage", "refuse")
        self.coverage_combo.addItem("Fill the uncovered part and go on", "fill")
        tform.addRow("Coverage", self.coverage_combo)
        layout.addWidget(tiles)

        self.add_output_row(layout, "Cloud-free image")
        self.add_run_controls(layout)
        self.device_label = QLabel("Device: -")
        layout.addWidget(self.device_label)
        layout.addWidget(self.result_label)
        layout.addWidget(self.log)

        self.set_body(body)

        self.s1_combo.layerChanged.connect(self._inputs_changed)
        self.dem_combo.layerChanged.connect(self._inputs_changed)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.mask_mode.currentIndexChanged.connect(self._mask_changed)
        self._inputs_changed()
        self._mask_changed()

    # -- model choice -------------------------------------------------------------------------------
    def available_models(self) -> List[str]:
        """Models whose inputs are there: terrain models only with a DEM, SAR-only models only with Sentinel-1."""
        has_s1 = self.s1_combo.currentLayer() is not None
        has_dem = self.dem_combo.currentLayer() is not None
        keys = []
        for key, _ in MODELS:
            if key == "crt_unet" and not has_dem:
                continue
            if key == "sar2opt_gan" and not has_s1:
                continue
            keys.append(key)
        return keys

    def _inputs_changed(self, *_) -> None:
        current = self.model_combo.currentData()
        keys = self.available_models()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for key, label in MODELS:
            if key in keys:
                self.model_combo.addItem(label, key)
        index = self.model_combo.findData(current)
        self.model_combo.setCurrentIndex(index if index >= 0 else 0)
        self.model_combo.blockSignals(False)
        self._model_changed()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        super().showEvent(event)
        if not self._torch_checked:
            self._torch_checked = True
            for key, label in _cuda_devices():
                self.device_combo.addItem(label, key)
            self._model_changed()

    def _model_changed(self, *_) -> None:
        key = self.model_combo.currentData()
        if not self._torch_checked:
            return
        if key is None:
            self.model_info.setText("")
            return
        try:
            from ..engine.clouds.removal import describe_needs, shipped_weights
            from ..models.registry import get_spec

            spec = get_spec(key)
            has_s1 = self.s1_combo.currentLayer() is not None
            text = f"Needs: {describe_needs(key)}."
            if spec.needs_s1 and spec.needs_s2 and not has_s1:
                text += " No Sentinel-1 layer: the optical-only variant (trained without SAR) will run."
            shipped = shipped_weights(key, has_s1 or not spec.needs_s1)
            text += (" Shipped weights: " + os.path.basename(shipped)) if shipped else \
                " No weights are shipped for it yet: choose a weights file."
        except ImportError:
            text = "PyTorch is not installed: cloud removal needs it (see the README)."
        self.model_info.setText(text)

    def _mask_changed(self, *_) -> None:
        self.mask_combo.setEnabled(self.mask_mode.currentData() in ("auto", "scl", "raster"))

    # -- running ------------------------------------------------------------------------------------
    def engine_arguments(self) -> dict:
        from ..engine.clouds.removal import InferenceOptions

        layer = self.s2_combo.currentLayer()
        if layer is None:
            raise ValueError("Choose a Sentinel-2 layer first")
        model = self.model_combo.currentData()
        if model is None:
            raise ValueError("No model fits the inputs: add a Sentinel-1 layer or a DEM")
        mask_kind = self.mask_mode.currentData()
        mask = file_behind_layer(self.mask_combo.currentLayer(), "Cloud mask") if mask_kind in ("auto", "scl",
                                                                                            "raster") else None
        if mask_kind in ("scl", "raster") and mask is None:
            raise ValueError("Choose the cloud mask raster (or another cloud mask option)")
        options = InferenceOptions(tile=self.tile_spin.value() or None,
                                   overlap=None if self.overlap_spin.value() < 0 else self.overlap_spin.value(),
                                   batch_size=self.batch_spin.value() or None, device=self.device_combo.currentData(),
                                   keep_clear=self.keep_clear.isChecked(), policy=self.coverage_combo.currentData())
        kwargs = dict(s2=file_behind_layer(layer, "Sentinel-2 layer"), output=self.output_path(), model=model,
                      weights=self.weights_widget.filePath().strip() or None,
                      s1=file_behind_layer(self.s1_combo.currentLayer(), "Sentinel-1 layer"),
                      dem=file_behind_layer(self.dem_combo.currentLayer(), "DEM"), mask=mask, mask_kind=mask_kind,
                      metadata=self.metadata_widget.filePath().strip() or None, options=options)
        kwargs.update(self.extra_options)
        return kwargs

    def run(self) -> None:
        if self._task is not None:
            return
        try:
            kwargs = self.engine_arguments()
        except ValueError as exc:
            self.show_result(False, str(exc))
            return
        layer = self.s2_combo.currentLayer()
        self._layer_name = f"Cloud-free - {layer.name()}"
        from ..engine.clouds.removal import run_cloud_removal

        task = EngineTask(f"Cloud removal of {layer.name()}", lambda monitor: run_cloud_removal(monitor=monitor, **kwargs),
                          self._done)
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
        cloud = (f"; cloud/shadow {100 * report.cloud_pixels / report.valid_pixels:.1f} %"
                 if report.cloud_pixels is not None and report.valid_pixels else "")
        self.show_result(True, f"<b>Done</b> in {report.seconds:.1f} s with {report.model} on {report.device}{cloud}."
                         f"<br>{report.output}")
