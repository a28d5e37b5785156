#!/usr/bin/env python3
"""Baseline numbers of cloud removal on held-out data: identity and GDAL FillNodata inpainting.

Run after ``scripts/build_training_data.py``::

    .venv/bin/python scripts/evaluate_baselines.py --update-results

evaluates :data:`topoclear.engine.baselines.BASELINES` on the samples of
``build/training-data/manifest.json``:

* the real SEN12MS-CR pairs of the **test** split, and all real pairs not excluded (the
  baselines learn nothing, so for them every pair is held out; models must use the test split);
* the synthetic-cloud pairs (real clear images) of the test split;
* the semi-synthetic terrain-aware scenes of the test split;

overall and per 10 % cloud-cover bin (cloud or shadow mask), on the 10 bands B2, B3, B4, B5, B6,
B7, B8, B8A, B11, B12 as reflectance in [0, 1]. It writes the numbers as JSON (``--json``,
default beside the manifest) and, with ``--update-results``, rewrites the section
"## Cloud removal: baselines on held-out data" of ``benchmarks/RESULTS.md`` (only that
section; it is appended when absent).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from topoclear.engine.baselines import evaluate_baselines

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Cloud removal: baselines on held-out data"
#: (title, source filter, split)
EVALUATIONS = (
    ("Real SEN12MS-CR pairs, test split", "real SEN12MS-CR", "test"),
    ("Real SEN12MS-CR pairs, all but the excluded one (no training involved)", "real SEN12MS-CR", None),
    ("Synthetic clouds on real clear images, test split", "synthetic clouds", "test"),
    ("Semi-synthetic terrain-aware scenes, test split", "semi-synthetic", "test"),
    ("Semi-synthetic terrain-aware scenes, validation + test splits", "semi-synthetic", ("val", "test")),
)
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


def markdown(results: list, manifest: Path, seconds: float) -> str:
    lines = [HEADING, "",
             "`.venv/bin/python scripts/build_training_data.py` then "
             "`.venv/bin/python scripts/evaluate_baselines.py --update-results`", "",
             f"Data: `{manifest.relative_to(REPO) if manifest.is_relative_to(REPO) else manifest}` (built with seed 0: "
             "real SEN12MS-CR pairs with DSen2-CR masks; real clear images with synthetic clouds; "
             "**semi-synthetic** terrain-aware scenes from the real bigtujunga and rmnp DEMs, see "
             "`engine/semisynthetic.py`). Splits by spatial blocks, 80/15/5, no overlap between splits.",
             "",
             "Baselines, given the cloudy image and its cloud / shadow mask: **identity** = the cloudy image itself; "
             "**inpainting** = masked pixels filled by GDAL `FillNodata` (inverse-distance weighting, search over the "
             "whole patch, no smoothing), band by band. Metrics (`models/metrics.py`) on the 10 bands B2-B8A, B11, B12 "
             "as reflectance in [0, 1], per sample then averaged: MAE / RMSE in reflectance, PSNR in dB, SSIM "
             "(11 x 11 Gaussian), SAM in degrees; *PSNR cloudy* and *MAE in mask* inside the cloud-or-shadow mask. "
             "Cloud cover = fraction of the patch under the cloud-or-shadow mask.",
             "",
             f"Machine: {platform.machine()}, {platform.system()}, CPU only; {seconds:.0f} s in all.", ""]
    for res in results:
        n = res['samples']
        lines += [f"### {res['title']} ({n} patch{'' if n == 1 else 'es'})", ""]
        if not res["samples"]:
            lines += ["No sample in this selection.", ""]
            continue
        methods = list(res["methods"])
        lines.append("| method | " + " | ".join(h for _, h, _ in OVERALL) + " |")
        lines.append("|---|" + "---|" * len(OVERALL))
        for m in methods:
            o = res["methods"][m]["overall"]
            lines.append(f"| {m} | " + " | ".join(fmt(o.get(k), d) for k, _, d in OVERALL) + " |")
        lines.append("")
        lines.append(verdict(res))
        lines.append("")
        header = "| cloud cover | n | " + " | ".join(f"{h} {m.split(' ')[0]}" for k, h, _ in BINNED for m in methods)
        lines.append(header + " |")
        lines.append("|---|---|" + "---|" * (len(BINNED) * len(methods)))
        bins = [res["methods"][m]["by_cloud_cover"] for m in methods]
        for i, row in enumerate(bins[0]):
            if not row["count"]:
                continue
            cells = [fmt(bins[j][i][k], d) for k, _, d in BINNED for j in range(len(methods))]
            lines.append(f"| {row['bin']} | {row['count']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Notes: the masks of the synthetic and semi-synthetic data are the generator's own (exact, "
              "thin haze down to 10 % opacity included: under thin clouds the identity still shows the ground and "
              "can keep the higher SSIM, while inpainting replaces it with a smooth fill). The real pairs' masks "
              "come from the rule-based detectors (`engine/masks.py`; the shadow test also flags dark ground), and "
              "their cloudy and clear images are different dates, so the identity has an error even outside the "
              "mask. Only three real land pairs exist in the shared data (the snow-change pair is excluded, two "
              "open-water pairs fail the land-only rule): their rows are illustrations, not statistics. Any trained "
              "model has to beat the inpainting row, not only the identity row.", ""]
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
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(new)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "build" / "training-data" / "manifest.json")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: baselines.json beside "
                        "the manifest)")
    parser.add_argument("--update-results", action="store_true", help=f"rewrite '{HEADING}' in benchmarks/RESULTS.md")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    if not args.manifest.exists():
        print(f"{args.manifest} not found: run scripts/build_training_data.py first", file=sys.stderr)
        return 2
    t0 = time.time()
    results = []
    for title, source, split in EVALUATIONS:
        res = evaluate_baselines(args.manifest, split=split, sources=[source])
        res["title"] = title
        results.append(res)
        print(f"{title}: {res['samples']} patches")
        for name, m in res["methods"].items():
            o = m["overall"]
            print(f"  {name:32s} MAE {fmt(o.get('mae'), 4)}  PSNR {fmt(o.get('psnr'), 2)} dB  SSIM "
                  f"{fmt(o.get('ssim'), 3)}  SAM {fmt(o.get('sam'), 2)} deg  "
                  f"MAE in mask {fmt(o.get('mae_reconstruction'), 4)}")
    seconds = time.time() - t0
    out = args.json or args.manifest.with_name("baselines.json")
    out.write_text(json.dumps(finite({"manifest": str(args.manifest), "evaluations": results}), indent=1))
    print(f"wrote {out}")
    section = markdown(results, args.manifest.resolve(), seconds)
    if args.update_results:
        update_results(args.results, section)
        print(f"updated '{HEADING}' in {args.results}")
    else:
        print()
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
