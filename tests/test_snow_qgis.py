"""The snow algorithms through Processing, the project (styled outputs) and qgis_process."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import data_path
from test_snow_engine import (BRIGHT_SNOW, FINLAND, MARGINAL, T22HBD, UTM, ben_band, cell, needs_detector, read,
                              sen12, staircase_scene, write_band)

SNOW, NO_SNOW, CLOUD, NODATA = 100, 0, 205, 255


def class_fractions(path):
    classes = read(path)
    valid = classes != NODATA
    return {k: float((classes[valid] == k).mean()) for k in (SNOW, NO_SNOW, CLOUD)}


def test_snow_algorithms_are_registered_with_help(topoclear_provider):
    algorithms = {a.name(): a for a in topoclear_provider.algorithms()}
    for name in ("ndsi", "snowmap", "snowstats"):
        alg = algorithms[name]
        assert alg.group() == "Snow" and alg.groupId() == "snow"
        assert len(alg.shortHelpString()) > 400 and not alg.icon().isNull()
    help_text = algorithms["snowmap"].shortHelpString()
    for fact in ("100 snow", "205 cloud", "0.40", "0.15", "0.04", "0.30", "240 m", "two below", "tanh"):
        assert fact in help_text, fact


def test_ndsi_of_the_finland_patch(run_alg, tmp_path):
    out = run_alg("topoclear:ndsi", INPUT=str(ben_band(FINLAND)), OUTPUT=str(tmp_path / "ndsi.tif"))["OUTPUT"]
    values = read(out)
    assert values.shape == (60, 60) and abs(float(np.median(values)) - 0.75) < 0.03
    fine = run_alg("topoclear:ndsi", INPUT=str(ben_band(FINLAND)), RESOLUTION=1, OUTPUT=str(tmp_path / "n10.tif"))
    assert read(fine["OUTPUT"]).shape == (120, 120)


def test_snowmap_single_threshold_and_lis_on_real_stacks(run_alg, tmp_path):
    clear = run_alg("topoclear:snowmap", INPUT=str(sen12("s2_clear", "ROIs1158_spring_s2_26_p100")), METHOD=1,
                    OUTPUT=str(tmp_path / "clear.tif"))
    assert clear["SNOW_PERCENT"] > 99.0 and clear["CLOUD_PERCENT"] == 0.0
    assert clear["SNOW_AREA_KM2"] == pytest.approx(6.55, abs=0.01)  # 256 x 256 px of 100 m2
    cloudy = run_alg("topoclear:snowmap", INPUT=str(sen12("s2_cloudy", "ROIs1158_spring_s2_cloudy_26_p100")),
                     OUTPUT=str(tmp_path / "cloudy.tif"))
    assert cloudy["SNOW_PERCENT"] < 0.5 and cloudy["SNOWLINE"] is None


def test_snowmap_lis_with_dem_by_hand(run_alg, tmp_path):
    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW, (2, 0): MARGINAL, (2, 1): MARGINAL}
    files, _ = staircase_scene(tmp_path, layout)
    result = run_alg("topoclear:snowmap", INPUT=str(files["B03"]), DEM=str(files["dem"]),
                     OUTPUT=str(tmp_path / "snow.tif"), FSC=str(tmp_path / "fsc.tif"))
    assert result["SNOWLINE"] == 1200.0 and result["SNOW_PERCENT"] == pytest.approx(2.0)
    classes = read(result["OUTPUT"])
    assert cell(classes, 2, 0) == NO_SNOW and cell(classes, 2, 1) == SNOW
    fsc = read(result["FSC"])
    assert fsc[classes == SNOW].min() > 0 and np.all(fsc[classes == NO_SNOW] == 0)
    # the thresholds are parameters: a stricter pass-2 NDSI keeps the marginal pixel out
    strict = run_alg("topoclear:snowmap", INPUT=str(files["B03"]), DEM=str(files["dem"]), NDSI_PASS2=0.3,
                     OUTPUT=str(tmp_path / "strict.tif"))
    assert cell(read(strict["OUTPUT"]), 2, 1) == NO_SNOW


def test_snowmap_safe_folder_scl_and_extent(run_alg, tmp_path):
    safe = data_path("sentinel2-safe", T22HBD)
    result = run_alg("topoclear:snowmap", SAFE=str(safe), METHOD=1, OUTPUT=str(tmp_path / "safe.tif"))
    classes = read(result["OUTPUT"])
    assert classes.shape == (100, 100) and (classes == CLOUD).sum() == 90 and (classes == NODATA).sum() == 99
    with rasterio.open(result["OUTPUT"]) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    extent = f"{left},{left + 10 * 1098},{top - 20 * 1098},{top} [EPSG:32722]"
    part = run_alg("topoclear:snowmap", SAFE=str(safe), METHOD=1, EXTENT=extent, OUTPUT=str(tmp_path / "part.tif"))
    assert read(part["OUTPUT"]).shape == (20, 10)
    none = run_alg("topoclear:snowmap", SAFE=str(safe), METHOD=1, CLOUD_SOURCE=3, OUTPUT=str(tmp_path / "none.tif"))
    assert none["CLOUD_PERCENT"] == 0.0


def test_band_pickers_and_clear_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    four = tmp_path / "four.tif"
    with rasterio.open(four, "w", driver="GTiff", width=6, height=5, count=4, dtype="uint16", crs=UTM,
                       transform=from_origin(400000, 5100000, 20, 20)) as ds:
        for i, value in enumerate((5000, 5000, 700, 500), start=1):  # green, red, NIR, SWIR1
            ds.write(np.full((5, 6), value, np.uint16), i)
    with pytest.raises(QgsProcessingException, match="does not look like a Sentinel-2"):
        run_alg("topoclear:snowmap", INPUT=str(four), OUTPUT=str(tmp_path / "x.tif"))
    ok = run_alg("topoclear:snowmap", INPUT=str(four), GREEN_BAND=1, RED_BAND=2, SWIR_BAND=4, METHOD=1,
                 OUTPUT=str(tmp_path / "picked.tif"))
    assert ok["SNOW_PERCENT"] == 100.0  # NDSI 0.82, red 0.5
    folder = tmp_path / "no_swir"
    folder.mkdir()
    for band in ("B02", "B03", "B04"):
        write_band(folder / f"T32TLR_20200101T000000_{band}_10m.tif", np.full((4, 4), 1000))
    with pytest.raises(QgsProcessingException, match=r"SWIR1 \(B11"):
        run_alg("topoclear:ndsi", INPUT=str(folder / "T32TLR_20200101T000000_B03_10m.tif"),
                OUTPUT=str(tmp_path / "n.tif"))
    files, z = staircase_scene(tmp_path / "scene", {})
    far = write_band(tmp_path / "far.tif", z, 20.0, "float32", origin=(900000.0, 1000000.0))
    with pytest.raises(QgsProcessingException, match="DEM .* does not overlap"):
        run_alg("topoclear:snowmap", INPUT=str(files["B03"]), DEM=str(far), OUTPUT=str(tmp_path / "y.tif"))
    with pytest.raises(QgsProcessingException, match=r"INPUT: choose a Sentinel-2 layer or a product folder \(SAFE\)"):
        run_alg("topoclear:snowmap", OUTPUT=str(tmp_path / "z.tif"))


def test_snowstats_table_and_csv(run_alg, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils

    import processing

    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW, (6, 9): MARGINAL}
    files, _ = staircase_scene(tmp_path, layout)
    snow = run_alg("topoclear:snowmap", INPUT=str(files["B03"]), DEM=str(files["dem"]),
                   OUTPUT=str(tmp_path / "snow.tif"))["OUTPUT"]
    context = QgsProcessingContext()
    result = processing.run("topoclear:snowstats", {"INPUT": snow, "DEM": str(files["dem"]),
                                                    "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
                                                    "OUTPUT_CSV": str(tmp_path / "bands.csv")},
                            context=context, feedback=QgsProcessingFeedback())
    assert result["SNOW_AREA_KM2"] == pytest.approx(0.0016) and result["SNOW_PERCENT"] == pytest.approx(2.0)
    assert result["SNOWLINE"] == 1200.0 and result["CLOUD_PERCENT"] == 0.0
    table = result["OUTPUT_TABLE"]
    if isinstance(table, str):
        table = QgsProcessingUtils.mapLayerFromString(table, context)
    rows = [f.attributes() for f in table.getFeatures()]
    assert [f.name() for f in table.fields()][:5] == ["band", "band_min_m", "band_max_m", "band_centre_m", "total"]
    assert len(rows) == 11 and rows[4][:8] == ["1400-1500 m", 1400.0, 1500.0, 1450.0, 20, 3, 17, 0]
    assert rows[-1][0] == "all" and rows[-1][4:8] == [200, 4, 196, 0]
    with open(tmp_path / "bands.csv") as handle:
        lines = list(csv.reader(handle))
    assert lines[0][0] == "band" and len(lines) == 12
    # without a DEM: areas and the 'all' row
    bare = processing.run("topoclear:snowstats", {"INPUT": snow, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"},
                          context=context, feedback=QgsProcessingFeedback())
    assert bare["SNOW_PERCENT"] == pytest.approx(2.0) and bare["SNOWLINE"] == 1200.0  # stored by the LIS run
    del table


def test_outputs_open_styled_in_the_project(topoclear_provider, tmp_path):
    import processing
    from qgis.core import QgsProject

    source = str(sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139"))
    try:
        snow = processing.runAndLoadResults("topoclear:snowmap", {"INPUT": source, "OUTPUT": str(tmp_path / "s.tif"),
                                                                  "FSC": str(tmp_path / "fsc.tif")})
        ndsi = processing.runAndLoadResults("topoclear:ndsi", {"INPUT": source, "OUTPUT": str(tmp_path / "n.tif")})
        layers = {layer.source(): layer for layer in QgsProject.instance().mapLayers().values()}
        renderer = layers[snow["OUTPUT"]].renderer()
        assert renderer.type() == "paletted"
        labels = {c.value: c.label for c in renderer.classes()}
        assert labels == {0: "No snow (0)", 100: "Snow (100)", 205: "Cloud (205)"}
        assert {c.value: c.color.name() for c in renderer.classes()}[205] == "#8c8c8c"
        name = "ROIs1970_fall_s2_cloudy_136_p139"
        assert [layers[snow["OUTPUT"]].name(), layers[snow["FSC"]].name(), layers[ndsi["OUTPUT"]].name()] == \
            [f"Snow map of {name}", f"Fractional snow cover of {name}", f"NDSI of {name}"]
        for key, first in ((ndsi["OUTPUT"], -1.0), (snow["FSC"], 0.0)):
            pseudo = layers[key].renderer()
            assert pseudo.type() == "singlebandpseudocolor"
            items = pseudo.shader().rasterShaderFunction().colorRampItemList()
            assert items[0].value == first and items[-1].value == 1.0
        del renderer, pseudo, layers
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_command_line_qgis_process_snowmap(qgis_process, tmp_path):
    out = tmp_path / "cli_snow.tif"
    source = sen12("s2_clear", "ROIs1158_spring_s2_26_p100")
    run = qgis_process("run", "topoclear:snowmap", "--json", "--", f"INPUT={source}", "METHOD=0", f"OUTPUT={out}")
    text = run.stdout
    payload = json.loads(text[text.index("{"):])
    assert payload["results"]["SNOW_PERCENT"] > 99.0
    assert class_fractions(out)[SNOW] > 0.99
    failed = qgis_process("run", "topoclear:snowmap", "--", f"INPUT={source}", "OUTPUT=/no/such/dir/x.tif",
                          check=False)
    assert failed.returncode != 0 and "does not exist" in failed.stdout + failed.stderr
    # the statistics as the README shows them: only the CSV named, the QGIS table is optional there
    csv_path = tmp_path / "cli_snow.csv"
    stats = qgis_process("run", "topoclear:snowstats", "--json", "--", f"INPUT={out}", f"OUTPUT_CSV={csv_path}")
    payload = json.loads(stats.stdout[stats.stdout.index("{"):])["results"]
    assert payload["SNOW_PERCENT"] > 99.0 and not payload.get("OUTPUT_TABLE")
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["band"] == "all" and int(rows[-1]["snow"]) == int(rows[-1]["total"]) - int(rows[-1]["no_snow"])


def test_one_adapter_builds_the_snow_requests(tmp_path):
    """Processing and the dock share one set of choices and one request builder."""
    from topoclear.engine.errors import InputError
    from topoclear.qgis_common.snow_choices import (CLOUD_CHOICES, LIS_FIELDS, METHOD_CHOICES, ImageChoice,
                                                    SnowMapChoice, key_at, sentinel2_input, snow_map_request)

    # the Processing enum indices keep their meaning: 0 auto, 1 SCL, 2 mask raster, 3 none, 4 the pretrained
    # detector (new ones come after)
    assert [c.key for c in CLOUD_CHOICES][:5] == ["auto", "scl", "raster", "none", "detector"]
    assert [c.key for c in METHOD_CHOICES] == ["lis", "threshold"] and key_at(CLOUD_CHOICES, 2) == "raster"
    assert {f.key: f.default for f in LIS_FIELDS}["band_height"] == 100
    image = sentinel2_input(ImageChoice(layer="stack.tif", bands={"B3": 2, "B4": 0}), ("B3", "B4", "B11"))
    assert image.source == "stack.tif" and image.overrides == {"B3": ("stack.tif", 2)}
    with pytest.raises(InputError, match="Choose a Sentinel-2 layer"):
        sentinel2_input(ImageChoice(), ("B3", "B11"))
    with pytest.raises(InputError, match=r"Green \(B3\): a band of the layer was chosen"):
        sentinel2_input(ImageChoice(folder=None, bands={"B3": 1}, files={"B11": "swir.tif"}), ("B3", "B11"))

    out = str(tmp_path / "s.tif")
    request, notes = snow_map_request(SnowMapChoice(image, out, "threshold", {"ndsi_threshold": 0.3}, red_test=False,
                                                    dem="dem.tif", cloud="none", cloud_raster="mask.tif"))
    assert request.params.ndsi_threshold == 0.3 and request.params.red_threshold is None
    assert request.dem is None and request.cloud.kind == "none" and request.cloud.path is None
    assert len(notes) == 2 and "not used" in notes[0] and "does not use the DEM" in notes[1]
    request, notes = snow_map_request(SnowMapChoice(image, out, values={"band_height": 50.0}, dem="dem.tif",
                                                    cloud="raster", cloud_raster="mask.tif"))
    assert request.params.band_height == 50 and request.dem == "dem.tif" and not notes
    assert (request.cloud.kind, request.cloud.path) == ("raster", "mask.tif")
    with pytest.raises(InputError, match="no raster was given"):
        snow_map_request(SnowMapChoice(image, out, cloud="raster"))
    with pytest.raises(InputError, match="band height 10.5"):
        snow_map_request(SnowMapChoice(image, out, values={"band_height": 10.5}))


@needs_detector
def test_snowmap_with_the_pretrained_detector_through_processing(run_alg, tmp_path):
    """CLOUD_SOURCE 4: the detector on the snow-covered 26_p100 stack flags no cloud; the map stays snow."""
    result = run_alg("topoclear:snowmap", INPUT=str(sen12("s2_clear", "ROIs1158_spring_s2_26_p100")), METHOD=1,
                     CLOUD_SOURCE=4, OUTPUT=str(tmp_path / "det.tif"))
    assert result["CLOUD_PERCENT"] < 3.0 and result["SNOW_PERCENT"] > 99.0


def test_snowmap_cloud_mask_raster_through_processing(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    source = sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139")
    from test_snow_engine import _bright_cloud_mask

    mask = _bright_cloud_mask(source, tmp_path / "cloud.tif")
    masked = run_alg("topoclear:snowmap", INPUT=str(source), METHOD=1, CLOUD_SOURCE=2, CLOUD_MASK=str(mask),
                     OUTPUT=str(tmp_path / "masked.tif"))
    assert 20 < masked["CLOUD_PERCENT"] < 60
    with pytest.raises(QgsProcessingException, match="no raster was given"):
        run_alg("topoclear:snowmap", INPUT=str(source), CLOUD_SOURCE=2, OUTPUT=str(tmp_path / "x.tif"))


@pytest.mark.parametrize("alg", ["ndsi", "snowmap", "snowstats"])
def test_every_parameter_has_a_short_label_and_a_tooltip(topoclear_provider, alg):
    """Labels fit the dialog's parameter panel (about 376 px at 1280x800); explanations are in the help.
    The snow map shows the default method's (Let It Snow) thresholds and keeps the single threshold's
    under Advanced."""
    definition = topoclear_provider.algorithm(alg)
    for d in definition.parameterDefinitions():
        label = d.description() + (" [optional]" if d.flags() & d.FlagOptional else "")
        assert len(label) <= 56 and "[optional]" not in d.description(), (d.name(), label)
        if hasattr(d, "help"):
            assert len(d.help()) > 20, d.name()
    if alg == "snowmap":
        from topoclear.qgis_common.snow_choices import LIS_FIELDS, THRESHOLD_FIELDS

        advanced = {d.name() for d in definition.parameterDefinitions() if d.flags() & d.FlagAdvanced}
        assert not advanced & {f.name for f in LIS_FIELDS}
        assert {f.name for f in THRESHOLD_FIELDS} | {"RED_TEST"} <= advanced
        assert all(definition.parameterDefinition(f.name).description().startswith("Let It Snow") for f in LIS_FIELDS)
        assert all(definition.parameterDefinition(f.name).description().startswith("Single threshold")
                   for f in THRESHOLD_FIELDS)
