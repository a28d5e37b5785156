"""Fault battery, training: the patch builder and the trainer given bad scene lists, manifests, patches
and outputs.

The training data is cut by ``topoclear:builddataset`` from a real SEN12MS-CR pair (UK, 13 bands)
once per module; each case copies what it needs into its own folder, damages it on purpose, and
asserts the error text, unchanged inputs and an untouched folder (nothing written, nothing left: no
patch, mask, manifest, checkpoint folder or empty output folder).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import data_path, ensure_provider
from faultkit import (Feedback, Watched, copy_in, dot_spelling, fails, readonly_dir, small_disk,  # noqa: F401
                      truncated_copy)

torch = pytest.importorskip("torch")

CLOUDY = ("sen12ms-cr", "s2_cloudy", "ROIs2017_winter_s2_cloudy_102_p926.tif")
CLEAR = ("sen12ms-cr", "s2_clear", "ROIs2017_winter_s2_102_p926.tif")
BUILD = dict(PATCH_SIZE=128, BLOCK_PATCHES=1, SOURCE="real pair")


def model_index(name="unet"):
    from topoclear.processing_provider.training import model_names

    return model_names().index(name)


def train_params(dataset, output, **extra):
    params = dict(MODEL=model_index(), DATASET=str(dataset), EPOCHS=1, BATCH_SIZE=2, PATCH_SIZE=32,
                  STEPS_PER_EPOCH=1, NO_S1=True, DEVICE="cpu", OUTPUT=str(output))
    params.update(extra)
    return params


@pytest.fixture(scope="module")
def built(qgis_app, qgis_processing, tmp_path_factory):
    """Patches and manifest cut from the real pair by ``topoclear:builddataset`` (4 patches of 128 px)."""
    import processing
    from qgis.core import QgsProcessingContext

    ensure_provider()
    folder = tmp_path_factory.mktemp("built")
    cloudy, clear = copy_in(data_path(*CLOUDY), folder / "scene"), copy_in(data_path(*CLEAR), folder / "scene")
    result = processing.run("topoclear:builddataset", dict(
        BUILD, CLOUDY=cloudy, CLEAR=clear, SCENE_NAME="uk", OUTPUT=str(folder / "dataset")),
        context=QgsProcessingContext(), feedback=Feedback())
    assert result["PATCHES"] == 4
    return folder / "dataset"


@pytest.fixture()
def dataset(tmp_path, built):
    """A copy of the built training data in ``<tmp>/in/dataset``; ``<tmp>/out`` empty."""
    (tmp_path / "out").mkdir()
    target = tmp_path / "in" / "dataset"
    shutil.copytree(built, target)
    return target


@pytest.fixture()
def pair(tmp_path):
    """Copies of the real cloudy / clear pair in ``<tmp>/in``; ``<tmp>/out`` empty."""
    (tmp_path / "out").mkdir(exist_ok=True)
    return copy_in(data_path(*CLOUDY), tmp_path / "in", "cloudy.tif"), copy_in(data_path(*CLEAR), tmp_path / "in",
                                                                                "clear.tif")


def first_patch(dataset, role="cloudy"):
    manifest = json.loads((dataset / "manifest.json").read_text())
    sample = manifest["samples"][0]
    value = sample[role] if isinstance(sample[role], str) else sample[role]["path"]
    path = Path(value)
    return manifest, sample, (path if path.is_absolute() else dataset / path)


# ------------------------------------------------------------------------------------------------
# trainmodel: outputs that are inputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["plain", "dot"])
def test_weights_onto_the_manifest_are_refused(run_alg, tmp_path, dataset, spelling):
    """OUTPUT=<dataset>/manifest.json overwrote the dataset's manifest."""
    manifest = dataset / "manifest.json"
    target = manifest if spelling == "plain" else dot_spelling(manifest)
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bOUTPUT\b", r"\bDATASET\b", r"manifest\.json", r"never overwrites",
              **train_params(manifest, target))


def test_model_card_onto_the_manifest_is_refused(run_alg, tmp_path, dataset):
    """OUTPUT=<dataset>/manifest.safetensors: the card beside it would be the manifest."""
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bOUTPUT\b", r"model card", r"\bDATASET\b", r"manifest\.json",
              r"never overwrites", **train_params(dataset / "manifest.json", dataset / "manifest.safetensors"))


def test_weights_inside_the_dataset_folder_are_refused(run_alg, tmp_path, dataset):
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bOUTPUT\b", r"\bDATASET\b", r"inside the input folder",
              **train_params(dataset, dataset / "model.safetensors"))


def test_checkpoints_into_the_dataset_folder_are_refused(run_alg, tmp_path, dataset):
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bCHECKPOINT_DIR\b", r"\bDATASET\b", r"never",
              **train_params(dataset, tmp_path / "out" / "model.safetensors", CHECKPOINT_DIR=str(dataset)))


# ------------------------------------------------------------------------------------------------
# trainmodel: broken manifests and patches
# ------------------------------------------------------------------------------------------------

