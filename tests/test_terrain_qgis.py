"""The terrain algorithms through every way users reach them, against QGIS's own native algorithms."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio

from conftest import REPO_ROOT, data_path


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64), ds.nodata


@pytest.fixture(scope="module")
def dem():
    return str(data_path("dem", "bigtujunga.tif"))


def qgis_drops_a_term(valid):
    """Cells where QGIS 3.22 drops the left column from the north-south derivative.

    ``QgsDerivativeFilter::calcFirstDerY`` tests the upper-right cell where it means the lower-left
    one, so when the lower-left neighbour is missing (nodata or off the raster) while the upper-left,
    left and upper-right ones are valid, QGIS leaves that column out; TopoClear applies QGIS's
    one-sided rule as intended (upper-left minus left). These cells (the last row, cells above-right
    of nodata) are excluded from the cell-by-cell comparison.
    """
    p = np.pad(valid, 1, constant_values=False)
    lower_left, upper_left, left, upper_right = p[2:, :-2], p[:-2, :-2], p[1:-1, :-2], p[:-2, 2:]
    return ~lower_left & upper_left & left & upper_right


def assert_matches_native(native, ours, valid, angular=False, tolerance=0.01):
    (a, a_nod), (b, b_nod) = read(native), read(ours)
    same_rule = ~qgis_drops_a_term(valid) & valid
    ok = (a != a_nod) & (b != b_nod) & same_rule
    diff = np.abs(a - b)[ok]
    if angular:
        diff = np.minimum(diff, 360 - diff)
    assert ok.sum() > 0.99 * same_rule.sum() - 100  # flat cells have no aspect in either
    assert diff.max() < tolerance
    assert ((a != a_nod) & (b == b_nod) & same_rule).sum() == 0  # nothing lost where QGIS has a value
    return qgis_drops_a_term(valid) & valid


def dem_valid(path):
    values, nodata = read(path)
    return values != nodata


def test_slope_aspect_hillshade_match_qgis_native(run_alg, dem, tmp_path):
    valid = dem_valid(dem)
    for name, angular in (("slope", False), ("aspect", True)):
        native = run_alg(f"native:{name}", INPUT=dem, Z_FACTOR=1, OUTPUT=str(tmp_path / f"n_{name}.tif"))["OUTPUT"]
        ours = run_alg(f"topoclear:{name}", INPUT=dem, OUTPUT=str(tmp_path / f"t_{name}.tif"))["OUTPUT"]
        other_rule = assert_matches_native(native, ours, valid, angular)
        assert other_rule.sum() == valid.shape[1] - 2  # the last row, bar its first and last cells
    # QGIS's V_ANGLE acts as a zenith angle (QGIS issue 66206): same light as our ZENITH
    native = run_alg("native:hillshade", INPUT=dem, Z_FACTOR=1, AZIMUTH=300, V_ANGLE=40,
                     OUTPUT=str(tmp_path / "n_hs.tif"))["OUTPUT"]
    ours = run_alg("topoclear:hillshade", INPUT=dem, AZIMUTH=300, ZENITH=40, OUTPUT=str(tmp_path / "t_hs.tif"))
    assert_matches_native(native, ours["OUTPUT"], valid, tolerance=1.0)


def test_edges_beside_nodata_follow_qgis(run_alg, dem, tmp_path):
    with rasterio.open(dem) as ds:
        z, profile = ds.read(1), ds.profile
    z[200:210, 300:330] = profile["nodata"]
    holes = str(tmp_path / "holes.tif")
    with rasterio.open(holes, "w", **profile) as out:
        out.write(z, 1)
    native = run_alg("native:slope", INPUT=holes, Z_FACTOR=1, OUTPUT=str(tmp_path / "n.tif"))["OUTPUT"]
    ours = run_alg("topoclear:slope", INPUT=holes, OUTPUT=str(tmp_path / "t.tif"))["OUTPUT"]
    valid = z != profile["nodata"]
    assert_matches_native(native, ours, valid)  # beside the hole too
    b, b_nod = read(ours)
    assert np.all(b[~valid] == b_nod)  # unlike QGIS, a nodata centre gives nodata
    assert (qgis_drops_a_term(valid) & valid)[:-1].sum() == 30  # above-right of the hole


def test_percent_units_z_factor_and_gdal_edge_mode(run_alg, dem, tmp_path):
    deg = read(run_alg("topoclear:slope", INPUT=dem, OUTPUT=str(tmp_path / "d.tif"))["OUTPUT"])[0]
    pct, nod = read(run_alg("topoclear:slope", INPUT=dem, UNITS=1, Z_FACTOR=2, EDGE_MODE=1,
                            OUTPUT=str(tmp_path / "p.tif"))["OUTPUT"])
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(pct[inner], 200 * np.tan(np.radians(deg[inner])), rtol=1e-4, atol=1e-3)
    assert np.all(pct[0] == nod) and np.all(pct[:, -1] == nod)


def test_hillshade_from_sentinel2_metadata(run_alg, dem, tmp_path):
    safe = next(data_path("sentinel2-safe").glob("esa_S2B_MSIL2A_20210122*"))
    tile_xml = next(safe.glob("GRANULE/*/MTD_TL.xml"))
    lit = run_alg("topoclear:hillshade", INPUT=dem, METADATA=str(tile_xml), OUTPUT=str(tmp_path / "lit.tif"))
    by_hand = run_alg("topoclear:hillshade", INPUT=dem, AZIMUTH=64.9495240978383, ZENITH=32.3712311857264,
                      OUTPUT=str(tmp_path / "hand.tif"))
    np.testing.assert_array_equal(read(lit["OUTPUT"])[0], read(by_hand["OUTPUT"])[0])
    with rasterio.open(lit["OUTPUT"]) as ds:
        assert "/64.95 deg" in ds.descriptions[0]  # sun zenith/azimuth


def test_terrain_stack_algorithm_and_its_errors(run_alg, dem, tmp_path):
    from qgis.core import QgsProcessingException

    reference = str(data_path("sen12ms-cr", "s2_clear", "ROIs1158_spring_s2_26_p100.tif"))  # N. Canada
    with pytest.raises(QgsProcessingException, match="does not overlap"):
        run_alg("topoclear:terrainstack", INPUT=dem, REFERENCE=reference, OUTPUT=str(tmp_path / "none.tif"))
    assert not (tmp_path / "none.tif").exists()
    with rasterio.open(dem) as ds:
        profile = dict(ds.profile, width=200, height=150, count=1, dtype="uint16", nodata=None,
                       transform=rasterio.Affine(20, 0, ds.transform.c + 600, 0, -20, ds.transform.f - 900))
    ref = str(tmp_path / "ref.tif")
    with rasterio.open(ref, "w", **profile) as out:
        out.write(np.ones((1, 150, 200), np.uint16))
    result = run_alg("topoclear:terrainstack", INPUT=dem, REFERENCE=ref, OUTPUT=str(tmp_path / "stack.tif"))
    with rasterio.open(result["OUTPUT"]) as ds:
        assert ds.count == 4 and ds.shape == (150, 200) and ds.transform == profile["transform"]
        assert [d.split(" ")[0] for d in ds.descriptions] == ["elevation", "slope", "aspect", "hillshade"]


def test_bad_input_is_a_clear_processing_error(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    text = tmp_path / "dem.txt"
    text.write_text("hello")
    with pytest.raises(QgsProcessingException):
        run_alg("topoclear:slope", INPUT=str(text), OUTPUT=str(tmp_path / "s.tif"))
    with pytest.raises(QgsProcessingException, match="does not exist"):
        run_alg("topoclear:slope", INPUT=str(data_path("dem", "bigtujunga.tif")),
                OUTPUT=str(tmp_path / "missing_folder" / "s.tif"))


def test_every_algorithm_has_help_and_an_icon(topoclear_provider):
    algorithms = topoclear_provider.algorithms()
    assert {"slope", "aspect", "hillshade", "terrainstack"} <= {a.name() for a in algorithms}
    for alg in algorithms:
        assert len(alg.shortHelpString()) > 200, alg.id()
        assert not alg.icon().isNull(), alg.id()
        assert alg.group() and alg.displayName()


def test_outputs_open_styled_in_the_project(topoclear_provider, dem, tmp_path):
    import processing
    from qgis.core import QgsProject

    result = processing.runAndLoadResults("topoclear:slope", {"INPUT": dem, "OUTPUT": str(tmp_path / "s.tif")})
    layers = [layer for layer in QgsProject.instance().mapLayers().values()
              if layer.source() == result["OUTPUT"]]
    try:
        assert len(layers) == 1
        renderer = layers[0].renderer()
        assert renderer.type() == "singlebandpseudocolor"
        labels = [item.label for item in renderer.shader().rasterShaderFunction().colorRampItemList()]
        assert labels[0] == "0°" and labels[-1] == "90°"
        assert layers[0].name() == "Slope of bigtujunga"
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_runs_as_a_background_task(topoclear_provider, dem, tmp_path):
    from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext,
                           QgsProcessingFeedback)
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    alg = QgsApplication.processingRegistry().createAlgorithmById("topoclear:hillshade")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    task = QgsProcessingAlgRunnerTask(alg, {"INPUT": dem, "MULTIDIRECTIONAL": True,
                                            "OUTPUT": str(tmp_path / "bg.tif")}, context, feedback)
    outcome = {}
    loop = QEventLoop()
    task.executed.connect(lambda ok, results: (outcome.update(ok=ok, results=results), loop.quit()))
    QTimer.singleShot(120_000, loop.quit)
    QgsApplication.taskManager().addTask(task)
    loop.exec_()
    for _ in range(5):
        QgsApplication.processEvents()
    assert outcome.get("ok") is True
    assert outcome["results"]["OUTPUT"] == str(tmp_path / "bg.tif")
    assert progress and max(progress) == 100.0
    values, nod = read(tmp_path / "bg.tif")
    assert 0 <= values[values != nod].min() and values.max() <= 255


def test_command_line_qgis_process(qgis_process, dem, tmp_path):
    listing = qgis_process("list").stdout
    assert "topoclear:slope" in listing and "topoclear:terrainstack" in listing
    out = tmp_path / "cli_slope.tif"
    qgis_process("run", "topoclear:slope", "--", f"INPUT={dem}", f"OUTPUT={out}")
    values, nod = read(out)
    assert values.shape == (643, 1197) and 0 <= values[values != nod].min() and values.max() < 90
    help_text = qgis_process("help", "topoclear:hillshade").stdout
    assert "MTD_TL.xml" in help_text and "ZENITH" in help_text
    failed = qgis_process("run", "topoclear:slope", "--", f"INPUT={dem}", "OUTPUT=/no/such/dir/x.tif", check=False)
    assert failed.returncode != 0 and "does not exist" in failed.stdout + failed.stderr


def test_qgis_process_prints_an_error_once(qgis_process, dem, tmp_path):
    """qgis_process echoes QGIS's message log on stderr, where a failed run's error was logged twice
    besides the tool's own ERROR line: every error was printed three times."""
    from rasterio.transform import Affine

    missing = qgis_process("run", "topoclear:slope", "--", f"INPUT={tmp_path / 'nonexistent.tif'}",
                           f"OUTPUT={tmp_path / 'x.tif'}", check=False)
    text = missing.stdout + missing.stderr
    assert missing.returncode != 0 and text.count("file not found") == 1, text
    with rasterio.open(dem) as ds:  # fails during the run: a south-up DEM
        data, profile, t = ds.read(), ds.profile, ds.transform
    profile.update(transform=Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * data.shape[1]))
    flipped = tmp_path / "south_up.tif"
    with rasterio.open(flipped, "w", **profile) as ds:
        ds.write(data[:, ::-1])
    for alg in ("slope", "terrainstack"):
        extra = [f"REFERENCE={dem}"] if alg == "terrainstack" else []
        failed = qgis_process("run", f"topoclear:{alg}", "--", f"INPUT={flipped}", *extra,
                              f"OUTPUT={tmp_path / 'y.tif'}", check=False)
        text = failed.stdout + failed.stderr
        assert failed.returncode != 0 and text.count("south-up") == 1, text
        assert text.count("ERROR:") == 1 and "Traceback" not in text, text
    assert not (tmp_path / "y.tif").exists()


