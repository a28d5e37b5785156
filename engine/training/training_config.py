"""What a training run is asked to do and what it reports: configuration, paper defaults, results."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ...models.losses import LOSSES
from ...models.registry import get_spec
from ..checkpoints import jsonable

__all__ = ["PAPER_DEFAULTS", "GENERIC_DEFAULTS", "LOSS_NAMES", "MASK_LOSSES", "AUGMENTATION", "BandsArg",
           "paper_defaults", "TrainConfig", "EpochRecord", "TrainResult", "epoch_records"]

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
    "unet_fill": dict(lr=2e-4, batch_size=8, loss="l1", loss_params={}, optimizer="adam", betas=(0.9, 0.999),
                      epochs=150, source="the baseline UNet's settings (Boumahdi et al. 2025, section IV-A): Adam lr "
                                         "2e-4, batch 8, L1 (on the masked pixels: elsewhere the output is fixed)"),
    "crt_unet_fill": dict(lr=2e-4, batch_size=8, loss="l1", loss_params={}, optimizer="adam", betas=(0.9, 0.999),
                          epochs=150, source="CRT-UNet's settings (Boumahdi et al. 2025, section IV-A): Adam lr 2e-4, "
                                             "batch 8, L1 (on the masked pixels: elsewhere the output is fixed)"),
    "dsen2cr_fill": dict(lr=7e-5, batch_size=16, loss="carl", loss_params={"lam": 1.0}, optimizer="nadam",
                         betas=(0.9, 0.999), epochs=None,
                         source="DSen2-CR's settings (Meraner et al. 2020, section 3.5): Nadam lr 7e-5, batch 16, "
                                "CARL (lambda 1)"),
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
#: Losses that compare with the cloudy input inside cloud and shadow masks.
MASK_LOSSES = ("carl", "tmarl")
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
            (small patch data sets; see :class:`~topoclear.engine.training.patch_dataset.PatchDataset`).
        mask_errors: networks that start from the fill: probability of false alarms of the mask in
            a training crop (``PatchDataset(mask_errors=...)``).
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
    mask_errors: float = 0.0
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
        return jsonable(dataclasses.asdict(self))


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
        return jsonable(dataclasses.asdict(self))


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


def epoch_records(items: Sequence[Mapping[str, Any]]) -> List[EpochRecord]:
    """Epoch records from their ``to_dict`` form (as a checkpoint stores them)."""
    names = {f.name for f in dataclasses.fields(EpochRecord)}
    return [EpochRecord(**{k: v for k, v in item.items() if k in names}) for item in items]
