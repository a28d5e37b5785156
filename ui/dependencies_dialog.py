"""Install TopoClear's optional Python packages from inside QGIS.

:class:`DependenciesDialog` lists the features (cloud removal, the cloud detector, batch runs) with
the status of their pinned packages, and installs the missing ones with the pip of the Python QGIS
runs, into ``<profile>/python/topoclear-packages`` (:func:`default_packages_folder`), in a
:class:`PipProcess` (a ``QProcess``: QGIS stays responsive, the log streams, Cancel kills pip).
At start-up the plugin calls :func:`activate_profile_packages` so that folder is on ``sys.path``.
The logic without Qt lives in :mod:`topoclear.ui.dependency_manager`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor, QFontDatabase
from qgis.PyQt.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout,
                                 QHeaderView, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton,
                                 QRadioButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout)

from . import dependency_manager as dm
from . import device_report, pip_install
from .dependency_manager import tr

__all__ = ["tr", "default_packages_folder", "activate_profile_packages", "PipProcess", "DependenciesDialog"]


def default_packages_folder() -> Path:
    """``<QgsApplication.qgisSettingsDirPath()>/python/topoclear-packages`` (the active profile)."""
    return dm.packages_folder(QgsApplication.qgisSettingsDirPath())


def activate_profile_packages() -> bool:
    """Put the profile's packages folder on ``sys.path`` (see :func:`dependency_manager.activate_packages_folder`);
    for the plugin's start-up."""
    return dm.activate_packages_folder(default_packages_folder())


class PipProcess(QObject):
    """Runs one pip command in a ``QProcess`` (stdout and stderr merged), line by line.

    Signals: ``lineReceived(str)`` for every log line; ``stageChanged(str)`` for a short progress text;
    ``finished(int, bool)`` with pip's exit code (-1 when it did not start or crashed) and whether it
    was cancelled."""

    lineReceived = pyqtSignal(str)
    stageChanged = pyqtSignal(str)
    finished = pyqtSignal(int, bool)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._process: Optional[QProcess] = None
        self._buffer = b""
        self._cancelled = False
        self._done = False
        self.log: List[str] = []

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.NotRunning

    def start(self, command: Sequence[str], env: Optional[dict] = None) -> None:
        if self.is_running():
            raise RuntimeError("pip is already running")
        self._buffer, self._cancelled, self._done, self.log = b"", False, False, []
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.MergedChannels)
        environment = QProcessEnvironment()
        for key, value in pip_install.pip_environment(env).items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self._process = process
        self._emit_line("$ " + " ".join(_quote(c) for c in command))
        process.start(command[0], list(command[1:]))

    def cancel(self) -> None:
        """Kill pip (a package being moved into the folder may be left half there; installing again
        replaces it)."""
        if self.is_running():
            self._cancelled = True
            self._process.kill()

    def wait(self, msecs: int = 30000) -> bool:
        return self._process is None or self._process.waitForFinished(msecs)

    # -- internals ----------------------------------------------------------------------------------------
    def _emit_line(self, line: str) -> None:
        self.log.append(line)
        self.lineReceived.emit(line)
        stage = pip_install.pip_stage(line)
        if stage:
            self.stageChanged.emit(stage)

    def _read(self) -> None:
        self._buffer += bytes(self._process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            if line.strip():
                self._emit_line(line.decode("utf-8", errors="replace").rstrip())

    def _finish(self, code: int) -> None:
        if self._done:
            return
        self._done = True
        if self._buffer.strip():
            self._emit_line(self._buffer.decode("utf-8", errors="replace").rstrip())
        self._buffer = b""
        self.finished.emit(code, self._cancelled)

    def _finished(self, exit_code: int, exit_status) -> None:
        self._read()
        self._finish(exit_code if exit_status == QProcess.NormalExit and not self._cancelled else -1)

    def _error(self, error) -> None:
        if error == QProcess.FailedToStart:
            self._emit_line(tr("Could not start {program}: {error}").format(
                program=self._process.program(), error=self._process.errorString()))
            self._finish(-1)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or "<" in arg or ">" in arg) else arg


class _FitTree(QTreeWidget):
    """Two columns that always share the viewport's width (62 % / 38 %): never a horizontal scroll bar;
    long texts are elided, with the full text in the tooltip."""

    def resizeEvent(self, event):  # noqa: N802 (Qt API name)
        super().resizeEvent(event)
        self.setColumnWidth(0, int(self.viewport().width() * 0.62))


_OK = QColor(0, 120, 0)
_BAD = QColor(170, 0, 0)


