"""One training run's state and steps: model, optimisers, gradient scalers, loaders, validation.

:class:`Trainer` holds what :func:`topoclear.engine.training.loop.train` drives epoch by epoch: one
optimiser step on a batch (pixel losses, or the conditional GAN's discriminator and generator
steps), the validation pass and the state a checkpoint keeps.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ...models.losses import LOSSES, CGANDiscriminatorLoss, CGANGeneratorLoss
from ...models.metrics import evaluate
from ...models.registry import build_discriminator, build_model, get_spec
from ...models.scaling import S2_RANGE, get_scaling, unscale_s2
from .. import checkpoints as ckpt
from ..errors import InputError
from ..progress import Monitor
from .patch_dataset import PatchDataset
from .training_config import LOSS_NAMES, MASK_LOSSES, EpochRecord, TrainConfig

__all__ = ["Trainer"]


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


def _build_optimizer(name: str, params, lr: float, betas, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; use 'adam' or 'nadam'")


def _model_inputs(batch: Mapping[str, torch.Tensor], layout) -> Dict[str, torch.Tensor]:
    """The model's inputs of a batch; the mask and the fill too for networks that start from the fill."""
    out = {name: batch[name] for name in layout.inputs}
    for extra in ("mask", "prior"):
        if extra in batch:
            out[extra] = batch[extra]
    return out


def _pixel_loss(loss_fn, name: str, pred, batch) -> torch.Tensor:
    pred = pred.float()
    target = batch["target"].float()
    if name in MASK_LOSSES:
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


class Trainer:
    """State of one run (model, optimisers, scalers, loaders), driven by the training loop."""

    def __init__(self, config: TrainConfig, val_ds: Optional[PatchDataset], device: torch.device,
                 monitor: Monitor) -> None:
        self.config = config
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
        self.optimizer = _build_optimizer(config.optimizer, params, config.lr, config.betas, config.weight_decay)
        self.use_amp = bool(config.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.discriminator = None
        if self.adversarial:
            self.discriminator = build_discriminator(self.model).to(device)
            self.d_optimizer = _build_optimizer(config.optimizer, self.discriminator.parameters(), config.lr, config.betas,
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
    def validate(self) -> Tuple[Optional[float], Dict[str, float]]:
        """Validation loss and mean metrics (reflectance units) over the fixed validation crops."""
        if self.val_ds is None or len(self.val_ds) == 0:
            return None, {}
        self.model.eval()
        loader = self.loader(self.val_ds, shuffle=False, epoch=0, batch_size=self.config.batch_size)
        total, count = 0.0, 0
        per_sample: Dict[str, List[float]] = {}
        for batch in loader:
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
