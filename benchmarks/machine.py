"""The machine a benchmark ran on, for its report."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """E.g. ``x86_64, 2 CPU(s), AMD EPYC 7B13``."""
    return f"{platform.machine()}, {os.cpu_count()} CPU(s), {cpu_model()}"
