"""A whole TopoClear desktop session in a real QGIS window (Xvfb, 1280x800), not a mocked interface.

The desktop QGIS is started under ``xvfb-run`` with a scratch profile in which TopoClear is enabled
(``QGIS_PLUGINPATH`` + ``[PythonPlugins] topoclear=true``) and ``--code tests/gui/session_driver.py``;
the driver clicks through the Processing dialogs, the docks, cancels and a graphical model, writes a
JSON result and exits QGIS. The tests below assert on that result, one check per test, with the
error texts the session recorded. Screenshots, the QGIS log, the JSON and ``findings.txt`` (every
check, pass or fail) go to ``test-artifacts/gui/``.

``TOPOCLEAR_GUI_QUICK=1`` runs each algorithm once (and each dock mode and the model once) on the
smallest inputs, for iteration; the full session runs each algorithm three times (a new dialog; the
same dialog again through *Change Parameters*; a reopened dialog) and takes a few minutes on two CPU
cores.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest

from conftest import REPO_ROOT, SHARED_DATA

pytestmark = [pytest.mark.gui, pytest.mark.slow]

QUICK = os.environ.get("TOPOCLEAR_GUI_QUICK", "").strip().lower() not in ("", "0", "false", "no")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "gui"
DRIVER = REPO_ROOT / "tests" / "gui" / "session_driver.py"
ALGORITHMS = ["slope", "aspect", "hillshade", "terrainstack", "ndsi", "snowmap", "snowstats", "builddataset",
              "trainmodel", "removeclouds", "evaluate"]
DOCKS = ["snow", "cloud"]
CANCELS = ["cloud_dock", "processing_dialog"]
TIMEOUT_S = int(os.environ.get("TOPOCLEAR_GUI_TIMEOUT", "900" if QUICK else "2700"))


def _missing_tools() -> str:
    missing = [name for name in ("qgis", "xvfb-run", "Xvfb") if shutil.which(name) is None]
    return ", ".join(missing)


def _plugin_path(root: Path) -> Path:
    """The folder that holds the ``topoclear`` plugin folder (the setup's build/plugins, else a new link)."""
    built = REPO_ROOT / "build" / "plugins"
    if (built / "topoclear" / "metadata.txt").exists():
        return built
    plugins = root / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "topoclear").symlink_to(REPO_ROOT, target_is_directory=True)
    return plugins


