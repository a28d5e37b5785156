"""The cloud algorithms through Processing and qgis_process: weights, variants, errors, evaluation, no torch.

Weights are small real architectures with random initial weights saved through
``engine.checkpoints`` (safetensors + model card), exactly as trained weights are.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
import torch

from conftest import REPO_ROOT, data_path, log_feedback, model_index, save_weights
from topoclear.engine.clouds.evaluation import evaluate_rasters
from topoclear.models import build_model

S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
S1 = ("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    return {"dsen2cr": save_weights(folder / "dsen2cr_small", build_model("dsen2cr", features=8, blocks=2),
                                    features=8, blocks=2),
            "dsen2cr_nosar": save_weights(folder / "dsen2cr_small_nosar",
                                          build_model("dsen2cr", s1_bands=0, features=8, blocks=2),
                                          features=8, blocks=2),
            "unet": save_weights(folder / "unet_small", build_model("unet", widths=(4, 4, 4, 4, 4, 4)),
                                 widths=[4, 4, 4, 4, 4, 4])}


def test_remove_clouds_from_the_toolbox(run_alg, weights, tmp_path):
    s2, s1 = data_path(*S2), data_path(*S1)
    feedback = log_feedback()
    out = tmp_path / "clear.tif"
    result = run_alg("topoclear:removeclouds", feedback=feedback, INPUT=str(s2), S1=str(s1),
                     MODEL=model_index("dsen2cr"), WEIGHTS=weights["dsen2cr"], TILE_SIZE=96, DEVICE="cpu",
                     OUTPUT=str(out))
    assert result["OUTPUT"] == str(out) and result["DEVICE_USED"].startswith("cpu")
    assert result["MODEL_USED"].startswith("DSen2-CR") and 0 < result["CLOUD_PERCENT"] < 100
    text = "\n".join(feedback.lines)
    assert "Device: cpu" in text and "Cloud mask: Automatic -> " in text and "Tiling:" in text
    with rasterio.open(out) as o, rasterio.open(s2) as i:
        assert (o.count, o.dtypes, o.crs, o.transform) == (i.count, i.dtypes, i.crs, i.transform)
        assert o.descriptions[1] == "B2, cloud removed (dsen2cr)"

    # no Sentinel-1: weights trained with SAR are refused, the optical-only weights run
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="trained with Sentinel-1"):
        run_alg("topoclear:removeclouds", INPUT=str(s2), MODEL=model_index("dsen2cr"), WEIGHTS=weights["dsen2cr"],
                OUTPUT=str(tmp_path / "x.tif"))
    result = run_alg("topoclear:removeclouds", INPUT=str(s2), MODEL=model_index("dsen2cr"),
                     WEIGHTS=weights["dsen2cr_nosar"], MASK_TYPE=4, TILE_SIZE=128, OUTPUT=str(tmp_path / "nosar.tif"))
    assert result["CLOUD_PERCENT"] is None  # no mask
    # weights of another model, a model that needs a DEM, no shipped weights
    with pytest.raises(QgsProcessingException, match="holds a 'unet' model, not 'dsen2cr'"):
        run_alg("topoclear:removeclouds", INPUT=str(s2), S1=str(s1), MODEL=model_index("dsen2cr"),
                WEIGHTS=weights["unet"], OUTPUT=str(tmp_path / "x.tif"))
    with pytest.raises(QgsProcessingException, match="needs a DEM"):
        run_alg("topoclear:removeclouds", INPUT=str(s2), S1=str(s1), MODEL=model_index("crt_unet"),
                OUTPUT=str(tmp_path / "x.tif"))
    with pytest.raises(QgsProcessingException, match="no trained weights are shipped"):
        run_alg("topoclear:removeclouds", INPUT=str(s2), S1=str(s1), MODEL=model_index("cr_gan"),
                OUTPUT=str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()


def test_band_order_and_too_few_bands(run_alg, weights, tmp_path):
    from qgis.core import QgsProcessingException

    s2, s1 = data_path(*S2), data_path(*S1)
    with rasterio.open(s2) as ds:
        data, profile = ds.read(), ds.profile
    # four bands of the 10-band set, in an unusual order and without names
    four = tmp_path / "four.tif"
    with rasterio.open(four, "w", **dict(profile, count=4)) as ds:
        ds.write(data[[7, 3, 2, 1]])  # B8, B4, B3, B2
    with pytest.raises(QgsProcessingException, match="does not look like a Sentinel-2"):
        run_alg("topoclear:removeclouds", INPUT=str(four), S1=str(s1), MODEL=model_index("unet"),
                WEIGHTS=weights["unet"], OUTPUT=str(tmp_path / "x.tif"))
    with pytest.raises(QgsProcessingException, match=r"needs the Sentinel-2 bands B2, B3, B4, B5.*explicitly: B5, B6, B7, B8A"):
        run_alg("topoclear:removeclouds", INPUT=str(four), S1=str(s1), MODEL=model_index("unet"),
                WEIGHTS=weights["unet"], BANDS="B8,B4,B3,B2", OUTPUT=str(tmp_path / "x.tif"))
    # the 10-band weights on a stack whose bands are named in another order: found by name
    named = tmp_path / "named.tif"
    order = [12, 11, 8, 7, 6, 5, 4, 3, 2, 1]  # B12, B11, B8A, B8, B7, B6, B5, B4, B3, B2
    names = ["B12", "B11", "B8A", "B8", "B7", "B6", "B5", "B4", "B3", "B2"]
    with rasterio.open(named, "w", **dict(profile, count=10)) as ds:
        ds.write(data[order])
        for i, n in enumerate(names, start=1):
            ds.set_band_description(i, n)
    out = tmp_path / "named_out.tif"
    run_alg("topoclear:removeclouds", INPUT=str(named), S1=str(s1), MODEL=model_index("unet"), WEIGHTS=weights["unet"],
            MASK_TYPE=4, TILE_SIZE=512, OUTPUT=str(out))
    with rasterio.open(out) as ds:
        assert ds.descriptions[0] == "B12, cloud removed (unet)" and ds.count == 10


class OtherProviderLayer:
    """Stands for a map layer of a provider other than GDAL (a WMS basemap)."""

    def providerType(self):  # noqa: N802
        return "wms"

    def name(self):
        return "basemap"


def test_choices_become_one_request_and_errors_name_the_parameter(topoclear_provider, tmp_path):
    """The adapter the toolbox and the dock share: what was chosen -> one CloudRemovalRequest."""
    from dataclasses import replace

    from topoclear.engine.clouds.masks.kinds import mask_methods
    from topoclear.models.registry import removal_models
    from topoclear.qgis_common.cloud_choices import ChoiceError, CloudChoices

    s2 = str(data_path(*S2))
    choices = CloudChoices(s2=s2, model="unet", bands="B2,-,B4", s1_bands="VV=2,VH=1", batch_size=4, blend="crop",
                           amp="off", coverage="fill", mask_method="computed", mask=s2, output=str(tmp_path / "o.tif"))
    request = choices.request()
    assert (request.s2, request.model, request.mask, request.mask_kind) == (s2, "unet", None, "computed")
    assert request.s2_overrides == {"B2": (None, 1), "B4": (None, 3)} and request.s1_bands == {"VV": 2, "VH": 1}
    o = request.options
    assert (o.tile, o.overlap, o.batch_size, o.mode, o.amp, o.policy, o.device) == (None, None, 4, "crop", "off",
                                                                                      "fill", "auto")
    assert choices.notes() == ["A cloud mask raster was given but the cloud mask choice does not use it."]
    for changes, parameter in ((dict(s2=None), "INPUT"), (dict(model=None), "MODEL"), (dict(output="o.png"), "OUTPUT"),
                               (dict(mask_method="scl", mask=None), "CLOUD_MASK"), (dict(bands="B2,Q7"), "BANDS"),
                               (dict(s1_bands="VV=x"), "S1_BANDS"), (dict(mask_method="snowy"), "MASK_TYPE"),
                               (dict(s1=OtherProviderLayer()), "S1")):
        with pytest.raises(ChoiceError, match=f"^{parameter}: ") as error:
            replace(choices, **changes).request()
        assert error.value.parameter == parameter
    with pytest.raises(ChoiceError, match=r"^Sentinel-2 \(cloudy\): choose a Sentinel-2 layer"):
        replace(choices, s2=None, names={"INPUT": "Sentinel-2 (cloudy)"}).request()

    # the toolbox's choices are the method catalogue (automatic, the fill, the networks) and the mask methods
    from topoclear.engine.clouds.methods.catalogue import removal_methods

    alg = topoclear_provider.algorithm("removeclouds").create()
    assert alg.parameterDefinition("MODEL").options() == [m.title for m in removal_methods()]
    assert alg.parameterDefinition("MODEL").defaultValue() == model_index("auto") == 0  # automatic
    assert model_index("fill") == 1
    networks = [m.key for m in removal_methods() if m.kind == "network"]
    assert [spec.name for spec in removal_models()] == networks
    assert [o.split(":")[0] for o in alg.parameterDefinition("MASK_TYPE").options()] == [
        m.title for m in mask_methods("removal")]
    evaluate = topoclear_provider.algorithm("evaluate").create()
    assert evaluate.parameterDefinition("MASK_TYPE").options() == [m.title for m in mask_methods("evaluate")]


def test_evaluate_table_and_report(run_alg, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils

    import processing

    cloudy = data_path("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")
    clear = data_path("sen12ms-cr", "s2_clear", "ROIs1158_spring_s2_39_p500.tif")
    with rasterio.open(clear) as ds:
        data, profile = ds.read(), ds.profile
    rng = np.random.default_rng(0)
    prediction = tmp_path / "prediction.tif"
    with rasterio.open(prediction, "w", **profile) as ds:
        ds.write(np.clip(data + rng.normal(0, 100, data.shape), 1, 10000).astype(np.uint16))
    with rasterio.open(cloudy) as ds:
        mask = (ds.read(2) > 2000).astype(np.uint8)
    mask_path = tmp_path / "mask.tif"
    with rasterio.open(mask_path, "w", **dict(profile, count=1, dtype="uint8")) as ds:
        ds.write(mask[None])
    context = QgsProcessingContext()
    report = tmp_path / "report.html"
    result = processing.run("topoclear:evaluate", {
        "PREDICTION": str(prediction), "REFERENCE": str(clear), "CLOUDY": str(cloudy), "MASK": str(mask_path),
        "OUTPUT_TABLE": "TEMPORARY_OUTPUT", "OUTPUT_HTML": str(report)}, context=context,
        feedback=QgsProcessingFeedback())
    expected = evaluate_rasters(str(prediction), str(clear), str(cloudy), str(mask_path))
    assert result["MAE"] == pytest.approx(expected.values["mae"]) and result["SAM"] == pytest.approx(
        expected.values["sam"])
    assert 0.009 < result["RMSE"] < 0.011 and result["PSNR"] == pytest.approx(-20 * np.log10(result["RMSE"]))
    table = result["OUTPUT_TABLE"]
    if isinstance(table, str):
        table = QgsProcessingUtils.mapLayerFromString(table, context)
    rows = {(f["key"]): (f["metric"], f["region"], f["value"], f["unit"]) for f in table.getFeatures()}
    assert rows["sam"][3] == "degrees" and rows["psnr"][3] == "dB" and rows["mae"][3] == "reflectance"
    assert rows["psnr_cloudy"][1] == "cloudy pixels" and rows["mae_reproduction"][2] > 0.01
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 3 and "Cloudy input" in html and "SAM" in html
    del table


def test_no_torch_import_until_run_and_can_execute_says_how_to_install(topoclear_provider, monkeypatch):
    import topoclear.processing_provider.base as base

    alg = topoclear_provider.algorithm("removeclouds")
    assert alg is not None and alg.group() == "Clouds"
    assert alg.canExecute() == (True, "")
    monkeypatch.setattr(base, "missing_torch_packages", lambda: ["torch"])
    ok, message = alg.canExecute()
    assert not ok and "PyTorch" in message and "pip install torch" in message
    # a Python where torch cannot be imported still loads the provider and lists the algorithms
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # import torch -> ImportError
        sys.path.insert(0, {str(REPO_ROOT.parent)!r})
        import os; os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication
        app = QgsApplication([], False); app.initQgis()
        import importlib.util, types
        spec = importlib.util.spec_from_file_location("topoclear", {str(REPO_ROOT / "__init__.py")!r},
                                                      submodule_search_locations=[{str(REPO_ROOT)!r}])
        module = importlib.util.module_from_spec(spec); sys.modules["topoclear"] = module; spec.loader.exec_module(module)
        from topoclear.processing_provider.provider import TopoClearProvider
        provider = TopoClearProvider(); QgsApplication.processingRegistry().addProvider(provider)
        alg = provider.algorithm("removeclouds")
        print("RESULT", alg is not None, alg.canExecute()[0], "PyTorch" in alg.canExecute()[1],
              provider.algorithm("evaluate") is not None)
        QgsApplication.processingRegistry().removeProvider(provider)
        app.exitQgis()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    line = [l for l in run.stdout.splitlines() if l.startswith("RESULT")]
    assert line == ["RESULT True False True True"], run.stdout + run.stderr


def test_qgis_process_runs_removeclouds(qgis_process, weights, tmp_path):
    s2, s1 = data_path(*S2), data_path(*S1)
    help_text = qgis_process("help", "topoclear:removeclouds").stdout
    assert "Sentinel-1" in help_text and "WEIGHTS" in help_text
    out = tmp_path / "qp.tif"
    run = qgis_process("run", "topoclear:removeclouds", "--json", "--", f"INPUT={s2}", f"S1={s1}",
                       f"MODEL={model_index('dsen2cr')}", f"WEIGHTS={weights['dsen2cr']}", "TILE_SIZE=128",
                       "DEVICE=cpu", f"OUTPUT={out}")
    payload = json.loads(run.stdout[run.stdout.index("{"):])
    assert payload["results"]["DEVICE_USED"].startswith("cpu") and out.exists()
    failed = qgis_process("run", "topoclear:removeclouds", "--", f"INPUT={s2}", f"S1={s1}",
                          f"MODEL={model_index('dsen2cr')}", f"WEIGHTS={weights['dsen2cr']}", "DEVICE=cuda:7",
                          f"OUTPUT={tmp_path / 'gpu.tif'}", check=False)
    if not torch.cuda.is_available():
        assert failed.returncode != 0 and "sees no CUDA GPU" in failed.stdout + failed.stderr


def test_cloud_removal_then_snow_map_in_a_modeler_model(run_alg, weights, tmp_path):
    """A graphical-modeler model chaining removeclouds into snowmap runs like any algorithm."""
    from qgis.core import (QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterRasterLayer)

    static = QgsProcessingModelChildParameterSource.fromStaticValue
    model = QgsProcessingModelAlgorithm("Clear clouds and map snow", "TopoClear tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("s2", "Sentinel-2"), QgsProcessingModelParameter("s2"))
    clouds = QgsProcessingModelChildAlgorithm("topoclear:removeclouds")
    clouds.setChildId("clouds")
    clouds.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("s2")])
    for name, value in (("MODEL", model_index("dsen2cr")), ("WEIGHTS", weights["dsen2cr_nosar"]),
                        ("TILE_SIZE", 128), ("DEVICE", "cpu")):
        clouds.addParameterSources(name, [static(value)])
    model.addChildAlgorithm(clouds)
    snow = QgsProcessingModelChildAlgorithm("topoclear:snowmap")
    snow.setChildId("snow")
    snow.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("clouds", "OUTPUT")])
    snow.addParameterSources("METHOD", [static(1)])
    output = QgsProcessingModelOutput("snow map")
    output.setChildId("snow")
    output.setChildOutputName("OUTPUT")
    snow.setModelOutputs({"snow map": output})
    model.addChildAlgorithm(snow)
    assert model.dependsOnChildAlgorithms("snow") == {"clouds"}

    out = tmp_path / "snow.tif"
    result = run_alg(model, s2=str(data_path(*S2)), **{"snow:snow map": str(out)})
    assert result["snow:snow map"] == str(out)
    with rasterio.open(out) as ds, rasterio.open(data_path(*S2)) as src:
        classes = set(np.unique(ds.read(1)).tolist())
        assert (ds.width, ds.height, ds.crs) == (src.width, src.height, src.crs)
    assert classes <= {0, 100, 205, 255} and 0 in classes


TERRAMIND = ("terramind", "{}", "282D_485L_3_3.tif")


def terramind(kind: str):
    return data_path(TERRAMIND[0], kind, TERRAMIND[2])


def test_defaults_on_sentinel2_alone_named_compressed_layers_and_a_tile_count(topoclear_provider, tmp_path):
    """With its defaults (Automatic method, automatic mask) on a Sentinel-2 layer alone, removeclouds runs, its
    outputs load as "Cloud-free <layer>" and "Observed <layer>", are DEFLATE-compressed and not much larger than
    the input, and the log counts windows or tiles with the time left."""
    import os

    import processing
    from qgis.core import QgsProject, QgsRasterLayer

    s2 = terramind("S2L2A")
    alg = topoclear_provider.algorithm("removeclouds")
    for name in ("DEVICE", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "CREATION_OPTIONS"):
        assert alg.parameterDefinition(name).flags() & alg.parameterDefinition(name).FlagAdvanced, name
    assert all(":" not in o for o in alg.parameterDefinition("MASK_TYPE").options())
    assert alg.helpUrl().endswith("#removeclouds") and alg.shortDescription() and "cloud" in alg.tags()
    layer = QgsRasterLayer(str(s2), "TerraMind L2A")
    QgsProject.instance().addMapLayer(layer)
    feedback = log_feedback()
    try:
        out = tmp_path / "clear.tif"
        result = processing.runAndLoadResults("topoclear:removeclouds", {"INPUT": layer.id(), "OUTPUT": str(out),
                                                                         "OBSERVED": str(tmp_path / "seen.tif")},
                                              feedback=feedback)
        names = {lay.name() for lay in QgsProject.instance().mapLayers().values()}
        assert {"Cloud-free TerraMind L2A", "Observed TerraMind L2A"} <= names, names
    finally:
        QgsProject.instance().removeAllMapLayers()
    text = "\n".join(feedback.lines)
    assert "Automatic" in text and re.search(r"(Window|Tile) \d+ / \d+, ", text), text
    assert os.path.getsize(out) <= 1.5 * os.path.getsize(s2), (os.path.getsize(out), os.path.getsize(s2))
    with rasterio.open(out) as o, rasterio.open(s2) as i, rasterio.open(result["OBSERVED"]) as obs:
        assert (o.count, o.dtypes, o.transform) == (i.count, i.dtypes, i.transform)
        assert o.profile["compress"].lower() == "deflate" and o.profile["tiled"]
        assert obs.profile["compress"].lower() == "deflate"


def test_creation_options_replace_the_compression_and_errors_name_the_parameter(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    s2 = terramind("S2L2A")
    out = tmp_path / "plain.tif"
    run_alg("topoclear:removeclouds", INPUT=str(s2), MODEL=model_index("fill"), CREATION_OPTIONS="COMPRESS=NONE",
            OUTPUT=str(out))
    with rasterio.open(out) as ds:
        assert ds.profile.get("compress") is None
    run_alg("topoclear:removeclouds", INPUT=str(s2), MODEL=model_index("fill"),
            CREATION_OPTIONS="COMPRESS=LZW|PREDICTOR=2", OUTPUT=str(out))
    with rasterio.open(out) as ds:
        assert ds.profile["compress"].lower() == "lzw"
    with pytest.raises(QgsProcessingException, match=r"CREATION_OPTIONS: 'DEFLATE' is not KEY=VALUE"):
        run_alg("topoclear:removeclouds", INPUT=str(s2), CREATION_OPTIONS="DEFLATE", OUTPUT=str(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()


def test_a_terrain_stack_given_for_the_dem_is_used_as_it_is(run_alg, tmp_path):
    """The output of terrainstack given for DEM: recognised, its bands used (not derived again), and the result
    is the one the DEM itself gives (the stack lies on the scene's grid)."""
    s2, s1, dem = terramind("S2L2A"), terramind("S1RTC"), terramind("DEM")
    stack = tmp_path / "stack.tif"
    run_alg("topoclear:terrainstack", INPUT=str(dem), REFERENCE=str(s2), OUTPUT=str(stack))
    outputs = {}
    for name, source in (("stack", stack), ("dem", dem)):
        feedback = log_feedback()
        outputs[name] = tmp_path / f"from_{name}.tif"
        result = run_alg("topoclear:removeclouds", feedback=feedback, INPUT=str(s2), S1=str(s1), DEM=str(source),
                         MODEL=model_index("crt_unet"), DEVICE="cpu", OUTPUT=str(outputs[name]))
        assert result["MODEL_USED"].startswith("CRT-UNet")
        text = "\n".join(feedback.lines)
        if name == "stack":
            assert "stack.tif is a terrain stack" in text and "not derived again" in text, text
        else:
            assert "is a terrain stack" not in text and "terrain computed on the DEM grid" in text, text
    with rasterio.open(outputs["stack"]) as a, rasterio.open(outputs["dem"]) as b:
        assert np.array_equal(a.read(), b.read())


@pytest.mark.parametrize("alg", ["removeclouds", "cloudmask", "evaluate"])
def test_cloud_dialogs_have_short_labels_and_menus(topoclear_provider, alg):
    """Labels and menu entries fit the dialog's parameter panel (no horizontal scroll bar at 1000 px): each
    label once marked optional by QGIS itself, explanations in the tooltips and the help."""
    definition = topoclear_provider.algorithm(alg)
    for d in definition.parameterDefinitions():
        label = d.description() + (" [optional]" if d.flags() & d.FlagOptional else "")
        assert len(label) <= 56 and "[" not in d.description(), (d.name(), label)
        for option in (d.options() if hasattr(d, "options") else []):  # a menu is as wide as its longest entry
            assert len(option) <= 46, (d.name(), option)
        if alg != "evaluate" and hasattr(d, "help"):
            assert len(d.help()) > 20, d.name()
