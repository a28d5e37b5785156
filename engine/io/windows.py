"""Processing windows and the one loop every windowed pass goes through.

:func:`iter_windows` cuts a raster into windows of about :data:`DEFAULT_WINDOW_PIXELS` pixels;
:func:`run_windows` reads, computes and writes them with worker threads computing while the
calling thread does the (not thread-safe) GDAL I/O, with progress and cancel.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional

from rasterio.windows import Window

#: Target number of pixels of one processing window (bounds the memory of every windowed loop).
DEFAULT_WINDOW_PIXELS = 2_097_152


def iter_windows(width: int, height: int, rows: Optional[int] = None, cols: Optional[int] = None
                 ) -> Iterator[Window]:
    """Windows covering a ``width`` x ``height`` raster, row-major.

    By default each window is a strip of whole rows holding about ``DEFAULT_WINDOW_PIXELS`` pixels.
    """
    if cols is None:
        cols = width
    if rows is None:
        rows = max(1, DEFAULT_WINDOW_PIXELS // max(1, cols))
    rows, cols = max(1, int(rows)), max(1, int(cols))
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def count_windows(width: int, height: int, rows: Optional[int] = None, cols: Optional[int] = None) -> int:
    return sum(1 for _ in iter_windows(width, height, rows, cols))


def default_workers() -> int:
    """Threads for windowed numpy work: the CPU count, at most 4 (numpy releases the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def run_windows(windows, read, compute, write, monitor=None, workers: Optional[int] = None) -> None:
    """Read, compute and write windows with ``workers`` threads computing while I/O goes on.

    ``read(window)`` and ``write(window, result)`` run on the calling thread, in window order
    (GDAL datasets are not thread-safe); ``compute(window, data)`` runs on worker threads. At most
    ``workers + 1`` windows are in memory at once. ``monitor`` (a Monitor) gets progress and is
    checked for cancellation before each read.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    windows = list(windows)
    workers = workers or default_workers()
    total = max(1, len(windows))
    pending: deque = deque()
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for window in windows:
                if monitor is not None:
                    monitor.check()
                pending.append((window, pool.submit(compute, window, read(window))))
                while len(pending) > workers:
                    w, future = pending.popleft()
                    write(w, future.result())
                    done += 1
                    if monitor is not None:
                        monitor.progress(100.0 * done / total)
            while pending:
                w, future = pending.popleft()
                write(w, future.result())
                done += 1
                if monitor is not None:
                    monitor.progress(100.0 * done / total)
        finally:
            for _, future in pending:
                future.cancel()
    if monitor is not None:
        monitor.check()
