#!/usr/bin/env python3
"""Train the shipped CA-MTCR weights (optical-only) on series of the sample data, checkpointed.

    nice -n 5 .venv/bin/python scripts/train_ca_mtcr.py --minutes 88 > build/train_ca_mtcr.log 2>&1
    .venv/bin/python scripts/train_ca_mtcr.py --resume      # continue an interrupted run
    .venv/bin/python scripts/evaluate_timeseries.py          # held-out scores into the card and RESULTS.md

**Data** (:mod:`topoclear.engine.training.series_data`; 10 bands B2-B8A, B11, B12):

* the real SEN12MS-CR-TS series near Rome **without its held-out dates** (:data:`HELD_OUT`: July,
  August and November, never read here): clear dates are the targets, the other dates the
  auxiliary ones, each with its own real clouds;
* synthetic series from the clear SEN12MS-CR images and the clear SEN12MS-CR-TS patches (a cloud
  mask first: patches the mask engine finds cloudy give cloud shapes, not targets);
* semi-synthetic terrain series over the SRTM DEM ``bigtujunga.tif`` whose snowline and sun
  change between dates (two ground textures);
* the targets' clouds: real cloud shapes with their real cloudy values, transplanted from the
  partly cloudy training dates, the cloudy patches and the SEN12MS-CR cloudy images (a quarter
  synthetic fractal clouds).

There is **no real Sentinel-1 time series** in the sample data: only the optical-only variant
(``s1_bands=0``) is trained; the SAR branch exists and is tested, untrained. The loss is the
paper's without its VGG16 terms (no VGG16 weights can be shipped or fetched): ``2 L1 + (1 -
SSIM)``. Validation: synthetic series of held-out scenes (SEN12MS-CR scene 39, patches 15 and
100). The network is a compact CA-MTCR (:data:`COMPACT`: the paper's structure, 9 region-selective
Transformer blocks, narrower) because a CPU gets through ~1 % of the paper's steps; the paper's
widths stay the registry defaults.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

import numpy as np  # noqa: E402

from topoclear.engine.progress import Monitor  # noqa: E402
from topoclear.engine.training.series_data import (SERIES_BANDS, CloudPool, SeriesSampler,  # noqa: E402
                                                     load_real_series, load_single_images, semisynthetic_series,
                                                     synthetic_series)
from topoclear.engine.training.series_training import (SeriesTrainConfig, config_dict, train_series,  # noqa: E402
                                                         validation_batches)

DATA = REPO.parent / "shared" / "data"
BUILD = REPO / "build" / "ca_mtcr"
WEIGHTS = REPO / "models" / "weights" / "ca_mtcr_nosar"
#: Dates of the real series never trained on (the last months: evaluation only).
HELD_OUT = tuple(dt.date.fromisoformat(d) for d in
                 ("2018-07-05", "2018-07-20", "2018-07-30", "2018-08-09", "2018-08-24", "2018-11-02"))
#: Compact CA-MTCR of the shipped weights: 9 blocks as in the paper, width 64 instead of 192.
COMPACT = {"optical_dim": 64, "depth": 9, "heads": 2, "sar_dim": 64, "fused_dim": 64, "attention_channels": 64,
           "ltae_heads": 16, "ltae_key_dim": 4, "ltae_model_dim": 128, "decoder_widths": [32, 16]}
#: Validation scenes (never trained on).
VALIDATION_PATCHES = ("patch_15.tif", "patch_100.tif")
VALIDATION_CR_SCENE = "_39_"
SYNTHETIC_MAX_CLOUD = 0.05


class Printer(Monitor):
    def message(self, text: str) -> None:
        print(time.strftime("%H:%M:%S"), text, flush=True)


def build_data(seed: int, log: Printer):
    """(training sampler, validation sampler, description of the data)."""
    cache = BUILD / "masks"
    rng = np.random.default_rng(seed)
    real = load_real_series(DATA / "sen12ms-cr-ts", exclude=HELD_OUT, name="SEN12MS-CR-TS ROIs2017_146 patch 0",
                            cache=cache)
    log.message(f"real series: {len(real.images)} dates, clear {[str(real.images[i].date) for i in real.clear_indices()]}")
    patches = load_single_images(sorted((DATA / "sen12ms-cr-ts-patches").glob("*.tif")), cache=cache)
    cr_clear = load_single_images(sorted((DATA / "sen12ms-cr" / "s2_clear").glob("*.tif")), cache=cache)
    cr_cloudy = load_single_images(sorted((DATA / "sen12ms-cr" / "s2_cloudy").glob("*.tif")), cache=cache)
    pool, val_pool = CloudPool(), CloudPool()
    shapes = {"real series dates": 0, "SEN12MS-CR-TS patches": 0, "SEN12MS-CR cloudy images": 0}
    for im in real.images:
        shapes["real series dates"] += pool.add(im)
    train_clear, val_clear = [], []
    for im in patches:
        held = any(im.name.endswith(v) for v in VALIDATION_PATCHES)
        if im.cloud_fraction <= SYNTHETIC_MAX_CLOUD:
            (val_clear if held else train_clear).append(im)
        elif not held:
            shapes["SEN12MS-CR-TS patches"] += pool.add(im)
    for im in cr_cloudy:
        if VALIDATION_CR_SCENE in im.name:
            val_pool.add(im)
        else:
            shapes["SEN12MS-CR cloudy images"] += pool.add(im)
    for im in cr_clear:
        if im.cloud_fraction <= SYNTHETIC_MAX_CLOUD:
            (val_clear if VALIDATION_CR_SCENE in im.name else train_clear).append(im)
    for im in train_clear + val_clear:
        im.mask[:] = False  # clear within the tolerance: the image is the truth
    synth = [synthetic_series(im, rng) for im in train_clear]
    val_synth = [synthetic_series(im, rng) for im in val_clear]
    log.message(f"synthetic series: {len(synth)} training, {len(val_synth)} validation; cloud shapes {shapes}")
    from topoclear.engine.training.spectral_library import load_spectral_library

    library = load_spectral_library(DATA)
    semi = [semisynthetic_series(DATA / "dem" / "bigtujunga.tif", BUILD / "semisynthetic", f"bigtujunga_s{s}",
                                 seed=s, library=library) for s in (0, 1)]
    log.message("semi-synthetic series: " + "; ".join(f"{s.name} {len(s.images)} dates" for s in semi))
    series = [real] + semi + synth
    weights = [0.35] + [0.1] * len(semi) + [0.45 / max(1, len(synth))] * len(synth)
    sampler = SeriesSampler(series, pool, weights)
    val_pool.shapes += pool.shapes
    val_sampler = SeriesSampler(val_synth, val_pool)
    description = {
        "bands": list(SERIES_BANDS),
        "held_out_dates": [str(d) for d in HELD_OUT],
        "real_series": real.describe(),
        "semi_synthetic_series": [s.describe() for s in semi],
        "synthetic_series": {"training": [s.name for s in synth], "validation": [s.name for s in val_synth]},
        "cloud_shapes": {**shapes, "total": len(pool)},
        "sampling_weights": {"real series": 0.35, "semi-synthetic series": 0.1 * len(semi), "synthetic series": 0.45},
        "protocol": "SEN12MS-CR-TS: the target is a clear date, the auxiliary dates are others of the same place "
                    "(with their own clouds), the target's clouds are real cloud shapes with their real cloudy "
                    "values transplanted from cloudy images (25 % synthetic fractal clouds); random crops, the "
                    "same flips and turns for every date; 1 to 4 auxiliary dates per batch",
        "sentinel1": "none: the sample data holds no real Sentinel-1 time series; optical-only variant",
        "data_by_kind": {
            "real series (SEN12MS-CR-TS near Rome, 256 x 256 px)": {
                "series": 1, "training dates": len(real.images), "clear target dates": len(real.clear_indices())},
            "synthetic series of real clear images (SEN12MS-CR, SEN12MS-CR-TS patches)": {
                "training": len(synth), "validation": len(val_synth)},
            "semi-synthetic terrain series (SRTM bigtujunga)": {
                "series": len(semi), "dates": sum(len(s.images) for s in semi)},
            "real cloud shapes": {**shapes, "total": len(pool)},
        },
    }
    return sampler, val_sampler, description


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=88.0, help="wall-clock budget of the training loop")
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--output", default=str(WEIGHTS), help="weights path without suffix")
    ap.add_argument("--smoke", action="store_true", help="a few steps, nothing shipped (checks the pipeline)")
    args = ap.parse_args()
    log = Printer()
    t0 = time.perf_counter()
    sampler, val_sampler, data = build_data(args.seed, log)
    val = validation_batches(val_sampler, 3 if args.smoke else 8, args.batch, args.crop, (2, 3, 4, 5))
    prep = time.perf_counter() - t0
    log.message(f"data ready in {prep:.0f} s")
    config = SeriesTrainConfig(model_options=dict(COMPACT), s2_bands=SERIES_BANDS, s1_bands=0,
                               steps=6 if args.smoke else args.steps, batch_size=args.batch, crop=args.crop,
                               lr=args.lr, seed=args.seed, max_minutes=args.minutes, threads=args.threads,
                               checkpoint_dir=str(BUILD / ("smoke" if args.smoke else "run")),
                               checkpoint_every=3 if args.smoke else 100, val_every=3 if args.smoke else 200,
                               resume=args.resume)
    result = train_series(config, sampler, val, log)
    log.message(f"training: {result.summary()}")
    if args.smoke:
        return
    save(result, data, prep, args)


def save(result, data: dict, prep: float, args) -> None:
    import torch

    from topoclear.engine.checkpoints import make_card, save_model
    from topoclear.models.registry import count_parameters

    model = result.best_model
    best = next((h for h in result.history if h["step"] == result.best_step), result.history[-1])
    hardware = f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()}), no GPU, " \
               f"torch {torch.__version__}"
    training = {
        "data": data,
        "hyperparameters": {**config_dict(result.config), "loss": "2 L1 + 1 (1 - SSIM) on the whole image",
                            "optimizer": "adam", "schedule": "constant for the first third, then halved at 1/3, 1/2, "
                                                             "2/3 and 5/6 of the steps (the paper's shape)"},
        "loss_note": "the paper's 2 L1 + 1 VGG16 feature loss + 250 style loss without its VGG16 terms (no VGG16 "
                     "weights are shipped): 2 L1 + 1 (1 - SSIM)",
        "paper_defaults": {"optimizer": "adam", "lr": 1e-4, "sar_lr": 1e-5, "batch_size": 6, "epochs": 30,
                           "loss": "2 L1 + 1 VGG16 feature (relu1_1..relu5_1) + 250 style",
                           "source": "You et al. 2026 (seed 003), section 4.1"},
        "steps": result.steps, "best_step": result.best_step, "stopped_by": result.stopped_by,
        "training_time_s": round(result.seconds, 1), "data_preparation_s": round(prep, 1),
        "device": "cpu", "hardware": hardware, "parameters": count_parameters(model),
        "command": "scripts/train_ca_mtcr.py " + " ".join(sys.argv[1:]),
        "sentinel1": "optical-only variant: there is no real Sentinel-1 time series in the sample data, the SAR "
                     "branch is not trained",
    }
    metrics = {"units": {"loss": "2 L1 + (1 - SSIM) on reflectance", "mae": "reflectance", "psnr": "dB"},
               "validation": best, "history": result.history,
               "validation_note": "fixed crops of synthetic series of held-out scenes (SEN12MS-CR scene 39, "
                                  "SEN12MS-CR-TS patches 15 and 100), 1-4 auxiliary dates; *_mask inside the target's "
                                  "cloud mask"}
    description = ("TopoClear default weights 'ca_mtcr_nosar': compact CA-MTCR "
                   f"({json.dumps(COMPACT)}), optical-only (no Sentinel-1), 10 bands, trained on the CPU on the real "
                   "SEN12MS-CR-TS series near Rome (July, August and November held out), synthetic series of real "
                   "clear images and semi-synthetic terrain series, with real cloud shapes transplanted onto clear "
                   "targets, by scripts/train_ca_mtcr.py; loss 2 L1 + (1 - SSIM) (the paper's without its VGG16 "
                   "terms). The SAR branch is not trained (no real Sentinel-1 time series in the sample data).")
    card = make_card(model, training=training, metrics=metrics, description=description)
    weights, card_path = save_model(args.output, model, card, half=True)
    print(f"wrote {weights} and {card_path}", flush=True)


if __name__ == "__main__":
    main()