def _start_and_wait(cmd, env, log_path: Path, timeout: int) -> Tuple[int, float, bool]:
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)  # xvfb-run, Xvfb and QGIS: the group this test started
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    return rc, time.monotonic() - start, timed_out


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"the desktop session needs {missing} (apt install qgis xvfb xauth)")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder not found: {SHARED_DATA}")
    root = tmp_path_factory.mktemp("gui_session")
    profiles = root / "profiles"
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ntopoclear=true\n")
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    result_path = root / "session_result.json"
    config = {"data": str(SHARED_DATA), "out": str(result_path), "shots": str(ARTIFACTS),
              "scratch": str(root / "scratch"), "quick": QUICK, "timeout_s": TIMEOUT_S - 30}
    config_path = root / "config.json"
    config_path.write_text(json.dumps(config, indent=1))
    runtime = root / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, QGIS_PLUGINPATH=str(_plugin_path(root)), TOPOCLEAR_GUI_CONFIG=str(config_path),
               PYTHONPATH=os.pathsep.join(p for p in (sysconfig.get_paths()["purelib"],
                                                      os.environ.get("PYTHONPATH", "")) if p),
               GDAL_PAM_ENABLED="NO",  # no .aux.xml written beside the shared samples
               XDG_RUNTIME_DIR=str(runtime))
    env.pop("QT_QPA_PLATFORM", None)  # a real X window, not offscreen
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "qgis", "--nologo", "--noversioncheck",
           "--profiles-path", str(profiles), "--code", str(DRIVER)]
    rc, seconds, timed_out = _start_and_wait(cmd, env, ARTIFACTS / "qgis_session.log", TIMEOUT_S)
    if not result_path.exists():
        tail = (ARTIFACTS / "qgis_session.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"the desktop session wrote no result (rc {rc}, {seconds:.0f} s, timed out: {timed_out}):\n{tail}")
    result = json.loads(result_path.read_text())
    result["process"] = {"rc": rc, "seconds": round(seconds, 1), "timed_out": timed_out, "command": cmd}
    (ARTIFACTS / "session_result.json").write_text(json.dumps(result, indent=1))
    checks = evaluate_checks(result)
    lines = [f"TopoClear desktop session ({result.get('mode')}), QGIS {result.get('qgis_version')}, "
             f"{seconds:.0f} s, rc {rc}"]
    for name, (passed, detail) in checks.items():
        lines.append(f"{'PASS' if passed else 'FAIL'}  {name}" + (f"\n      {detail}" if detail else ""))
    (ARTIFACTS / "findings.txt").write_text("\n".join(lines) + "\n")
    result["checks"] = checks
    return result


# -- the checks -------------------------------------------------------------------------------------------

def _runs_detail(runs, expected: int) -> Tuple[bool, str]:
    problems = []
    if len(runs) < expected:
        problems.append(f"{len(runs)} of {expected} runs recorded")
    for run in runs:
        tag = f"run {run.get('run')} ({run.get('how') or run.get('mode') or ''})".replace(" ()", "")
        for failure in run.get("failures", []):
            problems.append(f"{tag}: {failure}")
        if "failures" not in run and not run.get("ok"):
            problems.append(f"{tag}: {run.get('error')}")
    ok_runs = [f"run {r.get('run')}: layer {r.get('layer_name')!r}, renderer {r.get('renderer')}"
               for r in runs if r.get("passed") and r.get("layer_name")]
    return not problems, "; ".join(problems) or "; ".join(ok_runs)


def evaluate_checks(result: dict) -> Dict[str, Tuple[bool, str]]:
    """Every check of the session: name -> (passed, detail with the recorded error texts)."""
    checks: Dict[str, Tuple[bool, str]] = {}
    errors = result.get("driver_errors", [])
    checks["session: completed, plugin and provider loaded, no driver error"] = (
        bool(result.get("finished")) and result.get("plugin_loaded") and result.get("provider_loaded")
        and not errors,
        "; ".join(f"{e['where']}: {e['traceback'].strip().splitlines()[-1]}" for e in errors)
        or f"screen {result.get('screen')}, main window {result.get('main_window')}")
    layers = {k: v for k, v in result.get("layers", {}).items() if isinstance(v, dict)}
    bad = [f"{v['name']} ({v['path']})" for v in layers.values() if not v.get("valid")]
    overlap = result.get("layers", {}).get("terramind_triplet_overlap_fraction")
    checks["samples loaded as layers (TerraMind S2L2A + S1RTC + DEM overlapping)"] = (
        bool(layers) and not bad and overlap is not None and overlap > 0.99,
        (f"invalid: {bad}; " if bad else "") + f"{len(layers)} layers, triplet overlap {overlap}")
    runs_expected = result.get("runs_expected", 1)
    for name in ALGORITHMS:
        entry = result.get("algorithms", {}).get(name) or {}
        if not entry:
            checks[f"{name}: runs {runs_expected}x, output added and styled"] = (False, "not reached by the session")
            checks[f"{name}: parameters panel without horizontal scroll bar at 1280x800"] = (False, "not reached")
            checks[f"{name}: every parameter described"] = (False, "not reached")
            continue
        if entry.get("skipped"):
            checks[f"{name}: runs {runs_expected}x, output added and styled"] = (False, f"not run: {entry['skipped']}")
        else:
            passed, detail = _runs_detail(entry.get("runs", []), runs_expected)
            if entry.get("driver_error"):
                passed, detail = False, f"driver error: {entry['driver_error']}; {detail}"
            checks[f"{name}: runs {runs_expected}x, output added and styled"] = (passed, detail)
        layout = entry.get("layout")
        if layout is None:
            checks[f"{name}: parameters panel without horizontal scroll bar at 1280x800"] = (
                False, "dialog not opened: " + str(entry.get("skipped") or entry.get("driver_error")))
        else:
            states = []
            for state, info in layout.get("states", {}).items():
                for area in info.get("scroll_areas", []):
                    if area["h_bar_visible"] or area["h_bar_maximum"] > 0:
                        states.append(f"{state}: content {area['content_width']} px (minimum "
                                      f"{area['content_min_width']}) in a {area['viewport_width']} px viewport, "
                                      f"scroll bar maximum {area['h_bar_maximum']}")
            checks[f"{name}: parameters panel without horizontal scroll bar at 1280x800"] = (
                not layout.get("needs_horizontal_scroll") and layout.get("fits_screen", True),
                f"dialog {layout.get('dialog_size')}" + (f"; {'; '.join(states)}" if states else "")
                + ("" if layout.get("fits_screen", True) else "; the dialog does not fit the screen"))
        descriptions = entry.get("descriptions")
        if descriptions is None:
            checks[f"{name}: every parameter described"] = (False, "not checked")
        else:
            missing = descriptions.get("missing_description", []) + [
                f"output {o}" for o in descriptions.get("outputs_missing_description", [])]
            checks[f"{name}: every parameter described"] = (
                not missing, f"without a description: {missing}" if missing else
                f"{len(descriptions.get('parameters', []))} parameters described")
    extra = result.get("extra_checks", {}).get("removeclouds_defaults")
    if extra is not None:
        checks["removeclouds: runs with its defaults on Sentinel-2 + Sentinel-1 (no DEM)"] = (
            bool(extra.get("passed")), "; ".join(extra.get("failures", [])) or str(extra.get("driver_error") or
                                                                                 extra.get("layer_name")))
    docks = result.get("docks", {})
    dock_runs_expected = result.get("dock_runs_expected", 1)
    for label in DOCKS:
        entry = docks.get(label) or {}
        layout = entry.get("layout") or {}
        if not layout:
            checks[f"{label} dock at 300 px: Run/Cancel visible without horizontal scrolling"] = (
                False, str(entry.get("driver_error") or "not checked"))
            checks[f"{label} dock at 300 px: vertical scroll bar when the content overflows"] = (False, "not checked")
        else:
            natural = layout.get("natural_height", {})
            buttons = natural.get("buttons", {})
            detail = (f"dock {layout.get('dock_width')} px (minimum {layout.get('dock_min_width')}), viewport "
                      f"{natural.get('viewport_width')} px, content {natural.get('content_width')} px "
                      f"(minimum {natural.get('content_min_width')}), cut off {layout.get('content_cut_off_px')} px; "
                      + ", ".join(f"{k}: {v.get('left')}-{v.get('right')} px" for k, v in buttons.items()))
            cut = natural.get("widgets_cut_off", [])
            if cut:
                detail += f"; cut off: {cut[:8]}"
            checks[f"{label} dock at 300 px: Run/Cancel visible without horizontal scrolling"] = (
                bool(layout.get("buttons_visible_without_h_scroll")) and not layout.get("content_cut_off_px"),
                detail)
            short = layout.get("short_height", {})
            checks[f"{label} dock at 300 px: vertical scroll bar when the content overflows"] = (
                bool(layout.get("vertical_scroll_available")),
                f"content {short.get('content_height')} px in a {short.get('viewport_height')} px viewport, "
                f"vertical bar visible {short.get('v_bar_visible')} (maximum {short.get('v_bar_maximum')})")
        choice = entry.get("extent_choice") or {}
        checks[f"{label} dock: offers whole layer / canvas extent"] = (
            bool(choice.get("offered")), f"radio buttons: {choice.get('radio_buttons')}")
        runs = entry.get("runs", [])
        for mode in ("whole layer", "canvas extent"):
            mode_runs = [r for r in runs if r.get("mode") == mode]
            passed, detail = _runs_detail(mode_runs, dock_runs_expected)
            if entry.get("driver_error"):
                passed, detail = False, f"driver error: {entry['driver_error']}; {detail}"
            checks[f"{label} dock: {dock_runs_expected}x on the {mode}, layer added and styled"] = (passed, detail)
    for label in CANCELS:
        entry = result.get("cancel", {}).get(label) or {}
        detail = "; ".join(entry.get("failures", [])) or str(entry.get("driver_error") or "")
        if entry.get("passed"):
            detail = (f"cancelled after {entry.get('started_seconds')} s of running, took effect in "
                      f"{entry.get('cancel_latency_s')} s: {entry.get('message') or ''}").strip()
        checks[f"cancel ({label.replace('_', ' ')}): takes effect, no output left"] = (bool(entry.get("passed")),
                                                                                      detail or "not checked")
    model = result.get("model", {})
    stack_param = model.get("removeclouds_terrain_stack_parameter")
    model_runs_expected = result.get("model_runs_expected", 1)
    stack = model.get("stack") or {}
    # removeclouds' DEM input takes the terrain stack itself (recognised by its band descriptions and read as
    # it is; tests/test_clouds_qgis.py proves the bands are not derived again): the model that feeds the
    # stack to DEM must run every time
    stack_runs = stack.get("runs", [])
    stack_ran = len(stack_runs) >= model_runs_expected and all(r.get("passed") for r in stack_runs)
    checks["removeclouds accepts a terrain stack (from terrainstack) instead of a DEM"] = (
        bool(stack_param) or stack_ran,
        f"terrain-stack parameters: {stack_param}" if stack_param else
        (f"the model feeding the terrain stack to DEM ran {len(stack_runs)}x" if stack_ran else
         "the model feeding the terrain stack to DEM did not run: "
         + "; ".join(stack.get("failures", []) or [str(stack.get("driver_error") or "not built")])))
    passed, detail = _runs_detail(stack.get("runs", []), model_runs_expected)
    if not stack.get("in_toolbox"):
        passed, detail = False, "; ".join(stack.get("failures", [])) or str(stack.get("driver_error") or "not built")
    checks[f"model terrainstack -> removeclouds -> snowmap -> snowstats: saved, in the toolbox, runs "
           f"{model_runs_expected}x"] = (passed, f"{stack.get('file')}: {detail}")
    if model.get("dem"):
        dem = model["dem"]
        passed, detail = _runs_detail(dem.get("runs", []), model_runs_expected)
        checks[f"model (DEM straight into removeclouds) -> snowmap -> snowstats: runs {model_runs_expected}x"] = (
            passed and bool(dem.get("in_toolbox")), detail or str(dem.get("driver_error")))
    return checks


def _check(session, prefix: str):
    matches = [(k, v) for k, v in session["checks"].items() if k.startswith(prefix)]
    assert matches, f"no check named {prefix!r}"
    failed = [f"{k}: {detail}" for k, (passed, detail) in matches if not passed]
    assert not failed, "\n".join(failed)


def test_session_completes(session):
    assert not session["process"]["timed_out"], f"QGIS ran past {TIMEOUT_S} s"
    _check(session, "session:")


def test_samples_loaded(session):
    _check(session, "samples loaded")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_algorithm_runs_styled(session, name):
    _check(session, f"{name}: runs")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_dialog_without_horizontal_scroll(session, name):
    _check(session, f"{name}: parameters panel")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_parameters_described(session, name):
    _check(session, f"{name}: every parameter")


def test_removeclouds_defaults(session):
    if QUICK:
        pytest.skip("full session only (TOPOCLEAR_GUI_QUICK is set)")
    _check(session, "removeclouds: runs with its defaults")


@pytest.mark.parametrize("dock", DOCKS)
def test_dock_buttons_visible_at_300px(session, dock):
    _check(session, f"{dock} dock at 300 px: Run/Cancel")


@pytest.mark.parametrize("dock", DOCKS)
def test_dock_scrolls_vertically_at_300px(session, dock):
    _check(session, f"{dock} dock at 300 px: vertical")


@pytest.mark.parametrize("dock", DOCKS)
def test_dock_offers_canvas_extent(session, dock):
    _check(session, f"{dock} dock: offers")


@pytest.mark.parametrize("dock", DOCKS)
@pytest.mark.parametrize("mode", ["whole layer", "canvas extent"])
def test_dock_runs(session, dock, mode):
    matches = [k for k in session["checks"] if k.startswith(f"{dock} dock: ") and k.endswith(
        f"on the {mode}, layer added and styled")]
    assert matches
    _check(session, matches[0])


@pytest.mark.parametrize("where", CANCELS)
def test_cancel(session, where):
    _check(session, f"cancel ({where.replace('_', ' ')})")


def test_removeclouds_takes_terrain_stack(session):
    _check(session, "removeclouds accepts a terrain stack")


def test_model_runs(session):
    _check(session, "model terrainstack")


def test_screenshots_taken(session):
    shots = session.get("screenshots", [])
    assert any("_screen_" in s for s in shots), "no whole-screen screenshot"
    missing = [s for s in shots if not (ARTIFACTS / s).is_file()]
    assert not missing, f"screenshots listed but not written: {missing}"
    named = [s.split("_", 1)[1] for s in shots]
    opened = [n for n in ALGORITHMS if (session["algorithms"].get(n) or {}).get("layout")]
    without = [n for n in opened if not any(s.startswith(f"{n}_dialog") for s in named)]
    assert not without, f"dialogs without a screenshot: {without}"
    docks = [d for d in DOCKS if not any(s.startswith(f"{d}_dock") for s in named)]
    assert not docks, f"docks without a screenshot: {docks}"
