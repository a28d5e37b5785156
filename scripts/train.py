"""Train a TopoClear cloud-removal model from the command line.

    .venv/bin/python scripts/train.py --model crt_unet --manifest my_patches/manifest.json \\
        --epochs 150 --output crt_unet.safetensors
    .venv/bin/python scripts/train.py --model dsen2cr --sample-data sen12mscr --no-s1 \\
        --patch-size 64 --epochs 3 --output build/dsen2cr.safetensors

``--manifest`` takes a manifest (.json / .csv) or a folder (see
``topoclear.engine.training.manifest``). ``--sample-data sen12mscr|bigearthnet`` builds a manifest
over the real sample data in ``../shared/data`` first (cached in ``build/training-samples``).
Hyper-parameters left out take the model's paper values. The weights (.safetensors) and the
model card (.json) are written to ``--output``; checkpoints go to ``--checkpoints`` (default:
``<output>_checkpoints``) after every epoch, and ``--resume`` continues from them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CACHE = ROOT / "build" / "training-samples"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a TopoClear cloud-removal model.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="training manifest (.json/.csv) or folder")
    src.add_argument("--sample-data", choices=("sen12mscr", "bigearthnet"),
                     help="build a manifest over ../shared/data and train on it")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sample data folder (with --sample-data)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache for --sample-data manifests")
    p.add_argument("--val-manifest", help="separate validation manifest (default: the manifest's val split)")
    p.add_argument("--model", default="crt_unet", help="registry name (default %(default)s)")
    p.add_argument("--s2-bands", help="comma-separated S2 band names or a count (default: the model's)")
    p.add_argument("--no-s1", action="store_true", help="train the variant without Sentinel-1")
    p.add_argument("--missing-inputs", choices=("error", "zeros"), default="error",
                   help="zeros: feed zeros where a sample lacks S1 or terrain (ablation)")
    p.add_argument("--loss", help="l1, carl, tmarl, l1_ssim, ssim or cgan (default: the paper's)")
    p.add_argument("--loss-params", type=json.loads, default=None, help='JSON, e.g. \'{"alpha": 0.8}\'')
    p.add_argument("--optimizer", choices=("adam", "nadam"))
    p.add_argument("--lr", type=float, help="learning rate (default: the paper's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the paper's)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, help="cap on steps per epoch")
    p.add_argument("--crops-per-sample", type=int, default=1)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--val-crops", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on GPU")
    p.add_argument("--workers", type=int, default=0, help="data-loader processes")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--translator", help="cr_gan: trained sar2opt_gan weights for the translator")
    p.add_argument("--output", required=True, help="weights file (.safetensors); the card goes beside it")
    p.add_argument("--checkpoints", help="checkpoint folder (default <output>_checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--description", default="", help="free text for the model card")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from topoclear.engine.errors import TopoClearError
    from topoclear.engine.training.sample_manifests import build_sample_manifests
    from topoclear.engine.progress import Monitor
    from topoclear.engine.training.loop import TrainConfig, train

    manifest = args.manifest
    if args.sample_data:
        manifests = build_sample_manifests(args.data, args.cache)
        if args.sample_data not in manifests:
            print(f"sample data {args.sample_data!r} not found under {args.data}", file=sys.stderr)
            return 2
        manifest = str(manifests[args.sample_data])
    s2_bands = None
    if args.s2_bands:
        s2_bands = int(args.s2_bands) if args.s2_bands.isdigit() else [b.strip() for b in args.s2_bands.split(",")]
    output = Path(args.output)
    if output.suffix.lower() != ".safetensors":
        output = output.with_suffix(".safetensors")
    output.parent.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        model=args.model, s2_bands=s2_bands, s1_bands=0 if args.no_s1 else None, loss=args.loss,
        loss_params=args.loss_params, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, crops_per_sample=args.crops_per_sample,
        patch_size=args.patch_size, val_crops=args.val_crops, seed=args.seed, device=args.device,
        amp=not args.no_amp, num_workers=args.workers, augment=not args.no_augment,
        missing_inputs=args.missing_inputs, translator_weights=args.translator,
        checkpoint_dir=args.checkpoints or str(output.with_suffix("")) + "_checkpoints", resume=args.resume,
        output=str(output), description=args.description)
    last = [-1.0]

    def progress(p: float) -> None:
        if p - last[0] >= 5 or p >= 100:
            last[0] = p
            print(f"  {p:5.1f} %", flush=True)

    try:
        result = train(config, manifest, Monitor(progress, None, lambda m: print(m, flush=True)),
                       val_data=args.val_manifest)
    except TopoClearError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=sys.stderr)
        return 130
    first, final = result.initial_val_loss, result.final_val_loss
    print(f"weights: {result.weights_path}\nmodel card: {result.card_path}")
    if first is not None and final is not None:
        print(f"validation loss {first:.5f} -> {final:.5f} in {result.steps} steps, {result.time_s:.0f} s on "
              f"{result.device}" + (f", {result.samples_per_s:.2f} samples/s" if result.samples_per_s else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
