"""The Cloud removal dock: a cloud-free image of the whole layer or of the canvas extent, from the image alone or
from other dates of the same place, computed in the background and added to the map."""
from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsSpinBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..engine.clouds.methods.catalogue import get_method
from ..engine.clouds.methods.fill import DEFAULT_DISTANCE, DEFAULT_SMOOTHING, MAX_DISTANCE, MAX_SMOOTHING
from ..qgis_common.cloud_choices import (COVERAGE_CHOICES, ChoiceError, CloudChoices, mask_choices,
                                        mask_reads_raster, method_inputs, model_choices, model_info)
from ..qgis_common.errors import user_message
from ..qgis_common.i18n import tr
from ..qgis_common.layers import file_behind_layer
from ..qgis_common.styles import apply_style
from .engine_task import EngineTask
from .extent import ExtentChoice, clip_sentinel2
from .task_dock import TaskDock, add_row, dem_combo, fill_menu, raster_combo, sentinel2_combo
from .timeseries_dates import OtherDatesGroup, add_results, result_text, series_warning


def labels() -> dict:
    """How the dock names each removeclouds parameter in its messages (its form labels)."""
    return {"INPUT": tr("Sentinel-2 (cloudy)"), "S1": tr("Sentinel-1 (VV, VH)"), "DEM": tr("DEM"),
            "METADATA": tr("Sun from metadata"), "MASK_TYPE": tr("Cloud mask"), "CLOUD_MASK": tr("Mask raster"),
            "MODEL": tr("Method"), "WEIGHTS": tr("Weights"), "FILL_DISTANCE": tr("Fill search distance (px)"),
            "FILL_SMOOTHING": tr("Fill smoothing passes"), "OBSERVED": tr("What was observed"),
            "DEVICE": tr("Device"), "TILE_SIZE": tr("Tile size (px)"), "OVERLAP": tr("Overlap (px)"),
            "BATCH_SIZE": tr("Tiles per batch"), "COVERAGE": tr("Coverage"), "OUTPUT": tr("Cloud-free image")}


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


def _spin(low: int, high: int, value: int) -> QgsSpinBox:
    box = QgsSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setClearValue(value)
    return box


