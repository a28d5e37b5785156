"""Which optional Python packages TopoClear needs, which this Python can import, and how pip installs them.

This module imports no ``qgis`` at module level (``tr`` imports Qt lazily and falls back to the plain
text), so it also works from plain Python. The Qt side (the pip process and the dialog) lives in
:mod:`topoclear.ui.dependencies_dialog`.

* **Pins.** The versions come from the plugin's ``requirements.txt`` (read at run time, the one place
  for them); :data:`FEATURE_PACKAGES` only says which packages each feature needs.
* **Status.** :func:`check_features` reports, per package, the version this Python would import
  (``importlib.util.find_spec``, then the ``*.dist-info`` of the copy found, via ``importlib.metadata``)
  and whether it matches the pin.
* **Folder.** Packages go into ``<profile>/python/topoclear-packages`` (:func:`packages_folder`);
  :func:`activate_packages_folder` puts that folder on ``sys.path`` before site-packages, so the pinned
  versions installed there win over other copies in site-packages, while the standard library and
  ``PYTHONPATH`` entries still come first.
* **pip.** :func:`find_python` finds the interpreter QGIS runs (inside QGIS ``sys.executable`` is the
  QGIS binary); :func:`pip_command` builds ``python -m pip install --target <folder> ...``.
* **Device.** :func:`device_report` says which device PyTorch would use, why not the GPU, and which
  ONNX Runtime providers exist.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "FEATURE_PACKAGES", "FOLDER_NAME", "TORCH_CPU_INDEX", "PYPI_INDEX", "Pin", "Feature", "PackageStatus",
    "FeatureStatus", "DependencyError", "tr", "requirements_file", "read_pins", "features", "package_status",
    "check_features", "requirements_to_install", "packages_folder", "activate_packages_folder",
    "record_python", "folder_python", "python_candidates", "find_python", "numpy_constraints",
    "write_constraints", "pip_command", "pip_environment", "pip_stage", "explain_pip_failure",
    "nvidia_gpus", "device_report",
]

#: Feature key -> (title, distribution names as spelled in requirements.txt). The versions live there.
FEATURE_PACKAGES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "cloud_removal": ("Cloud removal (PyTorch)", ("torch", "safetensors")),
    "cloud_detector": ("Cloud and shadow detector (ONNX Runtime)", ("onnxruntime", "ukis-csmask")),
    "batch": ("Batch runs on a cluster (Dask)", ("dask", "distributed")),
}

#: Import name of a distribution, where it differs from the distribution name with "-" -> "_".
IMPORT_NAMES: Dict[str, str] = {}

#: Name of the folder under ``<profile>/python`` that holds the installed packages.
FOLDER_NAME = "topoclear-packages"
#: Marker in that folder: the ``major.minor`` of the Python the packages were installed for.
PYTHON_MARKER = ".topoclear-python"
CONSTRAINTS_NAME = ".topoclear-constraints.txt"

#: The CPU-only PyTorch wheels; PyPI stays reachable for the other packages.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"

_PLUGIN_ROOT = Path(__file__).resolve().parents[1]


class DependencyError(RuntimeError):
    """A clear, user-facing problem (no requirements file, no usable Python, ...)."""


# -- translation --------------------------------------------------------------------------------------------

_TRANSLATE: Optional[Callable[[str, str], str]] = None


def tr(text: str) -> str:
    """``QCoreApplication.translate("TopoClear", text)`` when Qt is importable, else ``text``."""
    global _TRANSLATE
    if _TRANSLATE is None:
        try:
            from qgis.PyQt.QtCore import QCoreApplication

            _TRANSLATE = QCoreApplication.translate
        except ImportError:
            _TRANSLATE = lambda _context, message: message  # noqa: E731
    return _TRANSLATE("TopoClear", text)


# -- pins ---------------------------------------------------------------------------------------------------

def _normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` -> ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One requirement line: ``name`` as written, ``specifier`` such as ``==2.13.0`` (may be empty)."""

    name: str
    specifier: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.specifier}"

    @property
    def import_name(self) -> str:
        return IMPORT_NAMES.get(_normalise(self.name), _normalise(self.name).replace("-", "_"))

    def satisfied_by(self, version: Optional[str]) -> bool:
        return version is not None and _satisfies(version, self.specifier)


def _release(version: str) -> Tuple[int, ...]:
    """The numeric release of a version, local label (``+cpu``) dropped: ``2.13.0+cpu`` -> (2, 13, 0)."""
    parts = []
    for piece in version.split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _satisfies(version: str, specifier: str) -> bool:
    if not specifier.strip():
        return True
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # plain "==X.Y.Z" pins without the packaging library
        pins = [s.strip() for s in specifier.split(",")]
        return all(p.startswith("==") and _release(version) == _release(p[2:]) for p in pins)
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


