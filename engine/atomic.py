"""Atomic file outputs: write beside the target under a temporary name, move into place on success.

A failure or a cancel while writing leaves no partial file and any existing file untouched. Files
made by :func:`tempfile.mkstemp` are private (mode 0600); :func:`publish` gives them the mode a
plain ``open(path, "w")`` would (0666 less the umask) before the move.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: os.PathLike | str, suffix: str = ".partial") -> str:
    """Create an empty temporary file in ``path``'s folder (a hidden name derived from it)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"output {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"output {path}: folder {path.parent} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    return tmp


def publish(tmp: os.PathLike | str, path: os.PathLike | str) -> None:
    """Give ``tmp`` the usual file mode and move it onto ``path`` (atomic on one file system)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def discard(tmp: os.PathLike | str) -> None:
    """Remove a temporary output and the side-car GDAL may have written beside it."""
    for name in (str(tmp), f"{tmp}.aux.xml"):
        if os.path.exists(name):
            os.remove(name)


@contextmanager
def atomic_output(path: os.PathLike | str, suffix: str = ".partial") -> Iterator[str]:
    """Yield a temporary path to write; on normal exit it replaces ``path``, on error it is removed."""
    tmp = temporary_beside(path, suffix)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        discard(tmp)


def write_text_atomic(path: os.PathLike | str, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
