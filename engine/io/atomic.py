"""Atomic, verified outputs: written beside the target under a temporary name, checked, moved into place.

:func:`atomic_output` for any file, :class:`AtomicRasterWriter` for GeoTIFFs. The contract every
TopoClear output follows:

* an output that resolves to an input (after ``realpath``: links and ``./`` included) is refused
  before anything runs (:func:`refuse_inputs_as_outputs`);
* data goes to a hidden temporary file in the destination folder, named after the output and the
  writing process (``.<name>.<pid>.<random>.partial<ext>``), is flushed to disk (``fsync``),
  closed and read back (a raster: its block table, every block must hold data, and every band's
  last block; a file: its size) before it is renamed onto the output; a full disk, an I/O error or
  a cancel therefore never publishes a file;
* any failure removes the temporary file; temporary files left by earlier runs that were killed
  (their process is gone) are removed the next time the same output is written;
* the rasters of one run (an image and its companions) are published all or none
  (:func:`published_together`): one that cannot be written discards the others too;
* nothing is written anywhere but the output paths and their temporary files; names taken from
  inputs (scene names, sample ids) become file names only through :func:`contained_path`, which
  refuses any that would leave the output folder;
* a raster that cannot fit on the disk is refused before it is computed (:func:`check_free_space`);
* a folder of outputs (:func:`atomic_folder`) is built under a temporary name beside it and renamed
  into place when complete; an existing folder that is not empty is never replaced.

Files made by :func:`tempfile.mkstemp` are private (mode 0600); :func:`publish` gives them the
mode a plain ``open(path, "w")`` would (0666 less the umask) before the move.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

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
            stale = path.parent / name
            try:
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale)
                else:
                    os.remove(stale)
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
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return "the file system is read-only"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    text = str(exc)
    if _says_disk_full(exc):
        return "the disk is full"
    return getattr(exc, "strerror", None) or text


def _says_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk full" in text or "disk is full" in text


def _free_bytes(folder: os.PathLike | str) -> Optional[int]:
    try:
        return shutil.disk_usage(str(folder)).free
    except OSError:
        return None


def _size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TB"


def check_free_space(path: os.PathLike | str, needed: int) -> None:
    """Raise :class:`OutputError` when ``path``'s folder has less than ``needed`` bytes free."""
    free = _free_bytes(Path(path).parent)
    if free is not None and free < needed:
        raise OutputError(f"cannot write {path}: the disk is full ({_size_text(free)} free in {Path(path).parent}, "
                          f"about {_size_text(needed)} needed); nothing was written")


@contextmanager
def atomic_output(path: os.PathLike | str, suffix: str = ".partial") -> Iterator[str]:
    """Yield a temporary path to write; on normal exit it is checked (it exists and is not empty)
    and replaces ``path``; on any error it is removed and ``path`` is left as it was."""
    tmp = temporary_beside(path, suffix)
    try:
        yield tmp
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise OutputError(f"cannot write {path}: nothing was written ({_reason_of_empty(path)})")
        publish(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}; nothing was written") from exc
    except OutputError:
        raise
    except Exception as exc:  # writers of other libraries (safetensors, torch) report a full disk their way
        if _says_disk_full(exc):
            raise OutputError(f"cannot write {path}: the disk is full; nothing was written") from exc
        raise
    finally:
        discard(tmp)


def _reason_of_empty(path: os.PathLike | str) -> str:
    free = _free_bytes(Path(path).parent)
    return "the disk is full" if free is not None and free < 65536 else "the writer produced no data"


def write_text_atomic(path: os.PathLike | str, text: str) -> None:
    """Write a text file (UTF-8) atomically; the file is read back before it is published."""
    data = text.encode("utf-8")
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
        if os.path.getsize(tmp) != len(data):
            raise OutputError(f"cannot write {path}: only {os.path.getsize(tmp)} of {len(data)} bytes were "
                              "written (the disk is full); nothing was written")


def check_writable(path: os.PathLike | str) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output {path}: folder {folder} is not writable ({why_not_writable(folder)})")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, expected a file name")
    return path


