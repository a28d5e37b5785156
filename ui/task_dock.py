"""The frame shared by TopoClear's docks: layer pickers, an output file, Run / Cancel, progress, the device, the result.

A dock builds its own inputs (with :func:`sentinel2_combo`, :func:`dem_combo`, :func:`raster_combo`), then calls
:meth:`TaskDock.add_output_row`, :meth:`TaskDock.add_run_controls` and :meth:`TaskDock.set_body`;
:meth:`TaskDock.start` runs a ``QgsTask`` in QGIS's task manager and :meth:`TaskDock.task_done` resets the
controls when it ends. ``runFinished(ok, message)`` is emitted when a run ends, after any layer was added.

:meth:`TaskDock.set_body` makes the dock usable at its default width (about 300 px), scrolling vertically only:
form rows put the field under a label that does not fit, labels wrap, menus and file fields shrink, and check
boxes, radio buttons and group titles too long for the width are shortened with "..." (the whole text in
their tooltip).
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
from typing import List, Optional, Tuple

from qgis.core import QgsApplication, QgsProcessingUtils
from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QEvent, QObject, QPoint, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (QAbstractSpinBox, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                                 QLabel, QPlainTextEdit, QProgressBar, QPushButton, QRadioButton, QScrollArea,
                                 QSizePolicy, QToolButton, QVBoxLayout, QWidget)

from ..qgis_common.i18n import tr
from ..qgis_common.log import log_info_once
from .layer_pickers import (AutoPick, best_layer, dem_combo, dem_score, layer_facts, looks_like_dem,  # noqa: F401
                            looks_like_sentinel2, raster_combo, sentinel2_combo, sentinel2_score)

# -- tooltips ---------------------------------------------------------------------------------------------

def add_row(form: QFormLayout, label: str, widget: QWidget, tip: str) -> None:
    """A form row whose label and field (and a file widget's text field) both show ``tip``."""
    form.addRow(label, widget)
    widget.setToolTip(tip)
    if isinstance(widget, QgsFileWidget):
        widget.lineEdit().setToolTip(tip)
    shown = form.labelForField(widget)
    if shown is not None:
        shown.setToolTip(tip)


def fill_menu(combo: QComboBox, choices, intro: str) -> None:
    """``choices`` (with ``key``, ``label`` and an optional ``tooltip``) into ``combo``, each entry's whole text as
    its tooltip; the combo's tooltip is ``intro`` and the list of entries."""
    for choice in choices:
        label, more = tr(choice.label), tr(getattr(choice, "tooltip", "") or "")
        combo.addItem(label, choice.key)
        combo.setItemData(combo.count() - 1, f"{label}: {more}" if more else label, Qt.ToolTipRole)
    combo.setToolTip(intro + "\n" + "\n".join(f"- {tr(c.label)}" for c in choices))


# -- the device ---------------------------------------------------------------------------------------------

_DEVICE: Optional[Tuple[str, str]] = None


def _short_device(gpus: List[str]) -> str:
    """One line: where PyTorch computes (the engine's ``auto`` device) and, on the CPU, why not on a GPU."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return tr("CPU (PyTorch is not installed: no cloud removal)")
    try:
        import torch

        version = str(torch.__version__).split("+")[0]
        if torch.cuda.is_available():
            return tr("GPU cuda:0 {name} (PyTorch {version})").format(name=torch.cuda.get_device_name(0),
                                                                      version=version)
        cuda = getattr(torch.version, "cuda", None)
    except Exception:  # noqa: BLE001 (a broken install is reported, not raised)
        return tr("CPU (PyTorch does not import: see the tooltip)")
    gpu = gpus[0].split(": ", 1)[-1] if gpus else ""
    if cuda is None:
        why = tr("{gpu} needs the CUDA build").format(gpu=gpu) if gpu else tr("no NVIDIA GPU found")
        return tr("CPU (PyTorch {version} CPU-only build; {why})").format(version=version, why=why)
    why = (tr("{gpu} is not usable: see the tooltip").format(gpu=gpu) if gpu else tr("no NVIDIA GPU found"))
    return tr("CPU (PyTorch {version} CUDA {cuda} build; {why})").format(version=version, cuda=cuda, why=why)


def device_summary(refresh: bool = False) -> Tuple[str, str]:
    """``("Runs on: ...", details)``: where cloud removal and training compute, in one line, and the whole
    :func:`~topoclear.ui.device_report.device_report` (PyTorch, ONNX Runtime, why not the GPU). Imports
    PyTorch the first time (a second or two); cached until ``refresh``. The line goes to QGIS's message
    log once (again when it changes)."""
    global _DEVICE
    if _DEVICE is None or refresh:
        from .device_report import device_report, nvidia_gpus

        details = device_report()
        line = tr("Runs on: {device}").format(device=_short_device(nvidia_gpus()))
        _DEVICE = (line, details)
        log_info_once("device", line)
    return _DEVICE


# -- fitting a narrow dock ----------------------------------------------------------------------------------

FULL_TEXT = "topoclear_full_text"
OWN_TIP = "topoclear_own_tooltip"
SHOWN_TEXT = "topoclear_shown_text"


class FitToWidth(QObject):
    """Shortens the texts that cannot wrap (check boxes, radio buttons, group titles) to the width of the
    scroll area's viewport, with "..." and the whole text in the tooltip; whole again when the dock widens."""

    def __init__(self, scroll: QScrollArea) -> None:
        super().__init__(scroll)
        self.scroll = scroll
        scroll.viewport().installEventFilter(self)
        scroll.widget().installEventFilter(self)
        self._busy = False

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API name)
        if event.type() in (QEvent.Resize, QEvent.Show, QEvent.LayoutRequest) and not self._busy:
            self.fit()
        return False

    @staticmethod
    def _text(widget) -> str:
        return widget.title() if isinstance(widget, QGroupBox) else widget.text()

    @staticmethod
    def _set_text(widget, text: str) -> None:
        if isinstance(widget, QGroupBox):
            widget.setTitle(text)
        else:
            widget.setText(text)

    def fit(self) -> None:
        if sip.isdeleted(self.scroll) or self.scroll.widget() is None:
            return
        self._busy = True
        try:
            body, width = self.scroll.widget(), self.scroll.viewport().width()
            for widget in body.findChildren((QGroupBox, QCheckBox, QRadioButton)):
                self._fit(widget, body, width)
        finally:
            self._busy = False

    def _fit(self, widget, body, width: int) -> None:
        shown = self._text(widget)
        if widget.property(SHOWN_TEXT) != shown:  # new text from the dock: it becomes the whole text
            widget.setProperty(FULL_TEXT, shown)
            widget.setProperty(OWN_TIP, widget.toolTip())
        full, own_tip = widget.property(FULL_TEXT) or "", widget.property(OWN_TIP) or ""
        metrics = widget.fontMetrics()
        chrome = 44 if isinstance(widget, QGroupBox) else max(0, widget.sizeHint().width()
                                                                - metrics.horizontalAdvance(shown))
        left = widget.mapTo(body, QPoint(0, 0)).x() if widget.isVisible() else 12
        room = max(24, width - left - chrome - 10)
        text = metrics.elidedText(full, Qt.ElideRight, room)
        if text != shown:
            self._set_text(widget, text)
        widget.setProperty(SHOWN_TEXT, text)
        tip = own_tip if text == full else (full + (f"\n\n{own_tip}" if own_tip and own_tip != full else ""))
        if widget.toolTip() != tip:
            widget.setToolTip(tip)


