"""One job on one worker: threads sized, leftovers of a killed attempt removed, the engine run, the marker written.

:func:`run_job` is the one function every batch mode calls per job (in-process with ``--serial``,
on a dask worker otherwise), so both give the same bytes. It never raises for a job that fails:
the error comes back in the :class:`~.jobs.JobResult` and the other jobs go on.
"""
from __future__ import annotations

import glob
import os
import resource
import socket
import time
import traceback
from dataclasses import dataclass
from typing import List

from ..errors import Cancelled, TopoClearError
from ..io.atomic import remove_stale_temporaries
from ..progress import Monitor
from .jobs import Job, JobResult
from .manifest import done_state, remove_marker, write_marker
from .operations import RunContext

#: Leftovers of an attempt killed part-way that the engine's next write does not clean itself: the
#: Let It Snow scratch files beside a snow map (``.<stem>.<random>.snowcodes``).
SCRATCH_PATTERNS = (".{stem}.*.snowcodes", ".{stem}.*.snowndsi")


@dataclass(frozen=True)
class WorkerSettings:
    """How each job runs: ``threads`` for its numpy / GDAL / torch work, ``gdal_cache_mb`` for GDAL's block
    cache, ``force`` to rerun jobs already done, ``keep_messages`` engine messages kept per job."""

    threads: int = 1
    gdal_cache_mb: int = 256
    force: bool = False
    keep_messages: int = 5


def configure_threads(settings: WorkerSettings) -> None:
    """Size GDAL (and the BLAS libraries, for processes started from here) to the worker's threads."""
    threads = str(max(1, settings.threads))
    os.environ["GDAL_NUM_THREADS"] = threads
    os.environ["GDAL_CACHEMAX"] = str(int(settings.gdal_cache_mb))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = threads


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def peak_rss_mib() -> float:
    """The high-water mark of this process's resident memory (MiB): ``VmHWM`` (reset by exec, unlike the max
    RSS of ``getrusage``, which carries the parent's over fork + exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def remove_leftovers(job: Job) -> int:
    """Remove what an earlier attempt of ``job`` killed part-way left beside its outputs; their number.

    The engine's atomic writers remove the temporaries of dead processes when the same output is
    written again (and a snow series its dead temporary folders); here also the snow map scratch files
    and a series' unaligned maps (only this job writes these outputs: the job list refuses two jobs with
    one output).
    """
    removed = 0
    for out in job.outputs:
        removed += remove_stale_temporaries(out)
        folder, stem = os.path.dirname(out), os.path.splitext(os.path.basename(out))[0]
        for pattern in SCRATCH_PATTERNS:
            for path in glob.glob(os.path.join(folder, pattern.format(stem=glob.escape(stem)))):
                try:
                    os.remove(path)
                    removed += 1
                except OSError:
                    pass
    for folder in job.folders:
        for path in [p for pattern in (".snowmap_*.snowcodes", ".snowmap_*.snowndsi", ".snowmap_*.native.tif")
                     for p in glob.glob(os.path.join(folder, pattern))]:
            try:
                os.remove(path)
                removed += 1
            except OSError:
                pass
    return removed


def _collector(keep: List[str]) -> Monitor:
    return Monitor(on_message=keep.append)


def run_job(job: Job, settings: WorkerSettings = WorkerSettings()) -> JobResult:
    """Run ``job`` (or skip it when done: :func:`~.manifest.done_state`) and say what became of it."""
    result = JobResult(job.id, job.operation, "failed", worker=worker_name(), threads=settings.threads)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    ctx = RunContext(threads=settings.threads)
    messages: List[str] = []
    try:
        if not settings.force:
            done, why = done_state(job)
            if done:
                result.status, result.outputs, result.notes = "skipped", list(job.outputs), [why]
                return result
        configure_threads(settings)
        remove_marker(job)
        for folder in job.folders:
            os.makedirs(folder, exist_ok=True)
        for out in job.outputs:
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        cleaned = remove_leftovers(job)
        ctx.monitor = _collector(messages)
        if cleaned:
            ctx.notes.append(f"removed {cleaned} leftover(s) of an earlier attempt")
        written = job.spec.run(job.params, ctx)
        write_marker(job, written, time.perf_counter() - start)
        result.status, result.outputs = "done", written
    except (TopoClearError, Cancelled) as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failed job is reported, the others go on
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({os.path.basename(last.filename)}:{last.lineno})" if last else ""
        result.error = f"{type(exc).__name__}: {exc}{where}"
    finally:
        if result.status != "skipped":
            result.notes = ctx.notes + messages[-settings.keep_messages:]
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = cpu_seconds() - cpu_start
        result.peak_rss_mib = peak_rss_mib()
    return result
