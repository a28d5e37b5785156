"""Atomic, verified outputs: written beside the target under a temporary name, checked, moved into place.

:func:`atomic_output` for any file, :class:`AtomicRasterWriter` for GeoTIFFs. The contract every
TopoClear output follows:

* an output that resolves to an input (after ``realpath``: links and ``./`` included) is refused
  before anything runs (:func:`refuse_inputs_as_outputs`);
* data goes to a hidden temporary file in the destination folder, named after the output and the
  writing process (``.<name>.<pid>.<random>.partial<ext>``), is flushed to disk (``fsync``),
  closed and read back (a raster: every band's last block; a file: its size) before it is renamed
  onto the output; a full disk, an I/O error or a cancel therefore never publishes a file;
* any failure removes the temporary file; temporary files left by earlier runs that were killed
  (their process is gone) are removed the next time the same output is written;
* nothing is written anywhere but the output paths and their temporary files.

Files made by :func:`tempfile.mkstemp` are private (mode 0600); :func:`publish` gives them the
mode a plain ``open(path, "w")`` would (0666 less the umask) before the move.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional, Sequence

import rasterio
from rasterio.windows import Window

from ..errors import InputError, OutputError
from .raster import DEFAULT_CREATION_OPTIONS, Grid

#: Extensions of the GeoTIFF outputs (the only raster format TopoClear writes).
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: os.PathLike | str) -> int:
    """Remove the temporary files of ``path`` left by runs whose process is gone (killed); their number."""
    path = Path(path)
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(\d+)\.[^.]+\.partial")
    removed = 0
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    for name in names:
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            try:
                os.remove(path.parent / name)
                removed += 1
            except OSError:
                pass
    return removed


def temporary_beside(path: os.PathLike | str, suffix: str = ".partial") -> str:
    """Create an empty temporary file in ``path``'s folder, named after it and this process."""
    path = Path(path)
    check_writable(path)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=str(path.parent))
    except OSError as exc:
        raise OutputError(f"output {path}: cannot create a file in {path.parent} ({exc.strerror})") from exc
    os.close(fd)
    return tmp


