"""Progress reporting and cancellation, independent of QGIS.

Engine functions take an optional :class:`Monitor`. The QGIS layer adapts a
``QgsProcessingFeedback`` (or a ``QgsTask``) to it; scripts can pass callbacks or nothing.
"""
from __future__ import annotations

from typing import Callable, Optional

from .errors import Cancelled


class Monitor:
    """Forwards progress (0-100 %) and answers whether the user asked to cancel."""

    def __init__(
        self,
        on_progress: Optional[Callable[[float], None]] = None,
        is_cancelled: Optional[Callable[[], bool]] = None,
        on_message: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._on_progress = on_progress
        self._is_cancelled = is_cancelled
        self._on_message = on_message

    def progress(self, percent: float) -> None:
        if self._on_progress is not None:
            self._on_progress(max(0.0, min(100.0, float(percent))))

    def message(self, text: str) -> None:
        if self._on_message is not None:
            self._on_message(text)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user asked to stop."""
        if self.cancelled():
            raise Cancelled("cancelled by the user")

    def sub(self, start: float, end: float) -> "Monitor":
        """A monitor whose 0-100 % maps onto ``start``-``end`` % of this one."""
        span = end - start
        return Monitor(lambda p: self.progress(start + span * p / 100.0), self._is_cancelled, self._on_message)


SILENT = Monitor()
