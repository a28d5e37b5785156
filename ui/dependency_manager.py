"""Which optional Python packages TopoClear needs, which this Python can import, and how pip installs them.

This module imports no ``qgis`` at module level (``tr``, from :mod:`topoclear.qgis_common.i18n`, imports Qt lazily and
falls back to the plain text), so it also works from plain Python. The Qt side (the pip process and the dialog) lives in
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
* **pip** (:mod:`.pip_install`): finding the interpreter QGIS runs and the ``pip install --target``
  command; **devices** (:mod:`.device_report`): which device PyTorch and ONNX Runtime would use.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import site
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# The plugin's one ``tr`` (Qt imported on first use; the plain text without Qt), re-exported for this package.
from ..qgis_common.i18n import tr

__all__ = [
    "FEATURE_PACKAGES", "FOLDER_NAME", "TORCH_CPU_INDEX", "PYPI_INDEX", "Pin", "Feature", "PackageStatus",
    "FeatureStatus", "DependencyError", "tr", "requirements_file", "read_pins", "features", "package_status",
    "check_features", "requirements_to_install", "packages_folder", "activate_packages_folder",
    "record_python", "folder_python",
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


# -- pins ---------------------------------------------------------------------------------------------------

def normalise_name(name: str) -> str:
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
        return IMPORT_NAMES.get(normalise_name(self.name), normalise_name(self.name).replace("-", "_"))

    def satisfied_by(self, version: Optional[str]) -> bool:
        return version is not None and _satisfies(version, self.specifier)


def release_numbers(version: str) -> Tuple[int, ...]:
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
        return all(p.startswith("==") and release_numbers(version) == release_numbers(p[2:]) for p in pins)
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
        pins[normalise_name(name)] = Pin(name, spec)
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
        missing = [n for n in names if normalise_name(n) not in pins]
        if missing:
            raise DependencyError(tr("{path} pins no version of: {names}").format(
                path=path or requirements_file(), names=", ".join(missing)))
        result.append(Feature(key, title, tuple(pins[normalise_name(n)] for n in names)))
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
                and not same_path(self.loaded_location, self.location))

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


def same_path(a: str, b: str) -> bool:
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
    wanted = normalise_name(name)
    try:
        for dist in importlib.metadata.distributions(name=name, path=[entry]):
            return dist.version
        for dist in importlib.metadata.distributions(path=[entry]):  # older Pythons match names less loosely
            if normalise_name(dist.metadata["Name"] or "") == wanted:
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
    in_folder = bool(entry and folder is not None and same_path(entry, os.fspath(folder)))
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


def python_tag() -> str:
    return "%d.%d" % sys.version_info[:2]


def record_python(folder: os.PathLike) -> None:
    """Write the marker saying the folder's packages are for this Python's ``major.minor``."""
    Path(folder, PYTHON_MARKER).write_text(python_tag() + "\n", encoding="utf-8")


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
    return any(same_path(entry, d) for d in site_dirs)


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
    if recorded is not None and recorded != python_tag():
        warnings.warn(f"TopoClear: {folder} holds packages for Python {recorded}, this is Python "
                      f"{python_tag()}; not using them (install the packages again)", RuntimeWarning)
        return False
    sys.path_importer_cache.pop(folder, None)  # a cached "no finder" from before the folder existed
    if not any(same_path(entry, folder) for entry in sys.path if entry):
        site_dirs = _site_dirs()
        index = next((i for i, entry in enumerate(sys.path) if _is_site_dir(entry, site_dirs)), len(sys.path))
        sys.path.insert(index, folder)
    importlib.invalidate_caches()
    return True