def test_manifest_naming_a_file_outside_the_dataset(run_alg, tmp_path, dataset):
    """The manifest accepted absolute paths anywhere on the disk."""
    manifest, sample, _ = first_patch(dataset)
    outside = copy_in(data_path(*CLEAR), tmp_path / "elsewhere", "private.tif")
    sample["target"] = outside
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bDATASET\b", r"private\.tif", r"outside", **train_params(
            dataset / "manifest.json", tmp_path / "out" / "model.safetensors"))


def test_manifest_climbing_out_of_the_dataset(run_alg, tmp_path, dataset):
    manifest, sample, _ = first_patch(dataset)
    copy_in(data_path(*CLEAR), tmp_path / "elsewhere", "private.tif")
    sample["target"] = "../../elsewhere/private.tif"
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bDATASET\b", r"private\.tif", r"outside", **train_params(
            dataset / "manifest.json", tmp_path / "out" / "model.safetensors"))


def test_truncated_patch(run_alg, tmp_path, dataset):
    """A truncated patch gave a raw traceback (and left an empty checkpoint folder)."""
    _, _, patch = first_patch(dataset)
    truncated_copy(patch, patch.with_name("cut.tmp"), keep=0.4)
    os.replace(patch.with_name("cut.tmp"), patch)
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", rf"{patch.name}", r"truncated|corrupt",
              **train_params(dataset / "manifest.json", tmp_path / "out" / "model.safetensors"))


def test_three_band_patch(run_alg, tmp_path, dataset):
    _, _, patch = first_patch(dataset)
    with rasterio.open(patch) as ds:
        data, profile = ds.read()[:3], ds.profile
    patch.unlink()
    with rasterio.open(patch, "w", **dict(profile, count=3)) as ds:
        ds.write(data)
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", rf"{patch.name}", r"\b3\b", r"band",
              **train_params(dataset / "manifest.json", tmp_path / "out" / "model.safetensors"))


def test_a_manifest_that_is_not_json(run_alg, tmp_path, dataset):
    (dataset / "manifest.json").write_text("{ not json")
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bDATASET\b|manifest\.json", r"JSON",
              **train_params(dataset / "manifest.json", tmp_path / "out" / "model.safetensors"))


def test_translator_that_is_a_pickle(run_alg, tmp_path, dataset):
    """TRANSLATOR=evil.pt said only 'Incorrect parameter value'."""
    evil = tmp_path / "in" / "evil.pt"
    torch.save({"w": torch.zeros(1)}, evil)
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bTRANSLATOR\b", r"evil\.pt", r"safetensors",
              **train_params(dataset, tmp_path / "out" / "model.safetensors", MODEL=model_index("cr_gan"),
                             TRANSLATOR=str(evil)))


def test_missing_dataset(run_alg, tmp_path, dataset):
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bDATASET\b", r"absent\.json", r"not found|does not exist",
              **train_params(tmp_path / "in" / "absent.json", tmp_path / "out" / "model.safetensors"))


# ------------------------------------------------------------------------------------------------
# trainmodel: places it cannot write
# ------------------------------------------------------------------------------------------------

def test_weights_in_a_read_only_folder(run_alg, tmp_path, dataset, readonly_dir):
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bOUTPUT\b", r"readonly", r"not writable|read-only|permission",
              **train_params(dataset, readonly_dir / "model.safetensors"))


def test_weights_onto_an_existing_folder(run_alg, tmp_path, dataset):
    (tmp_path / "out" / "model.safetensors").mkdir()
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bOUTPUT\b", r"model\.safetensors", r"folder",
              **train_params(dataset, tmp_path / "out" / "model.safetensors"))


def test_checkpoints_onto_an_existing_file(run_alg, tmp_path, dataset):
    (tmp_path / "out" / "checkpoints").write_text("a file")
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\bCHECKPOINT_DIR\b", r"checkpoints", r"is a file",
              **train_params(dataset, tmp_path / "out" / "model.safetensors",
                             CHECKPOINT_DIR=str(tmp_path / "out" / "checkpoints")))


def test_training_on_a_full_disk(run_alg, tmp_path, dataset, small_disk):
    """A full disk gave a raw traceback; nothing may be left (weights, card, checkpoints)."""
    with Watched(tmp_path):
        fails(run_alg, "trainmodel", r"\b(OUTPUT|CHECKPOINT_DIR)\b", r"disk is full|no space",
              **train_params(dataset, small_disk.path / "model.safetensors"))
    assert small_disk.contents() == []


# ------------------------------------------------------------------------------------------------
# builddataset
# ------------------------------------------------------------------------------------------------

def test_scene_names_cannot_leave_the_output_folder(run_alg, tmp_path, pair):
    """A scene list naming a scene ../../../ESCAPED wrote ESCAPED_cloud.tif three levels up."""
    cloudy, clear = pair
    listing = tmp_path / "in" / "scenes.csv"
    listing.write_text(f"name,cloudy,target\n../../../ESCAPED,{cloudy},{clear}\n")
    output = tmp_path / "work" / "a" / "b" / "dataset"
    output.parent.mkdir(parents=True)
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bSCENES\b", r"scenes\.csv", r"ESCAPED",
              r"outside|cannot be used as a file name|not allowed", SCENES=str(listing), OUTPUT=str(output), **BUILD)


