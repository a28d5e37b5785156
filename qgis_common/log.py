"""One log for the plugin: QGIS's message log (tag ``TopoClear``) and, during a run, the
Processing feedback or a dock's log box, through an engine :class:`~topoclear.engine.progress.Monitor`."""
from __future__ import annotations

from typing import Callable, Dict, Optional

from qgis.core import Qgis, QgsApplication, QgsMessageLog

from ..engine.progress import Monitor

TAG = "TopoClear"


def log_info(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Info)


_LOGGED_ONCE: Dict[str, str] = {}


def log_info_once(key: str, text: str) -> bool:
    """``text`` to the message log unless it is what was last logged under ``key`` (a state reported once,
    and again when it changes, such as the device the docks run on); whether it was logged."""
    if _LOGGED_ONCE.get(key) == text:
        return False
    _LOGGED_ONCE[key] = text
    log_info(text)
    return True


def log_warning(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Warning)


def log_error(text: str) -> None:
    QgsMessageLog.logMessage(text, TAG, Qgis.Critical)


#: The name :func:`QgsApplication.platform` gives inside the ``qgis_process`` command-line tool.
COMMAND_LINE_PLATFORM = "qgis_process"
_echo_paused = False


def failing_run() -> None:
    """Called as a run fails, just before its ``QgsProcessingException`` is raised: on the command line,
    pause the message log until the next run, so that the error is printed once.

    ``qgis_process`` prints every Critical message of QGIS's message log on stderr, and QGIS logs a
    failed run's error twice (``QgsProcessingAlgorithm::run``/``prepare`` log the exception, and
    ``QgsProcessingFeedback::reportError`` logs what it reports) besides the ``ERROR:`` line the tool's
    feedback prints itself: without the pause the user reads every error three times. In the desktop
    application (any other platform) nothing changes: the log panel keeps every message."""
    global _echo_paused
    if QgsApplication.platform() == COMMAND_LINE_PLATFORM and not _echo_paused:
        QgsApplication.messageLog().blockSignals(True)
        _echo_paused = True


def run_starts() -> None:
    """Called as a run starts: the message log speaks again if :func:`failing_run` paused it."""
    global _echo_paused
    if _echo_paused:
        QgsApplication.messageLog().blockSignals(False)
        _echo_paused = False


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
