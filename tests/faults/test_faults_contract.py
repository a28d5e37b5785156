"""Fault battery, the contract itself: the atomic writer (kill -9, a disk that fills during a write,
stale temporaries, folders of outputs, names taken from inputs) and the way failures reach the user
(one message per failure, never a traceback, in Processing and in ``qgis_process``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import data_path
from faultkit import (Watched, check_message, copy_in, fails, partials, small_disk, succeeds,  # noqa: F401
                      text_file, truncated_copy)

ALGORITHMS = ("slope", "aspect", "hillshade", "terrainstack", "ndsi", "snowmap", "snowstats", "builddataset",
              "trainmodel", "removeclouds", "evaluate")


@pytest.fixture()
def dem(tmp_path):
    (tmp_path / "out").mkdir()
    return copy_in(data_path("dem", "bigtujunga.tif"), tmp_path / "in")


# ------------------------------------------------------------------------------------------------
# 4. kill -9 during a write
# ------------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from topoclear.engine.progress import Monitor
    from topoclear.engine.terrain.derivatives import compute_terrain

    def pause(percent):
        print("WRITING", flush=True)
        time.sleep(600)

    compute_terrain(sys.argv[1], {"slope": sys.argv[2]}, monitor=Monitor(on_progress=pause), window_rows=64,
                    workers=1)
""")