class DependenciesDialog(QDialog):
    """The features with the status of their packages; Install runs pip for the checked ones.

    ``folder``: where packages go (default :func:`default_packages_folder`); ``feature_list``: default
    all :func:`dependency_manager.features` (pins from requirements.txt); ``python``: the interpreter
    (default :func:`dependency_manager.find_python`); ``pip_options``: extra pip arguments (an offline
    ``--no-index --find-links DIR``). ``installFinished(ok, message)`` is emitted after every run,
    once the status is checked again; ``packagesChanged()`` after a successful one."""

    installFinished = pyqtSignal(bool, str)
    packagesChanged = pyqtSignal()

    def __init__(self, parent=None, folder: Optional[os.PathLike] = None,
                 feature_list: Optional[Sequence[dm.Feature]] = None, python: Optional[str] = None,
                 pip_options: Sequence[str] = (), nvidia_smi: str = "nvidia-smi") -> None:
        super().__init__(parent)
        self.setObjectName("TopoClearDependencies")
        self.setWindowTitle(tr("TopoClear dependencies"))
        self.folder = Path(folder) if folder is not None else default_packages_folder()
        self.pip_options = list(pip_options)
        self.statuses: List[dm.FeatureStatus] = []
        self._error: Optional[str] = None
        try:
            self.feature_list = list(feature_list) if feature_list is not None else dm.features()
        except dm.DependencyError as exc:
            self.feature_list, self._error = [], str(exc)
        try:
            self.python: Optional[str] = python or pip_install.find_python()
        except dm.DependencyError as exc:
            self.python, self._error = None, str(exc)
        self.gpus = device_report.nvidia_gpus(nvidia_smi)
        self.pip = PipProcess(self)
        self.pip.lineReceived.connect(self._log_line)
        self.pip.stageChanged.connect(self._stage)
        self.pip.finished.connect(self._pip_finished)
        self._build()
        self.refresh()
        self.resize(600, min(max(self.sizeHint().height(), 560), 720))

    # -- widgets --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        """The dialog's widgets, top to bottom."""
        layout = QVBoxLayout(self)
        self._build_intro(layout)
        self._build_paths(layout)
        self._build_tree(layout)
        self._build_torch_choice(layout)
        self._build_progress(layout)
        self._build_log(layout)
        self._build_buttons(layout)

    @staticmethod
    def _build_intro(layout: QVBoxLayout) -> None:
        """What the dialog does, in a few lines."""
        intro = QLabel(tr("TopoClear installs the Python packages its features need into a folder of your "
                          "QGIS profile, with the pip of the Python that QGIS runs. Check the features to "
                          "install, then restart QGIS."))
        intro.setWordWrap(True)
        intro.setMinimumHeight(intro.heightForWidth(420))  # the lines it needs at the narrowest width
        layout.addWidget(intro)

    def _build_paths(self, layout: QVBoxLayout) -> None:
        """The packages folder and the Python that runs pip (read-only fields)."""
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.folder_edit = self._path_field(str(self.folder))
        self.python_edit = self._path_field(self.python or tr("not found"))
        form.addRow(tr("Folder"), self.folder_edit)
        form.addRow(tr("Python"), self.python_edit)
        layout.addLayout(form)

    def _build_tree(self, layout: QVBoxLayout) -> None:
        """The features and their packages, with their status."""
        self.tree = _FitTree()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels([tr("Feature / package"), tr("Status")])
        self.tree.setRootIsDecorated(True)
        self.tree.setTextElideMode(Qt.ElideRight)
        self.tree.setWordWrap(True)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(60)
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        self.tree.itemChanged.connect(self._update_buttons)
        layout.addWidget(self.tree, 3)

    def _build_torch_choice(self, layout: QVBoxLayout) -> None:
        """The PyTorch build (CPU or CUDA; CUDA preselected when nvidia-smi finds a GPU) and the GPU found."""
        row = QHBoxLayout()
        row.addWidget(QLabel(tr("PyTorch build:")))
        self.cpu_radio = QRadioButton(tr("CPU (smaller download)"))
        self.cuda_radio = QRadioButton(tr("CUDA (NVIDIA GPU)"))
        self.cpu_radio.setToolTip(tr("From the PyTorch CPU index ({url}); runs on any computer.").format(
            url=dm.TORCH_CPU_INDEX))
        self.cuda_radio.setToolTip(tr("From PyPI: on Linux a CUDA build of several GB, which needs a recent "
                                      "NVIDIA driver. PyPI's Windows and macOS wheels are CPU-only."))
        group = QButtonGroup(self)
        group.addButton(self.cpu_radio)
        group.addButton(self.cuda_radio)
        (self.cuda_radio if self.gpus else self.cpu_radio).setChecked(True)
        row.addWidget(self.cpu_radio)
        row.addWidget(self.cuda_radio)
        row.addStretch(1)
        layout.addLayout(row)
        self.gpu_label = QLabel(tr("GPU: {gpu}").format(gpu=self.gpus[0]) if self.gpus else
                                tr("No NVIDIA GPU found (nvidia-smi)."))
        self.gpu_label.setWordWrap(True)
        layout.addWidget(self.gpu_label)

    def _build_progress(self, layout: QVBoxLayout) -> None:
        """pip's progress bar (busy while it runs) and its stage, or the error found at start."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.stage_label = QLabel(self._error or tr("Ready."))
        self.stage_label.setWordWrap(True)
        self.stage_label.setMinimumHeight(self.fontMetrics().lineSpacing() * 2 + 2)
        self.stage_label.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        layout.addWidget(self.progress)
        layout.addWidget(self.stage_label)

    def _build_log(self, layout: QVBoxLayout) -> None:
        """pip's log."""
        self.log_box = QPlainTextEdit()
        self.log_box.setReadOnly(True)
        self.log_box.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        self.log_box.setMaximumBlockCount(5000)
        self.log_box.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.log_box.setPlaceholderText(tr("pip's log appears here."))
        self.log_box.setMinimumHeight(self.fontMetrics().height() * 6)
        layout.addWidget(self.log_box, 2)

    def _build_buttons(self, layout: QVBoxLayout) -> None:
        """Install, Cancel (kills pip) and Close."""
        buttons = QDialogButtonBox()
        self.install_button = QPushButton(tr("Install"))
        self.cancel_button = QPushButton(tr("Cancel"))
        self.close_button = QPushButton(tr("Close"))
        buttons.addButton(self.install_button, QDialogButtonBox.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ActionRole)
        buttons.addButton(self.close_button, QDialogButtonBox.RejectRole)
        self.install_button.clicked.connect(self.install)
        self.cancel_button.clicked.connect(self.pip.cancel)
        self.close_button.clicked.connect(self.reject)
        layout.addWidget(buttons)

    @staticmethod
    def _path_field(text: str) -> QLineEdit:
        edit = QLineEdit(text)
        edit.setReadOnly(True)
        edit.setCursorPosition(0)
        edit.setToolTip(text)
        return edit

    # -- status ---------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Check again what imports (after activating the folder, so new packages count now) and
        rebuild the list; features not complete are checked."""
        if self.folder.is_dir():
            dm.activate_packages_folder(self.folder)
        self.statuses = dm.check_features(self.feature_list, self.folder)
        self.tree.blockSignals(True)
        self.tree.clear()
        for status in self.statuses:
            item = QTreeWidgetItem([tr(status.feature.title), self._feature_text(status)])
            item.setData(0, Qt.UserRole, status.feature.key)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(0, Qt.Unchecked if status.ok else Qt.Checked)
            item.setForeground(1, QBrush(_OK if status.ok else _BAD))
            for package in status.packages:
                child = QTreeWidgetItem([package.pin.requirement, self._package_text(package)])
                child.setForeground(1, QBrush(_OK if package.ok else _BAD))
                child.setToolTip(1, package.location or tr("not importable"))
                item.addChild(child)
            item.setToolTip(0, item.text(0))
            item.setToolTip(1, item.text(1))
            self.tree.addTopLevelItem(item)
            item.setExpanded(True)
        self.tree.blockSignals(False)
        rows = sum(1 + len(s.packages) for s in self.statuses) or 3
        row_height = max(self.tree.sizeHintForRow(0), self.fontMetrics().height() + 2)
        self.tree.setMinimumHeight(min(rows, 9) * row_height + self.tree.header().sizeHint().height()
                                   + 2 * self.tree.frameWidth() + 2)
        self._update_buttons()

    @staticmethod
    def _package_text(package: dm.PackageStatus) -> str:
        if not package.importable:
            return tr("missing")
        version = package.version or tr("unknown version")
        if package.ok:
            text = tr("installed {version}").format(version=version)
        else:
            text = tr("{version}, needs {pin}").format(version=version, pin=package.pin.specifier)
        return text + (" " + tr("(restart QGIS to use it)") if package.needs_restart else "")

    @staticmethod
    def _feature_text(status: dm.FeatureStatus) -> str:
        if status.ok:
            return tr("installed")
        absent = [p.pin.name for p in status.missing if not p.importable]
        other = [p.pin.name for p in status.missing if p.importable]
        parts = ([tr("missing: {names}").format(names=", ".join(absent))] if absent else []) + \
                ([tr("other version: {names}").format(names=", ".join(other))] if other else [])
        return "; ".join(parts)

    def checked_statuses(self) -> List[dm.FeatureStatus]:
        result = []
        for index, status in enumerate(self.statuses):
            item = self.tree.topLevelItem(index)
            if item is not None and item.checkState(0) == Qt.Checked:
                result.append(status)
        return result

    def set_checked(self, keys: Sequence[str]) -> None:
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            item.setCheckState(0, Qt.Checked if item.data(0, Qt.UserRole) in keys else Qt.Unchecked)

    def torch_build(self) -> str:
        return "cuda" if self.cuda_radio.isChecked() else "cpu"

    def planned_requirements(self) -> List[str]:
        """What Install would pass to pip: the unsatisfied pins of the checked features, or all their
        pins when every one of them is satisfied (to reinstall, e.g. to switch the PyTorch build)."""
        checked = self.checked_statuses()
        wanted = dm.requirements_to_install(checked)
        return wanted or dm.requirements_to_install(checked, reinstall=True)

    def _update_buttons(self, *_args) -> None:
        running = self.pip.is_running()
        self.install_button.setEnabled(not running and self.python is not None and bool(self.checked_statuses()))
        self.cancel_button.setEnabled(running)
        self.tree.setEnabled(not running)
        self.cpu_radio.setEnabled(not running)
        self.cuda_radio.setEnabled(not running)

    # -- installing -----------------------------------------------------------------------------------------
    def install_command(self) -> List[str]:
        """The pip command of :meth:`install` (writes the numpy constraint file into the folder)."""
        if self.python is None:
            raise dm.DependencyError(self._error or tr("No Python found to run pip."))
        requirements = self.planned_requirements()
        self.folder.mkdir(parents=True, exist_ok=True)
        constraints = pip_install.write_constraints(self.folder, pip_install.numpy_constraints())
        return pip_install.pip_command(self.python, self.folder, requirements, self.torch_build(), constraints,
                              self.pip_options)

    def install(self) -> None:
        """Start pip for the checked features; returns at once (``installFinished`` follows)."""
        if self.pip.is_running() or not self.checked_statuses():
            return
        try:
            command = self.install_command()
        except (dm.DependencyError, OSError, ValueError) as exc:
            self.stage_label.setText(str(exc))
            return
        self.log_box.clear()
        self.progress.setRange(0, 0)  # busy: pip reports no total
        self.stage_label.setText(tr("Starting pip..."))
        self.pip.start(command)
        self._update_buttons()

    def _log_line(self, line: str) -> None:
        self.log_box.appendPlainText(line)

    def _stage(self, text: str) -> None:
        self.stage_label.setText(text)

    def _pip_finished(self, exit_code: int, cancelled: bool) -> None:
        self.progress.setRange(0, 1)
        ok = exit_code == 0 and not cancelled
        if ok:
            dm.record_python(self.folder)
        self.refresh()
        if cancelled:
            message = tr("Cancelled.")
        elif not ok:
            message = pip_install.explain_pip_failure(exit_code, "\n".join(self.pip.log))
        else:
            message = self._summary()
        self.progress.setValue(1 if ok else 0)
        self.stage_label.setText(message)
        self.log_box.appendPlainText("")
        self.log_box.appendPlainText(message)
        self._update_buttons()
        self.installFinished.emit(ok, message)
        if ok:
            self.packagesChanged.emit()

    def _summary(self) -> str:
        """After a successful run: what imports now, and whether QGIS needs a restart."""
        parts, restart = [], False
        for status in self.statuses:
            for package in status.packages:
                if package.in_folder or package.ok:
                    parts.append(f"{package.pin.name} {package.version or '?'}")
                restart |= package.needs_restart
        text = tr("Done. Importable now: {packages}.").format(packages=", ".join(parts) or tr("nothing"))
        still = [p.pin.name for s in self.statuses for p in s.missing]
        if still:
            text += " " + tr("Still missing or at another version: {names}.").format(names=", ".join(still))
        if restart:
            text += " " + tr("Restart QGIS to use the new versions of packages already loaded.")
        return text

    def reject(self) -> None:
        """Close; a running pip is killed first."""
        if self.pip.is_running():
            self.pip.cancel()
            self.pip.wait(5000)
        super().reject()
