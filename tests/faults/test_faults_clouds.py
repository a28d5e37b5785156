"""Fault battery, clouds: cloud removal and its evaluation given bad inputs, weights, model cards and
outputs.

Weights are small real architectures saved through ``engine.checkpoints`` (safetensors + model card),
then damaged on purpose: pickles under weights names, cards with impossible options or versions,
NaN tensors. Inputs are copies of real SEN12MS-CR scenes in the test's folder.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import data_path
from faultkit import (Watched, check_message, copy_in, dot_spelling, fails, readonly_dir,  # noqa: F401
                      run_processing_child, small_disk, succeeds, truncated_copy, write_raster)

torch = pytest.importorskip("torch")

S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
S1 = ("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif")
CLEAR = ("sen12ms-cr", "s2_clear", "ROIs1158_spring_s2_39_p500.tif")
CLOUDY = ("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")


def _method_index(key: str) -> int:
    """The MODEL value of a method (the menu follows the catalogue's order)."""
    from topoclear.engine.clouds.methods.catalogue import removal_methods

    return next(i for i, m in enumerate(removal_methods()) if m.key == key)


UNET = _method_index("unet")  # MODEL index of the UNet
NO_MASK = 4  # MASK_TYPE "none"


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A small optical-only UNet (random initial weights) saved with its model card."""
    from topoclear.engine import checkpoints
    from topoclear.models import build_model

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = build_model("unet", s1_bands=0, widths=(4, 4, 4, 4, 4, 4))
    model.build_options = {"widths": [4] * 6}
    checkpoints.save_model(folder / "unet_small", model)
    return folder


@pytest.fixture()
def weights(tmp_path, weights_dir):
    """The small UNet's weights and card copied into ``<tmp>/in``."""
    for name in ("unet_small.safetensors", "unet_small.json"):
        copy_in(weights_dir / name, tmp_path / "in")
    return str(tmp_path / "in" / "unet_small.safetensors")


@pytest.fixture()
def s2(tmp_path):
    (tmp_path / "out").mkdir(exist_ok=True)
    return copy_in(data_path(*S2), tmp_path / "in", "scene.tif")


@pytest.fixture()
def s1(tmp_path):
    return copy_in(data_path(*S1), tmp_path / "in", "radar.tif")


@pytest.fixture()
def dem(tmp_path, s2):
    """A DEM on the scene's grid (real SRTM values of another place, for refusal cases only)."""
    with rasterio.open(data_path("dem", "bigtujunga.tif")) as src, rasterio.open(s2) as ref:
        z = src.read(1)[:ref.height, :ref.width]
        return write_raster(tmp_path / "in" / "dem.tif", z, ref.transform, ref.crs)


@pytest.fixture()
def mask(tmp_path, s2):
    with rasterio.open(s2) as ds:
        return write_raster(tmp_path / "in" / "mask.tif", (ds.read(2) > 2000).astype(np.uint8), ds.transform, ds.crs)


def out(tmp_path, name="result.tif"):
    return str(tmp_path / "out" / name)


def run_params(s2, weights, **extra):
    params = dict(INPUT=s2, MODEL=UNET, WEIGHTS=weights, MASK_TYPE=NO_MASK, DEVICE="cpu")
    params.update(extra)
    return params


def edited_card(weights, name, edit):
    """Weights copied as ``<name>.safetensors`` with a card changed by ``edit(card)``."""
    folder = os.path.dirname(weights)
    card = json.loads(open(weights[:-len(".safetensors")] + ".json").read())
    edit(card)
    shutil.copyfile(weights, os.path.join(folder, name + ".safetensors"))
    with open(os.path.join(folder, name + ".json"), "w") as handle:
        json.dump(card, handle)
    return os.path.join(folder, name + ".safetensors")


# ------------------------------------------------------------------------------------------------
# 1. outputs that are inputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["plain", "dot"])
@pytest.mark.parametrize("which", ["INPUT", "S1", "DEM", "CLOUD_MASK"])
def test_removeclouds_onto_an_input_is_refused(run_alg, tmp_path, s2, s1, dem, mask, weights, which, spelling):
    path = {"INPUT": s2, "S1": s1, "DEM": dem, "CLOUD_MASK": mask}[which]
    target = path if spelling == "plain" else dot_spelling(path)
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bOUTPUT\b", rf"\b{which}\b", os.path.basename(path), r"never overwrites",
              **run_params(s2, weights, S1=s1, DEM=dem, CLOUD_MASK=mask, MASK_TYPE=2), OUTPUT=target)