def test_plugin_and_terrain_work_without_torch(dem, tmp_path):
    """With torch not importable, the plugin loads and the terrain algorithms run."""
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")
        from processing.core.Processing import Processing
        Processing.initialize()
        import processing
        import topoclear
        plugin = topoclear.classFactory(None)
        plugin.initProcessing()
        out = processing.run("topoclear:aspect", {{"INPUT": {dem!r}, "OUTPUT": {str(tmp_path / 'a.tif')!r}}})
        ids = [a.id() for a in plugin.provider.algorithms()]
        plugin.unload()
        print(json.dumps({{"output": out["OUTPUT"], "ids": ids, "torch": "torch" in sys.modules and
                           sys.modules["torch"] is not None}}))
        app.exitQgis()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and "topoclear:aspect" in report["ids"]
    assert read(report["output"])[0].shape == (643, 1197)


@pytest.mark.parametrize("alg", ["slope", "aspect", "hillshade", "terrainstack"])
def test_every_parameter_has_a_short_label_and_a_tooltip(topoclear_provider, alg):
    """Labels fit the dialog's parameter panel (about 376 px at 1280x800); explanations are in the help."""
    definition = topoclear_provider.algorithm(alg)
    for d in definition.parameterDefinitions():
        label = d.description() + (" [optional]" if d.flags() & d.FlagOptional else "")
        assert len(label) <= 55 and "[optional]" not in d.description(), (d.name(), label)
        if hasattr(d, "help"):
            assert len(d.help()) > 20, d.name()
    assert definition.parameterDefinition("Z_FACTOR").maximum() == 1e6
