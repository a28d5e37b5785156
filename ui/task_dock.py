"""The frame shared by TopoClear's docks: layer pickers, an output file, Run / Cancel, progress, the result.

A dock builds its own inputs, then calls :meth:`TaskDock.add_output_row`,
:meth:`TaskDock.add_run_controls` and :meth:`TaskDock.set_body`; :meth:`TaskDock.start` runs a
``QgsTask`` in QGIS's task manager and :meth:`TaskDock.task_done` resets the controls when it
ends. ``runFinished(ok, message)`` is emitted when a run ends, after any layer was added.
"""
from __future__ import annotations

import os
import time
from typing import Optional

from qgis.core import QgsApplication, QgsMapLayerProxyModel, QgsProcessingUtils
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
                                 QPushButton, QScrollArea, QVBoxLayout, QWidget)


def raster_combo(allow_empty: bool) -> QgsMapLayerComboBox:
    """A raster layer picker; ``allow_empty`` for optional inputs (starts empty)."""
    combo = QgsMapLayerComboBox()
    combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
    if allow_empty:
        combo.setAllowEmptyLayer(True)
        combo.setLayer(None)
    return combo


class TaskDock(QgsDockWidget):
    """A dock that runs one background task at a time and shows its progress and result."""

    runFinished = pyqtSignal(bool, str)
    #: Start of the name of temporary outputs (``<prefix>_<time>.tif`` in QGIS's temporary folder).
    OUTPUT_PREFIX = "output"

    def __init__(self, title: str, object_name: str, iface, parent=None) -> None:
        super().__init__(title, parent or (iface.mainWindow() if iface is not None else None))
        self.setObjectName(object_name)
        self.iface = iface
        self._task = None
        self.last_layer_id: Optional[str] = None

    # -- widgets ------------------------------------------------------------------------------------
    def add_output_row(self, layout: QVBoxLayout, label: str) -> None:
        form = QFormLayout()
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output_widget.lineEdit().setPlaceholderText("[temporary file]")
        self.output_widget.setMinimumWidth(120)
        form.addRow(label, self.output_widget)
        layout.addLayout(form)

    def add_run_controls(self, layout: QVBoxLayout) -> None:
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
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMinimumHeight(80)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    def set_body(self, body: QWidget) -> None:
        """Put ``body`` in a vertical scroll area as the dock's widget; long names must not widen the dock."""
        for combo in body.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        for widget in body.findChildren(QgsFileWidget):
            widget.setMinimumWidth(120)
        scroll = QScrollArea()
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.setWidget(scroll)

    # -- running ------------------------------------------------------------------------------------
    def output_path(self) -> str:
        """The chosen output (``.tif`` added when missing), or a new file in QGIS's temporary folder."""
        chosen = self.output_widget.filePath().strip()
        if chosen:
            return chosen if chosen.lower().endswith((".tif", ".tiff")) else chosen + ".tif"
        stamp = f"{time.strftime('%Y%m%d_%H%M%S')}_{int(time.time() * 1000) % 1000:03d}"
        return os.path.join(QgsProcessingUtils.tempFolder(), f"{self.OUTPUT_PREFIX}_{stamp}.tif")

    def run(self) -> None:  # overridden by each dock
        raise NotImplementedError

    def start(self, task) -> None:
        """Queue ``task`` (an :class:`~topoclear.ui.engine_task.EngineTask`) in QGIS's task manager with the
        controls in their running state; its messages go to the log box."""
        self._task = task
        task.progressChanged.connect(self._progress)
        task.message.connect(self.log_message)
        self.log.clear()
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.result_label.setText("Running...")
        QgsApplication.taskManager().addTask(task)

    def log_message(self, text: str) -> None:
        """One line of the run's log (main thread)."""
        if not sip.isdeleted(self):
            self.log.appendPlainText(text)

    def _progress(self, value: float) -> None:
        if not sip.isdeleted(self):
            self.progress.setValue(int(value))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def task_done(self, ok: bool) -> bool:
        """Controls back to idle after a run; False when the dock was closed meanwhile."""
        self._task = None
        if sip.isdeleted(self):
            return False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setValue(100 if ok else 0)
        return True

    def show_result(self, ok: bool, text: str) -> None:
        """The result line (errors in red, also in QGIS's message bar), then ``runFinished``."""
        colour = "#1a7f37" if ok else "#b42318"
        self.result_label.setText(f"<span style='color:{colour}'>{text}</span>")
        self.runFinished.emit(ok, text)
        if not ok and self.iface is not None and hasattr(self.iface, "messageBar"):
            try:
                self.iface.messageBar().pushWarning(self.windowTitle(), text)
            except Exception:  # an interface without a real message bar (tests)
                pass
