"""Folders a run creates, and their removal when the run leaves them empty (nothing left behind on failure)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

__all__ = ["make_folders", "remove_if_empty"]


def make_folders(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; the folders this created, outermost first. On an
    :class:`OSError` the folders already created are removed again before it propagates."""
    missing: List[Path] = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    missing.reverse()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_if_empty(missing)
        raise
    return missing


def remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (outermost first, as :func:`make_folders` gives them), innermost first, while they
    are empty."""
    for f in reversed(folders):
        try:
            f.rmdir()
        except OSError:
            break