class CloudDock(TaskDock):
    """Pick the Sentinel-2 layer (and Sentinel-1, DEM, cloud mask), the method, the other dates and the area,
    and run.

    The methods are the catalogue's (Automatic first, the default: the info line says what it will run for
    these inputs and why); the Sentinel-1 and DEM pickers are on only when the chosen method reads them
    (:func:`~topoclear.qgis_common.cloud_choices.method_inputs`). The widgets' values become the engine request
    through :class:`~topoclear.qgis_common.cloud_choices.CloudChoices`, as the removeclouds algorithm's
    parameters do. With other dates checked, the run is the multi-date removal (the source raster of each pixel
    is added with the image). "Canvas extent" clears only the part of the layer shown in the map canvas.

    The run is an :class:`~topoclear.ui.engine_task.EngineTask` in QGIS's task manager (progress bar, Cancel,
    the device shown as soon as it is chosen); the cloud-free image is added to the project in true colour.
    ``runFinished(ok, message)`` is emitted when a run ends, after the layers were added.
    """

    OUTPUT_PREFIX = "cloudfree"

    def __init__(self, iface, parent=None) -> None:
        super().__init__(tr("Cloud removal"), "TopoClearCloudDock", iface, parent)
        self.last_report = None
        self.last_source_id: Optional[str] = None
        self.last_observed_id: Optional[str] = None
        self._torch_checked = False  # PyTorch is imported when the dock is first shown, not at QGIS start
        self._torch_missing = False
        self._build()

    # -- widgets ------------------------------------------------------------------------------------
    def _build(self) -> None:
        """The dock's widgets, top to bottom, then their signals."""
        names = labels()
        body = QWidget()
        layout = QVBoxLayout(body)
        self._build_inputs(layout, names)
        self._build_method(layout, names)
        self._build_tiles(layout, names)
        self._build_area(layout)
        self._build_run(layout, names)
        layout.addStretch(1)
        self.set_body(body)
        self._connect_signals()

    def _build_inputs(self, layout: QVBoxLayout, names: dict) -> None:
        """The input layers and files: Sentinel-2, Sentinel-1, DEM, metadata and the cloud mask."""
        form = QFormLayout()
        self.s2_combo = sentinel2_combo()
        add_row(form, names["INPUT"], self.s2_combo, tr(
            "The cloudy Sentinel-2 image: a band stack (13-band L1C, 12-band L2A, 10-band) or one band file of a "
            "product (the other bands are found beside it). Preselected: a layer that looks like Sentinel-2"))
        self.s1_combo = raster_combo(True)
        add_row(form, names["S1"], self.s1_combo, tr(
            "Sentinel-1 backscatter (VV, VH; dB or linear) of about the same date, any grid; read only by the "
            "methods that take radar (off for the others)"))
        self.dem_combo = dem_combo(self.s2_combo)
        add_row(form, names["DEM"], self.dem_combo, tr(
            "Elevations for the terrain models, any grid (aligned onto the image); read only by the methods that "
            "take terrain (off for the others). Preselected: a single-band layer named like a DEM"))
        self.metadata_widget = QgsFileWidget()
        self.metadata_widget.setFilter("Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml)")
        self.metadata_widget.lineEdit().setPlaceholderText(tr("[found beside the image, else 315 / 45 deg]"))
        add_row(form, names["METADATA"], self.metadata_widget, tr(
            "The product's metadata, for the sun angles that light the terrain models' hillshade; empty: found "
            "beside the image, else sun at 315 deg azimuth, 45 deg elevation"))
        self.mask_mode = QComboBox()
        fill_menu(self.mask_mode, mask_choices("removal"), tr("Where the clouds and shadows come from:"))
        add_row(form, names["MASK_TYPE"], self.mask_mode, self.mask_mode.toolTip())
        self.mask_combo = raster_combo(True)
        add_row(form, names["CLOUD_MASK"], self.mask_combo, tr(
            "A cloud mask raster or the L2A scene classification (SCL), any grid covering the image; read by the "
            "cloud mask choices that use a raster"))
        layout.addLayout(form)

    def _build_method(self, layout: QVBoxLayout, names: dict) -> None:
        """The method, its info line, the fill's settings, the weights, the device and Keep clear pixels."""
        form = QFormLayout()
        self.model_combo = QComboBox()
        fill_menu(self.model_combo, model_choices(), tr("How the clouds are removed from the image alone:"))
        add_row(form, names["MODEL"], self.model_combo, self.model_combo.toolTip())
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        self.model_info.setToolTip(tr("What the chosen method needs and what it will run on these inputs"))
        form.addRow(self.model_info)
        self.fill_distance = _spin(1, MAX_DISTANCE, DEFAULT_DISTANCE)
        add_row(form, names["FILL_DISTANCE"], self.fill_distance, tr(
            "GDAL FillNodata's search distance: how far the fill looks for clear pixels (the fill, and the methods "
            "that start from it)"))
        self.fill_smoothing = _spin(0, MAX_SMOOTHING, DEFAULT_SMOOTHING)
        add_row(form, names["FILL_SMOOTHING"], self.fill_smoothing, tr("Smoothing passes over the filled pixels"))
        self.weights_widget = QgsFileWidget()
        self.weights_widget.setFilter("Model weights (*.safetensors)")
        self.weights_widget.lineEdit().setPlaceholderText(tr("[shipped default]"))
        add_row(form, names["WEIGHTS"], self.weights_widget, tr(
            "A .safetensors file with its model card for the chosen network; empty: the shipped weights"))
        self.device_combo = QComboBox()
        for key, label in BASE_DEVICES:
            self.device_combo.addItem(tr(label), key)
        add_row(form, names["DEVICE"], self.device_combo, tr(
            "Where the networks compute: automatic takes the GPU when PyTorch can use one"))
        self.keep_clear = QCheckBox(tr("Keep clear pixels"))
        self.keep_clear.setToolTip(tr("Copy the input unchanged wherever the cloud mask says clear"))
        self.keep_clear.setChecked(True)
        form.addRow(self.keep_clear)
        layout.addLayout(form)

    def _build_tiles(self, layout: QVBoxLayout, names: dict) -> None:
        """The collapsed Tiles group: tile size, overlap, tiles per batch and coverage."""
        self.tiles = QgsCollapsibleGroupBox(tr("Tiles"))
        self.tiles.setToolTip(tr("How a network walks the image (0 / -1: the model's defaults)"))
        self.tiles.setCollapsed(True)
        tform = QFormLayout(self.tiles)
        self.tile_spin = _spin(0, 16384, 0)
        add_row(tform, names["TILE_SIZE"], self.tile_spin, tr("Tile size in pixels; 0: the model's default"))
        self.overlap_spin = _spin(-1, 4096, -1)
        add_row(tform, names["OVERLAP"], self.overlap_spin, tr("Overlap of the tiles in pixels; -1: the model's "
                                                               "default"))
        self.batch_spin = _spin(0, 1024, 0)
        add_row(tform, names["BATCH_SIZE"], self.batch_spin, tr("Tiles computed at once; 0: automatic"))
        self.coverage_combo = QComboBox()
        fill_menu(self.coverage_combo, COVERAGE_CHOICES, tr("When Sentinel-1 or the DEM cover only part of the "
                                                            "image:"))
        add_row(tform, names["COVERAGE"], self.coverage_combo, self.coverage_combo.toolTip())
        layout.addWidget(self.tiles)

    def _build_area(self, layout: QVBoxLayout) -> None:
        """The other dates and the extent (whole layer or canvas extent)."""
        self.dates_group = OtherDatesGroup(self.s2_combo)
        layout.addWidget(self.dates_group)
        self.extent = ExtentChoice(layout, self, tr("Clear the whole Sentinel-2 layer"), tr(
            "Clear only the part of the Sentinel-2 layer shown in the map canvas"))
        self.whole_layer, self.canvas_extent = self.extent.whole_layer, self.extent.canvas_extent

    def _build_run(self, layout: QVBoxLayout, names: dict) -> None:
        """The output file, the run controls, the device of the last run, the result and the log."""
        self.add_output_row(layout, names["OUTPUT"], tr(
            "The cloud-free image, a GeoTIFF with the input's bands, data type and nodata (its 'what was observed' "
            "codes beside it); empty: a new file in QGIS's temporary folder"))
        self.add_run_controls(layout, tr("Remove the clouds in the background (from the other dates when some are "
                                         "checked); the result is added to the map"))
        self.device_label = QLabel(tr("Device: -"))
        self.device_label.setToolTip(tr("The device of the last run"))
        layout.addWidget(self.device_label)
        layout.addWidget(self.result_label)
        layout.addWidget(self.log)

    def _connect_signals(self) -> None:
        """Keep the method info and the enabled pickers in step with the choices, and set them once now."""
        self.s1_combo.layerChanged.connect(self._model_changed)
        self.dem_combo.layerChanged.connect(self._model_changed)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.dates_group.method.currentIndexChanged.connect(self._model_changed)
        self.dates_group.checksChanged.connect(self._model_changed)
        self.mask_mode.currentIndexChanged.connect(self._mask_changed)
        self._model_changed()
        self._mask_changed()

    # -- method choice ------------------------------------------------------------------------------
    def available_models(self) -> List[str]:
        """The catalogue's methods, in menu order."""
        return [self.model_combo.itemData(i) for i in range(self.model_combo.count())]

    def multi_date(self) -> bool:
        """Whether Run starts the multi-date removal (other dates are checked)."""
        return self.dates_group.active()

    def method_reads(self) -> dict:
        """``{"s1": ..., "dem": ...}``: what the chosen method (single-image or multi-date) reads."""
        if self.multi_date():
            return method_inputs(self.dates_group.method.currentData(), series=True)
        return method_inputs(self.model_combo.currentData())

    def _s1(self):
        return self.s1_combo.currentLayer() if self.s1_combo.isEnabled() else None

    def _dem(self):
        return self.dem_combo.currentLayer() if self.dem_combo.isEnabled() else None

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        super().showEvent(event)
        if not self._torch_checked:
            self._torch_checked = True
            self._torch_missing = not _torch_imports()
            for key, label in _cuda_devices():
                self.device_combo.addItem(label, key)
            self._model_changed()

    def _model_changed(self, *_) -> None:
        if sip.isdeleted(self) or any(sip.isdeleted(w) for w in (self.model_combo, self.model_info, self.s1_combo,
                                                                 self.dem_combo, self.dates_group)):
            return
        reads, series = self.method_reads(), self.multi_date()
        self.s1_combo.setEnabled(reads["s1"])
        self.dem_combo.setEnabled(reads["dem"])
        key = self.model_combo.currentData()
        fills = not series and "distance" in get_method(key).parameters
        for widget in (self.fill_distance, self.fill_smoothing):
            widget.setEnabled(fills)
        for widget in (self.model_combo, self.metadata_widget, self.keep_clear, self.tiles):
            widget.setEnabled(not series)
        if series:
            method = self.dates_group.method
            self.model_info.setText(tr("With the other dates: {method}").format(
                method=method.itemData(method.currentIndex(), Qt.ToolTipRole) or method.currentText()))
        elif self._torch_checked and self._torch_missing and get_method(key).kind == "network":
            self.model_info.setText(tr("PyTorch is not installed: the networks need it (see the README)."))
        elif self._torch_checked:
            has_s1, has_dem = self._s1() is not None, self._dem() is not None
            text = model_info(key, has_s1, has_dem)
            if not get_method(key).runs_with(has_s1, has_dem):
                text += " " + tr("It cannot run on these inputs: add what it needs, or choose another method.")
            self.model_info.setText(text)

    def _mask_changed(self, *_) -> None:
        self.mask_combo.setEnabled(mask_reads_raster(self.mask_mode.currentData()))

    # -- running ------------------------------------------------------------------------------------
    def choices(self, s2=None) -> CloudChoices:
        """What the dock's widgets choose, for :meth:`CloudChoices.request` (``s2``: in place of the layer, e.g.
        its copy clipped to the canvas extent)."""
        return CloudChoices(
            s2=s2 or self.s2_combo.currentLayer(), s1=self._s1(), dem=self._dem(),
            metadata=self.metadata_widget.filePath().strip(), mask=self.mask_combo.currentLayer(),
            mask_method=self.mask_mode.currentData(), model=self.model_combo.currentData(),
            weights=self.weights_widget.filePath().strip(), device=self.device_combo.currentData(),
            tile_size=self.tile_spin.value(), overlap=self.overlap_spin.value(), batch_size=self.batch_spin.value(),
            keep_clear=self.keep_clear.isChecked(), coverage=self.coverage_combo.currentData(),
            fill_distance=self.fill_distance.value(), fill_smoothing=self.fill_smoothing.value(),
            output=self.output_path(), names=labels())

    def _source(self, layer, notes: List[str]) -> str:
        """The Sentinel-2 file to read: the layer's, or its copy cut to the canvas extent."""
        source = file_behind_layer(layer, labels()["INPUT"])
        bounds = self.extent.bounds(self.iface, layer)
        if bounds is None:
            return source
        clipped = clip_sentinel2(source, bounds, label=labels()["INPUT"])
        notes.append(tr("Canvas extent: the part of {name} shown in the map ({left:.6g}, {bottom:.6g}, {right:.6g}, "
                        "{top:.6g}) is read through {path}").format(name=layer.name(), left=bounds[0],
                                                                   bottom=bounds[1], right=bounds[2], top=bounds[3],
                                                                   path=clipped))
        return clipped

    def run(self) -> None:
        if self._task is not None:
            return
        layer = self.s2_combo.currentLayer()
        notes: List[str] = []
        try:
            if layer is None:
                raise ChoiceError("INPUT", tr("{label}: choose a Sentinel-2 layer first").format(
                    label=labels()["INPUT"]))
            source = self._source(layer, notes)
            if self.multi_date():
                request = self.dates_group.request(
                    source, self._s1(), self.mask_mode.currentData(),
                    self.mask_combo.currentLayer() if self.mask_combo.isEnabled() else None,
                    self.weights_widget.filePath().strip(), self.device_combo.currentData(), self.output_path())
            else:
                choices = self.choices(source)
                request = choices.request()
                notes += choices.notes()
        except Exception as exc:  # a choice that cannot run (ChoiceError, InputError), or a bug: the user reads why
            self.show_result(False, user_message(exc))
            return
        self._layer_name = tr("Cloud-free - {name}").format(name=layer.name())
        if self.multi_date():
            from ..engine.clouds.timeseries import remove_clouds_timeseries

            def call(monitor):
                for note in notes:
                    monitor.message(note)
                report = remove_clouds_timeseries(request, monitor)
                warning = series_warning(report)
                if warning:
                    monitor.message(warning)
                return report

            task = EngineTask(tr("Cloud removal of {name} with other dates").format(name=layer.name()), call,
                              self._series_done)
        else:
            from ..engine.clouds.removal import run_cloud_removal

            def call(monitor):
                for note in notes:
                    monitor.message(note)
                return run_cloud_removal(request, monitor)

            task = EngineTask(tr("Cloud removal of {name}").format(name=layer.name()), call, self._done)
        task.message.connect(self._show_device)
        self.device_label.setText(tr("Device: starting..."))
        self.last_source_id = self.last_observed_id = None
        self.start(task)

    def _show_device(self, text: str) -> None:
        if not sip.isdeleted(self) and text.startswith("Device: "):
            self.device_label.setText(text)

    def _done(self, ok: bool, report, error: Optional[str], messages: List[str]) -> None:
        if not self.task_done(ok and report is not None):
            return
        if not ok or report is None:
            self.show_result(False, error or tr("Cloud removal failed."))
            return
        self.last_report = report
        self.device_label.setText(tr("Device: {device}").format(device=report.device))
        layer = QgsRasterLayer(report.output, self._layer_name, "gdal")
        if not layer.isValid():
            self.show_result(False, tr("The image was written to {path} but QGIS could not open it").format(
                path=report.output))
            return
        apply_style(layer, "sentinel2")
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        if report.observed:
            observed = QgsRasterLayer(report.observed, tr("What was observed - {name}").format(
                name=self._layer_name), "gdal")
            if observed.isValid():
                apply_style(observed, "observed")
                observed.setOpacity(0.6)
                QgsProject.instance().addMapLayer(observed)
                self.last_observed_id = observed.id()
        cloud = (tr("; cloud/shadow {p:.1f} %").format(p=report.cloud_percent)
                 if report.cloud_percent is not None else "")
        warning = report.no_information_warning
        self.show_result(True, tr("<b>Done</b> in {s:.1f} s with {model} on {device}{cloud}.<br>{output}<br>What "
                                  "was observed: {observed}").format(s=report.seconds, model=report.model,
                                                                     device=report.device, cloud=cloud,
                                                                     output=report.output, observed=report.observed)
                         + (f"<br><b>{warning}</b>" if warning else ""))

    def _series_done(self, ok: bool, report, error: Optional[str], messages: List[str]) -> None:
        if not self.task_done(ok and report is not None):
            return
        if not ok or report is None:
            self.show_result(False, error or tr("Cloud removal from the other dates failed."))
            return
        self.last_report = report
        ids = add_results(report, self._layer_name)
        if ids is None:
            self.show_result(False, tr("The image was written to {path} but QGIS could not open it").format(
                path=report.output))
            return
        self.last_layer_id, self.last_source_id = ids
        warning = series_warning(report)
        self.show_result(True, result_text(report) + (f"<br><b>{warning}</b>" if warning else ""))
