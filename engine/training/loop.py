"""Training engine for the cloud-removal models of :mod:`topoclear.models`.

>>> from topoclear.engine.training.loop import TrainConfig, train
>>> result = train(TrainConfig(model="crt_unet", epochs=150, output="crt_unet.safetensors"),
...                "my_patches/manifest.json")
>>> result.final_val_loss, result.weights_path, result.card_path

What it does, per epoch: random crops of the training samples with the papers' augmentation
(:class:`~topoclear.engine.training.patch_dataset.PatchDataset`), one optimiser step per batch, then a
validation pass over fixed crops of the validation samples that reports the loss and MAE,
RMSE, PSNR, SSIM and SAM (:func:`topoclear.models.metrics.evaluate`, on reflectance in
[0, 1]). A validation pass also runs before the first epoch (epoch 0), so the history shows
how much the model learnt. After each epoch a checkpoint is written (``last``, and ``best``
for the lowest validation loss) from which training resumes exactly.

Hyper-parameters default to each paper's (:data:`PAPER_DEFAULTS`):

* ``unet`` / ``crt_unet`` (Boumahdi et al. 2025, section IV-A): Adam, lr 2e-4, batch 8, L1 loss,
  150 epochs;
* ``dsen2cr`` (Meraner et al. 2020, section 3.5): Adam with Nesterov momentum (Nadam), lr 7e-5,
  batch 16, CARL loss (lambda 1) with cloud/shadow masks;
* ``sar2opt_gan`` / ``cr_gan`` (Darbaghshahi et al., section 3.1): conditional GAN, Adam with
  beta1 0.5, beta2 0.999, batch 32, generator loss L_cGAN + 100 L1 + 100 (1 - SSIM), PatchGAN
  discriminator. The paper prints the learning rate as "2^-4"; it is read as 2e-4, the
  pix2pix rate the rest of its setup follows (0.0625 would make Adam diverge).

Devices: ``"auto"`` takes the first CUDA GPU when torch sees one and the CPU otherwise (and says
so); ``"cuda"`` / ``"cuda:N"`` fails with a clear error when no GPU is usable, never falling back
silently. Mixed precision (``amp``) applies on CUDA only: float16 autocast with a
``GradScaler``; losses are computed in float32.

On the CPU, subnormal floats are flushed to zero while training: the 0.1-scaled residual blocks
of DSen2-CR otherwise produce subnormal gradients and optimiser moments that make every step
about ten times slower.

Reproducibility: everything random derives from ``seed`` (weights, crop positions, flips,
shuffling, dropout). On the CPU the same seed gives identical losses; a run resumed from a
checkpoint continues exactly as an uninterrupted one.

Progress and cancellation go through :class:`~topoclear.engine.progress.Monitor`; a cancelled
run raises :class:`~topoclear.engine.errors.Cancelled` after keeping the checkpoints of the
epochs it completed.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...models.registry import count_parameters, get_spec
from .. import checkpoints as ckpt
from ..errors import InputError
from ..io.folders import make_folders, remove_if_empty
from ..progress import SILENT, Monitor
from .manifest import PatchSample
from .patch_dataset import PatchDataset
from .trainer import Trainer
from .training_config import AUGMENTATION, EpochRecord, TrainConfig, TrainResult, epoch_records, paper_defaults
from .training_data import DataArg, training_datasets

__all__ = ["TrainConfig", "TrainResult", "resolve_device", "train"]


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> first CUDA GPU or CPU; ``"cuda[:N]"`` checked; :class:`InputError` otherwise."""
    text = (device or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested, but torch {torch.__version__} sees no CUDA GPU "
                             "(CPU-only build or no driver); use device 'cpu' or 'auto', or install a CUDA build "
                             "of torch")
        try:
            dev = torch.device(text)
        except RuntimeError as exc:
            raise InputError(f"device {device!r} is not a valid device name ({exc})") from exc
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
        return torch.device("cuda", index)
    raise InputError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _check_config(config: TrainConfig) -> None:
    spec = get_spec(config.model)
    if config.epochs < 0:
        raise InputError(f"epochs must be >= 0, got {config.epochs}")
    if spec.multi_temporal:
        raise InputError(f"model {config.model!r} is multi-temporal; the training engine reads single-date patch "
                         "stacks only")
    if config.patch_size % spec.size_multiple:
        raise InputError(f"model {config.model!r} needs patch sizes that are multiples of {spec.size_multiple}; "
                         f"got {config.patch_size}")
    if config.loss == "cgan" and config.patch_size % 16:
        raise InputError(f"GAN training needs patch sizes that are multiples of 16 (PatchGAN), got {config.patch_size}")
    if config.resume and not config.checkpoint_dir:
        raise InputError("resume needs a checkpoint folder")


