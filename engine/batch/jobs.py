"""The job list of a batch run: one job per scene, read from CSV or JSON, checked before anything runs.

**CSV**: a header row naming the columns, one row per job. Columns ``id`` (optional; default
``<operation>-<row>``) and ``operation`` (``terrain``, ``cloudmask``, ``removeclouds``,
``snowmap``, ``snowseries``), then the operation's parameters (:mod:`.operations`); an empty cell is
a parameter not given. A list (the images of a series) is written with ``;`` between items.

**JSON**: a list of objects (``{"id": ..., "operation": ..., <parameters>}``), or an object
``{"defaults": {...}, "jobs": [...]}`` whose defaults every job starts from (per operation:
``{"defaults": {"snowmap": {"method": "threshold"}}}``). Lists are JSON lists.

Relative paths are relative to the folder of the job file. Two jobs writing one output, a job
whose output is one of its inputs, an unknown operation or parameter and a missing required
parameter are errors naming the job, before any job runs.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InputError
from ..io.atomic import same_file
from .operations import OPERATIONS, Operation


@dataclass(frozen=True)
class Job:
    """One job: its ``id``, ``operation`` and parameters (paths absolute), its input and output files."""

    id: str
    operation: str
    params: Mapping[str, Any]
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    folders: Tuple[str, ...] = ()
    row: int = 0

    @property
    def spec(self) -> Operation:
        return OPERATIONS[self.operation]

    @property
    def key(self) -> str:
        """The job's hash: its operation and parameters (paths absolute), not its id or row."""
        text = json.dumps({"operation": self.operation, "params": self.params}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return None if value == "" else value
    return value


def _rows_from_csv(path: str) -> List[Dict[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "operation" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"job list {path}: the first row must name the columns, among them 'operation'")
        rows = []
        for row in reader:
            clean = {str(k).strip(): _cell(v) for k, v in row.items() if k is not None}
            if any(v is not None for v in clean.values()):
                rows.append(clean)
        return rows


def _rows_from_json(path: str) -> List[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except ValueError as exc:
        raise InputError(f"job list {path} is not valid JSON ({exc})") from exc
    defaults: Dict[str, Any] = {}
    if isinstance(data, dict):
        defaults, data = data.get("defaults") or {}, data.get("jobs")
    if not isinstance(data, list) or not all(isinstance(j, dict) for j in data):
        raise InputError(f"job list {path}: expected a list of jobs (objects), or {{\"jobs\": [...]}}")
    rows = []
    for job in data:
        operation = job.get("operation")
        merged = {k: v for k, v in defaults.items() if not isinstance(v, dict)}
        if isinstance(defaults.get(operation), dict):
            merged.update(defaults[operation])
        merged.update(job)
        rows.append({k: _cell(v) for k, v in merged.items()})
    return rows


def read_rows(path: str) -> List[Dict[str, Any]]:
    """The raw rows of the job list ``path`` (CSV or JSON, by its extension or first character)."""
    if not os.path.isfile(path):
        raise InputError(f"job list {path}: file not found")
    with open(path, encoding="utf-8-sig") as handle:
        start = handle.read(256).lstrip()[:1]
    is_json = path.lower().endswith(".json") or start in ("[", "{")
    return _rows_from_json(path) if is_json else _rows_from_csv(path)


def make_job(row: Mapping[str, Any], number: int, base: str) -> Job:
    """The :class:`Job` of one row (``number`` counts from 1) with paths made absolute from ``base``."""
    operation = str(row.get("operation") or "").strip().lower()
    job_id = str(row.get("id") or f"{operation or 'job'}-{number}")
    where = f"job {job_id} (row {number})"
    if operation not in OPERATIONS:
        raise InputError(f"{where}: operation {operation or '(none)'!r} is not one of {', '.join(OPERATIONS)}")
    spec = OPERATIONS[operation]
    given = {k: v for k, v in row.items() if k not in ("id", "operation") and v is not None}
    params = spec.normalise(given, base, where)
    inputs, outputs, folders = spec.files(params)
    return Job(job_id, operation, params, tuple(inputs), tuple(outputs), tuple(folders), number)


def check_jobs(jobs: Sequence[Job]) -> None:
    """:class:`InputError` for repeated ids, an output written by two jobs, or a job overwriting its input."""
    seen: Dict[str, Job] = {}
    for job in jobs:
        if job.id in seen:
            raise InputError(f"job id {job.id!r} is used by rows {seen[job.id].row} and {job.row}: give each job its "
                             "own id")
        seen[job.id] = job
    written: List[Tuple[str, Job]] = []
    for job in jobs:
        for out in job.outputs + job.folders:
            for src in job.inputs:
                if same_file(out, src):
                    raise InputError(f"job {job.id}: the output {out} is its input; TopoClear never overwrites its "
                                     "inputs")
            for other, owner in written:
                if same_file(out, other) or os.path.abspath(out) == os.path.abspath(other):
                    raise InputError(f"jobs {owner.id} and {job.id} both write {out}: give each job its own outputs")
            written.append((out, job))


def load_jobs(path: str, only: Optional[Sequence[str]] = None) -> List[Job]:
    """The checked jobs of the job list ``path`` (``only``: just these ids, in file order)."""
    base = os.path.dirname(os.path.abspath(path))
    rows = read_rows(path)
    if not rows:
        raise InputError(f"job list {path} holds no job")
    jobs = [make_job(row, i + 1, base) for i, row in enumerate(rows)]
    check_jobs(jobs)
    if only:
        unknown = sorted(set(only) - {j.id for j in jobs})
        if unknown:
            raise InputError(f"no job with id {', '.join(unknown)} in {path}")
        jobs = [j for j in jobs if j.id in set(only)]
    return jobs


@dataclass
class JobResult:
    """What became of one job: ``status`` ``"done"``, ``"skipped"`` (done by an earlier run) or ``"failed"``."""

    id: str
    operation: str
    status: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    error: str = ""
    outputs: List[str] = field(default_factory=list)
    worker: str = ""
    peak_rss_mib: float = 0.0
    threads: int = 0
    notes: List[str] = field(default_factory=list)

    #: Columns of the summary table.
    FIELDS = ("id", "operation", "status", "seconds", "cpu_seconds", "worker", "peak_rss_mib", "threads", "outputs",
              "error")

    def row(self) -> Dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "status": self.status, "seconds": round(self.seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3),
                "worker": self.worker, "peak_rss_mib": round(self.peak_rss_mib, 1), "threads": self.threads,
                "outputs": ";".join(self.outputs), "error": self.error}