def fit_narrow(body: QWidget) -> None:
    """Let ``body`` shrink to about 250 px: form rows wrap (the field under its label when both do not fit),
    labels wrap, menus show 10 characters at least (the whole entry in the open list), spin boxes and file
    fields take the row's width but need no more than their value."""
    for form in body.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    for label in body.findChildren(QLabel):
        label.setWordWrap(True)
    for combo in body.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(10)
        combo.setSizePolicy(QSizePolicy.Expanding, combo.sizePolicy().verticalPolicy())
    for spin in body.findChildren(QAbstractSpinBox):
        spin.setSizePolicy(QSizePolicy.Expanding, spin.sizePolicy().verticalPolicy())
    for widget in body.findChildren(QgsFileWidget):
        widget.setMinimumWidth(100)


class TaskDock(QgsDockWidget):
    """A dock that runs one background task at a time and shows its progress, device and result."""

    runFinished = pyqtSignal(bool, str)
    #: Start of the name of temporary outputs (``<prefix>_<time>.tif`` in QGIS's temporary folder).
    OUTPUT_PREFIX = "output"
    #: Why a dock whose engine never uses PyTorch runs on the CPU (untranslated; None: PyTorch's device).
    CPU_ONLY: Optional[str] = None

    def __init__(self, title: str, object_name: str, iface, parent=None) -> None:
        super().__init__(title, parent or (iface.mainWindow() if iface is not None else None))
        self.setObjectName(object_name)
        self.iface = iface
        self._task = None
        self._device_checked = False
        self.last_layer_id: Optional[str] = None

    # -- widgets ------------------------------------------------------------------------------------
    def add_output_row(self, layout: QVBoxLayout, label: str, tooltip: Optional[str] = None) -> None:
        form = QFormLayout()
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output_widget.lineEdit().setPlaceholderText(tr("[temporary file]"))
        self.output_widget.setMinimumWidth(100)
        tip = tooltip or tr("Where the result is written, a GeoTIFF (.tif added when missing); empty: a new file "
                            "in QGIS's temporary folder")
        self.output_widget.setToolTip(tip)
        self.output_widget.lineEdit().setToolTip(tip)
        form.addRow(label, self.output_widget)
        form.labelForField(self.output_widget).setToolTip(tip)
        layout.addLayout(form)

    def add_run_controls(self, layout: QVBoxLayout, run_tooltip: Optional[str] = None) -> None:
        """Run and Cancel side by side, the device line, the progress bar; the result line and the log are made
        here (``result_label``, ``log``) and placed by the dock."""
        buttons = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"))
        self.run_button.setToolTip(run_tooltip or tr("Run in the background with the choices above; the result "
                                                     "is added to the map"))
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setToolTip(tr("Stop the run: nothing is written and no layer is added"))
        self.cancel_button.setEnabled(False)
        for button in (self.run_button, self.cancel_button):
            button.setMinimumWidth(60)
            button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
            buttons.addWidget(button)
        layout.addLayout(buttons)
        device = QHBoxLayout()
        self.runs_on_label = QLabel(tr("Runs on: ..."))
        self.runs_on_label.setWordWrap(True)
        self.runs_on_label.setMinimumWidth(1)
        self.runs_on_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.runs_on_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.device_refresh = QToolButton()
        self.device_refresh.setIcon(QgsApplication.getThemeIcon("/mActionRefresh.svg"))
        self.device_refresh.setAutoRaise(True)
        self.device_refresh.setToolTip(tr("Check the device again (after installing PyTorch or a GPU driver)"))
        self.device_refresh.setVisible(self.CPU_ONLY is None)
        device.addWidget(self.runs_on_label, 1)
        device.addWidget(self.device_refresh, 0, Qt.AlignTop)
        layout.addLayout(device)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setMinimumWidth(60)
        self.progress.setToolTip(tr("Progress of the run (100 % when it succeeded, 0 % after a failure or Cancel)"))
        layout.addWidget(self.progress)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setMinimumWidth(1)
        self.result_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.result_label.setToolTip(tr("The result of the last run"))
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMinimumHeight(80)
        self.log.setMinimumWidth(60)
        self.log.setToolTip(tr("What the run did: the inputs read, the choices made, the result (also in QGIS's "
                               "Log Messages panel, tab TopoClear)"))
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.device_refresh.clicked.connect(lambda: self.refresh_device(True))

    def set_body(self, body: QWidget) -> None:
        """Put ``body`` in a vertical scroll area as the dock's widget, fitted to a narrow dock
        (:func:`fit_narrow`, :class:`FitToWidth`): long names never widen the dock."""
        fit_narrow(body)
        scroll = QScrollArea()
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.fit_to_width = FitToWidth(scroll)
        self.setWidget(scroll)

    # -- the device ----------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        super().showEvent(event)
        if not self._device_checked and hasattr(self, "runs_on_label"):
            self._device_checked = True
            if self.CPU_ONLY is not None:
                self.runs_on_label.setText(tr("Runs on: CPU ({why})").format(why=tr(self.CPU_ONLY)))
                self.runs_on_label.setToolTip(self.runs_on_label.text())
            else:
                self.runs_on_label.setText(tr("Runs on: checking..."))
                QTimer.singleShot(0, self.refresh_device)  # after the dock is drawn: PyTorch takes a second

    def refresh_device(self, refresh: bool = False) -> None:
        """The device line from :func:`device_summary` (``refresh``: checked again)."""
        if sip.isdeleted(self) or self.CPU_ONLY is not None:
            return
        line, details = device_summary(refresh)
        self.runs_on_label.setText(line)
        self.runs_on_label.setToolTip(details)

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
        controls in their running state (progress back to 0 %); its messages go to the log box."""
        self._task = task
        task.progressChanged.connect(lambda value, source=task: self._progress(source, value))
        task.message.connect(self.log_message)
        self.log.clear()
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.result_label.setText(tr("Running..."))
        QgsApplication.taskManager().addTask(task)

    def log_message(self, text: str) -> None:
        """One line of the run's log (main thread)."""
        if not sip.isdeleted(self):
            self.log.appendPlainText(text)

    def _progress(self, task, value: float) -> None:
        """Progress of the running task; a report that arrives after its end (or from an earlier task) is
        ignored, so the bar keeps the 100 % (or 0 %) that :meth:`task_done` set."""
        if not sip.isdeleted(self) and task is self._task:
            self.progress.setValue(int(value))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def task_done(self, ok: bool) -> bool:
        """Controls back to idle after a run, the bar at 100 % after a success and 0 % otherwise (until the
        next start); False when the dock was closed meanwhile."""
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
        plain = re.sub(r"<br\s*/?>", "\n", text)
        self.result_label.setToolTip(re.sub(r"<[^>]+>", "", plain))
        self.runFinished.emit(ok, text)
        if not ok and self.iface is not None and hasattr(self.iface, "messageBar"):
            try:
                self.iface.messageBar().pushWarning(self.windowTitle(), text)
            except Exception:  # an interface without a real message bar (tests)
                pass