def _training_device(config: TrainConfig, monitor: Monitor) -> torch.device:
    device = resolve_device(config.device)
    if config.device.strip().lower() == "auto" and device.type == "cpu":
        monitor.message("No CUDA GPU visible to torch: training on the CPU (slow for full-size models).")
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = bool(config.deterministic)
        torch.backends.cudnn.benchmark = not config.deterministic  # fixed patch sizes: let cuDNN pick kernels
    return device


@dataclass
class _Run:
    """What one call of :func:`train` has to work with, and what it has done so far."""

    config: TrainConfig
    trainer: Trainer
    device: torch.device
    train_ds: PatchDataset
    val_ds: Optional[PatchDataset]
    data_info: dict
    test_samples: List[PatchSample]
    checkpoint_dir: Optional[Path]
    steps_per_epoch: int
    started: float = field(default_factory=time.perf_counter)
    history: List[EpochRecord] = field(default_factory=list)
    best: Optional[Tuple[int, float]] = None
    steps: int = 0
    start_epoch: int = 1
    train_time: float = 0.0
    train_samples: int = 0

    @property
    def samples_per_s(self) -> Optional[float]:
        return self.train_samples / self.train_time if self.train_time > 0 else None


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def train(config: TrainConfig, data: DataArg, monitor: Optional[Monitor] = None,
          val_data: Optional[DataArg] = None) -> TrainResult:
    """Train ``config.model`` on ``data`` (manifest path or folder, :class:`Manifest`, samples, or a
    training :class:`PatchDataset`); validate on ``val_data`` or the manifest's ``val`` split.

    Returns a :class:`TrainResult` with the per-epoch history (epoch 0 = before training), the
    model card, and the paths of the final weights when ``config.output`` is set.
    """
    np.finfo(np.float32), np.finfo(np.float64)  # cache numpy's limits before subnormals are flushed
    flushed = torch.set_flush_denormal(True)
    try:
        return _train(config, data, monitor or SILENT, val_data)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _train(config: TrainConfig, data: DataArg, monitor: Monitor, val_data: Optional[DataArg]) -> TrainResult:
    config = config.resolved()
    _check_config(config)
    device = _training_device(config, monitor)
    _seed_everything(config.seed)
    layout = get_spec(config.model).layout(config.s2_bands, config.s1_bands, config.terrain_bands)
    train_ds, val_ds, data_info, test_samples = training_datasets(config, layout, data, val_data)
    if config.augment is False:
        train_ds.augmentation_probability = 0.0
    train_ds.set_epoch(1)

    _seed_everything(config.seed)  # weights do not depend on how much randomness the data set-up used
    trainer = Trainer(config, val_ds, device, monitor)
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None  # created by the first checkpoint
    batches_per_epoch = math.ceil(len(train_ds) / config.batch_size)
    steps_per_epoch = min(batches_per_epoch, config.steps_per_epoch) if config.steps_per_epoch else batches_per_epoch
    run = _Run(config, trainer, device, train_ds, val_ds, data_info, test_samples, ckpt_dir, steps_per_epoch)

    if config.resume and ckpt_dir is not None and ckpt.state_path(ckpt_dir / "last").is_file():
        _resume(run, monitor)
    else:
        _validate_untrained(run, monitor)
    total_steps = max(1, max(0, config.epochs - run.start_epoch + 1) * steps_per_epoch)
    progress = _StepProgress(monitor, total_steps)
    for epoch in range(run.start_epoch, config.epochs + 1):
        _run_epoch(run, epoch, monitor, progress)

    elapsed = time.perf_counter() - run.started
    card = _card(run, elapsed)
    weights_path = card_path = None
    if config.output:
        weights_path, card_path = ckpt.save_model(config.output, trainer.model, card)
        card = ckpt.read_card(weights_path)
    monitor.progress(100.0)
    return TrainResult(config=config, history=run.history, card=card, weights_path=weights_path, card_path=card_path,
                       checkpoint_dir=ckpt_dir, device=_device_text(device), steps=run.steps, time_s=elapsed,
                       samples_per_s=run.samples_per_s, best_epoch=run.best[0] if run.best else None,
                       model=trainer.model)