def test_removeclouds_into_the_product_folder_is_refused(run_alg, tmp_path, weights):
    (tmp_path / "out").mkdir()
    safe = tmp_path / "in" / "product.SAFE"
    shutil.copytree(data_path("sentinel2-safe", "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"),
                    safe)
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bOUTPUT\b", r"\bSAFE\b", r"inside the input folder", SAFE=str(safe),
              MODEL=UNET, WEIGHTS=weights, MASK_TYPE=NO_MASK, OUTPUT=str(safe / "clear.tif"))


@pytest.mark.parametrize("which", ["PREDICTION", "REFERENCE", "CLOUDY", "MASK"])
def test_evaluate_report_onto_an_input_is_refused(run_alg, tmp_path, which):
    (tmp_path / "out").mkdir()
    files = {"PREDICTION": copy_in(data_path(*CLEAR), tmp_path / "in", "prediction.tif"),
             "REFERENCE": copy_in(data_path(*CLEAR), tmp_path / "in", "reference.tif"),
             "CLOUDY": copy_in(data_path(*CLOUDY), tmp_path / "in", "cloudy.tif")}
    with rasterio.open(files["CLOUDY"]) as ds:
        files["MASK"] = write_raster(tmp_path / "in" / "mask.tif", (ds.read(2) > 2000).astype(np.uint8),
                                     ds.transform, ds.crs)
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bOUTPUT_HTML\b", rf"\b{which}\b", os.path.basename(files[which]),
              r"never overwrites", **files, OUTPUT_HTML=dot_spelling(files[which]))


def test_evaluate_table_onto_the_prediction_is_refused(run_alg, tmp_path):
    (tmp_path / "out").mkdir()
    prediction = copy_in(data_path(*CLEAR), tmp_path / "in", "prediction.tif")
    reference = copy_in(data_path(*CLEAR), tmp_path / "in", "reference.tif")
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bOUTPUT_TABLE\b", r"\bPREDICTION\b", r"never overwrites",
              PREDICTION=prediction, REFERENCE=reference, OUTPUT_TABLE=prediction)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ""])
def test_cloud_free_image_must_be_named_as_geotiff(run_alg, tmp_path, s2, weights, suffix):
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bOUTPUT\b", r"result" + suffix.replace(".", r"\.") + r"\b", r"\.tif",
              **run_params(s2, weights), OUTPUT=out(tmp_path, "result" + suffix))


# ------------------------------------------------------------------------------------------------
# 6. broken inputs and impossible settings
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["INPUT", "S1", "DEM", "CLOUD_MASK"])
def test_truncated_inputs(run_alg, tmp_path, s2, s1, dem, mask, weights, which):
    path = {"INPUT": s2, "S1": s1, "DEM": dem, "CLOUD_MASK": mask}[which]
    broken = truncated_copy(path, tmp_path / "in" / "cut.tif")
    params = run_params(s2, weights)
    params[which] = broken
    if which == "CLOUD_MASK":
        params["MASK_TYPE"] = 2
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", rf"\b{which}\b", r"cut\.tif", r"truncated|corrupt", **params,
              OUTPUT=out(tmp_path))


@pytest.mark.parametrize("tile", [1, 33])
def test_tile_sizes_the_model_cannot_take(run_alg, tmp_path, s2, weights, tile):
    """TILE_SIZE 1 or 33 gave raw tracebacks."""
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bTILE_SIZE\b", rf"\b{tile}\b", r"multiple|at least|too small",
              **run_params(s2, weights, TILE_SIZE=tile), OUTPUT=out(tmp_path))


def test_overlap_larger_than_the_tile(run_alg, tmp_path, s2, weights):
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bOVERLAP\b", r"\b100\b", r"TILE_SIZE|tile", r"\b64\b",
              **run_params(s2, weights, TILE_SIZE=64, OVERLAP=100), OUTPUT=out(tmp_path))