def why_not_writable(folder: os.PathLike | str) -> str:
    """Why a folder cannot be written: a read-only file system, or permissions."""
    try:
        st = os.statvfs(str(folder))
        if st.f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def contained_path(folder: os.PathLike | str, name: str, role: str = "name") -> Path:
    """``folder / name`` for a ``name`` taken from an input (a scene name, a sample id); raises
    :class:`InputError` for a name that is empty, absolute, holds a path separator or ``..``, or would
    otherwise resolve outside ``folder``."""
    text = str(name)
    if not text or text in (".", "..") or os.path.isabs(text) or "/" in text or "\\" in text or "\0" in text \
            or text.startswith(".."):
        raise InputError(f"{role} {text!r} cannot be used as a file name inside {folder}: names must not be empty, "
                         "absolute, or hold '/', '\\' or '..'; rename it (letters, digits, '-', '_', '.')")
    target = Path(folder) / text
    root = os.path.realpath(str(folder))
    if not os.path.realpath(str(target)).startswith(root.rstrip(os.sep) + os.sep):
        raise InputError(f"{role} {text!r} would write outside {folder}: rename it")
    return target


@contextmanager
def atomic_folder(path: os.PathLike | str, replace_empty: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on normal exit it is renamed onto ``path``, on
    any error it is removed with everything in it. An existing ``path`` must be an empty folder
    (``replace_empty``) or absent: a folder holding files is never replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is a file, expected a folder")
    if path.is_dir() and (not replace_empty or any(path.iterdir())):
        raise OutputError(f"output folder {path} already holds files: choose an empty or a new folder "
                          "(TopoClear never replaces a folder's contents)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {path}: folder {parent} is not writable ({why_not_writable(parent)})")
    remove_stale_temporaries(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=str(parent)))
    except OSError as exc:
        raise OutputError(f"output folder {path}: cannot create a folder in {parent} ({_reason(exc)})") from exc
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.is_dir():
            os.rmdir(path)  # empty (checked above); a file appearing meanwhile makes this fail
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write the output folder {path}: {_reason(exc)}; nothing was written") from exc
    except OutputError:
        raise
    except Exception as exc:
        if _says_disk_full(exc):
            raise OutputError(f"cannot write the output folder {path}: the disk is full; nothing was written") \
                from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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


def verify_raster(path: os.PathLike | str, grid: Grid, count: int,
                  output: Optional[os.PathLike | str] = None) -> None:
    """Re-open a finished raster (``path``, written for ``output``) and read every band's last block:
    :class:`OutputError` if it is not complete (a full disk truncates files without failing the writes)."""
    shown = output or path
    try:
        with rasterio.open(str(path)) as ds:
            if (ds.width, ds.height, ds.count) != (grid.width, grid.height, count):
                raise OutputError(f"cannot write {shown}: {ds.width}x{ds.height}x{ds.count} written, "
                                  f"{grid.width}x{grid.height}x{count} expected; nothing was written")
            missing = unwritten_block(ds)
            if missing:
                raise OSError(f"{missing} (a write failed without an error)")
            block_h, block_w = ds.block_shapes[0]
            row0 = max(0, ds.height - block_h)
            col0 = max(0, ds.width - block_w)
            for band in range(1, ds.count + 1):
                ds.read(band, window=Window(col0, row0, ds.width - col0, ds.height - row0))
    except OutputError:
        raise
    except Exception as exc:  # GDAL raises several types for truncated files
        free = _free_bytes(Path(str(path)).parent)
        if free is not None and free < 1 << 20:
            why = f"the disk is full ({_size_text(free)} free in {Path(str(shown)).parent})"
        else:
            why = "the written file could not be read back complete"
        raise OutputError(f"cannot write {shown}: {why}; nothing was written (GDAL: {exc})") from exc


