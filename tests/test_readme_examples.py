"""The README's command-line examples, run as a user would: the ```bash block of its *From the command line*
section, taken from README.md as it is and run with bash from the repository root.

Every command must succeed (the block runs under ``bash -e``) and every output it names must exist and be a
readable, non-empty file; the rasters are checked against their inputs' grids.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
SECTION = "## From the command line"
OUTPUT_DIR = REPO_ROOT / "qgis-process-output"
QGIS_PROCESS = "qgis_process.bin"


def command_line_block(text: str) -> str:
    """The first ```bash block after the *From the command line* heading."""
    start = text.index(SECTION)
    match = re.search(r"^```bash\n(.*?)^```$", text[start:], re.MULTILINE | re.DOTALL)
    assert match, f"no ```bash block after {SECTION!r} in README.md"
    return match.group(1)


def named_outputs(block: str):
    """The files the block writes: every ``OUTPUT...=$O/<name>`` argument."""
    return re.findall(r"\bOUTPUT\w*=\$O/(\S+)", block)


def test_the_block_is_found_and_names_its_outputs():
    block = command_line_block(README.read_text(encoding="utf-8"))
    outputs = named_outputs(block)
    assert "slope.tif" in outputs and "snow_duration.tif" in outputs and len(outputs) >= 12
    assert "QT_QPA_PLATFORM=offscreen" in block and "QGIS_CUSTOM_CONFIG_PATH" in block
    for path in re.findall(r"\$D/(\S+?\.tif)", block):  # every sample it reads is one of ../shared/data
        if SHARED_DATA.is_dir():
            assert (SHARED_DATA / path).is_file(), path


@pytest.fixture(scope="module")
def ran_block():
    if shutil.which(QGIS_PROCESS) is None:
        pytest.skip(f"{QGIS_PROCESS} is not installed (apt install qgis)")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder not found: {SHARED_DATA}")
    missing = [p for p in ("build/plugins/topoclear", ".venv/bin/python") if not (REPO_ROOT / p).exists()]
    if missing:
        pytest.skip(f"the README's setup has not been run here (missing {', '.join(missing)}): bash scripts/setup.sh")
    block = command_line_block(README.read_text(encoding="utf-8"))
    if OUTPUT_DIR.exists():
        shutil.rmtree(OUTPUT_DIR)  # a fresh profile and no outputs of an earlier run
    script = REPO_ROOT / ".pytest_cache" / "readme_command_line.sh"
    script.parent.mkdir(exist_ok=True)
    script.write_text(block)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QGIS_PLUGINPATH",
                                                            "QGIS_CUSTOM_CONFIG_PATH")}
    start = time.monotonic()
    result = subprocess.run(["bash", "-e", str(script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=1200)
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"the README block failed (exit {result.returncode}):\n{log[-6000:]}"
    return block, log, seconds, env


def test_every_command_succeeds_and_writes_its_outputs(ran_block):
    block, log, seconds, _ = ran_block
    missing = [name for name in named_outputs(block)
               if not (OUTPUT_DIR / name).is_file() or (OUTPUT_DIR / name).stat().st_size == 0]
    assert not missing, f"outputs not written: {missing}\n{log[-3000:]}"
    for name in ("cloudfree_s2_observed.tif", "cloudfree_s2_s1_dem_observed.tif"):  # removeclouds' default
        assert (OUTPUT_DIR / name).is_file(), name
    assert log.count("Results") >= len(re.findall(r"^qgis_process\.bin run ", block, re.MULTILINE))
    assert seconds < 900, f"the block took {seconds:.0f} s"


def test_the_outputs_are_on_their_inputs_grids(ran_block):
    import rasterio

    def grid(path: Path):
        with rasterio.open(path) as ds:
            return ds.crs, ds.width, ds.height, tuple(round(v, 3) for v in ds.transform[:6])

    dem = SHARED_DATA / "dem" / "bigtujunga.tif"
    for name in ("slope.tif", "aspect.tif", "hillshade.tif"):
        assert grid(OUTPUT_DIR / name) == grid(dem), name
    s2 = SHARED_DATA / "terramind" / "S2L2A" / "282D_485L_3_3.tif"
    for name in ("terrain_stack.tif", "cloud_mask.tif", "cloudfree_s2.tif", "cloudfree_s2_s1_dem.tif"):
        assert grid(OUTPUT_DIR / name) == grid(s2), name
    with rasterio.open(OUTPUT_DIR / "terrain_stack.tif") as ds:
        assert ds.count == 4
    with rasterio.open(OUTPUT_DIR / "cloudfree_s2.tif") as ds, rasterio.open(s2) as src:
        assert ds.count == src.count and ds.dtypes == src.dtypes
    rows = (OUTPUT_DIR / "snow_series.csv").read_text().strip().splitlines()
    assert rows[0].startswith("date,") and len(rows) == 1 + 7
    stats = (OUTPUT_DIR / "snow_stats.csv").read_text().strip().splitlines()
    assert stats[0].startswith("band,") and stats[1].startswith("all,")


def test_enabling_the_plugin_again_is_harmless(ran_block):
    block, _, _, env = ran_block
    setup = [line for line in block.splitlines() if line.startswith(("export ", "qgis_process.bin plugins"))]
    assert any("plugins enable" in line for line in setup)
    result = subprocess.run(["bash", "-e", "-c", "\n".join(setup)], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