def test_mask_raster_chosen_without_a_mask(run_alg, tmp_path, s2, weights):
    """MASK_TYPE 'raster' without a mask said 'file not found: None'."""
    with Watched(tmp_path):
        text = fails(run_alg, "removeclouds", r"\bCLOUD_MASK\b", r"no (cloud )?(mask|raster|layer)|choose",
                     **run_params(s2, weights, MASK_TYPE=2), OUTPUT=out(tmp_path))
    assert "None" not in text


def test_nan_and_infinite_input_pixels_become_nodata(run_alg, tmp_path, s2, weights):
    """NaN / inf input pixels were written as NaN and +inf in an output without nodata."""
    with rasterio.open(s2) as ds:
        data, profile = ds.read().astype(np.float32) / 10000.0, ds.profile
    data[:, :16, :16] = np.nan
    data[:, 40:56, 40:56] = np.inf
    floats = tmp_path / "in" / "floats.tif"
    with rasterio.open(floats, "w", **dict(profile, dtype="float32", nodata=None)) as ds:
        ds.write(data)
    result = succeeds(run_alg, "removeclouds", **run_params(str(floats), weights), OUTPUT=out(tmp_path))
    with rasterio.open(result["OUTPUT"]) as ds:
        values, nodata = ds.read(), ds.nodata
    assert nodata is not None, "non-finite input pixels but the output declares no nodata"
    assert not np.isinf(values).any(), "infinite values written"
    bad = ~np.isfinite(data)
    written = values[bad]
    assert (np.isnan(written) if np.isnan(nodata) else written == nodata).all()
    assert np.isfinite(values[~bad]).all()


# ------------------------------------------------------------------------------------------------
# weights and model cards
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl"])
def test_pickled_weights_are_refused_by_name(run_alg, tmp_path, s2, weights, suffix):
    """evil.pt was reported as 'model weights not found: evil.pt.safetensors'."""
    evil = tmp_path / "in" / f"evil{suffix}"
    torch.save({"weight": torch.zeros(2)}, evil)
    with Watched(tmp_path):
        text = fails(run_alg, "removeclouds", r"\bWEIGHTS\b", rf"evil\{suffix}", r"safetensors",
                     r"pickle|PyTorch|\.pt|code", **run_params(s2, str(evil)), OUTPUT=out(tmp_path))
    assert "not found" not in text


def test_a_pickle_under_a_safetensors_name_is_refused(run_alg, tmp_path, s2, weights):
    fake = tmp_path / "in" / "fake.safetensors"
    torch.save({"weight": torch.zeros(2)}, fake)
    shutil.copyfile(weights[:-len(".safetensors")] + ".json", tmp_path / "in" / "fake.json")
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"fake\.safetensors", r"not a (readable )?safetensors|pickle",
              **run_params(s2, str(fake)), OUTPUT=out(tmp_path))


def test_a_folder_as_weights(run_alg, tmp_path, s2, weights):
    folder = tmp_path / "in" / "weights_folder"
    folder.mkdir()
    with Watched(tmp_path):
        text = fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"weights_folder", r"folder", r"\.safetensors",
                     **run_params(s2, str(folder)), OUTPUT=out(tmp_path))
    assert "weights_folder.safetensors" not in text


@pytest.mark.parametrize("version", ["x", 1.5, True, 0, 99])
def test_card_format_version(run_alg, tmp_path, s2, weights, version):
    """format_version "x" gave a raw traceback."""
    path = edited_card(weights, "versioned", lambda card: card.update(format_version=version))
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"versioned\.json", r"format_version|version",
              r"update TopoClear|whole number|expected|reads", **run_params(s2, path), OUTPUT=out(tmp_path))


def test_card_option_too_large_is_refused_before_any_allocation(tmp_path, s2, weights):
    """widths [..., 200000] made removeclouds allocate 1.44 TB before checking anything. The run is made in a
    child process limited to 8 GB of address space: it must end with a message, not a crash."""
    path = edited_card(weights, "huge", lambda card: card["architecture"]["options"].update(
        widths=[4, 4, 4, 4, 4, 200000]))
    (tmp_path / "out").mkdir(exist_ok=True)
    with Watched(tmp_path):
        result = run_processing_child("topoclear:removeclouds", dict(run_params(s2, path), OUTPUT=out(tmp_path)))
    assert result.get("ok") is False and "error" in result, result
    check_message(result["error"], r"\bWEIGHTS\b", r"huge\.(json|safetensors)", r"widths", r"200000",
                  r"at most|bound|out of range|too large|does not match")


