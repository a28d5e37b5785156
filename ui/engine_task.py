"""The background task every dock runs: one engine call in QGIS's task manager.

``run`` (a worker thread) never touches ``QgsProject``, ``iface`` or the canvas. Every message of
the run goes to QGIS's message log and, through the ``message`` signal (queued to the main
thread), to the dock's log box. ``on_done(ok, result, error, messages)`` is called on the main
thread from :meth:`finished` (also after a cancel or an error), so it may add layers to the
project. QGIS deletes a finished task: callers keep what they need from the callback.

Progress: a success reports 100 % from the worker thread before it returns, so that report reaches the
main thread before :meth:`finished`; the dock (:meth:`~topoclear.ui.task_dock.TaskDock.task_done`) then
sets the bar for good (100 % after a success, 0 % otherwise) and ignores any later report of the task.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..engine.progress import Monitor
from ..qgis_common.errors import CANCELLED, user_message
from ..qgis_common.log import task_monitor

OnDone = Callable[[bool, Any, Optional[str], List[str]], None]


class EngineTask(QgsTask):
    """Runs ``call(monitor)``, an engine entry point with its request bound."""

    message = pyqtSignal(str)

    def __init__(self, description: str, call: Callable[[Monitor], Any], on_done: OnDone) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self._call = call
        self._on_done = on_done
        self.result: Any = None
        self.error: Optional[str] = None
        self.messages: List[str] = []

    def _message(self, text: str) -> None:
        self.messages.append(text)
        self.message.emit(text)

    def run(self) -> bool:  # worker thread
        try:
            self.result = self._call(task_monitor(self, self._message))
            self.setProgress(100.0)  # the last progress report of a success, before the task completes
            return True
        except Exception as exc:  # every failure reaches the dock as a message
            self.error = user_message(exc)
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and self.error is None:
            self.error = CANCELLED
        self._on_done(ok, self.result, self.error, list(self.messages))