_REQUIREMENT = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def requirements_file() -> Path:
    """The plugin's ``requirements.txt`` (beside ``metadata.txt``)."""
    return _PLUGIN_ROOT / "requirements.txt"


def read_pins(path: Optional[os.PathLike] = None) -> Dict[str, Pin]:
    """The requirements of ``path`` (default :func:`requirements_file`), keyed by normalised name.

    Comments, blank lines and option lines (``-r``, ``--index-url`` ...) are skipped; environment
    markers are dropped."""
    path = Path(path) if path is not None else requirements_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DependencyError(tr("Cannot read the package versions from {path}: {error}").format(
            path=path, error=exc)) from exc
    pins: Dict[str, Pin] = {}
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, _extras, spec = match.group(1), match.group(2), match.group(3).replace(" ", "")
        pins[_normalise(name)] = Pin(name, spec)
    return pins


@dataclass(frozen=True)
class Feature:
    key: str
    title: str
    pins: Tuple[Pin, ...]


def features(path: Optional[os.PathLike] = None, keys: Optional[Iterable[str]] = None) -> List[Feature]:
    """The features of :data:`FEATURE_PACKAGES` (or those of ``keys``) with their pins from ``path``."""
    pins = read_pins(path)
    result = []
    for key in (keys if keys is not None else FEATURE_PACKAGES):
        title, names = FEATURE_PACKAGES[key]
        missing = [n for n in names if _normalise(n) not in pins]
        if missing:
            raise DependencyError(tr("{path} pins no version of: {names}").format(
                path=path or requirements_file(), names=", ".join(missing)))
        result.append(Feature(key, title, tuple(pins[_normalise(n)] for n in names)))
    return result


# -- status -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageStatus:
    """What this Python would import for ``pin``. ``version`` is None when it is not importable
    (or importable without metadata: ``location`` set, ``version`` None)."""

    pin: Pin
    version: Optional[str]
    location: Optional[str]  # the sys.path entry it comes from
    in_folder: bool  # it comes from the TopoClear packages folder
    loaded_location: Optional[str] = None  # the sys.path entry of the copy already imported, if any

    @property
    def importable(self) -> bool:
        return self.location is not None

    @property
    def loaded(self) -> bool:
        """Already imported in this process."""
        return self.loaded_location is not None

    @property
    def needs_restart(self) -> bool:
        """The copy already imported is not the one found now: QGIS must restart to use the new one."""
        return (self.loaded_location is not None and self.location is not None
                and not _same_path(self.loaded_location, self.location))

    @property
    def ok(self) -> bool:
        return self.importable and self.pin.satisfied_by(self.version)


@dataclass(frozen=True)
class FeatureStatus:
    feature: Feature
    packages: Tuple[PackageStatus, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.packages)

    @property
    def missing(self) -> List[PackageStatus]:
        """The packages not importable or at another version than pinned."""
        return [p for p in self.packages if not p.ok]


def _same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _entry_of(spec, import_name: str) -> Optional[str]:
    """The ``sys.path`` entry a top-level module was found in (the folder above the package)."""
    if spec is None:
        return None
    if spec.submodule_search_locations:
        locations = list(spec.submodule_search_locations)
        if locations:
            return os.path.dirname(os.path.abspath(locations[0]))
    if spec.origin and os.path.isabs(spec.origin):
        return os.path.dirname(os.path.abspath(spec.origin))
    return None


def _version_in(entry: str, name: str) -> Optional[str]:
    """The version of distribution ``name`` whose metadata lies directly in ``entry``."""
    wanted = _normalise(name)
    try:
        for dist in importlib.metadata.distributions(name=name, path=[entry]):
            return dist.version
        for dist in importlib.metadata.distributions(path=[entry]):  # older Pythons match names less loosely
            if _normalise(dist.metadata["Name"] or "") == wanted:
                return dist.version
    except Exception:  # noqa: BLE001 (broken metadata of an unrelated package must not stop the check)
        return None
    return None