@pytest.mark.parametrize("option, value", [("widths", [4, 4, 4, 4, 4, -4]), ("widths", "wide"),
                                           ("widths", [4] * 1000), ("residual", {"nested": [1, 2]})])
def test_card_options_are_bounded(run_alg, tmp_path, s2, weights, option, value):
    path = edited_card(weights, "odd", lambda card: card["architecture"]["options"].update({option: value}))
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"odd\.(json|safetensors)", rf"\b{option}\b",
              **run_params(s2, path), OUTPUT=out(tmp_path))


def test_nan_weights_are_blamed_on_the_weights(run_alg, tmp_path, s2, weights):
    """NaN-filled weights were blamed on the input."""
    from topoclear.engine import checkpoints
    from topoclear.models import build_model

    model = build_model("unet", s1_bands=0, widths=(4, 4, 4, 4, 4, 4))
    model.build_options = {"widths": [4] * 6}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    nan = str(checkpoints.save_model(tmp_path / "in" / "diverged", model)[0])
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"diverged\.safetensors", r"NaN|infinite|not finite",
              **run_params(s2, nan), OUTPUT=out(tmp_path))


def test_truncated_weights(run_alg, tmp_path, s2, weights):
    cut = tmp_path / "in" / "cut.safetensors"
    data = open(weights, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    shutil.copyfile(weights[:-len(".safetensors")] + ".json", tmp_path / "in" / "cut.json")
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bWEIGHTS\b", r"cut\.safetensors", r"corrupt|truncated|SHA-256|does not match",
              **run_params(s2, str(cut)), OUTPUT=out(tmp_path))


# engine entry points of the same checks (scripts use them without Processing)

def test_engine_refuses_pickles_and_folders(tmp_path, weights):
    from topoclear.engine.checkpoints import load_model
    from topoclear.engine.errors import InputError

    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1)}, evil)
    with pytest.raises(InputError, match=r"(?s)evil\.pth.*safetensors"):
        load_model(evil)
    with pytest.raises(InputError, match=r"(?s)folder.*safetensors"):
        load_model(tmp_path)


def test_engine_checks_card_shapes_against_the_weights_before_building(tmp_path, weights):
    """A card whose options disagree with the tensors in the file is refused from the file's header, before
    the model is built (checked in a child limited to 8 GB)."""
    import subprocess
    import sys
    import textwrap

    path = edited_card(weights, "wide", lambda card: card["architecture"]["options"].update(
        widths=[4, 4, 4, 4, 4, 8000]))  # within the option bounds, far from the file's tensors
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        from topoclear.engine.checkpoints import load_model
        from topoclear.engine.errors import InputError
        try:
            load_model({path!r})
        except InputError as exc:
            print("INPUTERROR", exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "INPUTERROR" in result.stdout, result.stdout + result.stderr
    assert "wide.safetensors" in result.stdout and "does not fit the model" in result.stdout, result.stdout


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------

@pytest.fixture()
def pair(tmp_path):
    (tmp_path / "out").mkdir(exist_ok=True)
    return (copy_in(data_path(*CLEAR), tmp_path / "in", "prediction.tif"),
            copy_in(data_path(*CLEAR), tmp_path / "in", "reference.tif"))


def far_copy(src, dst, dx=300_000.0):
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    t = profile["transform"]
    with rasterio.open(dst, "w", **dict(profile, transform=from_origin(t.c + dx, t.f, t.a, -t.e))) as ds:
        ds.write(data)
    return str(dst)


def test_evaluate_mask_that_does_not_overlap(run_alg, tmp_path, pair):
    """A mask elsewhere gave the metrics without a mask and 'cloud fraction 0'."""
    prediction, reference = pair
    with rasterio.open(reference) as ds:
        mask = write_raster(tmp_path / "in" / "mask_far.tif", (ds.read(2) > 1500).astype(np.uint8), ds.transform,
                            ds.crs)
    mask = far_copy(mask, tmp_path / "in" / "mask_elsewhere.tif")
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bMASK\b", r"mask_elsewhere\.tif", r"overlap|cover",
              PREDICTION=prediction, REFERENCE=reference, MASK=mask)


