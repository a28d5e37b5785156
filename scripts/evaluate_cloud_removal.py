#!/usr/bin/env python3
"""Cloud removal on held-out data: the shipped weights against the identity and inpainting baselines.

Run after ``scripts/build_training_data.py`` and ``scripts/train_default_weights.py``::

    .venv/bin/python scripts/evaluate_cloud_removal.py --update-results

evaluates, on the samples of ``build/training-data/manifest.json``, the baselines of
:data:`topoclear.engine.training.baselines.BASELINES` and every weights file in ``models/weights`` whose
inputs the samples have (models with Sentinel-1 only on the terrain-aware scenes, the only ones
with Sentinel-1), each run as ``topoclear:removeclouds`` runs it by default (pixels outside the
cloud / shadow mask kept from the input):

* the real SEN12MS-CR pairs of the **test** split;
* the synthetic-cloud pairs (real clear images) of the test split;
* the semi-synthetic terrain-aware scenes of the test split;

overall and per 10 % cloud-cover bin (cloud or shadow mask), on the 10 bands B2, B3, B4, B5, B6,
B7, B8, B8A, B11, B12 as reflectance in [0, 1]; then CRT-UNet's terrain ablation (each terrain
input zeroed) on the terrain-aware test scenes. It writes the numbers as JSON (``--json``,
default beside the manifest), adds the test metrics to each model card, and with
``--update-results`` rewrites the section of ``benchmarks/RESULTS.md`` named :data:`HEADING`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import describe_machine  # noqa: E402
from topoclear.engine.io.atomic import write_text_atomic  # noqa: E402
from topoclear.engine.training.baselines import BASELINES, evaluate_baselines, load_eval_samples  # noqa: E402
from topoclear.engine.checkpoints import checkpoint_paths, load_model  # noqa: E402
from topoclear.engine.training.model_evaluation import model_predictor, sample_accepts  # noqa: E402

HEADING = "## Cloud removal: shipped weights against baselines on held-out data"
#: (title, source filter, split)
EVALUATIONS = (
    ("Real SEN12MS-CR pairs, test split", "real SEN12MS-CR", "test"),
    ("Synthetic clouds on real clear images, test split", "synthetic clouds", "test"),
    ("Semi-synthetic terrain-aware scenes, test split", "semi-synthetic", "test"),
)
#: CRT-UNet's ablation: terrain channels zeroed (None: the full model).
ABLATION = (None, "elevation", "slope", "aspect", "hillshade", "all")
BASELINE_NAMES = tuple(BASELINES)
OVERALL = (("mae", "MAE", 4), ("rmse", "RMSE", 4), ("psnr", "PSNR dB", 2), ("ssim", "SSIM", 3),
           ("sam", "SAM deg", 2), ("psnr_cloudy", "PSNR cloudy dB", 2), ("mae_reconstruction", "MAE in mask", 4))
BINNED = (("mae", "MAE", 4), ("psnr", "PSNR", 2), ("ssim", "SSIM", 3))


def verdict(res: dict) -> str:
    """One sentence naming the method with the lower MAE, overall and inside the mask."""
    parts = []
    for key, label in (("mae", "MAE"), ("mae_reconstruction", "MAE inside the mask")):
        values = {m: r["overall"].get(key) for m, r in res["methods"].items()}
        values = {m: v for m, v in values.items() if v is not None and not math.isnan(v)}
        if values:
            best = min(values, key=values.get)
            others = ", ".join(f"{fmt(v, 4)} {m.split(' ')[0]}" for m, v in values.items() if m != best)
            parts.append(f"lowest {label}: **{best.split(' ')[0]}** ({fmt(values[best], 4)} vs {others})")
    return ("In this selection, " + "; ".join(parts) + ".") if parts else ""


def fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def table(res: dict) -> list:
    """Overall table, verdict and per-cloud-cover table of one evaluation."""
    methods = list(res["methods"])
    lines = ["| method | " + " | ".join(h for _, h, _ in OVERALL) + " |", "|---|" + "---|" * len(OVERALL)]
    for m in methods:
        o = res["methods"][m]["overall"]
        lines.append(f"| {m} | " + " | ".join(fmt(o.get(k), d) for k, _, d in OVERALL) + " |")
    lines += ["", verdict(res), "", "MAE inside the mask per cloud-cover bin:", "",
              "| cloud cover | n | " + " | ".join(m.split(" ")[0] for m in methods) + " |",
              "|---|---|" + "---|" * len(methods)]
    bins = [res["methods"][m]["by_cloud_cover"] for m in methods]
    for i, row in enumerate(bins[0]):
        if row["count"]:
            cells = [fmt(bins[j][i].get("mae_reconstruction"), 4) for j in range(len(methods))]
            lines.append(f"| {row['bin']} | {row['count']} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(results: list, ablation: dict, cards: dict, manifest: Path, seconds: float) -> str:
    lines = [HEADING, "",
             "`bash scripts/reproduce_weights.sh` (`scripts/build_training_data.py`, `scripts/train_default_weights.py`, "
             "then `scripts/evaluate_cloud_removal.py --update-results`, which alone re-scores the shipped weights)", "",
             f"Data: `{manifest.relative_to(REPO) if manifest.is_relative_to(REPO) else manifest}` (built with seed 0: "
             "real SEN12MS-CR pairs with DSen2-CR masks; real clear images with synthetic clouds; "
             "**semi-synthetic** terrain-aware scenes from the real bigtujunga and rmnp DEMs, see "
             "`engine/semisynthetic.py`). Splits by spatial blocks, 80/15/5, no overlap between splits; "
             "only the test split is scored here (the models never saw it; the validation split was watched "
             "during training).", "",
             "Methods, given the cloudy image and its cloud / shadow mask, all keeping the pixels outside the mask: "
             "**identity** = the cloudy image itself; **inpainting** = masked pixels filled by GDAL `FillNodata` "
             "(inverse-distance weighting, search over the whole patch, no smoothing), band by band; each **shipped "
             "weights file** of `models/weights` run as `topoclear:removeclouds` runs it (keep clear pixels on). "
             "Models reading Sentinel-1 are scored only on the terrain-aware scenes, the only samples with "
             "Sentinel-1. Metrics (`models/metrics.py`) on the 10 bands B2-B8A, B11, B12 as reflectance in [0, 1], "
             "per sample then averaged: MAE / RMSE in reflectance, PSNR in dB, SSIM (11 x 11 Gaussian), SAM in "
             "degrees; *PSNR cloudy* and *MAE in mask* inside the cloud-or-shadow mask, where cloud removal "
             "actually works. Cloud cover = fraction of the patch under the cloud-or-shadow mask.", "",
             "The shipped weights (model cards beside them):", "",
             "| weights | architecture | parameters | trained on | steps | CPU time (s) |", "|---|---|---|---|---|---|"]
    for name, card in cards.items():
        arch, tr = card["architecture"], card["training"]
        inputs = " + ".join(INPUT_NAMES[k] for k in arch["input_layout"]["inputs"])
        options = ", ".join(f"{k} {v}" for k, v in arch["options"].items())
        lines.append(f"| `{name}` | {arch['title'].split(' (')[0]} on {inputs}; {options} | {arch['parameters']:,} | "
                     f"{tr['data'].get('train', {}).get('samples', '?')} training patches "
                     f"({', '.join(f'{k}: {v}' for k, v in tr['data'].get('train', {}).get('sources', {}).items())}) | "
                     f"{tr['steps']} | {tr['training_time_s']:.0f} |")
    lines += ["", f"Machine of this evaluation: {describe_machine()}, CPU only; {seconds:.0f} s in all. "
              "The training machine and time of each weights file are in its card.", ""]
    for res in results:
        n = res["samples"]
        lines += [f"### {res['title']} ({n} patch{'' if n == 1 else 'es'})", ""]
        lines += table(res) if n else ["No sample in this selection.", ""]
    if ablation:
        lines += [f"### Terrain ablation: CRT-UNet with terrain inputs zeroed, {ablation['title']} "
                  f"({ablation['samples']} patches)", "",
                  "The CRT-UNet weights above, run with terrain channels set to zero in the network's scaled units "
                  "(the paper's Table III ablation). A channel helps when zeroing it raises the error inside the mask.",
                  ""]
        base = ablation["methods"][next(iter(ablation["methods"]))]["overall"]
        lines += ["| terrain input zeroed | MAE in mask | change vs full | PSNR cloudy dB | SSIM | SAM deg |",
                  "|---|---|---|---|---|---|"]
        for m, r in ablation["methods"].items():
            o = r["overall"]
            change = (o["mae_reconstruction"] - base["mae_reconstruction"]) / base["mae_reconstruction"] * 100
            lines.append(f"| {m} | {fmt(o.get('mae_reconstruction'), 4)} | {change:+.1f} % | "
                         f"{fmt(o.get('psnr_cloudy'), 2)} | {fmt(o.get('ssim'), 3)} | {fmt(o.get('sam'), 2)} |")
        lines.append("")
        lines += same_network_without_terrain(results)
    lines += ["Notes: the masks of the synthetic and semi-synthetic data are the generator's own (exact, "
              "thin haze down to 10 % opacity included: under thin clouds the identity still shows the ground). "
              "The real pairs' masks come from the rule-based detectors (`engine/masks.py`; the shadow test also "
              "flags dark ground), and their cloudy and clear images are different dates, so the identity has an "
              "error even outside the mask. Only one real land pair is in the test split: its rows are an "
              "illustration, not a statistic. A model is useful where it beats the inpainting row inside the mask.",
              ""]
    return "\n".join(lines)


def same_network_without_terrain(results: list) -> list:
    """The cleaner half of the ablation: CRT-UNet against the UNet trained the same way without terrain."""
    for res in results:
        methods = res["methods"]
        crt = next((v for k, v in methods.items() if k.startswith("crt_unet ")), None)
        unet = next((v for k, v in methods.items() if k.startswith("unet (S2 + S1)")), None)
        if crt is None or unet is None:
            continue
        a, b = crt["overall"]["mae_reconstruction"], unet["overall"]["mae_reconstruction"]
        return [f"Zeroing inputs the network was trained with also measures how it copes with inputs it never "
                f"saw. The cleaner comparison is `unet`: the same architecture, data, steps and seed without the "
                f"terrain inputs. On the {res['title'].lower()}, its MAE in the mask is {fmt(b, 4)} "
                f"against CRT-UNet's {fmt(a, 4)} ({(b - a) / a * 100:+.1f} %): terrain "
                f"{'helps' if a < b else 'does not help'} here. These scenes are lit from their DEM, so terrain "
                "is informative by construction; no real Sentinel-2 + Sentinel-1 + DEM test pair exists in the "
                "sample data to say the same of real scenes.", ""]
    return []


def cards_markdown(cards: dict) -> str:
    """``models/weights/README.md``: one readable model card per weights file (the JSON cards hold everything)."""
    lines = ["# Shipped cloud-removal weights", "",
             "Written by `scripts/evaluate_cloud_removal.py` from the JSON model cards beside each weights file. "
             "Every number here can be reproduced with one command, `bash scripts/reproduce_weights.sh` "
             "(`scripts/build_training_data.py`, `scripts/train_default_weights.py` and "
             "`scripts/evaluate_cloud_removal.py`, all seeded; CPU training threads are not bit-deterministic, "
             "so a rerun matches to run-to-run noise, not to the last digit).", ""]
    for name, card in cards.items():
        arch, tr, metrics = card["architecture"], card["training"], card.get("metrics", {})
        train = tr["data"].get("train", {})
        val = metrics.get("validation", {})
        lines += [f"## `{name}.safetensors`", "",
                  f"- Architecture: {arch['title'].split(' (')[0]} ({arch['class']}), options {arch['options']}, "
                  f"{arch['parameters']:,} parameters; inputs {arch['input_layout']['inputs']}, S2 bands "
                  f"{', '.join(arch['input_layout']['s2'])}, S1 {', '.join(arch['input_layout']['s1']) or 'none'}, "
                  f"terrain {', '.join(arch['input_layout']['terrain']) or 'none'}; weights stored as "
                  f"{card['weights'].get('dtype', 'float32')}.",
                  f"- Trained on: {train.get('samples')} training patches of 256 x 256 px "
                  f"({', '.join(f'{k}: {v}' for k, v in train.get('sources', {}).items())}), random "
                  f"{tr['hyperparameters']['patch_size']} px crops with flips and rotations.",
                  f"- Training: {tr['steps']} steps of batch {tr['hyperparameters']['batch_size']} "
                  f"({tr['epochs']} epochs), loss {tr['hyperparameters']['loss']}, {tr['hyperparameters']['optimizer']} "
                  f"lr {tr['hyperparameters']['lr']}, seed {tr['hyperparameters']['seed']}; "
                  f"{tr['training_time_s'] / 60:.1f} min on {tr.get('hardware', tr.get('device'))}.",
                  f"- Validation (validation split, last epoch, whole crops): MAE {fmt(val.get('mae'), 4)}, "
                  f"PSNR {fmt(val.get('psnr'), 2)} dB, SSIM {fmt(val.get('ssim'), 3)}, SAM {fmt(val.get('sam'), 2)} deg.",
                  "- Test split (keep clear pixels on), MAE inside the cloud / shadow mask:", ""]
        for title, entry in metrics.get("test", {}).items():
            if not isinstance(entry, dict) or "model" not in entry:
                continue
            others = ", ".join(f"{k.split(' ')[0]} {fmt(v.get('mae_reconstruction'), 4)}"
                               for k, v in entry.items() if k != "model")
            lines.append(f"  - {title}: **{fmt(entry['model'].get('mae_reconstruction'), 4)}** (baselines: {others})")
        lines += ["", card.get("description", ""), ""]
    return "\n".join(lines)


def finite(value):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def update_results(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + ([""] if end < len(lines) else [])
                        + lines[end:]) + "\n"
    write_text_atomic(path, new)


def shipped(folder: Path) -> dict:
    """``{name: (model, card)}`` of every weights file with its card in ``folder``."""
    out = {}
    for card_path in sorted(folder.glob("*.json")):
        weights, _ = checkpoint_paths(card_path)
        if weights.exists():
            out[card_path.stem] = load_model(card_path)
    return out


INPUT_NAMES = {"s2": "S2", "s1": "S1", "terrain": "terrain"}


def label(name: str, model) -> str:
    inputs = " + ".join(INPUT_NAMES[k] for k in model.input_layout.inputs)
    return f"{name} ({inputs})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "build" / "training-data" / "manifest.json")
    parser.add_argument("--weights", type=Path, default=REPO / "models" / "weights", help="folder of weights + cards")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: evaluation.json beside "
                        "the manifest)")
    parser.add_argument("--no-cards", action="store_true", help="do not write the test metrics into the model cards")
    parser.add_argument("--update-results", action="store_true", help=f"rewrite '{HEADING}' in benchmarks/RESULTS.md")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    if not args.manifest.exists():
        print(f"{args.manifest} not found: run scripts/build_training_data.py first", file=sys.stderr)
        return 2
    models = shipped(args.weights)
    t0 = time.time()
    results, test_metrics = [], {name: {} for name in models}
    for title, source, split in EVALUATIONS:
        samples = load_eval_samples(args.manifest, split=split, sources=[source], with_inputs=True)
        predictors = {label(n, m): model_predictor(m) for n, (m, _) in models.items()
                      if samples and all(sample_accepts(m, s) for s in samples)}
        res = evaluate_baselines(samples, predictors=predictors)
        res["title"] = title
        results.append(res)
        print(f"{title}: {res['samples']} patches")
        for name, m in res["methods"].items():
            o = m["overall"]
            print(f"  {name:32s} MAE {fmt(o.get('mae'), 4)}  PSNR {fmt(o.get('psnr'), 2)} dB  SSIM "
                  f"{fmt(o.get('ssim'), 3)}  SAM {fmt(o.get('sam'), 2)} deg  "
                  f"MAE in mask {fmt(o.get('mae_reconstruction'), 4)}")
        for n, (m, _) in models.items():
            if label(n, m) in res["methods"]:
                baselines = {k: v["overall"] for k, v in res["methods"].items() if k in BASELINE_NAMES}
                test_metrics[n][title] = {"model": res["methods"][label(n, m)]["overall"], **baselines}
    ablation = {}
    if "crt_unet" in models:
        model = models["crt_unet"][0]
        title, source, split = EVALUATIONS[-1]
        samples = load_eval_samples(args.manifest, split=split, sources=[source], with_inputs=True)
        predictors = {("none (full model)" if z is None else z): model_predictor(model, zero_terrain=z)
                      for z in ABLATION}
        ablation = evaluate_baselines(samples, predictors=predictors, include_baselines=False)
        ablation["title"] = title.lower()
        for name, r in ablation["methods"].items():
            print(f"  ablation, zeroed {name:18s} MAE in mask {fmt(r['overall'].get('mae_reconstruction'), 4)}")
        test_metrics["crt_unet"]["terrain ablation (" + title + ")"] = {
            k: v["overall"] for k, v in ablation["methods"].items()}
    seconds = time.time() - t0
    out = args.json or args.manifest.with_name("evaluation.json")
    out.write_text(json.dumps(finite({"manifest": str(args.manifest), "evaluations": results, "ablation": ablation}),
                              indent=1))
    print(f"wrote {out}")
    cards = {n: c for n, (_, c) in models.items()}
    if not args.no_cards:
        for n, card in cards.items():
            card.setdefault("metrics", {})["test"] = finite({
                "note": "held-out test split of build/training-data, keep clear pixels on; scripts/evaluate_cloud_removal.py",
                **test_metrics[n]})
            write_text_atomic(checkpoint_paths(args.weights / n)[1], json.dumps(finite(card), indent=1))
        write_text_atomic(args.weights / "README.md", cards_markdown(cards))
        print(f"test metrics written into {len(cards)} model cards and {args.weights / 'README.md'}")
    section = markdown(results, ablation, cards, args.manifest.resolve(), seconds)
    if args.update_results:
        update_results(args.results, section)
        print(f"updated '{HEADING}' in {args.results}")
    else:
        print()
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
