"""Shared tools of the fault battery: runs that must fail, file-tree snapshots, broken inputs, small
and read-only file systems.

Every fault test follows one pattern: the inputs are copied into the test's own folder, the whole
folder is snapshotted (every file's SHA-256, every folder, hidden names included), the run is made
through a public way in (``processing.run``, ``qgis_process`` or an engine entry point), and then:

* the error text names what it must (the parameter, the file, the value, what was expected) and is
  a message, not a Python traceback;
* the folder is exactly as before: the inputs' bytes are unchanged, nothing was left in the output
  folder and nothing appeared anywhere else in it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterable, Optional

import pytest
from qgis.core import QgsProcessingFeedback

#: Texts a user must never see in an error: Python internals, or QGIS's message without a reason.
NOT_A_MESSAGE = ("Traceback (most recent call last)", "There were errors executing the algorithm",
                 "Unexpected error", 'File "/')


class Feedback(QgsProcessingFeedback):
    """A ``QgsProcessingFeedback`` that keeps what the algorithm reported."""

    def __init__(self):
        super().__init__()
        self.errors, self.infos = [], []

    def reportError(self, text, fatalError=False):  # noqa: N802,N803 (QGIS API names)
        self.errors.append(text)

    def pushInfo(self, text):  # noqa: N802
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.infos.append(text)

    @property
    def text(self):
        return "\n".join(self.errors + self.infos)


def check_message(text: str, *patterns: str) -> str:
    """Assert ``text`` is a user message (no traceback) matching every regular expression in ``patterns``
    (case-insensitive, ``.`` matching newlines)."""
    for bad in NOT_A_MESSAGE:
        assert bad not in text, f"not a user message ({bad!r} in it):\n{text}"
    for pattern in patterns:
        assert re.search(pattern, text, re.IGNORECASE | re.DOTALL), \
            f"the error does not say {pattern!r}:\n{text}"
    return text


def fails(run_alg, alg: str, *patterns: str, **params) -> str:
    """Run ``topoclear:<alg>`` and require a ``QgsProcessingException`` whose text matches ``patterns``;
    nothing the algorithm reported may hold a traceback. Returns the error text."""
    from qgis.core import QgsProcessingException

    feedback = Feedback()
    with pytest.raises(QgsProcessingException) as info:
        run_alg(f"topoclear:{alg}", feedback=feedback, **params)
    text = str(info.value)
    assert "Traceback (most recent call last)" not in feedback.text, feedback.text
    return check_message(text, *patterns)


def succeeds(run_alg, alg: str, **params) -> dict:
    """Run ``topoclear:<alg>``; its results (the run must not fail)."""
    return run_alg(f"topoclear:{alg}", feedback=Feedback(), **params)


# ------------------------------------------------------------------------------------------------
# snapshots
# ------------------------------------------------------------------------------------------------

def sha256(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: os.PathLike | str, skip: Iterable[os.PathLike | str] = ()) -> Dict[str, str]:
    """Every entry under ``root`` (hidden ones included): relative path -> file hash, ``<dir>`` or
    ``<link>``; entries under ``skip`` are left out (the filler of a full disk)."""
    root = Path(root)
    skipped = {os.path.realpath(p) for p in skip}
    tree: Dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs):
            path = Path(folder) / name
            if os.path.realpath(path) not in skipped:
                tree[str(path.relative_to(root)) + "/"] = "<link>" if path.is_symlink() else "<dir>"
        dirs[:] = [d for d in dirs if os.path.realpath(Path(folder) / d) not in skipped]
        for name in files:
            path = Path(folder) / name
            if os.path.realpath(path) in skipped:
                continue
            tree[str(path.relative_to(root))] = "<link>" if path.is_symlink() else sha256(path)
    return tree


def is_qgis_statistics(path: os.PathLike | str) -> bool:
    """Whether a ``.aux.xml`` side-car holds nothing but band statistics (GDAL's PAM ``STATISTICS_*``)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    keys = re.findall(r'<MDI key="([^"]+)">', text)
    return text.lstrip().startswith("<PAMDataset>") and bool(keys) and all(k.startswith("STATISTICS_") for k in keys)


def assert_unchanged(root: os.PathLike | str, before: Dict[str, str], skip: Iterable = (),
                     qgis_statistics: bool = True) -> None:
    """``root`` holds exactly what it held in ``before``, byte for byte.

    With ``qgis_statistics`` (the default) one kind of new file is allowed: ``<input>.aux.xml`` beside an
    input, holding only approximate band statistics. QGIS writes it when Processing loads a raster
    parameter as a layer (its default renderer asks GDAL for statistics, which GDAL keeps in that
    side-car when the layer is released), for every algorithm, QGIS's native ones included, at a moment
    that depends on garbage collection."""
    after = snapshot(root, skip)
    if qgis_statistics:
        after = {k: v for k, v in after.items()
                 if not (k.endswith(".aux.xml") and k not in before and k[:-len(".aux.xml")] in before
                         and is_qgis_statistics(Path(root) / k))}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), (f"the run changed {root}: added {added}, removed {removed}, "
                                               f"changed {changed}")


