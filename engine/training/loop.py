"""Training engine for the cloud-removal models of :mod:`topoclear.models`.

>>> from topoclear.engine.training.loop import TrainConfig, train
>>> result = train(TrainConfig(model="crt_unet", epochs=150, output="crt_unet.safetensors"),
...                "my_patches/manifest.json")
>>> result.final_val_loss, result.weights_path, result.card_path

What it does, per epoch: random crops of the training samples with the papers' augmentation
(:class:`~topoclear.engine.training.patches.PatchDataset`), one optimiser step per batch, then a
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

import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...models.losses import LOSSES, CGANDiscriminatorLoss, CGANGeneratorLoss
from ...models.metrics import evaluate
from ...models.registry import build_discriminator, build_model, count_parameters, get_spec
from ...models.scaling import S2_RANGE, get_scaling, unscale_s2
from .. import checkpoints as ckpt
from ..errors import InputError
from .patches import Manifest, PatchDataset, PatchSample, load_manifest
from ..progress import SILENT, Monitor

__all__ = ["PAPER_DEFAULTS", "LOSS_NAMES", "TrainConfig", "EpochRecord", "TrainResult", "resolve_device",
           "paper_defaults", "split_samples", "train"]

BandsArg = Union[None, int, Sequence[str]]

#: Hyper-parameters of each model's paper (see the module docstring).
PAPER_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "unet": dict(lr=2e-4, batch_size=8, loss="l1", loss_params={}, optimizer="adam", betas=(0.9, 0.999), epochs=150,
                 source="Boumahdi et al., IEEE JSTARS 2025, section IV-A (baseline UNet): Adam lr 2e-4, batch 8, "
                        "L1, 150 epochs, flips and 90-degree rotations p=0.5, 256 px patches"),
    "crt_unet": dict(lr=2e-4, batch_size=8, loss="l1", loss_params={}, optimizer="adam", betas=(0.9, 0.999),
                     epochs=150,
                     source="Boumahdi et al., IEEE JSTARS 2025, section IV-A: Adam lr 2e-4, batch 8, L1, 150 epochs, "
                            "flips and 90-degree rotations p=0.5, 256 px patches"),
    "dsen2cr": dict(lr=7e-5, batch_size=16, loss="carl", loss_params={"lam": 1.0}, optimizer="nadam",
                    betas=(0.9, 0.999), epochs=None,
                    source="Meraner et al., ISPRS J. 2020, section 3.5: Adam with Nesterov momentum, lr 7e-5, batch "
                           "16, CARL (lambda 1), random rotations and flips"),
    "sar2opt_gan": dict(lr=2e-4, batch_size=32, loss="cgan",
                        loss_params={"adv_weight": 1.0, "l1_weight": 100.0, "ssim_weight": 100.0},
                        optimizer="adam", betas=(0.5, 0.999), epochs=None,
                        source="Darbaghshahi et al., section 3.1: Adam beta1 0.5 beta2 0.999, lr printed '2^-4' "
                               "(read as 2e-4), batch 32, L_G = L_cGAN + 100 L1 + 100 L_ssim"),
    "cr_gan": dict(lr=2e-4, batch_size=32, loss="cgan",
                   loss_params={"adv_weight": 1.0, "l1_weight": 100.0, "ssim_weight": 100.0},
                   optimizer="adam", betas=(0.5, 0.999), epochs=None,
                   source="Darbaghshahi et al., section 3.1: Adam beta1 0.5 beta2 0.999, lr printed '2^-4' "
                          "(read as 2e-4), batch 32, L_G = L_cGAN + 100 L1 + 100 L_ssim"),
}
#: Defaults for models registered later without an entry in :data:`PAPER_DEFAULTS`.
GENERIC_DEFAULTS: Dict[str, Any] = dict(lr=1e-4, batch_size=8, loss="l1", loss_params={}, optimizer="adam",
                                        betas=(0.9, 0.999), epochs=None, source="generic defaults (no paper values)")
#: Loss names :func:`train` understands: the pixel losses of ``models.losses.LOSSES`` and the cGAN objective.
LOSS_NAMES: Tuple[str, ...] = tuple(LOSSES) + ("cgan",)
_MASK_LOSSES = ("carl", "tmarl")
AUGMENTATION = ("horizontal flip p=0.5, vertical flip p=0.5, rotation by 90/180/270 degrees p=0.5 "
                "(same for all stacks; aspect turned with the image)")


def paper_defaults(model: str) -> Dict[str, Any]:
    """The paper's hyper-parameters for ``model`` (generic ones for unknown models)."""
    return dict(PAPER_DEFAULTS.get(model, GENERIC_DEFAULTS))


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data.

    ``None`` (or 0 for ``lr`` / ``batch_size``) means "the paper's value" for ``loss``,
    ``optimizer``, ``lr``, ``betas`` and ``batch_size`` (:data:`PAPER_DEFAULTS`).

    Attributes:
        model: registry name (``topoclear.models.list_models()``).
        s2_bands / s1_bands / terrain_bands: band counts or names (None: the model's
            defaults; ``s1_bands=0`` trains the variant without Sentinel-1).
        model_options: keyword options of the model (``ModelSpec.options``).
        loss: ``"l1"``, ``"carl"``, ``"tmarl"``, ``"ssim"``, ``"l1_ssim"`` or ``"cgan"``
            (adversarial models only).
        loss_params: keyword arguments of the loss (e.g. ``{"lam": 1.0}``, ``{"alpha": 0.8}``).
        optimizer: ``"adam"`` or ``"nadam"``.
        lr, betas, weight_decay, batch_size: optimiser settings.
        epochs: number of epochs to reach (a resumed run continues up to it).
        crops_per_sample: random crops drawn from each training sample per epoch.
        steps_per_epoch: cap on the optimiser steps of one epoch (None: one pass over the crops).
        patch_size: crop side in px (a multiple of the model's ``size_multiple``).
        val_crops: fixed crops per validation sample.
        val_fraction / test_fraction: share of the samples held out when the manifest has no
            ``val`` split (CRT-UNet: 15 % / 5 %); test samples are only listed in the card.
        seed: seed of everything random.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: mixed precision on CUDA.
        num_workers: data-loader processes (0 reads in the training process).
        augment: flips and rotations on training crops.
        missing_inputs: ``"error"``, or ``"zeros"`` to feed zeros where a sample lacks an S1 or
            terrain stack the model reads (say so in the card; it is the CRT-UNet ablation).
        checkpoint_dir: folder for ``last`` / ``best`` checkpoints (None: none written).
        resume: continue from ``checkpoint_dir/last`` when it exists.
        output: path of the final weights (``.safetensors``; the card goes beside it).
        translator_weights: ``cr_gan``: weights of a trained ``sar2opt_gan`` for its translator.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        deterministic: on CUDA, ask cuDNN for deterministic algorithms.
        cache_data: keep the training and validation stacks in memory after their first read
            (small patch data sets; see :class:`~topoclear.engine.training.patches.PatchDataset`).
        description: free text for the model card.
    """

    model: str = "unet"
    s2_bands: BandsArg = None
    s1_bands: BandsArg = None
    terrain_bands: BandsArg = None
    model_options: Dict[str, Any] = field(default_factory=dict)
    loss: Optional[str] = None
    loss_params: Optional[Dict[str, Any]] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    betas: Optional[Tuple[float, float]] = None
    weight_decay: float = 0.0
    batch_size: Optional[int] = None
    epochs: int = 10
    crops_per_sample: int = 1
    steps_per_epoch: Optional[int] = None
    patch_size: int = 256
    val_crops: int = 4
    val_fraction: float = 0.15
    test_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    augment: bool = True
    missing_inputs: str = "error"
    checkpoint_dir: Optional[str] = None
    resume: bool = False
    output: Optional[str] = None
    translator_weights: Optional[str] = None
    grad_clip: Optional[float] = None
    deterministic: bool = False
    cache_data: bool = False
    description: str = ""

    def resolved(self) -> "TrainConfig":
        """A copy with the paper's values filled in where this config leaves them open."""
        spec = get_spec(self.model)
        d = paper_defaults(self.model)
        if spec.adversarial is False and d["loss"] == "cgan":
            d["loss"] = "l1"
        loss = self.loss or d["loss"]
        loss_params = dict(self.loss_params if self.loss_params is not None
                           else (d["loss_params"] if loss == d["loss"] else {}))
        return dataclasses.replace(
            self,
            loss=loss,
            loss_params=loss_params,
            optimizer=(self.optimizer or d["optimizer"]).lower(),
            lr=float(self.lr) if self.lr else float(d["lr"]),
            betas=tuple(self.betas) if self.betas else tuple(d["betas"]),
            batch_size=int(self.batch_size) if self.batch_size else int(d["batch_size"]),
        )

    def to_dict(self) -> dict:
        return ckpt._jsonable(dataclasses.asdict(self))


@dataclass
class EpochRecord:
    """Metrics of one epoch (epoch 0: the untrained model)."""

    epoch: int
    steps: int
    train_loss: Optional[float]
    val_loss: Optional[float]
    val_metrics: Dict[str, float]
    train_parts: Dict[str, float] = field(default_factory=dict)
    time_s: float = 0.0
    samples_per_s: Optional[float] = None

    def to_dict(self) -> dict:
        return ckpt._jsonable(dataclasses.asdict(self))


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    config: TrainConfig
    history: List[EpochRecord]
    card: dict
    weights_path: Optional[Path]
    card_path: Optional[Path]
    checkpoint_dir: Optional[Path]
    device: str
    steps: int
    time_s: float
    samples_per_s: Optional[float]
    best_epoch: Optional[int]
    model: Any = None

    @property
    def initial_val_loss(self) -> Optional[float]:
        return self.history[0].val_loss if self.history else None

    @property
    def final_val_loss(self) -> Optional[float]:
        return self.history[-1].val_loss if self.history else None


# ---------------------------------------------------------------------------------------------
# set-up helpers
# ---------------------------------------------------------------------------------------------
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


def split_samples(samples: Sequence[PatchSample], val_fraction: float = 0.15, test_fraction: float = 0.05,
                  seed: int = 0) -> Dict[str, List[PatchSample]]:
    """Train / val / test lists: the manifest's own splits when it names any ``val`` sample,
    otherwise a seeded random split of the non-excluded samples (at least one validation
    sample when there are two or more)."""
    usable = [s for s in samples if s.split != "exclude"]
    if any(s.split == "val" for s in usable):
        return {name: [s for s in usable if s.split == name] for name in ("train", "val", "test")}
    pool = [s for s in usable if s.split != "test"]
    test = [s for s in usable if s.split == "test"]
    order = np.random.default_rng(seed).permutation(len(pool))
    n = len(pool)
    n_val = int(round(val_fraction * n))
    n_val = max(1, n_val) if n >= 2 and val_fraction > 0 else n_val
    n_test = int(round(test_fraction * n)) if n - n_val >= 3 else 0
    val = [pool[i] for i in order[:n_val]]
    test += [pool[i] for i in order[n_val:n_val + n_test]]
    train = [pool[i] for i in order[n_val + n_test:]]
    return {"train": train, "val": val, "test": test}


def _build_loss(name: str, params: Mapping[str, Any], data_range: float, adversarial: bool):
    if name == "cgan":
        if not adversarial:
            raise InputError("the cGAN loss needs an adversarial model (sar2opt_gan, cr_gan); choose a pixel loss")
        p = dict(params)
        p.setdefault("data_range", data_range)
        return CGANGeneratorLoss(**p)
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; losses: {', '.join(LOSS_NAMES)}")
    p = dict(params)
    if name in ("ssim", "l1_ssim"):
        p.setdefault("data_range", data_range)
    try:
        return LOSSES[name](**p)
    except TypeError as exc:
        raise InputError(f"loss {name!r}: bad parameters {p} ({exc})") from exc


def _optimizer(name: str, params, lr: float, betas, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; use 'adam' or 'nadam'")


def _model_inputs(batch: Mapping[str, torch.Tensor], layout) -> Dict[str, torch.Tensor]:
    return {name: batch[name] for name in layout.inputs}


def _pixel_loss(loss_fn, name: str, pred, batch) -> torch.Tensor:
    pred = pred.float()
    target = batch["target"].float()
    if name in _MASK_LOSSES:
        cloudy = batch.get("cloudy", batch.get("s2"))
        if cloudy is None or cloudy.shape != pred.shape:
            raise InputError(f"the {name.upper()} loss compares the prediction with the cloudy input, which needs the "
                             "same bands in and out")
        cm, sm = batch["cloud_mask"].float(), batch["shadow_mask"].float()
        if name == "carl":
            return loss_fn(pred, target, cloudy.float(), torch.maximum(cm, sm))
        return loss_fn(pred, target, cloudy.float(), cm, sm)
    return loss_fn(pred, target)


def _reflectance(x: torch.Tensor, scaling: str) -> torch.Tensor:
    """Scaled S2 values -> reflectance clipped to [0, 1] (float32, CPU)."""
    return (unscale_s2(x.detach().float(), scaling) / S2_RANGE[1]).clamp(0.0, 1.0).cpu()


class _Trainer:
    """State of one run (model, optimisers, scalers, loaders); :func:`train` drives it."""

    def __init__(self, config: TrainConfig, train_ds: PatchDataset, val_ds: Optional[PatchDataset],
                 device: torch.device, monitor: Monitor) -> None:
        self.config = config
        self.train_ds = train_ds
        self.val_ds = val_ds
        self.device = device
        self.monitor = monitor
        self.spec = get_spec(config.model)
        self.scaling = self.spec.scaling
        s = get_scaling(self.scaling)
        self.data_range = (S2_RANGE[1] - S2_RANGE[0]) / s.s2_divisor
        self.model = build_model(config.model, config.s2_bands, config.s1_bands, config.terrain_bands,
                                 **config.model_options)
        self.model.build_options = dict(config.model_options)
        if config.translator_weights:
            self._load_translator(config.translator_weights)
        self.model.to(device)
        self.layout = self.model.input_layout
        self.adversarial = config.loss == "cgan"
        self.loss_fn = _build_loss(config.loss, config.loss_params or {}, self.data_range, self.spec.adversarial)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = _optimizer(config.optimizer, params, config.lr, config.betas, config.weight_decay)
        self.use_amp = bool(config.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.discriminator = None
        if self.adversarial:
            self.discriminator = build_discriminator(self.model).to(device)
            self.d_optimizer = _optimizer(config.optimizer, self.discriminator.parameters(), config.lr, config.betas,
                                          config.weight_decay)
            self.d_loss_fn = CGANDiscriminatorLoss()
            self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def _load_translator(self, path: str) -> None:
        if not hasattr(self.model, "load_translator") or getattr(self.model, "translator", None) is None:
            raise InputError(f"model {self.config.model!r} has no SAR-to-optical translator to load weights into")
        card = ckpt.read_card(path)
        if card["architecture"]["model"] != "sar2opt_gan":
            raise InputError(f"translator weights {path} hold a {card['architecture']['model']!r} model, "
                             "expected 'sar2opt_gan'")
        tensors = ckpt.read_weights(path, card)
        try:
            self.model.load_translator(tensors)
        except RuntimeError as exc:
            raise InputError(f"translator weights {path} do not fit this model's translator ({exc})") from exc

    # -- loaders -------------------------------------------------------------------------------
    def loader(self, dataset: PatchDataset, shuffle: bool, epoch: int, batch_size: int):
        generator = torch.Generator()
        generator.manual_seed(self.config.seed * 100003 + epoch)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=generator if shuffle else None,
            num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda", drop_last=False,
            persistent_workers=False)

    def to_device(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp)

    # -- one step ------------------------------------------------------------------------------
    def step(self, batch: Dict[str, torch.Tensor]) -> Tuple[float, Dict[str, float]]:
        self.model.train()
        if self.adversarial:
            return self._gan_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            pred = self.model(**_model_inputs(batch, self.layout))
        loss = _pixel_loss(self.loss_fn, self.config.loss, pred, batch)
        if not torch.isfinite(loss):
            raise InputError(f"the training loss became {loss.item()} (diverged); lower the learning rate")
        self.scaler.scale(loss).backward()
        self._clip(self.optimizer, self.scaler)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach()), {}

    def _clip(self, optimizer, scaler) -> None:
        if self.config.grad_clip:
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)

    def _condition(self, batch):
        if hasattr(self.model, "condition") and hasattr(self.model, "generator"):
            return self.model.condition(s2=batch.get("s2"), s1=batch.get("s1"))
        raise InputError(f"model {self.config.model!r} exposes no generator condition for GAN training")

    def _gan_step(self, batch: Dict[str, torch.Tensor]) -> Tuple[float, Dict[str, float]]:
        d, target = self.discriminator, batch["target"]
        d.train()
        with self.autocast():
            condition = self._condition(batch)
            fake = self.model.generator(condition)
        # discriminator: real pairs -> 1, generated pairs -> 0
        d.requires_grad_(True)
        self.d_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            d_real = d(condition.detach(), target)
            d_fake = d(condition.detach(), fake.detach())
        d_loss = self.d_loss_fn(d_real.float(), d_fake.float())
        self.d_scaler.scale(d_loss).backward()
        self._clip(self.d_optimizer, self.d_scaler)
        self.d_scaler.step(self.d_optimizer)
        self.d_scaler.update()
        # generator: fool the discriminator + 100 L1 + 100 (1 - SSIM)
        d.requires_grad_(False)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            d_fake = d(condition, fake)
        g_loss, parts = self.loss_fn(d_fake.float(), fake.float(), target.float())
        if not torch.isfinite(g_loss):
            raise InputError(f"the generator loss became {g_loss.item()} (diverged); lower the learning rate")
        self.scaler.scale(g_loss).backward()
        self._clip(self.optimizer, self.scaler)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        d.requires_grad_(True)
        out = {k: float(v) for k, v in parts.items()}
        out["discriminator"] = float(d_loss.detach())
        return float(g_loss.detach()), out

    # -- validation ----------------------------------------------------------------------------
    def val_loss(self, pred: torch.Tensor, batch) -> torch.Tensor:
        """Validation loss: the training loss, or for GANs its reconstruction part
        (l1_weight L1 + ssim_weight (1 - SSIM)), which does not depend on the discriminator."""
        if self.adversarial:
            from ...models.losses import l1_loss, ssim_loss

            p, t = pred.float(), batch["target"].float()
            lf = self.loss_fn
            total = lf.l1_weight * l1_loss(p, t)
            if lf.ssim_weight:
                total = total + lf.ssim_weight * ssim_loss(p, t, data_range=lf.data_range)
            return total
        return _pixel_loss(self.loss_fn, self.config.loss, pred, batch)

    @torch.no_grad()
    def validate(self, progress: Optional[Monitor] = None) -> Tuple[Optional[float], Dict[str, float]]:
        if self.val_ds is None or len(self.val_ds) == 0:
            return None, {}
        self.model.eval()
        loader = self.loader(self.val_ds, shuffle=False, epoch=0, batch_size=self.config.batch_size)
        total, count = 0.0, 0
        per_sample: Dict[str, List[float]] = {}
        n_batches = len(loader)
        for i, batch in enumerate(loader):
            self.monitor.check()
            batch = self.to_device(batch)
            with self.autocast():
                pred = self.model(**_model_inputs(batch, self.layout))
            n = pred.shape[0]
            total += float(self.val_loss(pred, batch)) * n
            count += n
            mask = None
            if "cloud_mask" in batch and self.layout.inputs[0] == "s2":
                mask = torch.maximum(batch["cloud_mask"], batch["shadow_mask"]).cpu()
            cloudy = batch.get("cloudy", batch.get("s2"))
            cloudy_r = _reflectance(cloudy, self.scaling) if (mask is not None and cloudy is not None
                                                             and cloudy.shape == pred.shape) else None
            metrics = evaluate(_reflectance(pred, self.scaling), _reflectance(batch["target"], self.scaling),
                               cloudy=cloudy_r, mask=mask, per_sample=True)
            for k, v in metrics.items():
                per_sample.setdefault(k, []).extend(v)
            if progress is not None:
                progress.progress(100.0 * (i + 1) / n_batches)
        means = {}
        for k, values in per_sample.items():
            arr = np.asarray(values, dtype=np.float64)
            finite = arr[np.isfinite(arr)]
            means[k] = float(finite.mean()) if finite.size else float("nan")
        return total / max(1, count), means

    # -- state for checkpoints -----------------------------------------------------------------
    def training_state(self, epoch: int, steps: int, history: List[EpochRecord], best: Optional[Tuple[int, float]]):
        state = {
            "epoch": epoch,
            "steps": steps,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "history": [h.to_dict() for h in history],
            "best": list(best) if best else None,
            "config": self.config.to_dict(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.discriminator is not None:
            state["discriminator"] = {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()}
            state["d_optimizer"] = self.d_optimizer.state_dict()
            state["d_scaler"] = self.d_scaler.state_dict()
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        random.setstate(_as_tuple(state["python_rng"]))
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        if self.discriminator is not None:
            if "discriminator" not in state:
                raise InputError("the checkpoint has no discriminator state (it was not trained with the cGAN loss)")
            self.discriminator.load_state_dict(state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
            if state.get("d_scaler"):
                self.d_scaler.load_state_dict(state["d_scaler"])


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def _records(items: Sequence[Mapping[str, Any]]) -> List[EpochRecord]:
    names = {f.name for f in dataclasses.fields(EpochRecord)}
    return [EpochRecord(**{k: v for k, v in item.items() if k in names}) for item in items]


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
DataArg = Union[str, os.PathLike, Manifest, Sequence[PatchSample], PatchDataset]


def _samples_of(data: DataArg) -> Tuple[List[PatchSample], dict]:
    if isinstance(data, Manifest):
        return list(data.samples), {"manifest": data.path, "description": data.description}
    if isinstance(data, (str, os.PathLike)):
        manifest = load_manifest(data)
        return list(manifest.samples), {"manifest": manifest.path, "description": manifest.description}
    samples = list(data)
    if samples and not all(isinstance(s, PatchSample) for s in samples):
        raise InputError("training data must be a manifest path, a Manifest, a list of PatchSample or a PatchDataset")
    return samples, {"manifest": None, "description": "samples given in memory"}


def _datasets(config: TrainConfig, layout, data: DataArg, val_data: Optional[DataArg]):
    spec = get_spec(config.model)
    masks = "required" if config.loss in _MASK_LOSSES else "optional"
    s2 = layout.s2 if "s2" in layout.inputs else ()
    common = dict(s2_bands=s2, output_bands=layout.output, s1_bands=layout.s1, terrain_bands=layout.terrain,
                  scaling=spec.scaling, patch_size=config.patch_size, masks=masks,
                  missing_inputs=config.missing_inputs, seed=config.seed, cache=config.cache_data)
    info: dict = {}
    if isinstance(data, PatchDataset):
        train_ds = data
        info["train_source"] = "PatchDataset given in memory"
        test: List[PatchSample] = []
        if val_data is None:
            return train_ds, None, info, test
    else:
        samples, info = _samples_of(data)
        if val_data is None:
            parts = split_samples(samples, config.val_fraction, config.test_fraction, config.seed)
        else:
            parts = {"train": [s for s in samples if s.split == "train"], "val": [],
                     "test": [s for s in samples if s.split == "test"]}
        if not parts["train"]:
            raise InputError("no training samples (every sample is in the val, test or exclude split)")
        train_ds = PatchDataset(parts["train"], training=True, crops_per_sample=config.crops_per_sample,
                                augmentation_probability=0.5 if config.augment else 0.0, **common)
        test = parts["test"]
        if val_data is None:
            val_ds = PatchDataset(parts["val"], training=False, crops_per_sample=config.val_crops, **common) \
                if parts["val"] else None
            info["excluded"] = [s.id for s in samples if s.split == "exclude"]
            return train_ds, val_ds, info, test
    if isinstance(val_data, PatchDataset):
        return train_ds, val_data, info, test
    val_samples, val_info = _samples_of(val_data)
    val_samples = [s for s in val_samples if s.split != "exclude"]
    info["val_manifest"] = val_info.get("manifest")
    return train_ds, PatchDataset(val_samples, training=False, crops_per_sample=config.val_crops, **common), info, test


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
        return _train(config, data, monitor, val_data)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _train(config: TrainConfig, data: DataArg, monitor: Optional[Monitor], val_data: Optional[DataArg]) -> TrainResult:
    monitor = monitor or SILENT
    spec = get_spec(config.model)
    config = config.resolved()
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
    device = resolve_device(config.device)
    if config.device.strip().lower() == "auto" and device.type == "cpu":
        monitor.message("No CUDA GPU visible to torch: training on the CPU (slow for full-size models).")
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = bool(config.deterministic)
        torch.backends.cudnn.benchmark = not config.deterministic  # fixed patch sizes: let cuDNN pick kernels
    _seed_everything(config.seed)
    trainer_layout = get_spec(config.model).layout(config.s2_bands, config.s1_bands, config.terrain_bands)
    train_ds, val_ds, data_info, test_samples = _datasets(config, trainer_layout, data, val_data)
    if config.augment is False:
        train_ds.augmentation_probability = 0.0
    train_ds.set_epoch(1)

    _seed_everything(config.seed)  # weights do not depend on how much randomness the data set-up used
    trainer = _Trainer(config, train_ds, val_ds, device, monitor)
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    batches_per_epoch = math.ceil(len(train_ds) / config.batch_size)
    steps_per_epoch = min(batches_per_epoch, config.steps_per_epoch) if config.steps_per_epoch else batches_per_epoch
    history: List[EpochRecord] = []
    best: Optional[Tuple[int, float]] = None
    steps = 0
    start_epoch = 1
    started = time.perf_counter()
    train_time, train_samples = 0.0, 0

    if config.resume and ckpt_dir is not None and ckpt.state_path(ckpt_dir / "last").is_file():
        state = ckpt.load_training_state(ckpt_dir / "last")
        saved = state.get("config", {})
        for key in ("model", "loss"):
            if saved.get(key) != getattr(config, key):
                raise InputError(f"checkpoint in {ckpt_dir} was trained with {key} {saved.get(key)!r}, this run asks "
                                 f"for {getattr(config, key)!r}; use another checkpoint folder or the same settings")
        ckpt.load_weights(trainer.model, ckpt_dir / "last")
        trainer.model.to(device)
        trainer.restore(state)
        history = _records(state.get("history", []))
        best = tuple(state["best"]) if state.get("best") else None
        steps = int(state.get("steps", 0))
        start_epoch = int(state["epoch"]) + 1
        monitor.message(f"Resumed from {ckpt_dir / 'last'} after epoch {state['epoch']}.")
    else:
        monitor.message(f"Training {config.model} ({count_parameters(trainer.model):,} parameters) on "
                        f"{_device_text(device)}: {len(train_ds.samples)} training samples, "
                        f"{len(val_ds.samples) if val_ds else 0} validation samples, {steps_per_epoch} steps per "
                        f"epoch, batch {config.batch_size}, lr {config.lr:g}, loss {config.loss}.")
        t0 = time.perf_counter()
        val_loss, val_metrics = trainer.validate()
        history.append(EpochRecord(0, 0, None, val_loss, val_metrics, time_s=time.perf_counter() - t0))
        if val_loss is not None:
            monitor.message(f"Epoch 0 (untrained): validation loss {val_loss:.5f}")

    epochs_to_run = max(0, config.epochs - start_epoch + 1)
    total_steps = max(1, epochs_to_run * steps_per_epoch)
    done_steps = 0
    for epoch in range(start_epoch, config.epochs + 1):
        monitor.check()
        t_epoch = time.perf_counter()
        train_ds.set_epoch(epoch)
        loader = trainer.loader(train_ds, shuffle=True, epoch=epoch, batch_size=config.batch_size)
        losses: List[float] = []
        parts: Dict[str, List[float]] = {}
        seen = 0
        t_train = time.perf_counter()
        for i, batch in enumerate(loader):
            if i >= steps_per_epoch:
                break
            monitor.check()
            batch = trainer.to_device(batch)
            loss, extra = trainer.step(batch)
            losses.append(loss)
            for k, v in extra.items():
                parts.setdefault(k, []).append(v)
            seen += int(batch["target"].shape[0])
            steps += 1
            done_steps += 1
            monitor.progress(100.0 * done_steps / total_steps * 0.98)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_train_time = time.perf_counter() - t_train
        train_time += epoch_train_time
        train_samples += seen
        val_loss, val_metrics = trainer.validate()
        record = EpochRecord(
            epoch=epoch, steps=steps, train_loss=float(np.mean(losses)) if losses else None, val_loss=val_loss,
            val_metrics=val_metrics, train_parts={k: float(np.mean(v)) for k, v in parts.items()},
            time_s=time.perf_counter() - t_epoch, samples_per_s=seen / epoch_train_time if epoch_train_time > 0 else None)
        history.append(record)
        improved = val_loss is not None and (best is None or val_loss < best[1])
        if improved:
            best = (epoch, val_loss)
        monitor.message(
            f"Epoch {epoch}/{config.epochs}: train loss {record.train_loss:.5f}"
            + (f", validation loss {val_loss:.5f}, MAE {val_metrics.get('mae', float('nan')):.4f}, "
               f"PSNR {val_metrics.get('psnr', float('nan')):.2f} dB, SSIM {val_metrics.get('ssim', float('nan')):.3f}, "
               f"SAM {val_metrics.get('sam', float('nan')):.2f} deg" if val_loss is not None else "")
            + (f", {record.samples_per_s:.2f} samples/s" if record.samples_per_s else ""))
        if ckpt_dir is not None:
            card = _card(trainer, config, history, best, steps, device, data_info, train_ds, val_ds, test_samples,
                         time.perf_counter() - started, train_time, train_samples)
            ckpt.save_model(ckpt_dir / "last", trainer.model, card)
            ckpt.save_training_state(ckpt_dir / "last", trainer.training_state(epoch, steps, history, best))
            if improved:
                ckpt.save_model(ckpt_dir / "best", trainer.model, card)

    elapsed = time.perf_counter() - started
    card = _card(trainer, config, history, best, steps, device, data_info, train_ds, val_ds, test_samples, elapsed,
                 train_time, train_samples)
    weights_path = card_path = None
    if config.output:
        weights_path, card_path = ckpt.save_model(config.output, trainer.model, card)
        card = ckpt.read_card(weights_path)
    monitor.progress(100.0)
    return TrainResult(config=config, history=history, card=card, weights_path=weights_path, card_path=card_path,
                       checkpoint_dir=ckpt_dir, device=_device_text(device), steps=steps, time_s=elapsed,
                       samples_per_s=train_samples / train_time if train_time > 0 else None,
                       best_epoch=best[0] if best else None, model=trainer.model)


def _card(trainer: _Trainer, config: TrainConfig, history: List[EpochRecord], best, steps: int,
          device: torch.device, data_info: dict, train_ds: PatchDataset, val_ds: Optional[PatchDataset],
          test_samples: List[PatchSample], elapsed: float, train_time: float, train_samples: int) -> dict:
    paper = paper_defaults(config.model)
    first, last = history[0] if history else None, history[-1] if history else None
    learning = None
    if first is not None and last is not None and first.val_loss is not None and last.val_loss is not None:
        learning = {
            "val_loss_before": first.val_loss, "val_loss_after": last.val_loss,
            "relative_change": (last.val_loss - first.val_loss) / first.val_loss if first.val_loss else None,
            "steps": steps, "epochs": last.epoch, "training_time_s": train_time,
        }
    training = {
        "data": {
            **data_info,
            "train": train_ds.describe(),
            "validation": val_ds.describe() if val_ds is not None else None,
            "test_samples": [s.id for s in test_samples],
            "missing_inputs": config.missing_inputs,
        },
        "hyperparameters": {
            "loss": config.loss, "loss_params": config.loss_params, "optimizer": config.optimizer, "lr": config.lr,
            "betas": config.betas, "weight_decay": config.weight_decay, "batch_size": config.batch_size,
            "patch_size": config.patch_size, "crops_per_sample": config.crops_per_sample,
            "steps_per_epoch": config.steps_per_epoch, "augmentation": AUGMENTATION if config.augment else "none",
            "seed": config.seed, "amp": trainer.use_amp, "discriminator": trainer.discriminator is not None,
        },
        "paper_defaults": paper,
        "epochs": last.epoch if last else 0,
        "epochs_requested": config.epochs,
        "steps": steps,
        "device": _device_text(device),
        "time_s": elapsed,
        "training_time_s": train_time,
        "samples_per_s": train_samples / train_time if train_time > 0 else None,
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
        "learning_check": learning,
        "history": [h.to_dict() for h in history],
    }
    return ckpt.make_card(trainer.model, training=training, metrics=metrics, description=config.description)
