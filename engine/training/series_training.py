"""Training a multi-temporal network (CA-MTCR) on series samples, on the CPU or a GPU, checkpointed.

The single-date training engine (:mod:`.loop`) reads patch stacks of one acquisition; this one
takes its batches from a :class:`~.series_data.SeriesSampler` (a clear target with a real cloud
shape transplanted, auxiliary dates of the same place) and trains with the CA-MTCR loss
(:class:`topoclear.models.perceptual_loss.CAMTCRLoss`: ``2 L1 + VGG16 feature + 250 style`` when a
VGG16 file is given, else ``2 L1 + (1 - SSIM)``) on the whole image, as the paper does.

* **Optimiser**: Adam (the paper's, section 4.1), every parameter at ``lr`` and a pretrained
  SAR encoder at ``lr / 10`` (:meth:`~topoclear.models.ca_mtcr.CAMTCR.parameter_groups`).
* **Schedule**: the paper's shape scaled to the run: constant for the first third of the run,
  then halved at 1/3, 1/2, 2/3 and 5/6 (its "halved every 5 epochs after the first 10" of 30);
  the fraction of the run is that of the steps or, with a time budget, of the time if larger.
* **Dates per batch**: each batch draws its number of dates T (target + T - 1 auxiliary) from
  ``dates``, so the network learns with one to several auxiliary dates.
* **Stops** after ``steps`` steps or ``max_minutes`` minutes, whichever comes first.
* **Checkpoints** every ``checkpoint_every`` steps and at the end (model, optimiser, step, random
  state and history, :func:`topoclear.engine.checkpoints.save_training_state`); ``resume`` continues
  a run exactly where its last checkpoint left it. The best validation state is kept beside it.
* **Validation** every ``val_every`` steps on fixed batches: loss, MAE and PSNR over the whole
  crop and inside the target's mask.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..progress import SILENT, Monitor
from .series_data import SeriesSampler

__all__ = ["SeriesTrainConfig", "SeriesTrainResult", "train_series", "lr_factor", "validation_batches"]


@dataclass
class SeriesTrainConfig:
    """Hyper-parameters of one run (see the module notes)."""

    model: str = "ca_mtcr"
    model_options: Dict[str, Any] = field(default_factory=dict)
    s2_bands: Sequence[str] = ()
    s1_bands: int = 0
    steps: int = 2000
    batch_size: int = 4
    crop: int = 128
    dates: Tuple[int, ...] = (2, 3, 4, 5)
    lr: float = 3e-4
    sar_lr_ratio: float = 0.1
    vgg_weights: Optional[str] = None
    seed: int = 0
    max_minutes: Optional[float] = None
    checkpoint_dir: Optional[str] = None
    checkpoint_every: int = 100
    val_every: int = 200
    resume: bool = False
    threads: Optional[int] = None
    device: str = "cpu"


@dataclass
class SeriesTrainResult:
    model: Any
    best_model: Any
    history: List[dict]
    steps: int
    seconds: float
    best_step: int
    best_val: float
    config: SeriesTrainConfig
    stopped_by: str

    def summary(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "best_step": self.best_step,
                "best_validation_loss": self.best_val, "stopped_by": self.stopped_by}


def lr_factor(fraction: float) -> float:
    """The paper's schedule at ``fraction`` (0-1) of the run: 1 until a third, then halved at 1/3, 1/2, 2/3
    and 5/6."""
    return 0.5 ** sum(fraction >= m for m in (1 / 3, 1 / 2, 2 / 3, 5 / 6))


def validation_batches(sampler: SeriesSampler, count: int, batch_size: int, crop: int, dates: Sequence[int],
                       seed: int = 12345) -> List[Dict[str, np.ndarray]]:
    """Fixed validation batches (the same for every evaluation and every run with ``seed``)."""
    rng = np.random.default_rng(seed)
    return [sampler.batch(rng, batch_size, int(dates[i % len(dates)]), crop) for i in range(count)]


def _tensors(batch: Dict[str, np.ndarray], device) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items() if k != "days"}


def _evaluate(model, loss_fn, batches, device) -> dict:
    model.eval()
    totals = {"loss": 0.0, "mae": 0.0, "mae_mask": 0.0, "mse": 0.0, "mse_mask": 0.0}
    n = 0
    with torch.no_grad():
        for batch in batches:
            t = _tensors(batch, device)
            pred = model(t["s2"], mask=t["mask"])
            totals["loss"] += float(loss_fn(pred, t["target"]))
            err = (pred.clamp(0, 1) - t["target"])
            m = t["mask"][:, -1]
            totals["mae"] += float(err.abs().mean())
            totals["mse"] += float((err ** 2).mean())
            w = m.expand_as(err)
            totals["mae_mask"] += float((err.abs() * w).sum() / w.sum().clamp(min=1))
            totals["mse_mask"] += float(((err ** 2) * w).sum() / w.sum().clamp(min=1))
            n += 1
    model.train()
    out = {k: v / max(1, n) for k, v in totals.items()}
    out["psnr"] = -10 * math.log10(max(out.pop("mse"), 1e-12))
    out["psnr_mask"] = -10 * math.log10(max(out.pop("mse_mask"), 1e-12))
    return out


def _build(config: SeriesTrainConfig):
    from ...models.registry import build_model

    model = build_model(config.model, s2_bands=list(config.s2_bands) or None, s1_bands=config.s1_bands,
                        **dict(config.model_options))
    model.build_options = dict(config.model_options)
    return model


@dataclass
class _SeriesRun:
    """The state of one run, carried between the steps of :func:`train_series`."""

    config: SeriesTrainConfig
    model: Any
    optimizer: Any
    loss_fn: Any
    device: Any
    rng: np.random.Generator
    last: Optional[Path]
    history: List[dict] = field(default_factory=list)
    step: int = 0
    best_val: float = math.inf
    best_step: int = 0
    best_state: Optional[dict] = None
    elapsed_before: float = 0.0
    start: float = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, those of the runs this one resumes included."""
        return self.elapsed_before + time.perf_counter() - self.start