@pytest.mark.parametrize("name", ["<tmp>/elsewhere/absolute", "a/b", "a/../../b"])
def test_other_scene_names_that_are_paths(run_alg, tmp_path, pair, name):
    """Absolute names (inside the watched folder, so that an escape is seen) and names holding separators."""
    cloudy, clear = pair
    (tmp_path / "elsewhere").mkdir()
    name = name.replace("<tmp>", str(tmp_path))
    listing = tmp_path / "in" / "scenes.json"
    listing.write_text(json.dumps({"scenes": [{"name": name, "cloudy": cloudy, "target": clear}]}))
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bSCENES\b", r"scenes\.json", r"name",
              SCENES=str(listing), OUTPUT=str(tmp_path / "out" / "dataset"), **BUILD)


def test_mismatched_band_counts_leave_nothing(run_alg, tmp_path, pair):
    """13 cloudy bands, 12 clear ones: a partial file, a patch and the scene masks were left, no manifest."""
    cloudy, clear = pair
    with rasterio.open(clear) as ds:
        data, profile = ds.read(), ds.profile
    twelve = tmp_path / "in" / "clear12.tif"
    with rasterio.open(twelve, "w", **dict(profile, count=12)) as ds:
        ds.write(np.delete(data, 10, axis=0))
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bCLEAR\b|clear12\.tif", r"\b12\b", r"\b13\b", r"band",
              CLOUDY=cloudy, CLEAR=str(twelve), OUTPUT=str(tmp_path / "out" / "dataset"), **BUILD)


def test_inputs_on_other_grids_leave_no_empty_output_folder(run_alg, tmp_path, pair):
    """A failed run left an empty output folder."""
    cloudy, _ = pair
    other = copy_in(data_path("sen12ms-cr", "s2_clear", "ROIs1158_spring_s2_39_p500.tif"), tmp_path / "in", "o.tif")
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bCLEAR\b|o\.tif", r"grid|overlap|align",
              CLOUDY=cloudy, CLEAR=other, OUTPUT=str(tmp_path / "out" / "new" / "dataset"), **BUILD)


def test_existing_dataset_is_not_replaced(run_alg, tmp_path, pair, built):
    """builddataset into an existing folder silently replaced its manifest.json."""
    cloudy, clear = pair
    existing = tmp_path / "out" / "dataset"
    shutil.copytree(built, existing)
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bOUTPUT\b", r"dataset", r"already holds|not empty|manifest\.json",
              CLOUDY=cloudy, CLEAR=clear, OUTPUT=str(existing), **BUILD)


def test_output_folder_holding_the_inputs_is_refused(run_alg, tmp_path, pair):
    cloudy, clear = pair
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bOUTPUT\b", r"\bCLOUDY\b", r"holds the input",
              CLOUDY=cloudy, CLEAR=clear, OUTPUT=str(tmp_path / "in"), **BUILD)


def test_output_that_is_a_file(run_alg, tmp_path, pair):
    cloudy, clear = pair
    existing = tmp_path / "out" / "dataset"
    existing.write_text("a file")
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bOUTPUT\b", r"dataset", r"is a file",
              CLOUDY=cloudy, CLEAR=clear, OUTPUT=str(existing), **BUILD)


def test_output_in_a_read_only_folder(run_alg, tmp_path, pair, readonly_dir):
    cloudy, clear = pair
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bOUTPUT\b", r"readonly", r"not writable|read-only|permission",
              CLOUDY=cloudy, CLEAR=clear, OUTPUT=str(readonly_dir / "dataset"), **BUILD)


def test_truncated_scene(run_alg, tmp_path, pair):
    cloudy, clear = pair
    broken = truncated_copy(cloudy, tmp_path / "in" / "cut.tif")
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"\bCLOUDY\b", r"cut\.tif", r"truncated|corrupt",
              CLOUDY=broken, CLEAR=clear, OUTPUT=str(tmp_path / "out" / "dataset"), **BUILD)


def test_truncated_scene_in_a_scene_list(run_alg, tmp_path, pair):
    cloudy, clear = pair
    broken = truncated_copy(cloudy, tmp_path / "in" / "cut.tif")
    listing = tmp_path / "in" / "scenes.csv"
    listing.write_text(f"name,cloudy,target\nuk,{broken},{clear}\n")
    with Watched(tmp_path):
        fails(run_alg, "builddataset", r"cut\.tif", r"truncated|corrupt",
              SCENES=str(listing), OUTPUT=str(tmp_path / "out" / "dataset"), **BUILD)


def test_building_on_a_full_disk(run_alg, tmp_path, pair, small_disk):
    """A full disk gave a raw traceback; nothing may be left on it."""
    cloudy, clear = pair
    small_disk.fill(leave=150_000)
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "builddataset", r"\bOUTPUT\b", r"disk is full|no space",
              CLOUDY=cloudy, CLEAR=clear, OUTPUT=str(small_disk.path / "dataset"), **BUILD)
    assert small_disk.contents() == []
