"""Training engine: paper defaults, reproducibility, resume, cancel, cards, Processing, and proof that it learns.

The proof-of-learning tests train every registered model, at its real size (the papers' layer
widths), for a few dozen steps on small crops of the real sample patches, and require the
validation loss to drop measurably. The engine-mechanics tests (seeds, resume, cancel) use a
narrow UNet to stay fast; they test the engine, not the model.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, SHARED_DATA, requires_cuda
from topoclear.engine.checkpoints import load_model, read_card, save_model
from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.progress import Monitor
from topoclear.engine.training.loop import TrainConfig, resolve_device, train
from topoclear.engine.training.manifest import load_manifest
from topoclear.engine.training.sample_manifests import build_sample_manifests
from topoclear.engine.training.training_config import PAPER_DEFAULTS
from topoclear.engine.training.training_data import split_samples
from topoclear.models import build_model, list_models

NARROW = {"widths": [8, 16]}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    if not (SHARED_DATA / "sen12ms-cr").is_dir():
        pytest.skip(f"sample data not found: {SHARED_DATA / 'sen12ms-cr'}")
    return build_sample_manifests(SHARED_DATA, tmp_path_factory.mktemp("samples"), seed=0)


def narrow_config(**kw) -> TrainConfig:
    base = dict(model="unet", s1_bands=0, model_options=dict(NARROW), patch_size=32, batch_size=2, epochs=2,
                steps_per_epoch=2, val_crops=2, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def losses(result):
    return [(h.train_loss, h.val_loss) for h in result.history]


# ---------------------------------------------------------------------------------------------- configuration
def test_paper_defaults_fill_what_the_config_leaves_open():
    crt = TrainConfig(model="crt_unet").resolved()
    assert (crt.lr, crt.batch_size, crt.loss, crt.optimizer, crt.betas) == (2e-4, 8, "l1", "adam", (0.9, 0.999))
    ds = TrainConfig(model="dsen2cr").resolved()
    assert (ds.lr, ds.batch_size, ds.loss, ds.optimizer, ds.loss_params) == (7e-5, 16, "carl", "nadam", {"lam": 1.0})
    gan = TrainConfig(model="cr_gan").resolved()
    assert (gan.lr, gan.batch_size, gan.loss, gan.betas) == (2e-4, 32, "cgan", (0.5, 0.999))
    assert gan.loss_params == {"adv_weight": 1.0, "l1_weight": 100.0, "ssim_weight": 100.0}
    own = TrainConfig(model="dsen2cr", lr=1e-3, batch_size=4, loss="l1").resolved()
    assert (own.lr, own.batch_size, own.loss, own.loss_params) == (1e-3, 4, "l1", {})
    assert TrainConfig(model="unet", lr=0, batch_size=0).resolved().lr == 2e-4  # 0 = paper default
    assert set(list_models(multi_temporal=False)) <= set(PAPER_DEFAULTS)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="sees no CUDA GPU"):
            resolve_device("cuda:0")


EXCLUDED = ["real_26_p100", "real_26_p500", "real_26_p840"]  # scene 26: snow on the clear date only


def test_split_uses_the_manifest_or_a_seeded_random_split(manifests):
    m = load_manifest(manifests["sen12mscr"])
    parts = split_samples(m.samples)
    assert {s.id for s in parts["val"]} == {f"{kind}_39_{p}" for kind in ("real", "synthetic")
                                            for p in ("p100", "p500", "p838")}  # the whole validation scene
    used = [s.id for p in parts.values() for s in p]
    assert not set(EXCLUDED) & set(used) and len(used) == len(set(used)) == len(m.samples) - len(EXCLUDED)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (47, 6, 0)
    unsplit = [s.__class__(**{**s.__dict__, "split": "train"}) for s in m.samples]
    a, b = split_samples(unsplit, seed=1), split_samples(unsplit, seed=1)
    assert [s.id for s in a["val"]] == [s.id for s in b["val"]]
    assert [s.id for s in a["val"]] != [s.id for s in split_samples(unsplit, seed=2)["val"]]
    # 56 samples: round(15 %) = 8 validation, round(5 %) = 3 test, every sample in exactly one split
    assert (len(a["val"]), len(a["test"]), len(a["train"])) == (8, 3, 45)
    assert sorted(s.id for p in a.values() for s in p) == sorted(s.id for s in m.samples)


# ---------------------------------------------------------------------------------------------- mechanics
def test_same_seed_gives_identical_losses_on_cpu(manifests):
    data = manifests["sen12mscr"]
    a, b = train(narrow_config(seed=5), data), train(narrow_config(seed=5), data)
    assert losses(a) == losses(b)
    c = train(narrow_config(seed=6), data)
    assert losses(c) != losses(a)
    assert a.history[0].epoch == 0 and a.history[0].train_loss is None  # the untrained model
    assert [h.epoch for h in a.history] == [0, 1, 2] and a.steps == 4


def test_loader_workers_do_not_change_the_run(manifests):
    data = manifests["sen12mscr"]
    single = train(narrow_config(epochs=1, steps_per_epoch=3), data)
    workers = train(narrow_config(epochs=1, steps_per_epoch=3, num_workers=2), data)
    assert losses(workers) == losses(single)


def test_resume_continues_exactly_like_an_uninterrupted_run(manifests, tmp_path):
    data = manifests["sen12mscr"]
    straight = train(narrow_config(epochs=3, checkpoint_dir=str(tmp_path / "a")), data)
    first = train(narrow_config(epochs=1, checkpoint_dir=str(tmp_path / "b")), data)
    assert (tmp_path / "b" / "last.safetensors").is_file() and (tmp_path / "b" / "last.state.pt").is_file()
    assert (tmp_path / "b" / "best.json").is_file()
    resumed = train(narrow_config(epochs=3, checkpoint_dir=str(tmp_path / "b"), resume=True), data)
    assert losses(resumed) == losses(straight)
    assert losses(first) == losses(straight)[:2]
    with pytest.raises(InputError, match="trained with loss"):
        train(narrow_config(epochs=4, loss="l1_ssim", checkpoint_dir=str(tmp_path / "b"), resume=True), data)


def test_gan_training_uses_the_discriminator_and_resumes(manifests, tmp_path):
    data = manifests["sen12mscr"]
    cfg = dict(model="cr_gan", s1_bands=0, model_options={"blocks": 1}, patch_size=32, batch_size=2,
               steps_per_epoch=2, val_crops=1, device="cpu", seed=2)
    straight = train(TrainConfig(epochs=2, **cfg), data)
    parts = straight.history[1].train_parts
    assert {"adv", "l1", "ssim", "discriminator"} <= set(parts) and parts["discriminator"] > 0
    assert straight.card["training"]["hyperparameters"]["discriminator"] is True
    train(TrainConfig(epochs=1, checkpoint_dir=str(tmp_path), **cfg), data)
    resumed = train(TrainConfig(epochs=2, checkpoint_dir=str(tmp_path), resume=True, **cfg), data)
    assert losses(resumed) == losses(straight)


def test_progress_messages_and_cancel(manifests, tmp_path):
    data = manifests["sen12mscr"]
    seen, messages = [], []
    result = train(narrow_config(), data, Monitor(seen.append, None, messages.append))
    assert seen == sorted(seen) and seen[-1] == 100.0
    assert any("Epoch 0 (untrained)" in m for m in messages) and any("Epoch 2/2" in m for m in messages)
    assert result.samples_per_s > 0

    def cancel_in_epoch_two():  # as soon as the first epoch and its checkpoint are written
        return (tmp_path / "last.state.pt").is_file()

    with pytest.raises(Cancelled):
        train(narrow_config(epochs=5, checkpoint_dir=str(tmp_path)), data, Monitor(None, cancel_in_epoch_two))
    card = read_card(tmp_path / "last")
    assert card["training"]["epochs"] == 1 and not (tmp_path / "out.safetensors").exists()


def test_output_weights_and_model_card(manifests, tmp_path):
    out = tmp_path / "model.safetensors"
    result = train(narrow_config(output=str(out), description="narrow UNet for a test"), manifests["sen12mscr"])
    assert result.weights_path == out and result.card_path == tmp_path / "model.json"
    card = json.loads(result.card_path.read_text())
    assert card["description"] == "narrow UNet for a test"
    assert card["architecture"]["model"] == "unet" and card["architecture"]["options"] == NARROW
    assert card["channels"]["inputs"] == {"s2": ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]}
    assert card["scaling"]["name"] == "unit"
    training = card["training"]
    assert training["epochs"] == 2 and training["steps"] == 4 and training["hyperparameters"]["lr"] == 2e-4
    assert training["data"]["train"]["samples"] == 47 and training["data"]["excluded"] == EXCLUDED
    assert training["data"]["train"]["sources"] == {"real SEN12MS-CR pair": 21,
                                                    "synthetic clouds on a real clear image": 26}
    assert training["data"]["validation"]["samples"] == 6 and training["data"]["test_samples"] == []
    assert "Boumahdi" in training["paper_defaults"]["source"]
    metrics = card["metrics"]
    assert set(metrics["validation"]) >= {"mae", "rmse", "psnr", "ssim", "sam", "psnr_cloudy", "mae_reproduction"}
    assert metrics["units"]["sam"] == "degrees" and len(metrics["history"]) == 3
    assert metrics["learning_check"]["val_loss_before"] == result.initial_val_loss
    model, _ = load_model(out)
    x = torch.rand(1, 10, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), result.model.eval()(x))


def test_clear_errors(manifests, tmp_path):
    data = manifests["sen12mscr"]
    with pytest.raises(InputError, match="multiples of 32"):
        train(narrow_config(patch_size=48), data)
    with pytest.raises(InputError, match="adversarial"):
        train(narrow_config(loss="cgan"), data)
    with pytest.raises(InputError, match="Sentinel-1"):
        train(narrow_config(s1_bands=None), data)
    with pytest.raises(InputError, match="resume needs"):
        train(narrow_config(resume=True), data)
    m = load_manifest(data)
    no_masks = [s.__class__(**{**s.__dict__, "stacks": {k: v for k, v in s.stacks.items() if "mask" not in k}})
                for s in m.samples]
    with pytest.raises(InputError, match="masks"):
        train(narrow_config(loss="carl"), no_masks)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            train(narrow_config(device="cuda"), data)


def test_cloud_removal_gan_takes_trained_translator_weights(manifests, tmp_path):
    torch.manual_seed(0)
    translator = build_model("sar2opt_gan", blocks=1)
    translator.build_options = {"blocks": 1}
    save_model(tmp_path / "sar2opt", translator)
    result = train(TrainConfig(model="cr_gan", model_options={"blocks": 1}, epochs=0, patch_size=32, batch_size=2,
                               val_crops=1, device="cpu", translator_weights=str(tmp_path / "sar2opt.safetensors")),
                   manifests["bigearthnet"])
    got = result.model.translator.state_dict()
    assert all(torch.equal(got[k], v) for k, v in translator.generator.state_dict().items())
    unet = build_model("unet", s1_bands=0, widths=[8, 16])
    unet.build_options = {"widths": [8, 16]}
    save_model(tmp_path / "unet", unet)
    with pytest.raises(InputError, match="expected 'sar2opt_gan'"):
        train(TrainConfig(model="cr_gan", model_options={"blocks": 1}, epochs=0, patch_size=32, device="cpu",
                          translator_weights=str(tmp_path / "unet.safetensors")), manifests["bigearthnet"])


@requires_cuda
@pytest.mark.gpu
def test_gpu_mixed_precision_training(manifests):
    result = train(TrainConfig(model="crt_unet", patch_size=128, batch_size=8, crops_per_sample=8, epochs=2,
                               missing_inputs="zeros", device="cuda", amp=True), manifests["bigearthnet"])
    assert result.card["training"]["hyperparameters"]["amp"] is True and "cuda" in result.device
    assert result.final_val_loss < result.initial_val_loss
    assert result.samples_per_s > 0


# ---------------------------------------------------------------------------------------------- proof of learning
# Real architectures at the papers' widths, a few dozen steps on small crops of the real samples.
# sen12mscr: real cloudy/clear SEN12MS-CR pairs + clear images with synthetic clouds (Level-1C,
# no S1: the S2-only variants). bigearthnet: real clear S2 + real S1 with synthetic clouds
# (Level-2A). CRT-UNet gets all-zero terrain (the paper's ablation form): no DEM exists for these
# patches. Validation: held-out scenes, fixed crops, before training and after each epoch.
PROOF = {
    "unet": dict(data="bigearthnet", patch_size=64, batch_size=4, crops_per_sample=8, steps_per_epoch=10),
    "crt_unet": dict(data="bigearthnet", patch_size=64, batch_size=4, crops_per_sample=8, steps_per_epoch=10,
                     missing_inputs="zeros"),
    "dsen2cr": dict(data="sen12mscr", s1_bands=0, patch_size=32, batch_size=2, crops_per_sample=2,
                    steps_per_epoch=10),
    "cr_gan": dict(data="sen12mscr", s1_bands=0, patch_size=64, batch_size=4, crops_per_sample=4,
                   steps_per_epoch=10),
    "sar2opt_gan": dict(data="bigearthnet", patch_size=64, batch_size=4, crops_per_sample=8, steps_per_epoch=10),
}
#: Required relative drop of the validation loss from epoch 0 to the last epoch.
MIN_DROP = 0.05


@pytest.fixture(scope="module")
def proof_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("proof_of_learning")


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(PROOF))
def test_each_model_learns_on_the_real_samples(model, manifests, proof_dir):
    settings = dict(PROOF[model])
    data = manifests[settings.pop("data")]
    out = proof_dir / f"{model}.safetensors"
    result = train(TrainConfig(model=model, epochs=2, val_crops=4, seed=0, device="cpu", output=str(out),
                               description=f"proof-of-learning run of {model} on the sample patches", **settings),
                   data)
    card = json.loads(result.card_path.read_text())
    check = card["metrics"]["learning_check"]
    summary = {"model": model, "parameters": card["architecture"]["parameters"], "steps": check["steps"],
               "training_time_s": round(check["training_time_s"], 1), "val_loss_before": check["val_loss_before"],
               "val_loss_after": check["val_loss_after"], "relative_change": check["relative_change"],
               "mae_before": card["metrics"]["initial_validation"]["mae"], "mae_after": card["metrics"]["validation"]["mae"]}
    (proof_dir / f"{model}.summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    assert card["architecture"]["parameters"] > 18_000_000  # the papers' widths, not a toy
    assert check["steps"] == 20
    assert check["val_loss_after"] < (1 - MIN_DROP) * check["val_loss_before"], summary
    assert result.history[-1].train_loss < result.history[1].train_loss or \
        result.history[-1].val_loss < result.history[1].val_loss


# ---------------------------------------------------------------------------------------------- Processing / CLI
def test_trainmodel_is_in_the_provider(topoclear_provider):
    alg = topoclear_provider.algorithm("trainmodel")
    assert alg is not None and alg.group() == "Cloud removal training" and alg.groupId() == "cloudtraining"
    assert "safetensors" in alg.shortHelpString() and "paper" in alg.shortHelpString()
    assert alg.canExecute()[0] is True
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"MODEL", "DATASET", "EPOCHS", "BATCH_SIZE", "LR", "PATCH_SIZE", "LOSS", "SEED", "DEVICE", "OUTPUT",
            "RESUME"} <= names
    assert not alg.flags() & alg.FlagNoThreading  # runs in a background thread


def test_trainmodel_runs_through_processing(run_alg, manifests, tmp_path):
    from qgis.core import QgsProcessingFeedback

    out = tmp_path / "trained.safetensors"
    feedback = QgsProcessingFeedback()
    result = run_alg("topoclear:trainmodel", feedback=feedback, MODEL=_model_index("unet"), DATASET=str(manifests["sen12mscr"]), EPOCHS=1, BATCH_SIZE=2, LR=0,
                     PATCH_SIZE=32, LOSS=0, SEED=0, DEVICE="cpu", NO_S1=True, STEPS_PER_EPOCH=1, OUTPUT=str(out))
    assert result["OUTPUT"] == str(out) and out.is_file()
    card = json.loads(open(result["MODEL_CARD"]).read())
    assert card["architecture"]["model"] == "unet" and result["EPOCHS_DONE"] == 1
    assert np.isfinite(result["VAL_LOSS"])
    assert (tmp_path / "trained_checkpoints" / "last.safetensors").is_file()
    resumed = run_alg("topoclear:trainmodel", MODEL=_model_index("unet"), DATASET=str(manifests["sen12mscr"]),
                      EPOCHS=2, BATCH_SIZE=2, PATCH_SIZE=32, DEVICE="cpu", NO_S1=True, STEPS_PER_EPOCH=1,
                      RESUME=True, OUTPUT=str(out))
    assert resumed["EPOCHS_DONE"] == 2
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Sentinel-1"):
        run_alg("topoclear:trainmodel", MODEL=_model_index("unet"), DATASET=str(manifests["sen12mscr"]), EPOCHS=1,
                PATCH_SIZE=32, DEVICE="cpu", OUTPUT=str(tmp_path / "x.safetensors"))


def _model_index(name: str) -> int:
    from topoclear.processing_provider.training import model_names

    return model_names().index(name)


def test_trainmodel_without_torch_says_how_to_install_it(tmp_path):
    script = textwrap.dedent("""
        import json, os, sys
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        import topoclear
        plugin = topoclear.classFactory(None)
        plugin.initProcessing()
        alg = plugin.provider.algorithm("trainmodel")
        ok, message = alg.canExecute()
        models = alg.parameterDefinition("MODEL").options()
        plugin.unload()
        print(json.dumps({"ok": ok, "message": message, "models": models,
                          "torch": sys.modules["torch"] is not None}))
        app.exitQgis()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and "torch" in report["message"] and "pip install" in report["message"]
    assert "crt_unet" in report["models"] and report["torch"] is False


def test_command_line_script(manifests, tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import train as train_script
    finally:
        sys.path.pop(0)
    out = tmp_path / "cli.safetensors"
    rc = train_script.main(["--manifest", str(manifests["sen12mscr"]), "--model", "unet", "--no-s1", "--patch-size",
                            "32", "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "1", "--val-crops", "1",
                            "--device", "cpu", "--output", str(out)])
    assert rc == 0 and out.is_file() and out.with_suffix(".json").is_file()
    assert (tmp_path / "cli_checkpoints" / "last.state.pt").is_file()
    assert train_script.main(["--manifest", str(tmp_path / "nothing.json"), "--output", str(out)]) == 1
