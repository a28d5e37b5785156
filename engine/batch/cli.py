"""``python -m topoclear batch JOBS``: run a job list on a dask cluster (or in this process with ``--serial``)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ..errors import TopoClearError
from .jobs import load_jobs
from .manifest import done_state
from .operations import describe_operations
from .runner import ClusterOptions, run_batch, summary_table, write_summary
from .worker import WorkerSettings

DESCRIPTION = """Run a list of TopoClear jobs (one per scene) through the same engine as the plugin, on a
dask.distributed cluster: an in-process LocalCluster by default, or an existing one (--scheduler).
Jobs already done (their outputs exist, read back, and a done marker says they came from the same job
parameters) are skipped; a failed job is reported and the others go on. Exit status: 0 when no job
failed, 1 when one did, 2 for a job list that cannot be used."""

EPILOG = """job list: CSV (a header row, one row per job) or JSON (a list of objects, or {"defaults": ...,
"jobs": [...]}), columns / keys "id" (optional), "operation" and its parameters; relative paths are
relative to the job file; lists (a series' images) are ";"-separated in CSV. Operations:
""" + describe_operations() + """

examples:
  python -m topoclear batch jobs.csv
  python -m topoclear batch jobs.json --workers 4 --threads-per-worker 2 --summary out/summary.csv
  python -m topoclear batch jobs.csv --scheduler tcp://10.0.0.5:8786
  python -m topoclear batch jobs.csv --serial          # no dask: one job after the other, here"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m topoclear batch", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", metavar="JOBS", help="the job list (.csv or .json)")
    where = p.add_argument_group("where the jobs run")
    where.add_argument("--serial", action="store_true", help="run the jobs here, one after the other, without dask")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask scheduler (tcp://HOST:8786) instead "
                       "of a local cluster")
    where.add_argument("--workers", type=int, metavar="N", help="local cluster: worker processes (default: the CPU "
                       "count / threads per worker)")
    where.add_argument("--threads-per-worker", type=int, default=1, metavar="T", help="threads of each worker, and "
                       "the torch / GDAL / numpy threads of each job (default 1; also with --serial)")
    where.add_argument("--no-processes", action="store_true", help="local cluster: workers as threads of this "
                       "process instead of processes")
    where.add_argument("--memory-limit", default="auto", metavar="SIZE", help="local cluster: memory per worker "
                       "(e.g. 4GB; default: the machine's memory / workers)")
    how = p.add_argument_group("how the jobs run")
    how.add_argument("--gdal-cache-mb", type=int, default=256, metavar="MB", help="GDAL block cache of each job "
                     "(default 256)")
    how.add_argument("--force", action="store_true", help="run every job, also those done by an earlier run")
    how.add_argument("--only", action="append", metavar="ID", help="run only this job (repeatable)")
    how.add_argument("--dry-run", action="store_true", help="say which jobs would run and which are done; run none")
    out = p.add_argument_group("reporting")
    out.add_argument("--summary", metavar="FILE", help="also write the per-job results there (.csv or .json)")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        jobs = load_jobs(args.jobs, args.only)
    except (TopoClearError, OSError) as exc:
        print(f"topoclear batch: {exc}", file=sys.stderr)
        return 2
    if args.threads_per_worker < 1 or (args.workers is not None and args.workers < 1):
        print("topoclear batch: --workers and --threads-per-worker must be at least 1", file=sys.stderr)
        return 2
    if args.dry_run:
        for job in jobs:
            done, why = done_state(job)
            print(f"{job.id}\t{job.operation}\t{'skip' if done and not args.force else 'run'}\t{why}")
        return 0
    settings = WorkerSettings(threads=args.threads_per_worker, gdal_cache_mb=args.gdal_cache_mb, force=args.force)
    options = ClusterOptions(serial=args.serial, scheduler=args.scheduler, workers=args.workers,
                             threads_per_worker=args.threads_per_worker, processes=not args.no_processes,
                             memory_limit=args.memory_limit)
    results = run_batch(jobs, settings, options, quiet=args.quiet)
    if not args.quiet:
        print(summary_table(results))
    if args.summary:
        try:
            write_summary(results, args.summary)
        except (TopoClearError, OSError) as exc:
            print(f"topoclear batch: cannot write the summary: {exc}", file=sys.stderr)
            return 1
    return 1 if any(r.status == "failed" for r in results) else 0