class Watched:
    """A test folder watched around a run: ``with Watched(tmp_path): <run>`` asserts that nothing under
    it changed (inputs, outputs, anything else)."""

    def __init__(self, root: os.PathLike | str, skip: Iterable = (), qgis_statistics: bool = True) -> None:
        self.root, self.skip, self.qgis_statistics = Path(root), list(skip), qgis_statistics

    def __enter__(self):
        self.before = snapshot(self.root, self.skip)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            assert_unchanged(self.root, self.before, self.skip, self.qgis_statistics)
        return False


def partials(folder: os.PathLike | str) -> list:
    """Temporary files of TopoClear's atomic writer in ``folder`` (``.<name>.<pid>.<random>.partial*``)."""
    return sorted(n for n in os.listdir(folder) if ".partial" in n)


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------

def copy_in(src: os.PathLike | str, folder: os.PathLike | str, name: Optional[str] = None) -> str:
    """Copy a sample into the test's folder (so that its bytes and its neighbours are watched)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / (name or Path(src).name)
    shutil.copyfile(src, dst)
    return str(dst)


def truncated_copy(src: os.PathLike | str, dst: os.PathLike | str, keep: float = 0.5) -> str:
    """The first ``keep`` of ``src``'s bytes: a GeoTIFF whose header opens and whose data stops."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return str(dst)


def text_file(path: os.PathLike | str, text: str = "this is not a raster\n") -> str:
    Path(path).write_text(text)
    return str(path)


def dot_spelling(path: os.PathLike | str) -> str:
    """The same file spelled ``dir/./name``."""
    path = Path(path)
    return f"{path.parent}{os.sep}.{os.sep}{path.name}"


def write_raster(path, data, transform, crs="EPSG:32611", nodata=None, descriptions=None, dtype=None) -> str:
    import numpy as np
    import rasterio

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if dtype is not None:
        data = data.astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, text)
    return str(path)


# ------------------------------------------------------------------------------------------------
# small and read-only file systems
# ------------------------------------------------------------------------------------------------

def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _mount(target: Path, options: str) -> None:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {target}: {result.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=False, capture_output=True)


class SmallDisk:
    """A 2 MB tmpfs (root only); :meth:`fill` leaves only some bytes free."""

    SIZE = "2m"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> "SmallDisk":
        """Take all but ``leave`` bytes (rounded to pages) with one filler file."""
        size = max(0, self.free() - leave)
        with open(self.filler, "wb") as handle:
            handle.write(b"\0" * size)
        return self

    def contents(self) -> list:
        """What the runs left on the disk (the filler aside), hidden names included."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p != self.filler)


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MB file system at ``<tmp>/disk`` (``mount -t tmpfs -o size=2m``); unmounted afterwards.
    Skipped unless the tests run as root."""
    if not is_root():
        pytest.skip("the disk-full cases mount a 2 MB tmpfs, which needs root")
    target = tmp_path / "disk"
    target.mkdir()
    _mount(target, f"size={SmallDisk.SIZE}")
    try:
        yield SmallDisk(target)
    finally:
        _umount(target)


@pytest.fixture()
def readonly_dir(tmp_path):
    """A folder nothing can be written to: a read-only tmpfs when root (root ignores file modes), else a
    folder without write permission."""
    target = tmp_path / "readonly"
    target.mkdir()
    if is_root():
        _mount(target, "ro,size=1m")
        try:
            yield target
        finally:
            _umount(target)
    else:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)


def malloc_trim() -> None:
    """Give freed memory back to the system (between memory-hungry cases)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# runs in a child process (memory limits, kill -9)
# ------------------------------------------------------------------------------------------------

CHILD_PROCESSING = r'''
import json, os, sys, traceback
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingException
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
from topoclear.processing_provider.provider import TopoClearProvider
provider = TopoClearProvider()
QgsApplication.processingRegistry().addProvider(provider)
import processing
alg, params = sys.argv[1], json.loads(sys.argv[2])
try:
    results = processing.run(alg, params, context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
    print("RESULT " + json.dumps({"ok": True, "results": {k: str(v) for k, v in results.items()}}))
except QgsProcessingException as exc:
    print("RESULT " + json.dumps({"ok": False, "error": str(exc)}))
except BaseException as exc:
    print("RESULT " + json.dumps({"ok": False, "raw": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}))
sys.stdout.flush()
os._exit(0)
'''


def run_processing_child(alg: str, params: dict, memory_limit_gb: float = 8.0, timeout: int = 300) -> dict:
    """``processing.run(alg, params)`` in a child Python whose address space is limited to
    ``memory_limit_gb``: a run that tries a huge allocation fails there instead of taking the machine.
    Returns ``{"ok": ..., "error" / "results" / "raw": ...}``, or ``{"ok": False, "died": code, ...}``."""
    import json
    import resource
    import sys

    limit = int(memory_limit_gb * (1 << 30))

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run([sys.executable, "-c", CHILD_PROCESSING, alg, json.dumps(params)], capture_output=True,
                            text=True, timeout=timeout, preexec_fn=limited, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"ok": False, "died": result.returncode, "stderr": result.stderr[-3000:], "stdout": result.stdout[-2000:]}