def package_status(pin: Pin, folder: Optional[os.PathLike] = None) -> PackageStatus:
    """Where ``pin``'s package would be imported from, and its version.

    Without ``folder`` this is what ``import`` does now (``importlib.util.find_spec``, which also sees
    what is already imported). With ``folder``, that folder is searched first, as after
    :func:`activate_packages_folder` and a restart of QGIS."""
    name = pin.import_name
    spec = None
    if folder is not None and os.path.isdir(folder):
        spec = importlib.machinery.PathFinder.find_spec(name, [os.fspath(folder)])
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None or has no __spec__
            spec = None
    entry = _entry_of(spec, name)
    version = _version_in(entry, pin.name) if entry else None
    if entry is not None and version is None and name in sys.modules:
        version = getattr(sys.modules[name], "__version__", None)
    in_folder = bool(entry and folder is not None and _same_path(entry, os.fspath(folder)))
    loaded = None
    module = sys.modules.get(name)
    if module is not None:
        loaded = _entry_of(getattr(module, "__spec__", None), name) or entry
    return PackageStatus(pin, version, entry, in_folder, loaded)


def check_features(feature_list: Optional[Sequence[Feature]] = None,
                   folder: Optional[os.PathLike] = None) -> List[FeatureStatus]:
    """The status of every package of every feature (default: all :func:`features`)."""
    importlib.invalidate_caches()
    feature_list = features() if feature_list is None else feature_list
    return [FeatureStatus(f, tuple(package_status(p, folder) for p in f.pins)) for f in feature_list]


def requirements_to_install(statuses: Iterable[FeatureStatus], reinstall: bool = False) -> List[str]:
    """The pip requirements that bring ``statuses`` up to their pins: only the packages that are missing
    or at another version (pip with ``--target`` would otherwise download the others again), or all
    of them with ``reinstall``. No duplicates, in feature order."""
    result: List[str] = []
    for status in statuses:
        for package in status.packages:
            if (reinstall or not package.ok) and package.pin.requirement not in result:
                result.append(package.pin.requirement)
    return result


# -- the packages folder ------------------------------------------------------------------------------------

def packages_folder(settings_dir: os.PathLike) -> Path:
    """``<settings_dir>/python/topoclear-packages``; ``settings_dir`` is
    ``QgsApplication.qgisSettingsDirPath()`` (the active profile) inside QGIS."""
    return Path(settings_dir) / "python" / FOLDER_NAME


def _python_tag() -> str:
    return "%d.%d" % sys.version_info[:2]


def record_python(folder: os.PathLike) -> None:
    """Write the marker saying the folder's packages are for this Python's ``major.minor``."""
    Path(folder, PYTHON_MARKER).write_text(_python_tag() + "\n", encoding="utf-8")


def folder_python(folder: os.PathLike) -> Optional[str]:
    """The ``major.minor`` the folder's packages were installed for (None: no marker)."""
    try:
        return Path(folder, PYTHON_MARKER).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _site_dirs() -> List[str]:
    dirs = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # some embedded or old virtualenv site modules lack it
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    for key in ("purelib", "platlib"):
        try:
            dirs.append(sysconfig.get_paths()[key])
        except KeyError:
            pass
    return dirs


def _is_site_dir(entry: str, site_dirs: Sequence[str]) -> bool:
    if not entry:
        return False
    if os.path.basename(os.path.normpath(entry)).lower() in ("site-packages", "dist-packages"):
        return True
    return any(_same_path(entry, d) for d in site_dirs)


def activate_packages_folder(folder: os.PathLike) -> bool:
    """Put ``folder`` on ``sys.path`` just before the first site-packages (or dist-packages) entry, so
    it comes after QGIS's own Python folders, ``PYTHONPATH`` and the standard library, and before
    the packages installed elsewhere. Appended when no site-packages entry exists.

    Idempotent: a folder already on ``sys.path`` stays where it is. The folder need not exist yet
    (packages installed later become importable without calling this again). Returns False, leaving
    ``sys.path`` alone, when the folder's marker says its packages were installed for another Python
    (``major.minor``), whose compiled modules this one cannot load."""
    folder = os.path.abspath(os.fspath(folder))
    recorded = folder_python(folder)
    if recorded is not None and recorded != _python_tag():
        warnings.warn(f"TopoClear: {folder} holds packages for Python {recorded}, this is Python "
                      f"{_python_tag()}; not using them (install the packages again)", RuntimeWarning)
        return False
    sys.path_importer_cache.pop(folder, None)  # a cached "no finder" from before the folder existed
    if not any(_same_path(entry, folder) for entry in sys.path if entry):
        site_dirs = _site_dirs()
        index = next((i for i, entry in enumerate(sys.path) if _is_site_dir(entry, site_dirs)), len(sys.path))
        sys.path.insert(index, folder)
    importlib.invalidate_caches()
    return True


# -- the interpreter ----------------------------------------------------------------------------------------

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
        if candidate and os.path.isfile(candidate) and not any(_same_path(candidate, f) for f in found):
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
                             "tried: {tried}").format(version=_python_tag(), executable=executable or sys.executable,
                                                      tried="; ".join(tried) or tr("nothing")))


