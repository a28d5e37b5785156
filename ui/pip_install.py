"""Finding the Python that QGIS runs and building the pip command that installs TopoClear's packages into
the plugin's folder (:mod:`topoclear.ui.dependency_manager` knows which packages and where)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .dependency_manager import CONSTRAINTS_NAME, DependencyError, PYPI_INDEX, Pin, TORCH_CPU_INDEX, normalise_name, package_status, python_tag, release_numbers, same_path, tr


_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$", re.IGNORECASE)


def _looks_like_python(path: Optional[str]) -> bool:
    return bool(path) and bool(_PYTHON_NAME.match(os.path.basename(path)))


def _names(windows: bool) -> List[str]:
    major, minor = sys.version_info[:2]
    names = [f"python{major}.{minor}", f"python{major}", "python"]
    return [n + ".exe" for n in names] if windows else names


def python_candidates(executable: Optional[str] = None, base_executable: Optional[str] = None,
                      exec_prefix: Optional[str] = None, path: Optional[str] = None,
                      windows: Optional[bool] = None) -> List[str]:
    """Where the Python that runs QGIS may be, best first (each listed once, existing files only):

    1. ``executable`` (default ``sys.executable``) when it is a Python (plain Python, a venv);
    2. ``python3.X``, ``python3``, ``python`` beside ``executable`` (inside QGIS that is the QGIS binary:
       ``/usr/bin/qgis``, ``...\\QGIS 3.22\\bin\\qgis-bin.exe``, ``QGIS.app/Contents/MacOS/QGIS``);
    3. ``base_executable`` (default ``sys._base_executable``) when it is a Python;
    4. the same names in ``exec_prefix`` (default ``sys.exec_prefix``) and its ``bin``
       (Windows QGIS: ``apps\\Python39\\python.exe``; macOS: the framework's ``bin``);
    5. the same names on ``path`` (default ``PATH``).
    """
    windows = (os.name == "nt") if windows is None else windows
    executable = sys.executable if executable is None else executable
    base_executable = getattr(sys, "_base_executable", None) if base_executable is None else base_executable
    exec_prefix = sys.exec_prefix if exec_prefix is None else exec_prefix
    names = _names(windows)
    found: List[str] = []

    def add(candidate: Optional[str]) -> None:
        if candidate and os.path.isfile(candidate) and not any(same_path(candidate, f) for f in found):
            found.append(os.path.abspath(candidate))

    if _looks_like_python(executable):
        add(executable)
    for folder in [os.path.dirname(executable)] if executable else []:
        for name in names:
            add(os.path.join(folder, name))
    if _looks_like_python(base_executable):
        add(base_executable)
    for folder in [exec_prefix, os.path.join(exec_prefix, "bin")] if exec_prefix else []:
        for name in names:
            add(os.path.join(folder, name))
    for name in names:
        add(shutil.which(name, path=path))
    return found


def _interpreter_tag(python: str, timeout: float = 30.0) -> Optional[str]:
    try:
        result = subprocess.run([python, "-c", "import sys; print('%d.%d %d' % (sys.version_info[0], "
                                 "sys.version_info[1], sys.maxsize > 2**32))"],
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_python(executable: Optional[str] = None, base_executable: Optional[str] = None,
                exec_prefix: Optional[str] = None, path: Optional[str] = None) -> str:
    """The first of :func:`python_candidates` that runs and is the same Python as this process (same
    ``major.minor`` and word size, so that the wheels pip picks load here). Arguments as there.

    Raises :class:`DependencyError` listing what was tried when none is."""
    wanted = "%d.%d %d" % (sys.version_info[0], sys.version_info[1], sys.maxsize > 2 ** 32)
    tried = []
    for candidate in python_candidates(executable, base_executable, exec_prefix, path):
        tag = _interpreter_tag(candidate)
        if tag == wanted:
            return candidate
        tried.append(f"{candidate} ({'Python ' + tag.split()[0] if tag else 'does not run'})")
    raise DependencyError(tr("No Python {version} interpreter found to run pip (QGIS runs {executable}); "
                             "tried: {tried}").format(version=python_tag(), executable=executable or sys.executable,
                                                      tried="; ".join(tried) or tr("nothing")))


# -- the pip command ----------------------------------------------------------------------------------------

def numpy_constraints() -> List[str]:
    """``["numpy<2"]`` when this Python's numpy is 1.x (GDAL's and rasterio's compiled bindings from a
    Linux distribution or OSGeo4W are built against numpy 1.x); empty otherwise."""
    pin = Pin("numpy")
    status = package_status(pin)
    if status.version and release_numbers(status.version)[:1] == (1,):
        return ["numpy<2"]
    return []


def write_constraints(folder: os.PathLike, constraints: Sequence[str]) -> Optional[Path]:
    """Write ``constraints`` to ``<folder>/.topoclear-constraints.txt`` (creating the folder);
    None when there are none."""
    if not constraints:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder, CONSTRAINTS_NAME)
    path.write_text("\n".join(constraints) + "\n", encoding="utf-8")
    return path


def pip_command(python: str, folder: os.PathLike, requirements: Sequence[str], torch_build: str = "cpu",
                constraints_file: Optional[os.PathLike] = None, pip_options: Sequence[str] = ()) -> List[str]:
    """``python -m pip install --target <folder> --upgrade --upgrade-strategy only-if-needed ...``.

    ``--upgrade`` makes pip replace an older copy already in the folder (with ``--target`` pip otherwise
    keeps it and only warns). ``torch_build``: ``"cpu"`` adds the CPU-only PyTorch index (PyPI as extra
    index) when torch is among ``requirements``; ``"cuda"`` uses plain PyPI, whose Linux torch wheels
    are CUDA builds (PyPI's Windows and macOS torch wheels are CPU-only). ``pip_options`` go last
    (e.g. ``["--no-index", "--find-links", wheels]`` offline)."""
    if torch_build not in ("cpu", "cuda"):
        raise ValueError(f"torch_build must be 'cpu' or 'cuda', got {torch_build!r}")
    if not requirements:
        raise ValueError("nothing to install")
    command = [python, "-m", "pip", "install", "--target", os.fspath(folder), "--upgrade",
               "--upgrade-strategy", "only-if-needed", "--no-input", "--progress-bar", "off",
               "--disable-pip-version-check", "--no-warn-script-location"]
    if constraints_file is not None:
        command += ["--constraint", os.fspath(constraints_file)]
    has_torch = any(normalise_name(re.split(r"[<>=!~;\[ ]", r, 1)[0]) == "torch" for r in requirements)
    if has_torch and torch_build == "cpu":
        command += ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", PYPI_INDEX]
    command += list(pip_options)
    command += list(requirements)
    return command


def pip_environment(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of the pip process: this one (QGIS's, with its ``PYTHONHOME`` where it sets one),
    unbuffered UTF-8 output so the log streams."""
    env = dict(os.environ if base is None else base)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
    return env


def pip_stage(line: str) -> Optional[str]:
    """A short progress text for a line of pip's log (None: nothing new)."""
    text = line.strip()
    for prefix, message in (("Collecting ", tr("Resolving {what}")), ("Downloading ", tr("Downloading {what}")),
                            ("Processing ", tr("Unpacking {what}")),
                            ("Installing collected packages:", tr("Installing {what}")),
                            ("Successfully installed", tr("Installed {what}"))):
        if text.startswith(prefix):
            what = text[len(prefix):].strip()
            if prefix == "Downloading ":
                what = os.path.basename(what.split(" ")[0]) + (" " + what.split(" ", 1)[1] if " " in what else "")
            return message.format(what=what if len(what) < 90 else what[:87] + "...")
    return None


def explain_pip_failure(exit_code: int, log: str) -> str:
    """A sentence for a failed pip run: the likely cause found in ``log``, or the exit code."""
    checks = (
        (r"No module named pip", tr("This Python has no pip. On Debian or Ubuntu install it with "
                                    "'sudo apt install python3-pip'; then try again.")),
        (r"No space left on device", tr("The disk is full.")),
        (r"Permission denied|Access is denied", tr("Permission denied writing the packages folder.")),
        (r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
         r"Failed to establish a new connection|ProxyError|SSLError|ConnectTimeout|ReadTimeout",
         tr("pip could not reach the package index: check the network, the proxy (pip honours "
            "HTTPS_PROXY) or the certificates.")),
        (r"ResolutionImpossible|conflicting dependencies", tr("The pinned versions conflict with each other "
                                                              "or with the numpy<2 constraint.")),
        (r"Could not find a version that satisfies|No matching distribution found",
         tr("No package of the pinned version exists for this Python and platform (or the index is "
            "unreachable).")),
    )
    for pattern, message in checks:
        if re.search(pattern, log):
            return message
    return tr("pip failed (exit code {code}); see the log.").format(code=exit_code)


