"""Running a job list: in-process one job after the other, or on a dask.distributed cluster.

Every mode runs each job through :func:`~.worker.run_job`. On a cluster (an in-process
``LocalCluster`` of worker processes by default, or an existing scheduler) each job is one task;
a worker that dies (killed, out of memory) has its job rescheduled on another worker by the
scheduler (up to ``distributed.scheduler.allowed-failures`` times, 3 by default), and the job's
atomic outputs mean the killed attempt left nothing half-written. A failed job never stops the
others: its error is in its result. Progress is a text bar on stderr; the summary is a table.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import IO, Callable, List, Optional, Sequence

from ..io.atomic import atomic_output, check_writable
from .jobs import Job, JobResult
from .worker import WorkerSettings, run_job


@dataclass(frozen=True)
class ClusterOptions:
    """Where jobs run: ``serial`` (in this process, no dask), ``scheduler`` (``tcp://host:8786`` of an existing
    cluster), else a LocalCluster of ``workers`` (default: the CPU count / threads) with ``threads_per_worker``
    threads each, worker ``processes`` (or threads of this process) and a ``memory_limit`` per worker."""

    serial: bool = False
    scheduler: Optional[str] = None
    workers: Optional[int] = None
    threads_per_worker: int = 1
    processes: bool = True
    memory_limit: str = "auto"

    def n_workers(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 1) // max(1, self.threads_per_worker))


class TextProgress:
    """A progress bar on ``stream`` (redrawn in place on a terminal, one line per job otherwise)."""

    def __init__(self, total: int, stream: Optional[IO[str]] = None, width: int = 30) -> None:
        self.total, self.width, self.stream = max(1, total), width, stream if stream is not None else sys.stderr
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.draw("")

    def line(self, last: str) -> str:
        finished = sum(self.counts.values())
        filled = int(self.width * finished / self.total)
        elapsed = int(time.perf_counter() - self.start)
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {finished}/{self.total} jobs  "
                f"done {self.counts['done']}  skipped {self.counts['skipped']}  failed {self.counts['failed']}  "
                f"{elapsed // 60:02d}:{elapsed % 60:02d}" + (f"  {last}" if last else ""))

    def draw(self, last: str) -> None:
        text = self.line(last)
        self.stream.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.stream.flush()

    def update(self, result: JobResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        self.draw(f"{result.id}: {result.status}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _lost(job: Job, exc: BaseException) -> JobResult:
    name = type(exc).__name__
    why = ("the workers running it died each time it was tried" if name == "KilledWorker"
           else f"{name}: {exc}")
    return JobResult(job.id, job.operation, "failed", error=f"the cluster lost the job ({why})")


def _run_serial(jobs: Sequence[Job], settings: WorkerSettings, on_result: Callable[[JobResult], None]
                ) -> List[JobResult]:
    results = []
    for job in jobs:
        result = run_job(job, settings)
        on_result(result)
        results.append(result)
    return results


def _run_dask(jobs: Sequence[Job], settings: WorkerSettings, client, on_result: Callable[[JobResult], None]
              ) -> List[JobResult]:
    from distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures = {client.submit(run_job, job, settings, key=f"topoclear-job-{job.id}-{tag}", pure=False,
                             priority=len(jobs) - i): job for i, job in enumerate(jobs)}
    by_id = {}
    for future in as_completed(list(futures)):
        job = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost task is one failed job, the others go on
            result = _lost(job, exc)
        by_id[job.id] = result
        on_result(result)
    return [by_id[job.id] for job in jobs]


def open_client(options: ClusterOptions):
    """(a dask client, the cluster it started or None): the scheduler given, else a new LocalCluster."""
    import logging

    from distributed import Client, LocalCluster

    if options.scheduler:
        return Client(options.scheduler), None
    threads = max(1, options.threads_per_worker)
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "GDAL_NUM_THREADS")}
    cluster = LocalCluster(n_workers=options.n_workers(), threads_per_worker=threads, processes=options.processes,
                           memory_limit=options.memory_limit, dashboard_address=None, silence_logs=logging.CRITICAL,
                           **({"env": env} if options.processes else {}))
    return Client(cluster), cluster


def run_batch(jobs: Sequence[Job], settings: WorkerSettings = WorkerSettings(),
              options: ClusterOptions = ClusterOptions(), progress: Optional[IO[str]] = None, client=None,
              quiet: bool = False) -> List[JobResult]:
    """Run ``jobs`` (see the module docstring); their results in job order. ``client``: an open dask client
    to use (left open); ``progress``: where the bar goes (default stderr; ``quiet``: nowhere)."""
    bar = TextProgress(len(jobs), progress if progress is not None else (io.StringIO() if quiet else None))
    try:
        if options.serial:
            return _run_serial(jobs, settings, bar.update)
        if client is not None:
            return _run_dask(jobs, settings, client, bar.update)
        client, cluster = open_client(options)
        try:
            return _run_dask(jobs, settings, client, bar.update)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()


# -- the summary ------------------------------------------------------------------------------------

def summary_table(results: Sequence[JobResult]) -> str:
    """The results as an aligned text table (one row per job) with a totals line."""
    head = ("id", "operation", "status", "seconds", "worker", "peak MiB", "result")
    rows = [(r.id, r.operation, r.status, f"{r.seconds:.2f}", r.worker, f"{r.peak_rss_mib:.0f}",
             r.error if r.status == "failed" else (r.notes[0] if r.status == "skipped" and r.notes
                                                   else ", ".join(os.path.basename(o) for o in r.outputs)))
            for r in results]
    widths = [min(60, max(len(str(x)) for x in column)) for column in zip(head, *rows)]

    def fmt(row):
        return "  ".join(str(v)[:w].ljust(w) if i < len(row) - 1 else str(v)
                         for i, (v, w) in enumerate(zip(row, widths)))

    counts = {s: sum(1 for r in results if r.status == s) for s in ("done", "skipped", "failed")}
    total = (f"{len(results)} jobs: {counts['done']} done, {counts['skipped']} skipped (done before), "
             f"{counts['failed']} failed")
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows] + [total])


def write_summary(results: Sequence[JobResult], path: str) -> str:
    """Write the results to ``path``: JSON when it ends in .json, else CSV (columns of ``JobResult.FIELDS``)."""
    check_writable(path)
    rows = [r.row() for r in results]
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        if path.lower().endswith(".json"):
            json.dump({"jobs": rows, "notes": {r.id: r.notes for r in results}}, handle, indent=1)
            handle.write("\n")
        else:
            out = csv.DictWriter(handle, fieldnames=JobResult.FIELDS)
            out.writeheader()
            out.writerows(rows)
    return path