def publish(tmp: os.PathLike | str, path: os.PathLike | str) -> None:
    """Flush ``tmp`` to disk, give it the usual file mode and move it onto ``path`` (atomic on one file
    system)."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot move the finished output into place at {path}: {_reason(exc)}") from exc


def discard(tmp: os.PathLike | str) -> None:
    """Remove a temporary output and the side-car GDAL may have written beside it."""
    for name in (str(tmp), f"{tmp}.aux.xml"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    text = str(exc)
    if "No space left" in text:
        return "the disk is full"
    return getattr(exc, "strerror", None) or text


@contextmanager
def atomic_output(path: os.PathLike | str, suffix: str = ".partial") -> Iterator[str]:
    """Yield a temporary path to write; on normal exit it is checked (it exists and is not empty)
    and replaces ``path``; on any error it is removed and ``path`` is left as it was."""
    tmp = temporary_beside(path, suffix)
    try:
        yield tmp
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise OutputError(f"output {path}: nothing was written (the disk may be full)")
        publish(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from exc
    finally:
        discard(tmp)


def write_text_atomic(path: os.PathLike | str, text: str) -> None:
    """Write a text file (UTF-8) atomically; the file is read back before it is published."""
    data = text.encode("utf-8")
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
        if os.path.getsize(tmp) != len(data):
            raise OutputError(f"output {path}: only {os.path.getsize(tmp)} of {len(data)} bytes were written "
                              "(the disk may be full)")


def check_writable(path: os.PathLike | str) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output {path}: folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, expected a file name")
    return path


def same_file(a: os.PathLike | str, b: os.PathLike | str) -> bool:
    """Whether two paths name the same file (after ``realpath``; hard links included when both exist)."""
    ra, rb = os.path.realpath(str(a)), os.path.realpath(str(b))
    if ra == rb:
        return True
    try:
        return os.path.samefile(ra, rb)
    except OSError:
        return False


def refuse_inputs_as_outputs(outputs: Mapping[str, Optional[os.PathLike | str]],
                             inputs: Mapping[str, Optional[os.PathLike | str]]) -> None:
    """Raise :class:`InputError` when an output path resolves to an input file, or two outputs to one
    file (keys name the parameters, for the message); inputs inside an output folder count too."""
    outs = {k: str(v) for k, v in outputs.items() if v}
    ins = {k: str(v) for k, v in inputs.items() if v}
    for out_key, out in outs.items():
        for in_key, src in ins.items():
            if same_file(out, src):
                raise InputError(f"{out_key}: the output {out} is the input {in_key} ({src}); TopoClear never "
                                 "overwrites its inputs: choose another output file")
    keys = list(outs)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if same_file(outs[a], outs[b]):
                raise InputError(f"{a} and {b} are the same file ({outs[a]}): give each output its own file")


def check_geotiff_path(path: os.PathLike | str, role: str = "output") -> None:
    """Raise :class:`OutputError` unless ``path`` ends in .tif or .tiff (outputs are GeoTIFF)."""
    if not str(path).lower().endswith(GEOTIFF_SUFFIXES):
        raise OutputError(f"{role}: {path} is written as a GeoTIFF: give it a .tif or .tiff name")


def verify_raster(path: os.PathLike | str, grid: Grid, count: int) -> None:
    """Re-open a finished raster and read every band's last block: :class:`OutputError` if it is not
    complete (a full disk truncates files without failing the writes)."""
    try:
        with rasterio.open(str(path)) as ds:
            if (ds.width, ds.height, ds.count) != (grid.width, grid.height, count):
                raise OutputError(f"output {path}: {ds.width}x{ds.height}x{ds.count} written, "
                                  f"{grid.width}x{grid.height}x{count} expected")
            block_h, block_w = ds.block_shapes[0]
            row0 = max(0, ds.height - block_h)
            col0 = max(0, ds.width - block_w)
            for band in range(1, ds.count + 1):
                ds.read(band, window=Window(col0, row0, ds.width - col0, ds.height - row0))
    except OutputError:
        raise
    except Exception as exc:  # GDAL raises several types for truncated files
        raise OutputError(f"output {path} could not be read back after writing (the disk may be full): "
                          f"{exc}") from exc


class AtomicRasterWriter:
    """Write a GeoTIFF to a temporary file beside ``path``; on success verify it and move it into place.

    Use as a context manager: if the block raises (error or cancel), or the file cannot be closed,
    flushed or read back completely (a full disk), the temporary file is deleted, an
    :class:`OutputError` says why, and any existing file at ``path`` is left untouched.
    """

    def __init__(self, path: os.PathLike | str, grid: Grid, count: int, dtype: str,
                 nodata: Optional[float] = None, descriptions: Optional[Sequence[str]] = None,
                 creation_options: Optional[Dict[str, str]] = None, driver: str = "GTiff") -> None:
        if driver == "GTiff":
            check_geotiff_path(path)
        self.path = check_writable(path)
        self.grid = grid
        self.count = count
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
            raise OutputError(f"cannot create output {self.path}: {_reason(exc)}") from exc
        for i, text in enumerate(self._descriptions, start=1):
            self.dataset.set_band_description(i, text)
        return self.dataset

    def __exit__(self, exc_type, exc, tb) -> bool:
        failed = exc_type is not None
        try:
            if self.dataset is not None:
                self.dataset.close()
        except Exception as err:  # closing flushes the last blocks: a full disk fails here
            self._discard()
            if failed:
                return False
            raise OutputError(f"cannot finish output {self.path}: {_reason(err)}") from err
        if failed:
            self._discard()
            return False
        try:
            verify_raster(self._tmp, self.grid, self.count)
            publish(self._tmp, self.path)
        except Exception:
            self._discard()
            raise
        return False

    def _discard(self) -> None:
        if self._tmp:
            discard(self._tmp)