def test_evaluate_cloudy_input_that_does_not_overlap(run_alg, tmp_path, pair):
    prediction, reference = pair
    cloudy = far_copy(data_path(*CLOUDY), tmp_path / "in" / "cloudy_elsewhere.tif")
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bCLOUDY\b", r"cloudy_elsewhere\.tif", r"overlap|cover",
              PREDICTION=prediction, REFERENCE=reference, CLOUDY=cloudy)


def test_evaluate_reference_that_does_not_overlap(run_alg, tmp_path, pair):
    prediction, reference = pair
    far = far_copy(reference, tmp_path / "in" / "reference_elsewhere.tif")
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bREFERENCE\b", r"reference_elsewhere\.tif", r"overlap|cover",
              PREDICTION=prediction, REFERENCE=far)


def test_evaluate_absurd_dn_offset(run_alg, tmp_path, pair):
    """DN_OFFSET=1e12 gave MAE 0 and PSNR inf."""
    prediction, reference = pair
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bDN_OFFSET\b", r"1e\+?12", r"range|at most|between|outside",
              PREDICTION=prediction, REFERENCE=reference, DN_OFFSET=1e12)


@pytest.mark.parametrize("which", ["PREDICTION", "REFERENCE"])
def test_evaluate_truncated_input(run_alg, tmp_path, pair, which):
    files = dict(zip(("PREDICTION", "REFERENCE"), pair))
    files[which] = truncated_copy(files[which], tmp_path / "in" / "cut.tif")
    with Watched(tmp_path):
        fails(run_alg, "evaluate", rf"\b{which}\b", r"cut\.tif", r"truncated|corrupt", **files)


@pytest.mark.parametrize("name", ["metrics.csv", "metrics.gpkg"])
def test_evaluate_table_in_a_read_only_folder(run_alg, tmp_path, pair, readonly_dir, name):
    prediction, reference = pair
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bOUTPUT_TABLE\b", r"readonly", r"not writable|read-only|permission",
              PREDICTION=prediction, REFERENCE=reference, OUTPUT_TABLE=str(readonly_dir / name))


def test_evaluate_report_in_a_read_only_folder(run_alg, tmp_path, pair, readonly_dir):
    prediction, reference = pair
    with Watched(tmp_path):
        fails(run_alg, "evaluate", r"\bOUTPUT_HTML\b", r"readonly", r"not writable|read-only|permission",
              PREDICTION=prediction, REFERENCE=reference, OUTPUT_HTML=str(readonly_dir / "report.html"))


def test_evaluate_report_on_a_full_disk(run_alg, tmp_path, pair, small_disk):
    prediction, reference = pair
    small_disk.fill(leave=4096)
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "evaluate", r"\bOUTPUT_HTML\b", r"report\.html", r"disk is full|no space",
              PREDICTION=prediction, REFERENCE=reference, OUTPUT_HTML=str(small_disk.path / "report.html"))
    assert small_disk.contents() == []


# ------------------------------------------------------------------------------------------------
# 2. a full disk
# ------------------------------------------------------------------------------------------------

def test_removeclouds_on_a_full_disk(run_alg, tmp_path, s2, weights, small_disk):
    small_disk.fill(leave=64 * 1024)  # outputs are compressed: the bare 2 MB could hold them
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "removeclouds", r"\bOUTPUT\b", r"result\.tif", r"disk is full|no space",
              **run_params(s2, weights), OUTPUT=str(small_disk.path / "result.tif"))
    assert small_disk.contents() == []


def test_removeclouds_output_in_a_read_only_folder(run_alg, tmp_path, s2, weights, readonly_dir):
    with Watched(tmp_path):
        fails(run_alg, "removeclouds", r"\bOUTPUT\b", r"readonly", r"not writable|read-only|permission",
              **run_params(s2, weights), OUTPUT=str(readonly_dir / "result.tif"))
