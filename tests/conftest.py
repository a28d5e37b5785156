"""Shared test fixtures: where the real sample data lives, GPU detection, the cloud / shadow detector's
packages and reference patch, Processing feedback and weights of small models."""
from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TOPOCLEAR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path of a sample under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found: {path} (expected ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder not found: {SHARED_DATA}")
    return SHARED_DATA


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")


# -- the pretrained cloud / shadow detector (onnxruntime, ukis-csmask) ---------------------------------

#: The packages the detector imports.
DETECTOR_PACKAGES = ("onnxruntime", "ukis_csmask")
HAVE_DETECTOR = all(importlib.util.find_spec(m) is not None for m in DETECTOR_PACKAGES)


def detector_missing_reason() -> str:
    """Why a test of the detector is skipped where its packages are not installed."""
    from topoclear.engine.clouds.masks.detector import INSTALL_HINT

    return f"onnxruntime / ukis-csmask not installed ({INSTALL_HINT})"


def needs_detector(test):
    """Skips ``test`` where the detector's packages cannot be imported."""
    return pytest.mark.skipif(not HAVE_DETECTOR, reason=detector_missing_reason())(test)


@pytest.fixture()
def without_detector_packages(monkeypatch):
    """``importlib.util.find_spec`` finds neither onnxruntime nor ukis-csmask for the rest of the test."""
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name in DETECTOR_PACKAGES else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def reference_patch():
    """The ukis-csmask reference patch (``cloudmask-reference/ukis_sentinel2.npz``, 512 x 512 at about 30 m):
    (6, 512, 512) float32 reflectance (B2, B3, B4, B8, B11, B12) and its reference classes (0 clear, 1 cloud,
    2 shadow), mapped as the ukis-csmask tests map them: **0 -> shadow, 4 -> cloud**, 1-3 -> clear."""
    from topoclear.engine.clouds.masks.detector import CLEAR, CLOUD, SHADOW

    data = np.load(data_path("cloudmask-reference", "ukis_sentinel2.npz"))
    img = np.ascontiguousarray(np.moveaxis(data["img"], -1, 0).astype(np.float32))
    msk = data["msk"][..., 0]
    ref = np.full(msk.shape, CLEAR, np.uint8)
    ref[msk == 4] = CLOUD
    ref[msk == 0] = SHADOW
    return img, ref


def kappa(truth: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's kappa of two label arrays."""
    a, b = truth.ravel(), pred.ravel()
    po = float(np.mean(a == b))
    pe = sum(float(np.mean(a == k)) * float(np.mean(b == k)) for k in np.union1d(a, b))
    return (po - pe) / (1.0 - pe)


def mask_accuracy(ref: np.ndarray, pred: np.ndarray) -> dict:
    """Overall accuracy of the classes ``pred`` against ``ref``, and the accuracy and kappa of cloud and of
    shadow alone."""
    from topoclear.engine.clouds.masks.detector import CLOUD, SHADOW

    return {"oa": float(np.mean(pred == ref)),
            "oa_cloud": float(np.mean((ref == CLOUD) == (pred == CLOUD))),
            "k_cloud": kappa(ref == CLOUD, pred == CLOUD),
            "oa_shadow": float(np.mean((ref == SHADOW) == (pred == SHADOW))),
            "k_shadow": kappa(ref == SHADOW, pred == SHADOW)}


def stitch(windows, height: int, width: int) -> np.ndarray:
    """The classes of mask windows (``row0``, ``col0``, ``rows``, ``cols``, ``classes``) put together into one
    ``height`` x ``width`` scene; the windows must cover it."""
    out = np.full((height, width), 99, np.uint8)
    for w in windows:
        out[w.row0:w.row0 + w.rows, w.col0:w.col0 + w.cols] = w.classes
    assert (out != 99).all(), "windows must cover the scene"
    return out


# -- cloud removal through Processing ----------------------------------------------------------------

def model_index(key: str) -> int:
    """The MODEL value of the method ``key`` in removeclouds' menu (the menu follows the method catalogue's order)."""
    from topoclear.engine.clouds.methods.catalogue import removal_methods

    return [m.key for m in removal_methods()].index(key)


def save_weights(path, model, **options) -> str:
    """Save ``model`` (built with ``options``) as trained weights are saved (safetensors + model card); the
    weights' path."""
    from topoclear.engine import checkpoints

    model.build_options = options
    return str(checkpoints.save_model(path, model)[0])


def log_feedback():
    """A Processing feedback that keeps every info line in ``lines``."""
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, text):  # noqa: N802
            self.lines.append(text)

    return Feedback()


_LIVE_PROVIDERS = []  # Python wrappers must outlive their registration, or QGIS loses their methods


def ensure_provider():
    """The registered TopoClear provider, registering a new one if none is."""
    from qgis.core import QgsApplication

    from topoclear.processing_provider.provider import TopoClearProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("topoclear")
    if provider is None:
        provider = TopoClearProvider()
        _LIVE_PROVIDERS.append(provider)
        registry.addProvider(provider)
    return provider


@pytest.fixture()
def topoclear_provider(qgis_app, qgis_processing):
    """Processing initialised with the native algorithms and the TopoClear provider registered.

    Looked up afresh for every test (a test may unload and reload the plugin)."""
    return ensure_provider()


@pytest.fixture()
def run_alg(topoclear_provider):
    """``run_alg(alg_id, **params)``: ``processing.run`` with a fresh context; raises on failure."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def run(alg_id, feedback=None, **params):
        context = QgsProcessingContext()
        return processing.run(alg_id, params, context=context, feedback=feedback or QgsProcessingFeedback())

    return run


QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's /usr/bin/qgis_process wrapper is broken


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    """``qgis_process(*args)`` runs the command-line tool with TopoClear enabled in a scratch profile.

    Returns the CompletedProcess (text output). The plugin folder is linked into a scratch plugin
    path as ``topoclear``, exactly as a user would install it.
    """
    import subprocess
    import sysconfig

    if not os.path.exists(QGIS_PROCESS):
        pytest.skip(f"{QGIS_PROCESS} not installed")
    root = tmp_path_factory.mktemp("qgis_process")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "topoclear").symlink_to(REPO_ROOT, target_is_directory=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(plugins),
               QGIS_CUSTOM_CONFIG_PATH=str(root / "profile"),
               PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], os.environ.get("PYTHONPATH", "")]))

    def run(*args, check=True):
        result = subprocess.run([QGIS_PROCESS, *map(str, args)], env=env, capture_output=True, text=True,
                                timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"qgis_process {' '.join(map(str, args))} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    run("plugins", "enable", "topoclear")
    return run


def wait_for(signal, timeout_ms=180_000):
    """Spin an event loop until ``signal`` fires (a dock's ``runFinished``); returns its arguments."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    received = []
    loop = QEventLoop()

    def got(*args):
        received.append(args)
        loop.quit()

    signal.connect(got)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec_()
    signal.disconnect(got)
    for _ in range(5):
        QgsApplication.processEvents()
    assert received, "timed out waiting for the dock"
    return received[0]


def show_dock(qgis_iface, dock_class, width=430):
    """A generator for a dock fixture: the plugin's docks created, the one of ``dock_class`` shown on the right
    of a main window laid out as in QGIS (canvas in the centre), the others hidden; cleaned up afterwards."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import Qt

    from topoclear.ui.docks import create_docks

    docks = create_docks(qgis_iface)
    widget = next(d for d in docks if isinstance(d, dock_class))
    for other in docks:
        if other is not widget:
            other.hide()
    main = qgis_iface.mainWindow()
    canvas = qgis_iface.mapCanvas()
    old_size, old_central = canvas.size(), main.centralWidget()
    if old_central is None:
        main.setCentralWidget(canvas)
    main.addDockWidget(Qt.RightDockWidgetArea, widget)  # the test interface's addDockWidget is a stub
    main.resize(1280, 800)
    main.resizeDocks([widget], [width], Qt.Horizontal)
    main.show()
    yield widget
    QgsProject.instance().removeAllMapLayers()
    for dock in docks:
        main.removeDockWidget(dock)
        dock.deleteLater()
    # delete them now, as QGIS's event loop would: a test has no event loop, and a dock left alive would go on
    # answering the next tests' project signals
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QEvent

    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    if old_central is None:
        main.takeCentralWidget()
        canvas.setParent(main)
        canvas.resize(old_size)


def render_canvas(canvas):
    """Draw the canvas's layers now (for a screenshot or pixel checks)."""
    from qgis.core import QgsApplication

    canvas.refreshAllLayers()
    canvas.waitWhileRendering()
    for _ in range(10):
        QgsApplication.processEvents()
    canvas.waitWhileRendering()


@pytest.fixture(autouse=True)
def exceptions_in_qt_slots_fail_the_test():
    """An exception raised in a Qt slot or virtual method (a dock's handler, a task's callback) fails the test
    that caused it, as QGIS's own error handler would show it, instead of aborting the whole run (PyQt calls
    ``qFatal`` for such exceptions while ``sys.excepthook`` is Python's default)."""
    caught = []
    previous = sys.excepthook
    sys.excepthook = lambda *info: caught.append(info)
    yield
    sys.excepthook = previous
    if caught:
        pytest.fail("an exception was raised in a Qt slot:\n" + "".join(traceback.format_exception(*caught[0])))
