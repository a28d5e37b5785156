"""Progress reporting and cancellation, independent of QGIS.

Engine functions take an optional :class:`Monitor`. The QGIS layer adapts a
``QgsProcessingFeedback`` (or a ``QgsTask``) to it; scripts can pass callbacks or nothing.
"""
from __future__ import annotations

import math
import time
from typing import Callable, List, Optional

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


def duration_text(seconds: float) -> str:
    """``"about 2 min"``, ``"about 40 s"``, ``"about 1 h 5 min"`` (rounded up to what a user reads)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        whole = max(1, int(math.ceil(seconds)))
        return f"about {whole if whole < 10 else int(math.ceil(whole / 5.0)) * 5} s"
    minutes = int(math.ceil(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class Countdown:
    """Counts finished units of work (tiles, windows) and says, every tenth of the total or so, how many
    are done and about how long is left: ``"Tile 12 / 80, about 2 min left"``; the last one says how long
    it took. ``say`` receives the lines; ``clock`` is replaceable for tests."""

    def __init__(self, total: int, say: Callable[[str], None], unit: str = "Tile", steps: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(1, int(total))
        self.say = say
        self.unit = unit
        self.step = max(1, int(math.ceil(self.total / max(1, steps))))
        self.clock = clock
        self.start = clock()
        self.said = 0

    def update(self, done: int) -> Optional[str]:
        """Record that ``done`` units are finished; the line said, if one was."""
        done = min(int(done), self.total)
        if done <= self.said or (done < self.total and done - self.said < self.step):
            return None
        elapsed = self.clock() - self.start
        if done >= self.total:
            text = f"{self.unit} {done} / {self.total}, done in {duration_text(elapsed)[6:]}"
        else:
            text = f"{self.unit} {done} / {self.total}, {duration_text(elapsed / done * (self.total - done))} left"
        self.said = done
        self.say(text)
        return text


def counting(monitor: Monitor, total: int, unit: str = "Window") -> Monitor:
    """A monitor that forwards to ``monitor`` and, from its progress (0-100 % of ``total`` units), says
    through ``monitor.message`` how many units are done and about how long is left (:class:`Countdown`)."""
    countdown = Countdown(total, monitor.message, unit)

    def progress(percent: float) -> None:
        monitor.progress(percent)
        countdown.update(int(round(percent * countdown.total / 100.0)))

    return Monitor(progress, monitor.cancelled, monitor.message)


class RunLog:
    """The messages of a run: kept for its report and passed on to the monitor as they come."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.messages: List[str] = []

    def say(self, text: str) -> None:
        self.messages.append(text)
        self.monitor.message(text)
