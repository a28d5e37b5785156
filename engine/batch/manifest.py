"""Done markers: a job whose outputs all exist, read back, and come from the same job is not run again.

After a job succeeds, a small JSON side file is written atomically beside its first output,
``.<output name>.topoclear-job.json``, holding the job's hash (its operation and parameters, paths
absolute: :attr:`~.jobs.Job.key`), the size and modification time of every input and of every
file the job wrote, and when it finished. On a rerun a job is **done** when

* its marker exists, parses, and holds the same hash (any changed parameter reruns the job);
* every file the marker lists still exists with the recorded size and modification time, and
  opens: rasters through GDAL with their last block read (a truncated file is not done), other
  files read;
* every output the job declares is among them, and its inputs have the size and modification
  time recorded (an input replaced since reruns the job).

The marker is written only after the outputs (each written atomically by the engine), so a run
killed at any point leaves either no marker or a true one.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, Iterable, List, Optional, Tuple

from ..io.atomic import write_text_atomic
from .jobs import Job

MARKER_SUFFIX = ".topoclear-job.json"
#: Extensions read back through GDAL when checking a marker.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2")


def marker_path(job: Job) -> str:
    """Where the done marker of ``job`` lives: beside its first output (or in its first output folder)."""
    if job.outputs:
        first = job.outputs[0]
        return os.path.join(os.path.dirname(first), f".{os.path.basename(first)}{MARKER_SUFFIX}")
    return os.path.join(job.folders[0], f".{job.id}{MARKER_SUFFIX}")


def _stat(path: str) -> Optional[Dict[str, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def fingerprints(paths: Iterable[str]) -> Dict[str, Optional[Dict[str, int]]]:
    return {os.path.abspath(p): _stat(p) for p in paths}


def write_marker(job: Job, written: List[str], seconds: float) -> str:
    """Record that ``job`` wrote ``written`` (after its success); returns the marker's path."""
    path = marker_path(job)
    record = {"topoclear_job": 1, "id": job.id, "operation": job.operation, "hash": job.key,
              "params": job.params, "inputs": fingerprints(job.inputs),
              "outputs": fingerprints(sorted(set(written) | set(job.outputs))),
              "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    return path


def readable(path: str) -> bool:
    """Whether an output opens: a raster through GDAL with every band's last block read, another file read."""
    if path.lower().endswith(RASTER_SUFFIXES):
        try:
            from ..io.raster import open_raster

            with open_raster(path, "output"):
                return True
        except Exception:  # any reason it does not open means: not done
            return False
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False


def done_state(job: Job) -> Tuple[bool, str]:
    """(whether ``job`` is done, why or why not) from its marker (see the module docstring)."""
    path = marker_path(job)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return False, "no done marker"
    except (OSError, ValueError):
        return False, "the done marker cannot be read"
    if record.get("hash") != job.key:
        return False, "the job's parameters changed since it was done"
    outputs = record.get("outputs") or {}
    for out in job.outputs:
        if os.path.abspath(out) not in outputs:
            return False, f"{out} is not among the recorded outputs"
    for out, stat in outputs.items():
        if stat is None or _stat(out) != stat:
            return False, f"{out} is missing or changed since it was written"
        if not readable(out):
            return False, f"{out} cannot be read back"
    inputs = record.get("inputs") or {}
    for src in job.inputs:
        if _stat(src) != inputs.get(os.path.abspath(src)):
            return False, f"the input {src} changed since the job was done"
    return True, f"done by an earlier run ({record.get('finished', '?')})"


def remove_marker(job: Job) -> None:
    try:
        os.remove(marker_path(job))
    except OSError:
        pass
