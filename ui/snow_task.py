"""Background QgsTask running the snow map engine (no QgsProject, iface or canvas access in ``run``)."""
from __future__ import annotations

from typing import Callable, Optional

from qgis.core import QgsTask

from ..engine.errors import Cancelled, TopoClearError
from ..engine.progress import Monitor
from ..engine.snow import SnowResult, snow_map


class SnowMapTask(QgsTask):
    """Runs :func:`topoclear.engine.snow.snow_map` with ``kwargs``; reports with ``on_done(ok, result, error)``.

    ``on_done`` is called on the main thread from :meth:`finished` (also after a cancel), so it may
    add layers to the project. The task object is deleted by QGIS once finished: callers keep
    what they need from the callback, never the task.
    """

    def __init__(self, description: str, kwargs: dict,
                 on_done: Callable[[bool, Optional[SnowResult], Optional[str]], None]) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.kwargs = dict(kwargs)
        self.result: Optional[SnowResult] = None
        self.error: Optional[str] = None
        self.messages = []
        self._on_done = on_done

    def run(self) -> bool:  # worker thread
        monitor = Monitor(on_progress=self.setProgress, is_cancelled=self.isCanceled,
                          on_message=self.messages.append)
        try:
            self.result = snow_map(monitor=monitor, **self.kwargs)
            return True
        except Cancelled:
            self.error = "Cancelled: no snow map was written."
        except TopoClearError as exc:
            self.error = str(exc)
        except Exception as exc:  # report anything else instead of losing it in the task manager
            self.error = f"Unexpected error: {exc!r}"
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and self.error is None:
            self.error = "Cancelled: no snow map was written."
        self._on_done(ok, self.result, self.error)