def start_writer(dem, target):
    """A child process writing the slope of ``dem`` to ``target``, paused after its first window."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(dem), str(target)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if "WRITING" not in line:
        child.kill()
        pytest.fail(f"the writer did not start: {line}{child.stderr.read()}")
    return child


def kill(child):
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_a_killed_write_leaves_only_its_temporary_and_the_next_run_removes_it(run_alg, tmp_path, dem):
    target = tmp_path / "out" / "slope.tif"
    child = start_writer(dem, target)
    try:
        assert len(partials(target.parent)) == 1 and not target.exists()
        name = partials(target.parent)[0]
        assert name.startswith(f".slope.tif.{child.pid}.") and name.endswith(".partial.tif")
    finally:
        kill(child)
    assert partials(target.parent) == [name] and not target.exists()  # kill -9: nothing could clean up
    result = succeeds(run_alg, "slope", INPUT=dem, OUTPUT=str(target))
    assert result["OUTPUT"] == str(target)
    assert partials(target.parent) == [] and sorted(os.listdir(target.parent)) == ["slope.tif"]
    with rasterio.open(target) as ds:
        assert ds.shape == (643, 1197) and np.isfinite(ds.read(1)).all()


def test_a_running_writers_temporary_is_left_alone(run_alg, tmp_path, dem):
    target = tmp_path / "out" / "slope.tif"
    child = start_writer(dem, target)
    try:
        mine = partials(target.parent)
        succeeds(run_alg, "slope", INPUT=dem, OUTPUT=str(target))
        assert partials(target.parent) == mine  # its process is alive: not stale
    finally:
        kill(child)
    succeeds(run_alg, "aspect", INPUT=dem, OUTPUT=str(tmp_path / "out" / "aspect.tif"))
    assert partials(target.parent) == mine  # another output's run does not touch it
    succeeds(run_alg, "slope", INPUT=dem, OUTPUT=str(target))
    assert partials(target.parent) == []


def test_a_killed_write_through_qgis_process_then_a_rerun(qgis_process, tmp_path, dem):
    target = tmp_path / "out" / "slope.tif"
    kill(start_writer(dem, target))
    assert len(partials(target.parent)) == 1
    qgis_process("run", "topoclear:slope", "--", f"INPUT={dem}", f"OUTPUT={target}")
    assert partials(target.parent) == [] and target.is_file()


# ------------------------------------------------------------------------------------------------
# 2. a disk that fills during the write (engine level: the free-space check passed)
# ------------------------------------------------------------------------------------------------

def test_disk_filling_during_a_raster_write(tmp_path, small_disk):
    from topoclear.engine.errors import OutputError
    from topoclear.engine.io.atomic import AtomicRasterWriter
    from topoclear.engine.io.raster import Grid

    with rasterio.open(data_path("dem", "bigtujunga.tif")) as ds:
        grid = Grid.of(ds)
        grid = Grid(grid.crs, grid.transform, 300, 300)  # one 512 x 512 tile: 1 MB of the 2
        z = ds.read(1, window=((0, 300), (0, 300))).astype(np.float32)
    target = small_disk.path / "z.tif"
    with pytest.raises(OutputError, match=r"(?s)z\.tif.*disk is full"):
        with AtomicRasterWriter(target, grid, 1, "float32", -9999.0) as dst:
            dst.write(z[:100], 1, window=((0, 100), (0, 300)))
            small_disk.fill(leave=0)  # someone else fills the disk meanwhile
            dst.write(z, 1)
    assert small_disk.contents() == []


def test_text_outputs_on_a_full_disk_keep_the_previous_file(tmp_path, small_disk):
    from topoclear.engine.errors import OutputError
    from topoclear.engine.io.atomic import write_text_atomic

    target = small_disk.path / "report.html"
    target.write_text("previous")
    small_disk.fill(leave=0)
    with pytest.raises(OutputError, match=r"(?s)report\.html.*disk is full"):
        write_text_atomic(target, "x" * 500_000)
    assert target.read_text() == "previous" and small_disk.contents() == ["report.html"]


def test_other_writers_reporting_a_full_disk(tmp_path):
    from topoclear.engine.errors import OutputError
    from topoclear.engine.io.atomic import atomic_output

    class SafetensorError(Exception):
        pass

    with pytest.raises(OutputError, match=r"(?s)w\.safetensors.*disk is full"):
        with atomic_output(tmp_path / "w.safetensors") as tmp:
            Path(tmp).write_bytes(b"abc")
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  "\"No space left on device\" })")
    assert os.listdir(tmp_path) == []


def test_a_raster_that_cannot_fit_is_refused_before_it_is_computed(tmp_path, small_disk):
    from topoclear.engine.errors import OutputError
    from topoclear.engine.progress import Monitor
    from topoclear.engine.terrain.derivatives import compute_terrain

    calls = []
    with pytest.raises(OutputError, match=r"(?s)slope\.tif.*disk is full.*free.*needed"):
        compute_terrain(data_path("dem", "bigtujunga.tif"), {"slope": small_disk.path / "slope.tif"},
                        monitor=Monitor(on_progress=calls.append))
    assert calls == [] and small_disk.contents() == []


# ------------------------------------------------------------------------------------------------
# 3. names from inputs, and folders of outputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../ESCAPED", "/etc/passwd", "a/b", "a\\b", "..", ""])
def test_names_from_inputs_cannot_leave_their_folder(tmp_path, name):
    from topoclear.engine.errors import InputError
    from topoclear.engine.io.atomic import contained_path

    with Watched(tmp_path):
        with pytest.raises(InputError, match="scene name"):
            contained_path(tmp_path, name, "scene name")
    assert contained_path(tmp_path, "T32TLR_2021-01-01", "scene name") == tmp_path / "T32TLR_2021-01-01"


def test_folder_outputs_appear_whole_or_not_at_all(tmp_path):
    from topoclear.engine.errors import OutputError
    from topoclear.engine.io.atomic import atomic_folder

    target = tmp_path / "dataset"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "patch.tif").write_bytes(b"half")
            raise RuntimeError("the builder failed")
    assert os.listdir(tmp_path) == []
    with atomic_folder(target) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["dataset"] and (target / "manifest.json").read_text() == "{}"
    with Watched(tmp_path):
        with pytest.raises(OutputError, match=r"(?s)dataset.*already holds files"):
            with atomic_folder(target):
                pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        with atomic_folder(tmp_path / "file"):
            pass


def test_a_killed_folder_build_is_removed_by_the_next(tmp_path):
    from topoclear.engine.io.atomic import atomic_folder

    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from topoclear.engine.io.atomic import atomic_folder
        with atomic_folder({str(tmp_path / 'dataset')!r}) as tmp:
            (tmp / "patch.tif").write_bytes(b"x" * 1000)
            print("BUILDING", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert "BUILDING" in child.stdout.readline()
    kill(child)
    assert len(partials(tmp_path)) == 1
    with atomic_folder(tmp_path / "dataset") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["dataset"]


# ------------------------------------------------------------------------------------------------
# 6. failures reach the user as messages
# ------------------------------------------------------------------------------------------------

def test_every_algorithm_turns_any_exception_into_a_message(topoclear_provider):
    for name in ALGORITHMS:
        alg = topoclear_provider.algorithm(name)
        assert alg is not None, name
        assert getattr(type(alg).processAlgorithm, "_topoclear_guarded", False), name


def test_an_unexpected_exception_is_one_line_without_a_traceback(run_alg, tmp_path, dem, monkeypatch):
    import topoclear.processing_provider.terrain as terrain

    def broken(*args, **kwargs):
        raise KeyError("an internal slip")

    monkeypatch.setattr(terrain, "compute_terrain", broken)
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        run_alg("topoclear:slope", INPUT=dem, OUTPUT=str(tmp_path / "out" / "s.tif"))
    text = str(info.value)
    assert text.startswith("Unexpected error: KeyError") and "Traceback" not in text and "\n" not in text
    assert "log messages panel" in text


def test_contract_errors_reach_processing_run_with_their_text(run_alg, tmp_path, dem):
    """Refusals made before the run are the exception's text, not 'There were errors executing the algorithm'."""
    with Watched(tmp_path):
        fails(run_alg, "slope", r"^Unable to execute algorithm\s+OUTPUT:", r"never overwrites", INPUT=dem, OUTPUT=dem)