# -- the pip command ----------------------------------------------------------------------------------------

def numpy_constraints() -> List[str]:
    """``["numpy<2"]`` when this Python's numpy is 1.x (GDAL's and rasterio's compiled bindings from a
    Linux distribution or OSGeo4W are built against numpy 1.x); empty otherwise."""
    pin = Pin("numpy")
    status = package_status(pin)
    if status.version and _release(status.version)[:1] == (1,):
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
    has_torch = any(_normalise(re.split(r"[<>=!~;\[ ]", r, 1)[0]) == "torch" for r in requirements)
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


# -- devices ------------------------------------------------------------------------------------------------

def nvidia_gpus(nvidia_smi: str = "nvidia-smi", timeout: float = 15.0) -> List[str]:
    """The GPUs ``nvidia-smi -L`` lists (``"GPU 0: NVIDIA ..."``, UUIDs dropped); empty when it is not
    installed or fails (no driver)."""
    program = shutil.which(nvidia_smi)
    if program is None:
        return []
    try:
        result = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [re.sub(r"\s*\(UUID:.*\)\s*$", "", line).strip() for line in result.stdout.splitlines()
            if line.strip().startswith("GPU")]


def _torch_lines(gpus: List[str]) -> List[str]:
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        line = tr("PyTorch is not installed: cloud removal is unavailable (install it with TopoClear's "
                  "Dependencies dialog).")
        if gpus:
            line += " " + tr("An NVIDIA GPU is present ({gpu}): choose the CUDA build to use it.").format(gpu=gpus[0])
        return [line]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch

            available = bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 (a broken install must be reported, not raised)
        return [tr("PyTorch is installed but does not import ({error}): cloud removal will fail; install it "
                   "again.").format(error=f"{type(exc).__name__}: {exc}")]
    version = getattr(torch, "__version__", "?")
    hip = getattr(torch.version, "hip", None)
    cuda = getattr(torch.version, "cuda", None) or (f"ROCm {hip}" if hip else None)
    if available:
        name = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
        line = tr("PyTorch {version} will use the GPU cuda:0 ({name}, {memory:.0f} GiB; CUDA {cuda}).").format(
            version=version, name=name, memory=memory, cuda=cuda)
        count = torch.cuda.device_count()
        if count > 1:
            line += " " + tr("{count} GPUs are visible; the first is used.").format(count=count)
        return [line]
    line = tr("PyTorch {version} will run on the CPU").format(version=version)
    if cuda is None:
        if gpus:
            return [line + ": " + tr("this is a CPU-only build of PyTorch, but nvidia-smi finds a GPU ({gpu}). "
                                     "Install the CUDA build to use it.").format(gpu=gpus[0])]
        return [line + " " + tr("(CPU-only build of PyTorch; no NVIDIA GPU found).")]
    reason = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    if gpus:
        why = tr("this is a CUDA {cuda} build and nvidia-smi finds a GPU ({gpu}), but torch.cuda.is_available() "
                 "is False: the NVIDIA driver may be too old for CUDA {cuda}, or CUDA_VISIBLE_DEVICES hides the "
                 "GPU").format(cuda=cuda, gpu=gpus[0])
    else:
        why = tr("this is a CUDA {cuda} build, but torch.cuda.is_available() is False and nvidia-smi finds no "
                 "GPU (no NVIDIA GPU or no driver)").format(cuda=cuda)
    return [line + ": " + why + (f" ({reason})." if reason else ".")]


def _onnx_lines(gpus: List[str]) -> List[str]:
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return [tr("ONNX Runtime is not installed: the cloud and shadow detector is unavailable.")]
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # noqa: BLE001
        return [tr("ONNX Runtime does not import ({error}).").format(error=f"{type(exc).__name__}: {exc}")]
    line = tr("ONNX Runtime {version} providers: {providers}.").format(
        version=getattr(onnxruntime, "__version__", "?"), providers=", ".join(providers) or tr("none"))
    if gpus and "CUDAExecutionProvider" not in providers:
        line += " " + tr("The GPU is not used by the cloud detector: the CUDA provider comes with the "
                         "onnxruntime-gpu package instead of onnxruntime.")
    return [line]


def device_report(nvidia_smi: str = "nvidia-smi") -> str:
    """Which device PyTorch would use (the engine's ``"auto"``: the first CUDA GPU, else the CPU) and, when
    a GPU exists but is not used, why; then the ONNX Runtime providers. Imports torch and onnxruntime
    when installed (a second or two the first time). ``nvidia_smi``: the program that lists GPUs."""
    gpus = nvidia_gpus(nvidia_smi)
    return "\n".join(_torch_lines(gpus) + _onnx_lines(gpus))
