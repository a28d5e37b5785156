"""One log for the plugin: QGIS's message log (tag ``TopoClear``) and, during a run, the
Processing feedback or a dock's log box, through an engine :class:`~topoclear.engine.progress.Monitor`."""
from __future__ import annotations

from typing import Callable, Optional

from qgis.core import Qgis, QgsMessageLog

from ..engine.progress import Monitor

TAG = "TopoClear"


def log_info(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Info)


def log_warning(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Warning)


def log_error(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Critical)


def feedback_monitor(feedback) -> Monitor:
    """A monitor for a Processing run: progress and cancel through ``feedback``, every message to the
    Processing log and to QGIS's message log."""

    def message(text: str) -> None:
        feedback.pushInfo(text)
        log_info(text)

    return Monitor(feedback.setProgress, feedback.isCanceled, message)


def task_monitor(task, on_message: Optional[Callable[[str], None]] = None) -> Monitor:
    """A monitor for a ``QgsTask``: its progress and cancel; every message to QGIS's message log and to
    ``on_message`` (a dock keeps and shows them)."""

    def message(text: str) -> None:
        log_info(text)
        if on_message is not None:
            on_message(text)

    return Monitor(task.setProgress, task.isCanceled, message)
