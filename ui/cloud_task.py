"""Background QgsTask running whole-scene cloud removal (no QgsProject, iface or canvas access in ``run``)."""
from __future__ import annotations

from typing import Callable, List, Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..engine.errors import Cancelled, TopoClearError
from ..engine.progress import Monitor


class CloudRemovalTask(QgsTask):
    """Runs :func:`topoclear.engine.inference.run_cloud_removal` with ``kwargs``.

    ``message`` is emitted (queued to the main thread) for every log line of the run, e.g.
    ``"Device: cuda:0 (...)"`` as soon as the device is chosen. ``on_done(ok, report, error,
    messages)`` is called on the main thread from :meth:`finished` (also after a cancel or an
    error), so it may add layers to the project. QGIS deletes the task once finished: callers
    keep what they need from the callback, never the task.
    """

    message = pyqtSignal(str)

    def __init__(self, description: str, kwargs: dict,
                 on_done: Callable[[bool, object, Optional[str], List[str]], None]) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.kwargs = dict(kwargs)
        self.report = None
        self.error: Optional[str] = None
        self.messages: List[str] = []
        self._on_done = on_done

    def _message(self, text: str) -> None:
        self.messages.append(text)
        self.message.emit(text)

    def run(self) -> bool:  # worker thread
        from ..engine.inference import run_cloud_removal

        monitor = Monitor(on_progress=self.setProgress, is_cancelled=self.isCanceled, on_message=self._message)
        try:
            self.report = run_cloud_removal(monitor=monitor, **self.kwargs)
            return True
        except Cancelled:
            self.error = "Cancelled: no output was written."
        except TopoClearError as exc:
            self.error = str(exc)
        except ImportError as exc:
            self.error = f"PyTorch is needed for cloud removal and cannot be imported ({exc})"
        except Exception as exc:  # report anything else instead of losing it in the task manager
            self.error = f"Unexpected error: {exc!r}"
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and self.error is None:
            self.error = "Cancelled: no output was written."
        self._on_done(ok, self.report, self.error, list(self.messages))
