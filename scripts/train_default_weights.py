#!/usr/bin/env python3
"""Train the default cloud-removal weights shipped in ``models/weights/``.

    .venv/bin/python scripts/build_training_data.py          # once: build/training-data
    .venv/bin/python scripts/train_default_weights.py        # all five recipes, then
    .venv/bin/python scripts/evaluate_cloud_removal.py --update-results

(``scripts/reproduce_weights.sh`` runs the three.)

Each recipe (:data:`RECIPES`) names the registry model, its band layout, the samples it trains
on and the training settings; everything else is the training engine's
(:mod:`topoclear.engine.training.loop`) with the paper's optimiser, learning rate and loss. The
weights are written as float16 safetensors with the JSON model card beside them.

The shipped networks are **compact** versions of the papers' architectures (the same layers,
fewer channels; see :data:`COMPACT_UNET` and :data:`COMPACT_DSEN2CR`) because they are trained
on a CPU: at the papers' widths a CPU gets through a few hundred steps in the same time. The
papers' widths are the registry defaults: train them with ``scripts/train.py`` on a GPU.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from topoclear.engine.checkpoints import read_card, save_model  # noqa: E402
from topoclear.engine.progress import Monitor  # noqa: E402
from topoclear.engine.training.loop import TrainConfig, train  # noqa: E402
from topoclear.engine.training.manifest import load_manifest  # noqa: E402
from topoclear.engine.training.training_config import paper_defaults  # noqa: E402
from topoclear.models.bands import S1_BANDS, S2_BANDS_10_20M, TERRAIN_BANDS  # noqa: E402

#: UNet / CRT-UNet of the shipped weights: the paper's widths (32, 64, 128, 256, 512, 616) / 4, and
#: a prediction added to the cloudy input (``residual``), which starts from the identity and
#: converges in the few thousand steps a CPU run affords.
COMPACT_UNET = {"widths": [8, 16, 32, 64, 128, 154], "residual": True}
#: DSen2-CR of the shipped weights: 16 residual blocks as in the paper, 32 features instead of 256.
COMPACT_DSEN2CR = {"features": 32, "blocks": 16}
#: The networks that start from the fill (``topoclear.models.fill_prior``): four-level UNets (receptive
#: radius 51 px) and an 8-block DSen2-CR (18 px); the fill carries the far context.
FILL_UNET = {"widths": [16, 32, 64, 128]}
FILL_DSEN2CR = {"features": 32, "blocks": 8}
#: Source names (substrings of a sample's ``source``) of the terrain-aware scenes, the only
#: samples with Sentinel-1 and terrain.
SEMI_SYNTHETIC = "semi-synthetic"
#: The real Sentinel-1 + Sentinel-2 + DEM triplets with real cloud shapes.
TRIPLETS = "real S1 + S2 + DEM"


@dataclass(frozen=True)
class Recipe:
    """One shipped weights file: ``<name>.safetensors`` + ``<name>.json``."""

    name: str
    model: str
    s1: bool
    terrain: bool
    options: Dict
    steps: int
    patch_size: int
    sources: Optional[Tuple[str, ...]] = None  # None: every sample of the manifest
    epochs: int = 10
    loss_params: Dict = field(default_factory=dict)
    #: (extra epochs, mask-error probability): after ``epochs``, training resumes from the checkpoint for
    #: that many epochs more with false alarms added to the masks (``TrainConfig.mask_errors``).
    finetune: Optional[Tuple[int, float]] = None

    def config(self, samples: int, device: str, seed: int, scale: float) -> TrainConfig:
        """Settings for ``samples`` training samples: ``steps`` optimiser steps (times ``scale``) in all."""
        steps = max(1, int(round(self.steps * scale / self.epochs)))
        batch = paper_defaults(self.model)["batch_size"]
        return TrainConfig(
            model=self.model, s2_bands=list(S2_BANDS_10_20M), s1_bands=list(S1_BANDS) if self.s1 else 0,
            terrain_bands=list(TERRAIN_BANDS) if self.terrain else None, model_options=dict(self.options),
            epochs=self.epochs, steps_per_epoch=steps, crops_per_sample=math.ceil(steps * batch / samples),
            patch_size=self.patch_size,
            val_crops=2, seed=seed, device=device, cache_data=True, description=self.describe())

    def describe(self) -> str:
        if self.sources and TRIPLETS in self.sources:
            data = ("the samples with Sentinel-1 and terrain: the real Terramind S1 + S2 + DEM tiles with real cloud "
                    "shapes and the semi-synthetic terrain-aware scenes")
        elif self.sources:
            data = "the semi-synthetic terrain-aware scenes (the only samples with Sentinel-1 and terrain)"
        else:
            data = ("all training samples: real SEN12MS-CR pairs of the training scenes, real cloud shapes on real "
                    "clear images, the real S1 + S2 + DEM tiles with real cloud shapes and the semi-synthetic "
                    "terrain-aware scenes")
        tune = (f" After {self.epochs} epochs, {self.finetune[0]} more with false alarms added to the masks of half "
                "the training crops (a rule-based mask's errors)." if self.finetune else "")
        return (f"TopoClear default weights '{self.name}': compact {self.model} ({self.options}), "
                f"{'with' if self.s1 else 'without'} Sentinel-1, trained on {data} of "
                "build/training-data (scripts/build_training_data.py, seed 0) by scripts/train_default_weights.py."
                + tune)


RECIPES: Dict[str, Recipe] = {r.name: r for r in (
    Recipe("crt_unet", "crt_unet", s1=True, terrain=True, options=COMPACT_UNET, steps=3000, patch_size=128,
           sources=(SEMI_SYNTHETIC,)),
    Recipe("unet", "unet", s1=True, terrain=False, options=COMPACT_UNET, steps=3000, patch_size=128,
           sources=(SEMI_SYNTHETIC,)),
    Recipe("unet_nosar", "unet", s1=False, terrain=False, options=COMPACT_UNET, steps=3000, patch_size=128),
    Recipe("dsen2cr", "dsen2cr", s1=True, terrain=False, options=COMPACT_DSEN2CR, steps=800, patch_size=64,
           sources=(SEMI_SYNTHETIC,)),
    Recipe("dsen2cr_nosar", "dsen2cr", s1=False, terrain=False, options=COMPACT_DSEN2CR, steps=800, patch_size=64),
    Recipe("unet_fill_nosar", "unet_fill", s1=False, terrain=False, options=FILL_UNET, steps=800, patch_size=128),
    Recipe("unet_fill", "unet_fill", s1=True, terrain=False, options=FILL_UNET, steps=250, patch_size=128,
           sources=(TRIPLETS, SEMI_SYNTHETIC)),
    Recipe("crt_unet_fill", "crt_unet_fill", s1=True, terrain=True, options=FILL_UNET, steps=300, patch_size=128,
           sources=(TRIPLETS, SEMI_SYNTHETIC)),
    Recipe("dsen2cr_fill_nosar", "dsen2cr_fill", s1=False, terrain=False, options=FILL_DSEN2CR, steps=150,
           patch_size=64),
)}
#: The recipes of the weights shipped today (the others reproduce earlier weights files).
DEFAULT_RECIPES = ("unet_fill_nosar", "crt_unet_fill", "unet_fill", "dsen2cr_fill_nosar")
#: Recipes whose weights were trained by an earlier release and stay shipped as they are.
EARLIER_RECIPES = ("crt_unet", "unet", "unet_nosar", "dsen2cr", "dsen2cr_nosar")


def machine() -> str:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from machine import describe_machine

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{describe_machine()}, {torch.get_num_threads()} torch thread(s), {gpu}, torch {torch.__version__}"


def run(recipe: Recipe, manifest, out_dir: Path, device: str, seed: int, scale: float,
        checkpoints: Optional[Path] = None) -> Path:
    samples = [s for s in manifest.samples
               if recipe.sources is None or any(src in s.source for src in recipe.sources)]
    config = recipe.config(sum(s.split == "train" for s in samples), device, seed, scale)
    if checkpoints is not None:
        config.checkpoint_dir, config.resume = str(checkpoints / recipe.name), True
    start = time.perf_counter()

    def progress(p: float) -> None:
        print(f"\r{recipe.name}: {p:5.1f} % ({time.perf_counter() - start:.0f} s)", end="", flush=True)

    monitor = Monitor(progress, None, lambda m: print(f"\n{m}", flush=True))
    result = train(config, samples, monitor)
    if recipe.finetune and checkpoints is not None:
        extra, errors = recipe.finetune
        config.epochs, config.mask_errors, config.resume = recipe.epochs + extra, errors, True
        result = train(config, samples, monitor)
    print()
    card = dict(result.card)
    if checkpoints is not None:
        select_best(result.model, card, checkpoints / recipe.name)
    card["training"]["hardware"] = machine()
    card["training"]["command"] = (f"scripts/train_default_weights.py --only {recipe.name} --seed {seed}"
                                   + (f" --steps-scale {scale:g}" if scale != 1 else ""))
    card["training"]["data"]["sources"] = list(recipe.sources) if recipe.sources else "all"
    weights, card_path = save_model(out_dir / f"{recipe.name}.safetensors", result.model, card, half=True)
    print(f"{recipe.name}: {weights} ({weights.stat().st_size / 1e6:.1f} MB), card {card_path}; "
          f"validation loss {result.initial_val_loss:.4f} -> {result.final_val_loss:.4f} "
          f"in {card['training']['training_time_s']:.0f} s")
    return weights


def select_best(model, card: dict, folder: Path) -> None:
    """Ship the epoch with the lowest validation loss (the ``best`` checkpoint), not the last one: load its
    weights into ``model`` and say so in ``card`` (its validation metrics become the card's), beside the
    untrained network's validation loss (epoch 0: the fill itself for the networks that start from it). Whether
    the result beats the fill is for the held-out evaluation to say (the Automatic method reads it)."""
    from topoclear.engine.checkpoints import load_weights

    history = card["metrics"].get("history", [])
    trained = [h for h in history if h.get("epoch", 0) > 0 and h.get("val_loss") is not None]
    if not trained or not (folder / "best.safetensors").exists():
        return
    best = min(trained, key=lambda h: h["val_loss"])
    load_weights(model, folder / "best.safetensors")
    card["metrics"]["validation"] = best["val_metrics"]
    card["metrics"]["validation_loss"] = best["val_loss"]
    card["training"]["selected_epoch"] = {
        "epoch": best["epoch"], "steps": best["steps"], "rule": "lowest validation loss among the trained epochs",
        "untrained_val_loss": history[0].get("val_loss") if history else None, "last_epoch": trained[-1]["epoch"]}


def finish(name: str, out: Path, checkpoints: Path) -> None:
    """Rewrite ``out/<name>`` with its best epoch (:func:`select_best`), for weights written without it."""
    from topoclear.engine.checkpoints import load_model

    model, card = load_model(out / f"{name}.safetensors")
    select_best(model, card, checkpoints / name)
    save_model(out / f"{name}.safetensors", model, card, half=True)
    print(f"{name}: epoch {card['training'].get('selected_epoch', {}).get('epoch')} kept")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "build" / "training-data"),
                        help="training data folder or manifest (scripts/build_training_data.py)")
    parser.add_argument("--out", default=str(REPO / "models" / "weights"), help="folder of the weights")
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="train only these (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every recipe's number of steps (e.g. 10 on a GPU)")
    parser.add_argument("--checkpoints", type=Path, default=REPO / "build" / "checkpoints",
                        help="folder of the per-epoch checkpoints (a rerun resumes from them)")
    parser.add_argument("--finish", action="store_true",
                        help="only rewrite the weights of --only (or all) recipes with their best epoch")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; 1 is faster on a CPU shared with other work)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.finish:
        for name in args.only or list(DEFAULT_RECIPES):
            finish(name, out, args.checkpoints)
        return 0
    manifest = load_manifest(args.data)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(DEFAULT_RECIPES):
        run(RECIPES[name], manifest, out, args.device, args.seed, args.steps_scale, args.checkpoints)
        read_card(out / f"{name}.json")  # the card is readable as written
    return 0


if __name__ == "__main__":
    sys.exit(main())