def _resume(run: _Run, monitor: Monitor) -> None:
    """Continue from the ``last`` checkpoint: weights, optimiser and RNG states, history."""
    ckpt_dir, config, trainer = run.checkpoint_dir, run.config, run.trainer
    state = ckpt.load_training_state(ckpt_dir / "last")
    saved = state.get("config", {})
    for key in ("model", "loss"):
        if saved.get(key) != getattr(config, key):
            raise InputError(f"checkpoint in {ckpt_dir} was trained with {key} {saved.get(key)!r}, this run asks "
                             f"for {getattr(config, key)!r}; use another checkpoint folder or the same settings")
    ckpt.load_weights(trainer.model, ckpt_dir / "last")
    trainer.model.to(run.device)
    trainer.restore(state)
    run.history = epoch_records(state.get("history", []))
    run.best = tuple(state["best"]) if state.get("best") else None
    run.steps = int(state.get("steps", 0))
    run.start_epoch = int(state["epoch"]) + 1
    monitor.message(f"Resumed from {ckpt_dir / 'last'} after epoch {state['epoch']}.")


def _validate_untrained(run: _Run, monitor: Monitor) -> None:
    """Epoch 0: the validation loss of the untrained model."""
    config, trainer = run.config, run.trainer
    monitor.message(f"Training {config.model} ({count_parameters(trainer.model):,} parameters) on "
                    f"{_device_text(run.device)}: {len(run.train_ds.samples)} training samples, "
                    f"{len(run.val_ds.samples) if run.val_ds else 0} validation samples, {run.steps_per_epoch} steps "
                    f"per epoch, batch {config.batch_size}, lr {config.lr:g}, loss {config.loss}.")
    t0 = time.perf_counter()
    val_loss, val_metrics = trainer.validate()
    run.history.append(EpochRecord(0, 0, None, val_loss, val_metrics, time_s=time.perf_counter() - t0))
    if val_loss is not None:
        monitor.message(f"Epoch 0 (untrained): validation loss {val_loss:.5f}")


class _StepProgress:
    """Progress over all optimiser steps of the run (the last 2 % are the final writing)."""

    def __init__(self, monitor: Monitor, total_steps: int) -> None:
        self.monitor, self.total, self.done = monitor, total_steps, 0

    def step(self) -> None:
        self.done += 1
        self.monitor.progress(100.0 * self.done / self.total * 0.98)


def _train_steps(run: _Run, epoch: int, monitor: Monitor, progress: _StepProgress):
    """One epoch's optimiser steps: losses, loss parts, samples seen and training time."""
    trainer = run.trainer
    run.train_ds.set_epoch(epoch)
    loader = trainer.loader(run.train_ds, shuffle=True, epoch=epoch, batch_size=run.config.batch_size)
    losses: List[float] = []
    parts: Dict[str, List[float]] = {}
    seen = 0
    t_train = time.perf_counter()
    for i, batch in enumerate(loader):
        if i >= run.steps_per_epoch:
            break
        monitor.check()
        batch = trainer.to_device(batch)
        loss, extra = trainer.step(batch)
        losses.append(loss)
        for k, v in extra.items():
            parts.setdefault(k, []).append(v)
        seen += int(batch["target"].shape[0])
        run.steps += 1
        progress.step()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return losses, parts, seen, time.perf_counter() - t_train