def run_cli(qgis_process, *args):
    result = qgis_process("run", *args, check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text and 'File "/' not in text, text
    return text


def test_qgis_process_output_is_the_input(qgis_process, tmp_path, dem):
    with Watched(tmp_path):
        text = run_cli(qgis_process, "topoclear:slope", "--", f"INPUT={dem}", f"OUTPUT={dem}")
    check_message(text, r"OUTPUT", r"never overwrites its inputs")


def test_qgis_process_truncated_dem(qgis_process, tmp_path, dem):
    broken = truncated_copy(dem, tmp_path / "in" / "cut.tif")
    with Watched(tmp_path):
        text = run_cli(qgis_process, "topoclear:hillshade", "--", f"INPUT={broken}",
                       f"OUTPUT={tmp_path / 'out' / 'h.tif'}")
    check_message(text, r"INPUT", r"cut\.tif", r"truncated|corrupt")


def test_qgis_process_text_file_as_dem(qgis_process, tmp_path, dem):
    bogus = text_file(tmp_path / "in" / "notes.tif")
    with Watched(tmp_path):
        text = run_cli(qgis_process, "topoclear:aspect", "--", f"INPUT={bogus}", f"OUTPUT={tmp_path / 'out' / 'a.tif'}")
    check_message(text, r"INPUT", r"notes\.tif", r"not a raster")


def test_qgis_process_pickled_weights(qgis_process, tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "out").mkdir()
    s2 = copy_in(data_path("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif"), tmp_path / "in")
    evil = tmp_path / "in" / "evil.pt"
    torch.save({"w": torch.zeros(1)}, evil)
    from topoclear.engine.clouds.methods.catalogue import removal_methods

    unet = next(i for i, m in enumerate(removal_methods()) if m.key == "unet")  # the MODEL value of the UNet
    with Watched(tmp_path):
        text = run_cli(qgis_process, "topoclear:removeclouds", "--", f"INPUT={s2}", f"MODEL={unet}", f"WEIGHTS={evil}",
                       "MASK_TYPE=4", f"OUTPUT={tmp_path / 'out' / 'c.tif'}")
    check_message(text, r"WEIGHTS", r"evil\.pt", r"safetensors")


def test_qgis_process_full_disk(qgis_process, tmp_path, dem, small_disk):
    with Watched(tmp_path):
        text = run_cli(qgis_process, "topoclear:slope", "--", f"INPUT={dem}", f"OUTPUT={small_disk.path / 's.tif'}")
    check_message(text, r"OUTPUT", r"disk is full")
    assert small_disk.contents() == []
