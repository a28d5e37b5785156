"""Weights as safetensors + JSON model card: round trips, and clear errors for mismatched or corrupt files."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from topoclear.engine.checkpoints import (CARD_FORMAT, checkpoint_paths, load_model, load_training_state,
                                          load_weights, make_card, read_card, save_model, save_training_state,
                                          state_path)
from topoclear.engine.errors import InputError
from topoclear.models import build_model

SMALL_UNET = {"widths": [8, 16, 32]}


def small_unet(**bands):
    torch.manual_seed(0)
    model = build_model("unet", **{"s2_bands": 4, "s1_bands": 2, **bands}, **SMALL_UNET)
    model.build_options = dict(SMALL_UNET)
    return model


@pytest.fixture()
def saved(tmp_path):
    model = small_unet()
    card = make_card(model, training={"epochs": 3, "data": {"manifest": "m.json"}}, metrics={"validation": {"mae": 0.1}})
    weights, card_path = save_model(tmp_path / "unet_small.safetensors", model, card)
    return model, weights, card_path


def test_paths_and_files(saved, tmp_path):
    _, weights, card_path = saved
    assert checkpoint_paths(tmp_path / "x") == (tmp_path / "x.safetensors", tmp_path / "x.json")
    assert checkpoint_paths(tmp_path / "x.json") == (tmp_path / "x.safetensors", tmp_path / "x.json")
    assert weights.name == "unet_small.safetensors" and card_path.name == "unet_small.json"
    assert not list(tmp_path.glob(".*partial"))  # temporary files are gone
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:  # a plain safetensors file, card embedded in the header
        assert json.loads(f.metadata()["topoclear_card"])["architecture"]["model"] == "unet"


def test_card_content(saved):
    model, weights, card_path = saved
    card = json.loads(card_path.read_text())
    assert card["format"] == CARD_FORMAT
    arch = card["architecture"]
    assert arch["model"] == "unet" and arch["class"] == "UNet" and arch["options"] == SMALL_UNET
    assert arch["input_layout"]["s2"] == ["B2", "B3", "B4", "B8"] and arch["input_layout"]["s1"] == ["VV", "VH"]
    assert arch["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["channels"]["inputs"] == {"s2": ["B2", "B3", "B4", "B8"], "s1": ["VV", "VH"]}
    assert card["scaling"]["name"] == "unit"
    assert card["training"]["epochs"] == 3 and card["metrics"]["validation"]["mae"] == 0.1
    assert card["weights"]["file"] == weights.name and len(card["weights"]["sha256"]) == 64


def test_round_trip_gives_the_same_predictions(saved):
    model, weights, _ = saved
    loaded, card = load_model(weights)
    assert not loaded.training and loaded.input_layout == model.input_layout
    x, s1 = torch.rand(1, 4, 32, 32), torch.rand(1, 2, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, s1), model(x, s1))
    fresh = small_unet()
    torch.nn.init.zeros_(fresh.head.weight)
    load_weights(fresh, weights)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x, s1), model(x, s1))


def test_card_may_be_missing_the_header_identifies_the_model(saved):
    _, weights, card_path = saved
    card_path.unlink()
    assert read_card(weights)["architecture"]["model"] == "unet"
    model, _ = load_model(weights)
    assert model.input_layout.s1 == ("VV", "VH")


def test_mismatched_model_or_channels(saved):
    _, weights, _ = saved
    with pytest.raises(InputError, match="holds a 'unet' model, expected 'crt_unet'"):
        load_model(weights, expect_model="crt_unet")
    with pytest.raises(InputError, match="s2 channels"):
        load_model(weights, expect_bands={"s2": ["B2", "B3", "B4"]})
    with pytest.raises(InputError, match="s2 channels differ"):
        load_weights(small_unet(s2_bands=3), weights)
    with pytest.raises(InputError, match="s1 channels differ"):
        load_weights(small_unet(s1_bands=0), weights)
    torch.manual_seed(0)
    other = build_model("dsen2cr", s2_bands=4, s1_bands=2, features=8, blocks=1)
    with pytest.raises(InputError, match="holds a 'unet' model, not 'dsen2cr'"):
        load_weights(other, weights)
    wide = build_model("unet", s2_bands=4, s1_bands=2, widths=[8, 16, 64])
    with pytest.raises(InputError, match="another shape"):
        load_weights(wide, weights)


def test_corrupt_files_are_clear_errors(saved, tmp_path):
    _, weights, card_path = saved
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        load_model(weights)
    weights.write_bytes(bytes(data[:100]))  # truncated
    card = json.loads(card_path.read_text())
    card.pop("weights")
    card_path.write_text(json.dumps(card))
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_model(weights)
    card_path.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_card(weights)
    card_path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not a TopoClear model card"):
        read_card(weights)
    card_path.write_text(json.dumps({"format": CARD_FORMAT, "architecture": {"model": "nope", "input_layout": {}}}))
    with pytest.raises(InputError, match="unknown model"):
        load_model(weights)
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "absent.safetensors")


def test_training_state_round_trip_and_refuses_arbitrary_objects(tmp_path):
    model = small_unet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.rand(1, 4, 32, 32), torch.rand(1, 2, 32, 32)).mean().backward()
    opt.step()
    state = {"epoch": 3, "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "history": [{"a": 1.0}]}
    path = save_training_state(tmp_path / "last", state)
    assert path == state_path(tmp_path / "last") and path.name == "last.state.pt"
    back = load_training_state(tmp_path / "last")
    assert back["epoch"] == 3 and torch.equal(back["torch_rng"], state["torch_rng"])
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["betas"] == (0.5, 0.999)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(path, "wb") as handle:
        pickle.dump({"epoch": Payload()}, handle, protocol=2)
    with pytest.raises(InputError, match="cannot be read safely"):
        load_training_state(tmp_path / "last")
    with pytest.raises(InputError, match="no training state"):
        load_training_state(tmp_path / "other")


def test_half_precision_weights_load_into_a_float32_model(tmp_path):
    model = small_unet().eval()
    weights, card_path = save_model(tmp_path / "unet_half.safetensors", model, half=True)
    full, _ = save_model(tmp_path / "unet_full.safetensors", model)
    assert weights.stat().st_size < 0.6 * full.stat().st_size
    assert json.loads(card_path.read_text())["weights"]["dtype"] == "float16"
    loaded, _ = load_model(weights)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = {"s2": torch.rand(1, 4, 32, 32), "s1": torch.rand(1, 2, 32, 32)}
    with torch.no_grad():
        assert torch.allclose(loaded(**x), model(**x), atol=2e-2)