def unwritten_block(ds: rasterio.io.DatasetReader) -> Optional[str]:
    """The first block of a GeoTIFF that holds no data in the file (its offset or size is 0, or it lies
    past the end of the file), or None. GDAL reads such blocks as zeros: a write that failed on a full
    disk without raising leaves them, and only the file's block table shows it."""
    if ds.driver != "GTiff":
        return None
    size = os.path.getsize(ds.name)
    block_h, block_w = ds.block_shapes[0]
    across, down = -(-ds.width // block_w), -(-ds.height // block_h)
    interleave = str(getattr(ds.interleaving, "name", ds.interleaving) or "").lower()
    bands = range(1, ds.count + 1) if interleave == "band" else (1,)
    for band in bands:
        for y in range(down):
            for x in range(across):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
                length = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
                if not offset or not length or int(offset) + int(length) > size:
                    return f"block {x},{y} of band {band} holds no data"
    return None


def raster_bytes(grid: Grid, count: int, dtype: str, options: Optional[Mapping[str, object]] = None) -> int:
    """Bytes an uncompressed GeoTIFF on ``grid`` takes (whole tiles, as GDAL writes them), or 0 when it
    is compressed (its size cannot be known beforehand)."""
    import numpy as np

    opts = {str(k).upper(): str(v).upper() for k, v in (options or {}).items()}
    if opts.get("COMPRESS", "NONE") != "NONE":
        return 0
    itemsize = np.dtype(dtype).itemsize
    if opts.get("TILED", "NO") in ("YES", "TRUE", "1"):
        bw, bh = int(opts.get("BLOCKXSIZE", 256)), int(opts.get("BLOCKYSIZE", 256))
        tiles = -(-grid.width // bw) * -(-grid.height // bh)
        return tiles * bw * bh * count * itemsize
    return grid.width * grid.height * count * itemsize


_ACTIVE: Dict[str, str] = {}  # real path -> what is being written there, by the writers open in this process
_ACTIVE_LOCK = threading.Lock()
_GROUP = threading.local()  # .pending: the verified writers of the innermost published_together() of a thread


@contextmanager
def published_together() -> Iterator[None]:
    """The rasters of one run published all or none: an :class:`AtomicRasterWriter` that completes inside
    the block (in the same thread) is verified but moved into place only when the whole block completes;
    when the block fails (another output of the run cannot be written, a cancel), the finished ones are
    discarded too, so a run never leaves part of its outputs behind."""
    outer = getattr(_GROUP, "pending", None)
    pending: List["AtomicRasterWriter"] = []
    _GROUP.pending = pending
    try:
        yield
    except BaseException:
        for writer in pending:
            writer._discard()
        raise
    finally:
        _GROUP.pending = outer
    if outer is not None:  # nested: the outermost block publishes
        outer.extend(pending)
        return
    published: List[Path] = []
    try:
        for writer in pending:
            publish(writer._tmp, writer.path)
            published.append(writer.path)
    except BaseException:
        for writer in pending[len(published):]:
            writer._discard()
        for path in published:
            discard(path)
        raise


class AtomicRasterWriter:
    """Write a GeoTIFF to a temporary file beside ``path``; on success verify it and move it into place.

    Use as a context manager: if the block raises (error or cancel), or the file cannot be closed,
    flushed or read back completely (a full disk), the temporary file is deleted, an
    :class:`OutputError` says why, and any existing file at ``path`` is left untouched. A raster that
    cannot fit in the free space is refused before anything is written, and two writers open at once
    in this process on one file (two products given one path) are refused (:class:`InputError`).
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

    def _what(self) -> str:
        return self._descriptions[0] if self._descriptions else "raster"

    def __enter__(self) -> rasterio.io.DatasetWriter:
        real = os.path.realpath(str(self.path))
        with _ACTIVE_LOCK:
            other = _ACTIVE.get(real)
            if other is not None:
                raise InputError(f"cannot write {self.path}: the {other} and the {self._what()} outputs are the same "
                                 "file; give each output its own file")
            _ACTIVE[real] = self._what()
        self._real = real
        try:
            return self._enter()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with _ACTIVE_LOCK:
            if _ACTIVE.get(getattr(self, "_real", None)) is not None:
                del _ACTIVE[self._real]

    def _enter(self) -> rasterio.io.DatasetWriter:
        needed = raster_bytes(self.grid, self.count, self._profile["dtype"], self._profile)
        if needed:
            check_free_space(self.path, needed)
        self._tmp = temporary_beside(self.path, ".partial.tif")
        try:
            self.dataset = rasterio.open(self._tmp, "w", **self._profile)
        except Exception as exc:  # rasterio raises several types for bad profiles or full disks
            self._discard()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}; nothing was written") from exc
        for i, text in enumerate(self._descriptions, start=1):
            self.dataset.set_band_description(i, text)
        return self.dataset

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return self._exit(exc_type, exc)
        finally:
            self._release()

    def _exit(self, exc_type, exc) -> bool:
        failed = exc_type is not None
        try:
            if self.dataset is not None:
                self.dataset.close()
        except Exception as err:  # closing flushes the last blocks: a full disk fails here
            self._discard()
            if failed:
                return False
            raise OutputError(f"cannot write {self.path}: {_reason(err)}; nothing was written") from err
        if failed:
            self._discard()
            if exc is not None and not isinstance(exc, (OutputError, InputError)) and _says_disk_full(exc):
                raise OutputError(f"cannot write {self.path}: the disk is full; nothing was written") from exc
            return False
        try:
            verify_raster(self._tmp, self.grid, self.count, self.path)
            group = getattr(_GROUP, "pending", None)
            if group is not None:  # published with the other outputs of the run (published_together)
                group.append(self)
                return False
            publish(self._tmp, self.path)
        except Exception:
            self._discard()
            raise
        return False

    def _discard(self) -> None:
        if self._tmp:
            discard(self._tmp)
