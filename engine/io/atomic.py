"""Atomic outputs: written beside the target under a temporary name, moved into place on success.

:func:`atomic_output` for any file, :class:`AtomicRasterWriter` for GeoTIFFs.

A failure or a cancel while writing leaves no partial file and any existing file untouched. Files
made by :func:`tempfile.mkstemp` are private (mode 0600); :func:`publish` gives them the mode a
plain ``open(path, "w")`` would (0666 less the umask) before the move.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import rasterio

from ..errors import OutputError
from .raster import DEFAULT_CREATION_OPTIONS, Grid


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


def check_writable(path: os.PathLike | str) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output {path}: folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, expected a file name ending in .tif")
    return path


class AtomicRasterWriter:
    """Write a GeoTIFF to a temporary file beside ``path`` and move it into place on success.

    Use as a context manager: if the block raises (error or cancel), the temporary file is deleted
    and any existing file at ``path`` is left untouched.
    """

    def __init__(self, path: os.PathLike | str, grid: Grid, count: int, dtype: str,
                 nodata: Optional[float] = None, descriptions: Optional[Sequence[str]] = None,
                 creation_options: Optional[Dict[str, str]] = None, driver: str = "GTiff") -> None:
        self.path = check_writable(path)
        self.grid = grid
        self._profile = dict(driver=driver, width=grid.width, height=grid.height, count=count, dtype=dtype,
                             crs=grid.crs, transform=grid.transform, nodata=nodata)
        self._profile.update(DEFAULT_CREATION_OPTIONS if creation_options is None else creation_options)
        self._descriptions = list(descriptions or [])
        self._tmp: Optional[str] = None
        self.dataset: Optional[rasterio.io.DatasetWriter] = None

    def __enter__(self) -> rasterio.io.DatasetWriter:
        self._tmp = temporary_beside(self.path, ".partial.tif")
        try:
            self.dataset = rasterio.open(self._tmp, "w", **self._profile)
        except Exception as exc:  # rasterio raises several types for bad profiles or full disks
            self._discard()
            raise OutputError(f"cannot create output {self.path}: {exc}") from exc
        for i, text in enumerate(self._descriptions, start=1):
            self.dataset.set_band_description(i, text)
        return self.dataset

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.dataset is not None:
                self.dataset.close()
        finally:
            if exc_type is not None:
                self._discard()
                return False
        try:
            publish(self._tmp, self.path)
        except OSError as err:
            self._discard()
            raise OutputError(f"cannot move the finished output into place at {self.path}: {err}") from err
        return False

    def _discard(self) -> None:
        if self._tmp:
            discard(self._tmp)
