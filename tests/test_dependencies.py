"""Installing TopoClear's optional packages: pins from requirements.txt, status, the packages folder,
the interpreter finder, pip through the plugin's QProcess (from a wheel built here, offline), the
dialog and the device report. Everything is installed into scratch folders, never into the profile."""
from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from pathlib import Path

import pytest

from conftest import REPO_ROOT, wait_for

from topoclear.ui import dependency_manager as dm
from topoclear.ui import device_report, pip_install

TINY = "topoclear-tinydep"
TINY_MODULE = "topoclear_tinydep"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    """A folder holding ``topoclear_tinydep-0.1.0-py3-none-any.whl``, built here with setuptools."""
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("tinydep")
    project = root / "project"
    (project / TINY_MODULE).mkdir(parents=True)
    (project / TINY_MODULE / "__init__.py").write_text('__version__ = "0.1.0"\nANSWER = 42\n')
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{TINY}"
        version = "0.1.0"

        [tool.setuptools]
        packages = ["{TINY_MODULE}"]
        """))
    wheels = root / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--disable-pip-version-check", "-w", str(wheels), str(project)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(wheels.glob("topoclear_tinydep-0.1.0-*.whl"))
    return wheels


@pytest.fixture()
def clean_path():
    """Restore ``sys.path`` and forget the tiny package after the test."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved
    for name in [n for n in sys.modules if n == TINY_MODULE or n.startswith(TINY_MODULE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def offline(wheels: Path):
    return ["--no-index", "--find-links", str(wheels)]


def tiny_feature(version: str = "0.1.0") -> dm.Feature:
    return dm.Feature("tiny", "Tiny test feature", (dm.Pin(TINY, f"=={version}"),))


# -- pins -----------------------------------------------------------------------------------------------------

def test_pins_are_read_from_requirements_txt():
    pins = {f.key: [p.requirement for p in f.pins] for f in dm.features()}
    assert pins == {"cloud_removal": ["torch==2.13.0", "safetensors==0.4.5"],
                    "cloud_detector": ["onnxruntime==1.32.0", "ukis-csmask==1.0.0"],
                    "batch": ["dask==2026.8.0", "distributed==2026.8.0"]}
    assert dm.requirements_file() == REPO_ROOT / "requirements.txt"


def test_pins_follow_the_file(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n--extra-index-url https://example.org/simple\n\nTorch == 9.9.1  # inline\n"
                    "safetensors>=0.5 ; python_version >= '3.9'\nonnxruntime==2.0\nukis_csmask==3.0\n"
                    "dask[distributed]==2030.1.0\ndistributed==2030.1.0\n")
    by_key = {f.key: f for f in dm.features(path)}
    assert [p.requirement for p in by_key["cloud_removal"].pins] == ["Torch==9.9.1", "safetensors>=0.5"]
    assert [p.import_name for p in by_key["cloud_detector"].pins] == ["onnxruntime", "ukis_csmask"]
    assert by_key["batch"].pins[0].requirement == "dask==2030.1.0"
    path.write_text("torch==1.0\n")
    with pytest.raises(dm.DependencyError, match="safetensors"):
        dm.features(path)


def test_version_matching_ignores_the_local_label():
    pin = dm.Pin("torch", "==2.13.0")
    assert pin.satisfied_by("2.13.0+cpu") and pin.satisfied_by("2.13")
    assert not pin.satisfied_by("2.12.1") and not pin.satisfied_by(None)


def test_status_reports_importable_and_missing():
    pytest_version = importlib.metadata.version("pytest")
    feature = dm.Feature("demo", "Demo", (dm.Pin("pytest", f"=={pytest_version}"), dm.Pin("pytest", "==0.0.1"),
                                          dm.Pin("topoclear-no-such-package", "==1.0")))
    [status] = dm.check_features([feature])
    present, old, absent = status.packages
    assert present.ok and present.version == pytest_version and present.loaded and not present.needs_restart
    assert old.importable and not old.ok
    assert not absent.importable and absent.version is None and not absent.ok
    assert not status.ok and [p.pin.specifier for p in status.missing] == ["==0.0.1", "==1.0"]
    assert dm.requirements_to_install([status]) == ["pytest==0.0.1", "topoclear-no-such-package==1.0"]
    assert len(dm.requirements_to_install([status], reinstall=True)) == 3


# -- interpreter ---------------------------------------------------------------------------------------------

def _fake_qgis_bin(tmp_path: Path) -> Path:
    """A folder like QGIS's ``bin``: the QGIS program (not a Python) and a ``python3`` beside it."""
    bin_dir = tmp_path / "qgis" / "bin"
    bin_dir.mkdir(parents=True)
    qgis = bin_dir / "qgis"
    qgis.write_text("#!/bin/sh\nexit 1\n")
    qgis.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks and scripts")
def test_finder_uses_the_python_beside_the_qgis_binary(tmp_path):
    bin_dir = _fake_qgis_bin(tmp_path)
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    empty = tmp_path / "empty"
    empty.mkdir()
    found = pip_install.find_python(executable=str(bin_dir / "qgis"), base_executable="", exec_prefix=str(empty),
                           path=str(empty))
    assert found == str(bin_dir / "python3")
    # a plain Python is used as it is
    assert pip_install.python_candidates(executable=sys.executable)[0] == os.path.abspath(sys.executable)


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks and scripts")
def test_finder_skips_another_python_and_falls_back_to_path(tmp_path):
    bin_dir = _fake_qgis_bin(tmp_path)
    other = bin_dir / "python3"
    other.write_text("#!/bin/sh\necho '2.7 1'\n")  # answers like a Python 2.7
    other.chmod(other.stat().st_mode | stat.S_IEXEC)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    empty = tmp_path / "empty"
    empty.mkdir()
    found = pip_install.find_python(executable=str(bin_dir / "qgis"), base_executable="", exec_prefix=str(empty),
                           path=str(real_dir))
    assert found == str(real_dir / "python3")
    with pytest.raises(dm.DependencyError, match="Python 2.7"):
        pip_install.find_python(executable=str(bin_dir / "qgis"), base_executable="", exec_prefix=str(empty), path=str(empty))


def test_finder_in_this_process_finds_this_python():
    found = pip_install.find_python()
    out = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert out.stdout.strip() == str(sys.version_info[:2])


# -- pip command -----------------------------------------------------------------------------------------------

def test_pip_command_chooses_the_torch_build(tmp_path):
    cpu = pip_install.pip_command("python", tmp_path, ["torch==2.13.0", "safetensors==0.4.5"], "cpu", tmp_path / "c.txt")
    assert cpu[:6] == ["python", "-m", "pip", "install", "--target", str(tmp_path)]
    assert "--upgrade-strategy" in cpu and cpu[cpu.index("--upgrade-strategy") + 1] == "only-if-needed"
    assert cpu[cpu.index("--index-url") + 1] == dm.TORCH_CPU_INDEX
    assert cpu[cpu.index("--extra-index-url") + 1] == dm.PYPI_INDEX
    assert cpu[cpu.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert cpu[-2:] == ["torch==2.13.0", "safetensors==0.4.5"]
    cuda = pip_install.pip_command("python", tmp_path, ["torch==2.13.0"], "cuda")
    assert "--index-url" not in cuda and "--constraint" not in cuda
    assert "--index-url" not in pip_install.pip_command("python", tmp_path, ["dask==2026.8.0"], "cpu")
    with pytest.raises(ValueError):
        pip_install.pip_command("python", tmp_path, ["torch"], "rocm")


def test_numpy_stays_below_2(tmp_path):
    numpy_version = dm.package_status(dm.Pin("numpy")).version
    if numpy_version and numpy_version.startswith("1."):
        assert pip_install.numpy_constraints() == ["numpy<2"]
        path = pip_install.write_constraints(tmp_path / "pk", pip_install.numpy_constraints())
        assert path.read_text() == "numpy<2\n"
    assert pip_install.write_constraints(tmp_path / "none", []) is None


def test_pip_failures_are_explained():
    assert "pip" in pip_install.explain_pip_failure(1, "/usr/bin/python3: No module named pip")
    assert "pinned version" in pip_install.explain_pip_failure(1, "ERROR: No matching distribution found for x==9")
    assert "exit code 3" in pip_install.explain_pip_failure(3, "something else")


# -- the packages folder -----------------------------------------------------------------------------------------

def test_activate_places_the_folder_before_site_packages(tmp_path, clean_path):
    folder = tmp_path / "topoclear-packages"  # need not exist yet
    assert dm.activate_packages_folder(folder)
    assert dm.activate_packages_folder(folder)
    entries = [os.path.abspath(p) for p in sys.path if p]
    assert entries.count(str(folder)) == 1
    index = entries.index(str(folder))
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"])
    if stdlib in entries:
        assert entries.index(stdlib) < index
    site_indices = [i for i, p in enumerate(entries) if os.path.basename(p) in ("site-packages", "dist-packages")]
    if site_indices:
        assert index < min(site_indices)


def test_activate_refuses_packages_of_another_python(tmp_path, clean_path):
    folder = tmp_path / "pk"
    folder.mkdir()
    (folder / dm.PYTHON_MARKER).write_text("2.7\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not dm.activate_packages_folder(folder)
    assert str(folder) not in sys.path and caught
    dm.record_python(folder)
    assert dm.folder_python(folder) == "%d.%d" % sys.version_info[:2]
    assert dm.activate_packages_folder(folder)


def test_default_folder_is_in_the_profile(qgis_app):
    from qgis.core import QgsApplication

    from topoclear.ui.dependencies_dialog import default_packages_folder

    folder = default_packages_folder()
    assert folder == Path(QgsApplication.qgisSettingsDirPath()) / "python" / "topoclear-packages"


# -- installing through the plugin's pip process ---------------------------------------------------------------

def _run_pip(command):
    from topoclear.ui.dependencies_dialog import PipProcess

    process = PipProcess()
    lines, stages = [], []
    process.lineReceived.connect(lines.append)
    process.stageChanged.connect(stages.append)
    process.start(command)
    code, cancelled = wait_for(process.finished, timeout_ms=120_000)
    return code, cancelled, lines, stages


def test_pip_installs_a_wheel_into_the_folder(qgis_app, tmp_path, wheel_dir, clean_path):
    folder = tmp_path / "topoclear-packages"
    pin = dm.Pin(TINY, "==0.1.0")
    assert not dm.package_status(pin, folder).importable
    constraints = pip_install.write_constraints(folder, pip_install.numpy_constraints())
    command = pip_install.pip_command(pip_install.find_python(), folder, [pin.requirement], "cpu", constraints, offline(wheel_dir))
    code, cancelled, lines, stages = _run_pip(command)
    assert (code, cancelled) == (0, False), "\n".join(lines)
    assert any(line.startswith("Successfully installed") for line in lines)
    assert any(s.startswith("Installed") for s in stages)
    assert (folder / TINY_MODULE / "__init__.py").is_file()
    assert list(folder.glob("topoclear_tinydep-0.1.0.dist-info"))

    status = dm.package_status(pin, folder)  # seen in the folder before activation
    assert status.ok and status.in_folder and status.version == "0.1.0" and not status.loaded
    with pytest.raises(ImportError):
        importlib.import_module(TINY_MODULE)
    assert dm.activate_packages_folder(folder)
    module = importlib.import_module(TINY_MODULE)
    assert module.ANSWER == 42 and Path(module.__file__).parent.parent == folder
    after = dm.package_status(pin)  # plain import lookup now finds it
    assert after.ok and after.location == str(folder) and after.loaded


def test_pip_process_cancel(qgis_app):
    from qgis.PyQt.QtCore import QTimer

    from topoclear.ui.dependencies_dialog import PipProcess

    process = PipProcess()
    lines = []
    process.lineReceived.connect(lines.append)
    process.lineReceived.connect(lambda line: line == "waiting" and QTimer.singleShot(0, process.cancel))
    process.start([sys.executable, "-c", "print('waiting', flush=True); import time; time.sleep(60)"])
    code, cancelled = wait_for(process.finished, timeout_ms=30_000)
    assert cancelled and code == -1 and "waiting" in lines and not process.is_running()


# -- the dialog ----------------------------------------------------------------------------------------------

def _dialog(**kwargs):
    from topoclear.ui.dependencies_dialog import DependenciesDialog

    return DependenciesDialog(**kwargs)


def _assert_rows_do_not_overlap(dialog):
    layout = dialog.layout()
    rects = [layout.itemAt(i).geometry() for i in range(layout.count())]
    for above, below in zip(rects, rects[1:]):
        assert above.bottom() < below.top(), (above, below)
    assert rects[-1].bottom() < dialog.height()


def test_dialog_lists_the_features_and_fits_640_px(qgis_app, tmp_path, clean_path):
    from qgis.core import QgsApplication

    dialog = _dialog(folder=tmp_path / "pk")
    try:
        assert dialog.tree.topLevelItemCount() == 3
        titles = [dialog.tree.topLevelItem(i).text(0) for i in range(3)]
        assert titles == [title for title, _ in dm.FEATURE_PACKAGES.values()]
        for i in range(3):
            item = dialog.tree.topLevelItem(i)
            assert item.text(1).startswith(("installed", "missing", "other version"))
            assert item.childCount() == 2 and all(item.child(j).text(1) for j in range(2))
        torch_row = dialog.tree.topLevelItem(0).child(0)
        assert torch_row.text(0) == "torch==2.13.0"
        assert dialog.python and dialog.install_button.text() == "Install" and dialog.close_button.text() == "Close"
        assert dialog.minimumSizeHint().width() <= 640 and dialog.sizeHint().height() <= 800
        dialog.resize(640, 600)
        dialog.show()
        for _ in range(5):
            QgsApplication.processEvents()
        assert dialog.width() <= 640
        assert not dialog.tree.horizontalScrollBar().isVisible()
        assert dialog.tree.horizontalScrollBar().maximum() == 0
        assert not dialog.log_box.horizontalScrollBar().isVisible()
        assert dialog.folder_edit.isReadOnly()
        _assert_rows_do_not_overlap(dialog)
        dialog.resize(640, dialog.minimumSizeHint().height())  # the smallest it can be made
        for _ in range(5):
            QgsApplication.processEvents()
        _assert_rows_do_not_overlap(dialog)
        assert not dialog.tree.horizontalScrollBar().isVisible()
    finally:
        dialog.close()
        dialog.deleteLater()
    assert not (tmp_path / "pk").exists()  # only an install creates the folder


def test_dialog_installs_a_feature_and_rechecks(qgis_app, tmp_path, wheel_dir, clean_path):
    from qgis.PyQt.QtCore import Qt

    folder = tmp_path / "topoclear-packages"
    dialog = _dialog(folder=folder, feature_list=[tiny_feature()], pip_options=offline(wheel_dir))
    try:
        item = dialog.tree.topLevelItem(0)
        assert item.text(1) == f"missing: {TINY}" and item.child(0).text(1) == "missing"
        assert item.checkState(0) == Qt.Checked and dialog.install_button.isEnabled()
        assert dialog.planned_requirements() == [f"{TINY}==0.1.0"]
        dialog.install_button.click()
        assert dialog.pip.is_running() and dialog.cancel_button.isEnabled() and not dialog.install_button.isEnabled()
        ok, message = wait_for(dialog.installFinished, timeout_ms=120_000)
        assert ok, dialog.log_box.toPlainText()
        assert f"{TINY} 0.1.0" in message
        log = dialog.log_box.toPlainText()
        assert "--target" in log and "Successfully installed" in log
        item = dialog.tree.topLevelItem(0)
        assert item.text(1) == "installed" and item.child(0).text(1) == "installed 0.1.0"
        assert item.checkState(0) == Qt.Unchecked and not dialog.cancel_button.isEnabled()
        assert dm.folder_python(folder) == "%d.%d" % sys.version_info[:2]
        assert importlib.import_module(TINY_MODULE).ANSWER == 42  # the dialog activated the folder
    finally:
        dialog.close()
        dialog.deleteLater()


def test_dialog_reports_a_failed_install(qgis_app, tmp_path, wheel_dir, clean_path):
    dialog = _dialog(folder=tmp_path / "pk", feature_list=[tiny_feature("9.9")], pip_options=offline(wheel_dir))
    try:
        dialog.install()
        ok, message = wait_for(dialog.installFinished, timeout_ms=120_000)
        assert not ok and "pinned version" in message
        assert "No matching distribution" in dialog.log_box.toPlainText()
        assert dialog.tree.topLevelItem(0).text(1).startswith("missing")
        assert dialog.install_button.isEnabled()
    finally:
        dialog.close()
        dialog.deleteLater()


# -- devices ---------------------------------------------------------------------------------------------------

def _torch_state():
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_device_report_on_this_machine():
    torch = _torch_state()
    report = device_report.device_report()
    lines = report.splitlines()
    assert len(lines) == 2 and "ONNX Runtime" in lines[1]
    if torch is None:
        assert "not installed" in lines[0]
    elif torch.cuda.is_available():
        assert "GPU cuda:0" in lines[0]
    else:
        assert "will run on the CPU" in lines[0]


@pytest.mark.skipif(os.name == "nt", reason="POSIX script")
def test_device_report_explains_an_unused_gpu(tmp_path):
    torch = _torch_state()
    if torch is None or torch.cuda.is_available():
        pytest.skip("needs an importable torch without a usable GPU")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA Test GPU (UUID: GPU-0000)'\n")
    fake.chmod(0o755)
    assert device_report.nvidia_gpus(str(fake)) == ["GPU 0: NVIDIA Test GPU"]
    assert device_report.nvidia_gpus(str(tmp_path / "absent")) == []
    report = device_report.device_report(nvidia_smi=str(fake))
    first = report.splitlines()[0]
    assert "CPU" in first and "GPU 0: NVIDIA Test GPU" in first
    if torch.version.cuda is None:
        assert "CPU-only build" in first
    else:
        assert "torch.cuda.is_available() is False" in first
    try:
        import onnxruntime
    except ImportError:
        return
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu" in report