def _run_epoch(run: _Run, epoch: int, monitor: Monitor, progress: _StepProgress) -> None:
    """Train one epoch, validate, report, and write the checkpoints."""
    monitor.check()
    t_epoch = time.perf_counter()
    losses, parts, seen, train_time = _train_steps(run, epoch, monitor, progress)
    run.train_time += train_time
    run.train_samples += seen
    val_loss, val_metrics = run.trainer.validate()
    record = EpochRecord(
        epoch=epoch, steps=run.steps, train_loss=float(np.mean(losses)) if losses else None, val_loss=val_loss,
        val_metrics=val_metrics, train_parts={k: float(np.mean(v)) for k, v in parts.items()},
        time_s=time.perf_counter() - t_epoch, samples_per_s=seen / train_time if train_time > 0 else None)
    run.history.append(record)
    improved = val_loss is not None and (run.best is None or val_loss < run.best[1])
    if improved:
        run.best = (epoch, val_loss)
    monitor.message(_epoch_message(record, run.config.epochs))
    if run.checkpoint_dir is not None:
        card = _card(run, time.perf_counter() - run.started)
        made = make_folders(run.checkpoint_dir)
        try:
            ckpt.save_model(run.checkpoint_dir / "last", run.trainer.model, card)
            ckpt.save_training_state(run.checkpoint_dir / "last",
                                     run.trainer.training_state(epoch, run.steps, run.history, run.best))
            if improved:
                ckpt.save_model(run.checkpoint_dir / "best", run.trainer.model, card)
        except BaseException:
            remove_if_empty(made)  # a first checkpoint that could not be written leaves no empty folder
            raise


def _epoch_message(record: EpochRecord, epochs: int) -> str:
    m = record.val_metrics
    text = f"Epoch {record.epoch}/{epochs}: train loss {record.train_loss:.5f}"
    if record.val_loss is not None:
        text += (f", validation loss {record.val_loss:.5f}, MAE {m.get('mae', float('nan')):.4f}, "
                 f"PSNR {m.get('psnr', float('nan')):.2f} dB, SSIM {m.get('ssim', float('nan')):.3f}, "
                 f"SAM {m.get('sam', float('nan')):.2f} deg")
    if record.samples_per_s:
        text += f", {record.samples_per_s:.2f} samples/s"
    return text


# ---------------------------------------------------------------------------------------------
# the model card
# ---------------------------------------------------------------------------------------------
def _learning_check(history: Sequence[EpochRecord], steps: int, train_time: float) -> Optional[dict]:
    """How the validation loss moved from epoch 0 to the last epoch."""
    first, last = (history[0], history[-1]) if history else (None, None)
    if first is None or last is None or first.val_loss is None or last.val_loss is None:
        return None
    return {
        "val_loss_before": first.val_loss, "val_loss_after": last.val_loss,
        "relative_change": (last.val_loss - first.val_loss) / first.val_loss if first.val_loss else None,
        "steps": steps, "epochs": last.epoch, "training_time_s": train_time,
    }


def _card(run: _Run, elapsed: float) -> dict:
    config, trainer, history, best = run.config, run.trainer, run.history, run.best
    first, last = (history[0], history[-1]) if history else (None, None)
    training = {
        "data": {
            **run.data_info,
            "train": run.train_ds.describe(),
            "validation": run.val_ds.describe() if run.val_ds is not None else None,
            "test_samples": [s.id for s in run.test_samples],
            "missing_inputs": config.missing_inputs,
        },
        "hyperparameters": {
            "loss": config.loss, "loss_params": config.loss_params, "optimizer": config.optimizer, "lr": config.lr,
            "betas": config.betas, "weight_decay": config.weight_decay, "batch_size": config.batch_size,
            "patch_size": config.patch_size, "crops_per_sample": config.crops_per_sample,
            "steps_per_epoch": config.steps_per_epoch, "augmentation": AUGMENTATION if config.augment else "none",
            "seed": config.seed, "amp": trainer.use_amp, "discriminator": trainer.discriminator is not None,
        },
        "paper_defaults": paper_defaults(config.model),
        "epochs": last.epoch if last else 0,
        "epochs_requested": config.epochs,
        "steps": run.steps,
        "device": _device_text(run.device),
        "time_s": elapsed,
        "training_time_s": run.train_time,
        "samples_per_s": run.samples_per_s,
        "config": config.to_dict(),
    }
    metrics = {
        "units": {"loss": f"{config.loss} on {trainer.scaling}-scaled values", "mae": "reflectance", "rmse": "reflectance",
                  "psnr": "dB", "ssim": "unitless", "sam": "degrees"},
        "validation": last.val_metrics if last else {},
        "validation_loss": last.val_loss if last else None,
        "initial_validation": first.val_metrics if first else {},
        "best_epoch": best[0] if best else None,
        "best_validation_loss": best[1] if best else None,
        "learning_check": _learning_check(history, run.steps, run.train_time),
        "history": [h.to_dict() for h in history],
    }
    return ckpt.make_card(trainer.model, training=training, metrics=metrics, description=config.description)