def _start_run(config: SeriesTrainConfig) -> _SeriesRun:
    """The model, optimiser, loss and random generator of a new run of ``config``."""
    from ...models.perceptual_loss import CAMTCRLoss

    if config.threads:
        torch.set_num_threads(int(config.threads))
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = _build(config).to(device)
    groups = (model.parameter_groups(config.lr, config.lr * config.sar_lr_ratio)
              if hasattr(model, "parameter_groups") else [{"params": model.parameters(), "lr": config.lr}])
    for g in groups:
        g["initial_lr"] = g["lr"]
    optimizer = torch.optim.Adam(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loss_fn = CAMTCRLoss(config.vgg_weights).to(device)
    rng = np.random.default_rng(config.seed)
    folder = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    last = folder / "last.safetensors" if folder else None
    return _SeriesRun(config, model, optimizer, loss_fn, device, rng, last)


def _resume(run: _SeriesRun, monitor: Monitor) -> None:
    """Continue ``run`` from its last checkpoint when the configuration asks for it and there is one."""
    from .. import checkpoints as ckpt

    if not (run.config.resume and run.last is not None and ckpt.state_path(run.last).is_file()):
        return
    state = ckpt.load_training_state(run.last)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.step, run.history = int(state["step"]), list(state["history"])
    run.best_val, run.best_step = float(state["best_val"]), int(state["best_step"])
    run.best_state = state.get("best_model")
    run.elapsed_before = float(state["seconds"])
    run.rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    monitor.message(f"resumed at step {run.step} ({run.elapsed_before / 60:.1f} min done)")


def _save(run: _SeriesRun) -> None:
    """Checkpoint ``run`` (nothing without a checkpoint folder)."""
    from .. import checkpoints as ckpt

    if run.last is None:
        return
    run.last.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save_training_state(run.last, {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "step": run.step,
        "history": run.history, "best_val": run.best_val, "best_step": run.best_step, "best_model": run.best_state,
        "seconds": run.elapsed(), "rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state()})


def _validate(run: _SeriesRun, val: List[Dict[str, np.ndarray]], monitor: Monitor) -> None:
    """Evaluate on the validation batches, record it in the history and keep the best state."""
    record = {"step": run.step, "minutes": round(run.elapsed() / 60, 2),
              **_evaluate(run.model, run.loss_fn, val, run.device)}
    run.history.append(record)
    if record["loss"] < run.best_val:
        run.best_val, run.best_step = record["loss"], run.step
        run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    monitor.message("validation " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))


def _train_step(run: _SeriesRun, sampler: SeriesSampler) -> Tuple[float, int, float]:
    """One optimiser step on a new batch at the scheduled learning rate: (schedule factor, dates, loss)."""
    config = run.config
    fraction = run.step / max(1, config.steps)
    if config.max_minutes:
        fraction = max(fraction, run.elapsed() / (60.0 * config.max_minutes))
    factor = lr_factor(fraction)
    for g in run.optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
    dates = int(config.dates[int(run.rng.integers(0, len(config.dates)))])
    t = _tensors(sampler.batch(run.rng, config.batch_size, dates, config.crop), run.device)
    pred = run.model(t["s2"], mask=t["mask"])
    loss = run.loss_fn(pred, t["target"])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.step += 1
    return factor, dates, loss.item()


def _train_until_stopped(run: _SeriesRun, sampler: SeriesSampler, val: List[Dict[str, np.ndarray]],
                         monitor: Monitor) -> str:
    """Train until the step count or the time budget is reached, validating and checkpointing on the way;
    what stopped it (``"steps"`` or ``"time"``)."""
    config = run.config
    running = []
    while run.step < config.steps:
        if config.max_minutes is not None and run.elapsed() > 60 * config.max_minutes:
            return "time"
        monitor.check()
        factor, dates, loss = _train_step(run, sampler)
        running.append(loss)
        if run.step % 20 == 0:
            monitor.message(f"step {run.step}/{config.steps} loss {np.mean(running[-20:]):.4f} "
                            f"lr {factor * config.lr:.2g} T={dates} {run.elapsed() / 60:.1f} min")
            monitor.progress(100.0 * run.step / config.steps)
        if run.step % config.val_every == 0:
            _validate(run, val, monitor)
        if run.step % config.checkpoint_every == 0:
            _save(run)
    return "steps"


def _result(run: _SeriesRun, stopped_by: str) -> SeriesTrainResult:
    """The result of the finished ``run``, with a copy of the model at its best validation state."""
    best = copy.deepcopy(run.model)
    if run.best_state is not None:
        best.load_state_dict(run.best_state)
    best.build_options = dict(run.config.model_options)
    return SeriesTrainResult(run.model, best.eval(), run.history, run.step, run.elapsed(), run.best_step,
                             run.best_val, run.config, stopped_by)


def train_series(config: SeriesTrainConfig, sampler: SeriesSampler, val: List[Dict[str, np.ndarray]],
                 monitor: Monitor = SILENT) -> SeriesTrainResult:
    """Train ``config.model`` on ``sampler``'s batches (see the module notes)."""
    run = _start_run(config)
    _resume(run, monitor)
    run.start = time.perf_counter()
    if run.step == 0 and not run.history:
        _validate(run, val, monitor)
    run.model.train()
    stopped_by = _train_until_stopped(run, sampler, val, monitor)
    if not run.history or run.history[-1]["step"] != run.step:
        _validate(run, val, monitor)
    _save(run)
    return _result(run, stopped_by)


def config_dict(config: SeriesTrainConfig) -> dict:
    d = asdict(config)
    d["dates"] = list(config.dates)
    d["s2_bands"] = list(config.s2_bands)
    return d
