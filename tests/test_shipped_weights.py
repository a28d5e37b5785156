"""The weights shipped in models/weights: they load safely, match their cards, and the cards say how they were made."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO_ROOT, data_path
from topoclear.engine.checkpoints import file_sha256, load_model
from topoclear.engine.clouds.weights import WEIGHTS_DIR, resolve_model, shipped_weights, shipped_weights_of

SHIPPED = ("crt_unet", "unet", "unet_nosar", "dsen2cr", "dsen2cr_nosar", "crt_unet_fill", "unet_fill", "unet_fill_nosar",
           "dsen2cr_fill_nosar")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_their_cards_are_complete(name):
    card_path = REPO_ROOT / "models" / "weights" / f"{name}.json"
    card = json.loads(card_path.read_text())
    weights = card_path.with_suffix(".safetensors")
    assert card["weights"]["sha256"] == file_sha256(weights) and card["weights"]["dtype"] == "float16"
    model, _ = load_model(weights)  # safetensors: no pickle; the card rebuilds the architecture
    assert model.spec_name == name.replace("_nosar", "")
    assert ("s1" in model.input_layout.inputs) == (not name.endswith("_nosar"))
    training = card["training"]
    assert training["steps"] > 0 and training["training_time_s"] > 0 and training["hardware"]
    assert training["data"]["train"]["samples"] > 0 and "build/training-data" in card["description"]
    learning = card["metrics"]["learning_check"]
    if "fill" not in name:  # the fill-prior networks start at the fill: the held-out scores below judge them
        assert learning["val_loss_after"] < learning["val_loss_before"]
    else:
        assert training["selected_epoch"]["epoch"] >= 1
    held_out = card["metrics"]["held_out"]  # what the automatic method compares
    assert held_out, "run scripts/evaluate_cloud_removal.py to record the held-out scores"
    for bench, entry in held_out.items():
        assert bench in ("real_s2", "real_s1_dem") and entry["pairs"] > 0
        assert 0 <= entry["mask"]["mae"] < 1 and entry["whole"]["psnr"] > 0
    assert ("real_s2" in held_out) == (not model.input_layout.s1 and not model.input_layout.terrain)


def test_removeclouds_finds_the_shipped_defaults():
    assert shipped_weights("crt_unet").startswith(WEIGHTS_DIR)
    assert shipped_weights("dsen2cr", with_s1=False).endswith("dsen2cr_nosar.safetensors")
    choice = resolve_model("unet", has_s1=False)
    assert choice.weights.endswith("unet_nosar.safetensors") and "s1" not in choice.model.input_layout.inputs


def test_the_model_cards_say_which_inputs_each_shipped_file_serves():
    """Every weights file a spec lists is shipped, and its card (not its name) says whether it takes Sentinel-1."""
    from topoclear.models import get_spec, removal_models

    listed = {name for spec in removal_models() for name in spec.weights}
    assert listed == {f"{name}.safetensors" for name in SHIPPED}
    for spec in removal_models():
        for weights in shipped_weights_of(spec.name):
            card = json.loads((REPO_ROOT / "models" / "weights" / weights.name).with_suffix(".json").read_text())
            assert card["architecture"]["model"] == spec.name
            assert weights.uses_s1 == bool(card["architecture"]["input_layout"]["s1"])
    assert [w.uses_s1 for w in shipped_weights_of("dsen2cr")] == [True, False]
    assert shipped_weights("crt_unet", with_s1=False) is None  # no optical-only CRT-UNet is shipped
    assert get_spec("sar2opt_gan").weights == () and shipped_weights("sar2opt_gan") is None


def test_shipped_optical_model_clears_a_real_cloudy_patch(tmp_path):
    """The optical-only default on the real Tatarstan patch: output on the input grid, clear pixels kept."""
    import numpy as np
    import rasterio

    from topoclear.engine.clouds.removal import run_cloud_removal
    from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions

    s2 = data_path("sen12ms-cr", "s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139.tif")
    out = tmp_path / "clear.tif"
    torch.manual_seed(0)
    report = run_cloud_removal(CloudRemovalRequest(str(s2), str(out), model="dsen2cr", mask_kind="computed",
                                                   options=InferenceOptions(device="cpu")))
    assert any("dsen2cr_nosar" in m for m in report.messages)
    with rasterio.open(s2) as src, rasterio.open(out) as dst:
        before, after = src.read(), dst.read()
        assert (dst.count, dst.dtypes, dst.transform) == (src.count, src.dtypes, src.transform)
    changed = np.any(before != after, axis=0)
    assert 0.05 < changed.mean() < 1.0  # cloudy pixels replaced, clear ones copied


INPUT_SETS = [(False, False), (False, True), (True, False), (True, True)]


def _card_runs(card: dict, has_s1: bool, has_dem: bool) -> bool:
    layout = card["architecture"]["input_layout"]
    return (not layout["s1"] or has_s1) and (not layout["terrain"] or has_dem)


def test_every_shipped_card_has_held_out_scores_next_to_the_fill():
    """Each card: scores on the benchmark of its inputs, the fill's on the same pairs, and the fill's own card."""
    weights_dir = REPO_ROOT / "models" / "weights"
    fill = json.loads((weights_dir / "fill.json").read_text())["metrics"]["held_out"]
    for name in SHIPPED:
        card = json.loads((weights_dir / f"{name}.json").read_text())
        layout = card["architecture"]["input_layout"]
        bench = "real_s1_dem" if layout["s1"] or layout["terrain"] else "real_s2"
        entry = card["metrics"]["held_out"][bench]
        assert entry["pairs"] == fill[bench]["pairs"] and entry["fill"]["mask"]["psnr"] == fill[bench]["mask"]["psnr"]
        for part in ("whole", "mask"):
            assert set(entry[part]) == {"mae", "rmse", "psnr", "ssim", "sam"}
        assert entry["groups"] and entry["bins"] and entry["scenes"]
        assert card["training"]["hardware"] and card["training"]["training_time_s"] > 0


@pytest.mark.parametrize("has_s1, has_dem", INPUT_SETS)
def test_automatic_picks_the_best_eligible_shipped_card(has_s1, has_dem):
    """Recomputed from the JSON cards alone: the best held-out PSNR inside the mask among the files that run on
    the inputs, not more than 0.5 dB below the fill on the whole image, not trained on the benchmark; else the fill."""
    from topoclear.engine.clouds.methods.selection import WHOLE_IMAGE_TOLERANCE_DB, choose_automatic

    weights_dir = REPO_ROOT / "models" / "weights"
    bench = "real_s1_dem" if has_s1 else "real_s2"
    fill = json.loads((weights_dir / "fill.json").read_text())["metrics"]["held_out"][bench]
    best, best_psnr = None, fill["mask"]["psnr"]
    for name in SHIPPED:
        card = json.loads((weights_dir / f"{name}.json").read_text())
        entry = card["metrics"]["held_out"].get(bench)
        if not _card_runs(card, has_s1, has_dem) or not entry or entry.get("seen_in_training"):
            continue
        if entry["whole"]["psnr"] >= fill["whole"]["psnr"] - WHOLE_IMAGE_TOLERANCE_DB and entry["mask"]["psnr"] > best_psnr:
            best, best_psnr = name, entry["mask"]["psnr"]
    choice = choose_automatic(has_s1, has_dem)
    assert (choice.method == "fill") == (best is None)
    if best:
        assert choice.weights.endswith(f"{best}.safetensors")
        assert f"{best} {best_psnr:.2f} dB" in choice.notes[0]
    else:
        assert choice.weights is None and "No network beats the fill" in choice.notes[0]
    assert "PSNR inside the cloud mask" in choice.notes[0]


def test_the_defaults_on_a_sentinel2_layer_alone_run_the_measured_best_and_say_why(tmp_path):
    """run_cloud_removal with nothing but a Sentinel-2 patch: Automatic runs what the cards measured best."""
    from topoclear.engine.clouds.methods.selection import choose_automatic
    from topoclear.engine.clouds.removal import run_cloud_removal
    from topoclear.engine.clouds.request import CloudRemovalRequest

    expected = choose_automatic(False, False)
    s2 = data_path("sen12ms-cr", "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")
    report = run_cloud_removal(CloudRemovalRequest(str(s2), str(tmp_path / "clear.tif")))
    assert report.messages[0] == expected.notes[0] and report.messages[0].startswith("Automatic method for Sentinel-2:")
    if expected.weights:
        assert any(expected.weights.split("/")[-1] in m for m in report.messages[1:])
    else:
        assert report.method == "fill"
