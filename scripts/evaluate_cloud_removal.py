#!/usr/bin/env python3
"""Single-image cloud removal on real held-out scenes: the cloudy input, the fill and every shipped method.

Run after ``scripts/build_training_data.py`` and ``scripts/train_default_weights.py``::

    .venv/bin/python scripts/evaluate_cloud_removal.py --update-results

Every method runs through the engine exactly as ``topoclear:removeclouds`` runs it
(``run_cloud_removal``, keep clear pixels on), with the same rule-based cloud / shadow mask for
every method (given as a mask raster), on the held-out data of ``build/training-data``
(never trained on):

* ``real_s2``: the real SEN12MS-CR pairs of the test scenes (whole scenes held out; Sentinel-2
  only): the cloudy input, the fill, every shipped weights file that runs on Sentinel-2 alone;
* ``real_s1_dem``: the real Terramind Sentinel-1 + Sentinel-2 + DEM tiles held out, with real
  cloud shapes of the test scenes laid on them: the same plus the files that read Sentinel-1
  and terrain.

Metrics on the 10 bands B2-B8A, B11, B12 as reflectance in [0, 1], per pair, whole image and
inside the mask: MAE, RMSE (reflectance), PSNR (dB), SSIM, SAM (degrees); then means over the
pairs, per 10 % cloud-cover bin and per group (clear: under 5 % masked, fully cloudy: 95 % and
more, partly cloudy: between). The scores go into each card's ``metrics.held_out`` (and the
fill's card ``models/weights/fill.json``), which the automatic method reads; the section
:data:`HEADING` of ``benchmarks/RESULTS.md`` is rewritten with ``--update-results`` and
``models/weights/README.md`` from the cards.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import describe_machine  # noqa: E402
from topoclear.engine.io.atomic import write_text_atomic  # noqa: E402

HEADING = "## Single-image cloud removal on real held-out scenes"
BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
L1C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
METRICS = ("mae", "rmse", "psnr", "ssim", "sam")
GROUPS = (("clear", 0.0, 0.05), ("partly cloudy", 0.05, 0.95), ("fully cloudy", 0.95, 1.01))
CLOUDY, FILL = "cloudy input", "fill"


def group_of(fraction: float) -> str:
    return next(name for name, lo, hi in GROUPS if lo <= fraction < hi)


def read(path, bands=BANDS, offset: float = 0.0) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        idx = [L1C.index(b) + 1 for b in bands] if ds.count == 13 else list(range(1, ds.count + 1))
        return np.clip((ds.read(idx).astype(np.float64) + offset) / 10000.0, 0.0, 1.0).astype(np.float32)


def metrics(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """Whole-image and inside-mask metrics of one pair (reflectance, (C, H, W); mask (H, W))."""
    import torch

    from topoclear.models import metrics as m

    p, t = torch.from_numpy(pred[None].astype(np.float64)), torch.from_numpy(target[None].astype(np.float64))
    out = {"whole": {"mae": float(m.mae(p, t)), "rmse": float(m.rmse(p, t)), "psnr": float(m.psnr(p, t)),
                     "ssim": float(m.ssim(p, t)), "sam": float(m.sam(p, t))}}
    if mask.any():
        mk = torch.from_numpy(mask[None, None])
        smap = m.ssim_map(p, t).mean(dim=1)[0].numpy()
        crop = mask[5:5 + smap.shape[0], 5:5 + smap.shape[1]]
        out["mask"] = {"mae": float(m.mae(p, t, mask=mk)), "rmse": float(m.rmse(p, t, mask=mk)),
                       "psnr": float(m.psnr(p, t, mask=mk)),
                       "ssim": float(smap[crop].mean()) if crop.any() else float("nan"),
                       "sam": float(m.sam(p, t, mask=mk))}
    else:
        out["mask"] = {k: float("nan") for k in METRICS}
    return out


def write_mask(cloud: Path, shadow: Path, out: Path) -> Path:
    """One 0 / 1 (cloud) / 2 (shadow) raster from the two masks (the engine's raster mask)."""
    import rasterio

    with rasterio.open(cloud) as c, rasterio.open(shadow) as s:
        a, b, profile = c.read(1) > 0, s.read(1) > 0, c.profile
    profile.update(count=1, dtype="uint8", nodata=None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.where(a, 1, np.where(b, 2, 0)).astype(np.uint8)[None])
    return out


def pairs(manifest: Path, work: Path) -> dict:
    """The pairs of each benchmark from the data build's manifest."""
    data = json.loads(manifest.read_text())
    out = {"real_s2": [], "real_s1_dem": []}
    for s in data["samples"]:
        if s["split"] != "test":
            continue
        mask = write_mask(Path(s["cloud_mask"]), Path(s["shadow_mask"]), work / f"{s['id']}_mask.tif")
        entry = {"id": s["id"], "cloudy": s["cloudy"], "target": s["target"], "mask": str(mask),
                 "scene": s.get("scene", s["id"])}
        if s["source"] == "real SEN12MS-CR pair":
            out["real_s2"].append(entry)
        elif "S1 + S2 + DEM" in s["source"]:
            s1 = Path(s["s1"])
            entry.update(s1=str(s1), dem=str(s1.parent.parent / "DEM" / s1.name),
                         scene=s1.stem)
            out["real_s1_dem"].append(entry)
    return out


def candidates(weights_dir: Path, bench: str) -> dict:
    """label -> (method, weights) of every shipped method the benchmark's inputs can run."""
    from topoclear.engine.checkpoints import read_card

    out = {CLOUDY: None, FILL: ("fill", None)}
    for card_path in sorted(weights_dir.glob("*.json")):
        if card_path.name == "fill.json" or not card_path.with_suffix(".safetensors").exists():
            continue
        layout = read_card(card_path)["architecture"]["input_layout"]
        if bench == "real_s2" and (layout.get("s1") or layout.get("terrain")):
            continue
        out[card_path.stem] = (read_card(card_path)["architecture"]["model"], str(card_path.with_suffix(".safetensors")))
    return out


def run(method, weights, pair: dict, out: Path) -> np.ndarray:
    from topoclear.engine.clouds.removal import run_cloud_removal
    from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions

    request = CloudRemovalRequest(pair["cloudy"], str(out), model=method, weights=weights, s1=pair.get("s1"),
                                  dem=pair.get("dem"), mask=pair["mask"], mask_kind="raster",
                                  options=InferenceOptions(device="cpu"))
    run_cloud_removal(request)
    return read(out)


def evaluate(bench: str, items: list, methods: dict, work: Path, log, previous: dict = None, save=None) -> dict:
    """Every method on every pair; ``previous``: an earlier run's results, whose (pair, method) scores are kept;
    ``save``: called with the pairs done so far after each pair (a partial run can be reused)."""
    done = {r["id"]: r["methods"] for r in ((previous or {}).get(bench) or {}).get("pairs", [])}
    rows = []
    for pair in items:
        target, cloudy = read(pair["target"]), read(pair["cloudy"])
        import rasterio

        with rasterio.open(pair["mask"]) as ds:
            mask = ds.read(1) > 0
        row = {"id": pair["id"], "scene": pair["scene"], "cloud_fraction": float(mask.mean()), "methods": {}}
        for label, spec in methods.items():
            if label in done.get(pair["id"], {}):
                row["methods"][label] = done[pair["id"]][label]
                continue
            t0 = time.perf_counter()
            pred = cloudy if spec is None else run(spec[0], spec[1], pair, work / f"{pair['id']}_{label}.tif")
            row["methods"][label] = metrics(pred, target, mask)
            row["methods"][label]["seconds"] = time.perf_counter() - t0
        log(f"  {bench} {pair['id']} ({100 * row['cloud_fraction']:.0f} % masked): " + ", ".join(
            f"{k} {v['mask']['psnr']:.2f}/{v['whole']['psnr']:.2f}" for k, v in row["methods"].items()))
        rows.append(row)
        if save:
            save({"pairs": rows})
    return {"pairs": rows, "summary": {label: summarise(rows, label) for label in methods}}


def _mean(values) -> float:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def summarise(rows: list, label: str) -> dict:
    def means(subset):
        return {part: {k: _mean(r["methods"][label][part][k] for r in subset) for k in METRICS}
                for part in ("whole", "mask")}

    out = {"pairs": len(rows), **means(rows)}
    fill_rows = [r for r in rows if r["cloud_fraction"] > 0]
    out["beats_fill_in_mask"] = sum(r["methods"][label]["mask"]["psnr"] > r["methods"][FILL]["mask"]["psnr"]
                                    for r in fill_rows)
    out["within_0_5_db_whole"] = sum(r["methods"][label]["whole"]["psnr"] >= r["methods"][FILL]["whole"]["psnr"] - 0.5
                                     for r in rows)
    out["groups"] = {}
    for name, lo, hi in GROUPS:
        subset = [r for r in rows if lo <= r["cloud_fraction"] < hi]
        if subset:
            out["groups"][name] = {"pairs": len(subset), **means(subset)}
    out["bins"] = []
    for b in range(10):
        subset = [r for r in rows if min(9, int(r["cloud_fraction"] * 10)) == b]
        if subset:
            out["bins"].append({"bin": f"{10 * b}-{10 * b + 10} %", "pairs": len(subset), **means(subset)})
    return out


def fmt(v, d=2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def image_key(sample_id: str) -> str:
    """The source image of a sample or pair id: ``real_136_p139`` / ``synthetic_sen12mscr_136_p139_d2_r00000_c00000``
    -> ``sen12mscr 136_p139``; ``shapes_terramind_282D_485L_3_3_d0`` -> ``terramind 282D_485L_3_3``."""
    s = re.sub(r"_r\d{5}_c\d{5}$", "", sample_id)
    s = re.sub(r"_d\d+$", "", s)
    m = re.match(r"(?:real|shapes_sen12mscr|synthetic_sen12mscr)_(\d+_p\d+)$", s)
    if m:
        return "sen12mscr " + m.group(1)
    m = re.match(r"(?:shapes|synthetic)_terramind_(.+)$", s)
    return "terramind " + m.group(1) if m else s


def seen_in_training(card: dict, rows: list) -> list:
    """The benchmark pairs whose image (cloudy or clear) the card's weights were trained on (an earlier data build
    may have had them in its training split): their scores are not held out."""
    train = (((card.get("training") or {}).get("data") or {}).get("train") or {})
    seen = {image_key(i) for i in train.get("sample_ids", []) or []}
    return [r["id"] for r in rows if image_key(r["id"]) in seen]


def held_out_entry(bench: str, result: dict, label: str, seen=()) -> dict:
    from topoclear.engine.clouds.methods.selection import BENCHMARKS

    s = result["summary"][label]
    fill = result["summary"][FILL]
    entry = {"title": BENCHMARKS[bench], "pairs": s["pairs"],
             "scenes": sorted({r["scene"] for r in result["pairs"]}),
             "whole": s["whole"], "mask": s["mask"], "groups": s["groups"], "bins": s["bins"],
             "fill": {"whole": fill["whole"], "mask": fill["mask"]},
             "beats_fill_in_mask": f"{s['beats_fill_in_mask']}/{sum(r['cloud_fraction'] > 0 for r in result['pairs'])}",
             "within_0_5_db_of_fill_whole": f"{s['within_0_5_db_whole']}/{s['pairs']}",
             "units": {"mae": "reflectance", "rmse": "reflectance", "psnr": "dB", "ssim": "unitless",
                       "sam": "degrees"},
             "note": "real held-out data, the rule-based mask for every method, keep clear pixels on; "
                     "scripts/evaluate_cloud_removal.py"}
    if seen:
        rest = [r for r in result["pairs"] if r["id"] not in seen]
        entry["seen_in_training"] = list(seen)
        entry["note"] = (f"NOT fully held out: these weights were trained on {len(seen)} of the {s['pairs']} pairs "
                         f"({', '.join(seen)}); automatic ignores this score. 'unseen' scores the other pairs. "
                         + entry["note"])
        if rest:
            own, ref = summarise(rest, label), summarise(rest, FILL)
            entry["unseen"] = {"pairs": len(rest), "whole": own["whole"], "mask": own["mask"],
                               "fill": {"whole": ref["whole"], "mask": ref["mask"]}}
    return entry


def fill_card(results: dict) -> dict:
    from topoclear.engine.clouds.methods.fill import FillParameters

    p = FillParameters()
    return {"format": "topoclear-method-card", "format_version": 1, "method": "fill",
            "title": "Fill from the surroundings (GDAL FillNodata)",
            "description": "GDAL FillNodata inside the cloud / shadow mask (inverse-distance weighting of the clear "
                           "pixels a conic search finds within the search distance), whole scenes in windows with a "
                           "halo equal to the search distance (topoclear.engine.clouds.methods); no weights.",
            "weights": None, "parameters": {"distance": p.distance, "smoothing": p.smoothing},
            "metrics": {"held_out": {b: held_out_entry(b, r, FILL) for b, r in results.items()}},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def seen_by_label(weights_dir: Path, results: dict) -> dict:
    """bench -> label -> the benchmark pairs that label's weights were trained on."""
    out = {}
    for bench, result in results.items():
        out[bench] = {}
        for label in result["summary"]:
            path = weights_dir / f"{label}.json"
            if label not in (CLOUDY, FILL) and path.exists():
                out[bench][label] = seen_in_training(json.loads(path.read_text()), result["pairs"])
    return out


def write_cards(weights_dir: Path, results: dict) -> None:
    for card_path in sorted(weights_dir.glob("*.json")):
        if card_path.name == "fill.json":
            continue
        card = json.loads(card_path.read_text())
        entries = {b: held_out_entry(b, r, card_path.stem, seen_in_training(card, r["pairs"]))
                   for b, r in results.items() if card_path.stem in r["summary"]}
        card.setdefault("metrics", {})["held_out"] = finite(entries)
        write_text_atomic(card_path, json.dumps(finite(card), indent=1))
    write_text_atomic(weights_dir / "fill.json", json.dumps(finite(fill_card(results)), indent=1))


def finite(value):
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table(result: dict, automatic: str, seen: dict = None) -> list:
    summary = result["summary"]
    seen = seen or {}
    labels = list(summary)
    n = len(result["pairs"])
    head = ["| method | whole MAE | whole RMSE | whole PSNR | whole SSIM | whole SAM | mask MAE | mask RMSE | mask PSNR | "
            "mask SSIM | mask SAM | beats the fill in the mask | whole within 0.5 dB of the fill |",
            "|---|" + "---|" * 12]
    for label in labels:
        s = summary[label]
        name = f"**{label}** (automatic)" if label == automatic else label
        if seen.get(label):
            name += f" (trained on {', '.join(seen[label])}: not held out)"
        cells = [fmt(s["whole"][k], 4 if k in ("mae", "rmse") else (3 if k == "ssim" else 2)) for k in METRICS]
        cells += [fmt(s["mask"][k], 4 if k in ("mae", "rmse") else (3 if k == "ssim" else 2)) for k in METRICS]
        masked = sum(r["cloud_fraction"] > 0 for r in result["pairs"])
        beats = "-" if label in (FILL,) else f"{s['beats_fill_in_mask']}/{masked}"
        within = "-" if label == FILL else f"{s['within_0_5_db_whole']}/{n}"
        head.append(f"| {name} | " + " | ".join(cells) + f" | {beats} | {within} |")
    lines = head + ["", "Mean PSNR (dB) by group, inside the mask / whole image:", "",
                    "| method | " + " | ".join(f"{g} (n)" for g, _, _ in GROUPS) + " |", "|---|" + "---|" * len(GROUPS)]
    for label in labels:
        cells = []
        for g, _, _ in GROUPS:
            e = summary[label]["groups"].get(g)
            cells.append(f"{fmt(e['mask']['psnr'])} / {fmt(e['whole']['psnr'])} ({e['pairs']})" if e else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Mean PSNR (dB) per 10 % cloud-cover bin, inside the mask / whole image:", ""]
    bins = [b["bin"] for b in summary[FILL]["bins"]]
    counts = {b["bin"]: b["pairs"] for b in summary[FILL]["bins"]}
    lines += ["| method | " + " | ".join(f"{b} (n={counts[b]})" for b in bins) + " |", "|---|" + "---|" * len(bins)]
    for label in labels:
        by = {b["bin"]: b for b in summary[label]["bins"]}
        lines.append(f"| {label} | " + " | ".join(f"{fmt(by[b]['mask']['psnr'])} / {fmt(by[b]['whole']['psnr'])}"
                                                  for b in bins) + " |")
    lines += ["", "Per pair, PSNR inside the mask / whole image (dB):", "",
              "| pair | masked | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for r in result["pairs"]:
        lines.append(f"| {r['id']} | {100 * r['cloud_fraction']:.0f} % | " + " | ".join(
            f"{fmt(r['methods'][l]['mask']['psnr'])} / {fmt(r['methods'][l]['whole']['psnr'])}" for l in labels) + " |")
    return lines + [""]


def run_seconds(results: dict) -> float:
    """The seconds the method runs took, summed over every benchmark, pair and method."""
    return sum(m.get("seconds") or 0.0 for r in results.values() for p in r["pairs"] for m in p["methods"].values())


def markdown(results: dict, automatic: dict, seconds: float, seen: dict = None) -> str:
    from topoclear.engine.clouds.methods.selection import BENCHMARKS

    lines = [HEADING, "",
             "`.venv/bin/python scripts/evaluate_cloud_removal.py --update-results` (after "
             "`scripts/build_training_data.py` and `scripts/train_default_weights.py`; `bash scripts/reproduce_weights.sh` "
             "runs the three).", "",
             "Every method runs through the engine as `topoclear:removeclouds` runs it (keep clear pixels on), with "
             "**the same rule-based cloud / shadow mask** (DSen2-CR cloud score + Zhai shadows, given as a mask raster) "
             "for every method, on data never trained on: the real SEN12MS-CR pairs of the held-out test scenes "
             "(`ROIs1158_spring_39`, DR Congo cumulus with shadows; `ROIs1868_summer_101`, Chile, clear to lightly "
             "cloudy; `ROIs1970_fall_136`, Tatarstan, fully cloudy over snow) and, for the inputs with Sentinel-1 and a "
             "DEM, the two held-out real Terramind S1 + S2 + DEM tiles with real cloud shapes of the test scenes laid "
             "on them. Metrics on the 10 bands B2-B8A, B11, B12 as reflectance in [0, 1], per pair then averaged: MAE, "
             "RMSE (reflectance), PSNR (dB), SSIM, SAM (degrees), whole image and inside the mask. Groups: clear "
             "(under 5 % masked), partly cloudy, fully cloudy (95 % and more). The cloudy and clear images of a real "
             "pair are different dates, so even a perfect method has an error; under a fully cloudy patch nothing of "
             "the ground was observed without Sentinel-1 or another date. Pixels the engine reads as no data (Sentinel-2's DN "
             "0 in a band) come out as no data from every method and count as errors against the reference: the "
             "held-out Terramind tile 637U_59R_1_3 (DN 0 in several bands on most of its pixels) gives every "
             "method a large SAM for that reason; the cloudy-input row reads the file directly and is spared it.", "",
             f"Machine: {describe_machine()}, CPU only, shared with other work; the method runs took "
             f"{run_seconds(results) / 60:.0f} min in all (summed over pairs and methods; this run {seconds:.0f} s, "
             "scores of an earlier run reused with --reuse).", ""]
    for bench, result in results.items():
        n = len(result["pairs"])
        lines += [f"### {BENCHMARKS[bench]} ({n} pairs)", "", automatic.get(bench, ""), ""]
        marks = (seen or {}).get(bench, {})
        if any(marks.values()):
            lines += ["Weights files marked *not held out* were trained (on an earlier data build) on the image of a "
                      "pair of this benchmark; their scores here are not a held-out measure and automatic ignores "
                      "them (their cards also score the other pairs alone, next to the fill on the same pairs).", ""]
        lines += table(result, automatic.get(bench + "_label", ""), marks)
    return "\n".join(lines)


def held_out_lines(card: dict, with_fill: bool = True) -> list:
    out = []
    for bench, e in ((card.get("metrics") or {}).get("held_out") or {}).items():
        if not isinstance(e, dict):
            continue
        w, m = e.get("whole", {}), e.get("mask", {})
        fw, fm = (e.get("fill") or {}).get("whole", {}), (e.get("fill") or {}).get("mask", {})
        line = (f"  - {e.get('title', bench)} ({e.get('pairs')} pairs): PSNR inside the mask **{fmt(m.get('psnr'))} "
                f"dB**, whole image {fmt(w.get('psnr'))} dB; inside the mask MAE {fmt(m.get('mae'), 4)}, RMSE "
                f"{fmt(m.get('rmse'), 4)}, SSIM {fmt(m.get('ssim'), 3)}, SAM {fmt(m.get('sam'))} deg")
        if with_fill and fm:
            line += (f". The fill on the same pairs: {fmt(fm.get('psnr'))} dB inside the mask, {fmt(fw.get('psnr'))} "
                     f"dB whole image (MAE in the mask {fmt(fm.get('mae'), 4)}); beats the fill inside the mask on "
                     f"{e.get('beats_fill_in_mask', '-')} pairs, whole image within 0.5 dB of the fill on "
                     f"{e.get('within_0_5_db_of_fill_whole', '-')}")
        out.append(line)
        if e.get("seen_in_training"):
            u = e.get("unseen") or {}
            out.append(f"    - **not fully held out**: trained on {', '.join(e['seen_in_training'])} (an earlier data "
                       "build), so automatic ignores this score" + (
                           f"; on the {u['pairs']} other pairs: {fmt(u['mask']['psnr'])} dB inside the mask, "
                           f"{fmt(u['whole']['psnr'])} dB whole, against the fill's {fmt(u['fill']['mask']['psnr'])} / "
                           f"{fmt(u['fill']['whole']['psnr'])} dB" if u else ""))
    return out or ["  - no held-out score recorded"]


def cards_markdown(weights_dir: Path, manifest: Path = None) -> str:
    """``models/weights/README.md``: one readable card per shipped method (the JSON cards hold everything)."""
    current = ({s["id"] for s in json.loads(manifest.read_text())["samples"]}
               if manifest and manifest.exists() else None)
    lines = ["# Shipped cloud-removal weights", "",
             "Written by `scripts/evaluate_cloud_removal.py` from the JSON cards beside each weights file (and the "
             "fill's card `fill.json`, which has no weights). `bash scripts/reproduce_weights.sh` rebuilds the data, "
             "the default weights and every number (seeded; CPU training threads are not bit-deterministic, so a "
             "rerun matches to run-to-run noise). The held-out scores are what the Automatic method compares.", ""]
    fill = json.loads((weights_dir / "fill.json").read_text()) if (weights_dir / "fill.json").exists() else None
    if fill:
        lines += ["## `fill.json` (no weights)", "", f"- Method: {fill['description']}",
                  f"- Parameters: {fill['parameters']}.", "- Held-out (real data never trained on):"]
        lines += held_out_lines(fill, with_fill=False) + [""]
    for card_path in sorted(weights_dir.glob("*.json")):
        if card_path.name == "fill.json" or not card_path.with_suffix(".safetensors").exists():
            continue
        card = json.loads(card_path.read_text())
        arch, tr, metrics_ = card["architecture"], card["training"], card.get("metrics", {})
        train = tr["data"].get("train", {})
        val = metrics_.get("validation", {})
        hp = tr["hyperparameters"]
        lines += [f"## `{card_path.stem}.safetensors`", "",
                  f"- Architecture: {arch['title'].split(' (')[0]} ({arch['class']}), options {arch['options']}, "
                  f"{arch['parameters']:,} parameters; inputs {arch['input_layout']['inputs']}"
                  f"{' + the fill and its mask' if 'fill' in arch['model'] else ''}, S2 bands "
                  f"{', '.join(arch['input_layout']['s2'])}, S1 {', '.join(arch['input_layout']['s1']) or 'none'}, "
                  f"terrain {', '.join(arch['input_layout']['terrain']) or 'none'}; weights stored as "
                  f"{card['weights'].get('dtype', 'float32')}.",
                  f"- Trained on: {train.get('samples')} training samples "
                  f"({', '.join(f'{k}: {v}' for k, v in train.get('sources', {}).items())})"
                  + (" of an earlier build of the data (its sample ids are not those of the current "
                     "build/training-data)" if current is not None and not set(train.get("sample_ids", [])) <= current
                     else " of build/training-data") + f", random {hp['patch_size']} px crops with flips and "
                  "90-degree rotations.",
                  f"- Training: {tr['steps']} steps of batch {hp['batch_size']} ({tr['epochs']} epochs), loss "
                  f"{hp['loss']}, {hp['optimizer']} lr {hp['lr']}, seed {hp['seed']}; {tr['training_time_s'] / 60:.1f} "
                  f"min on {tr.get('hardware', tr.get('device'))}"
                  + (f"; the weights of epoch {tr['selected_epoch']['epoch']} are kept (best validation)"
                     if isinstance(tr.get("selected_epoch"), dict) and "epoch" in tr["selected_epoch"] else "") + ".",
                  f"- Validation (last epoch): MAE {fmt(val.get('mae'), 4)}, PSNR {fmt(val.get('psnr'))} dB, SSIM "
                  f"{fmt(val.get('ssim'), 3)}, SAM {fmt(val.get('sam'))} deg.",
                  "- Held-out scores (real data of scenes held out of the current data build), next to the fill's:"]
        lines += held_out_lines(card) + ["", card.get("description", ""), ""]
    return "\n".join(lines)


def update_results(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + ([""] if end < len(lines) else [])
                        + lines[end:]) + "\n"
    write_text_atomic(path, new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "build" / "training-data" / "manifest.json")
    parser.add_argument("--weights", type=Path, default=REPO / "models" / "weights", help="folder of weights + cards")
    parser.add_argument("--json", type=Path, default=REPO / "build" / "evaluation.json")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--update-results", action="store_true")
    parser.add_argument("--no-cards", action="store_true", help="do not write the scores into the cards")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier --json output: keep its scores, run only the (pair, method) it lacks")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pairs of each benchmark (a check)")
    parser.add_argument("--methods", default="", help="only these methods (comma-separated labels; a check)")
    parser.add_argument("--benchmarks", default="real_s2,real_s1_dem",
                        help="which benchmarks to run (comma-separated; the others are kept from --reuse)")
    args = parser.parse_args(argv)
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="topoclear-eval-", dir=str(REPO / "build")))
    results = {}
    previous = json.loads(args.reuse.read_text()) if args.reuse and args.reuse.exists() else None
    for bench, items in pairs(args.manifest, work).items():
        if bench not in args.benchmarks.split(","):
            if previous and bench in previous:
                results[bench] = previous[bench]
            continue
        items = items[:args.limit] if args.limit else items
        methods = candidates(args.weights, bench)
        if args.methods:
            methods = {k: v for k, v in methods.items() if k in args.methods.split(",") or k in (CLOUDY, FILL)}
        print(f"{bench}: {len(items)} pairs, methods {', '.join(methods)}", flush=True)
        results[bench] = evaluate(bench, items, methods, work, print, previous,
                                  lambda partial: args.json.write_text(json.dumps(finite({**results, bench: partial}),
                                                                                  indent=1)))
    args.json.write_text(json.dumps(finite(results), indent=1))
    if not args.no_cards:
        write_cards(args.weights, results)
        write_text_atomic(args.weights / "README.md", cards_markdown(args.weights, args.manifest))
    from topoclear.engine.clouds.methods.selection import choose_automatic

    automatic = {}
    for bench, (has_s1, has_dem) in (("real_s2", (False, False)), ("real_s1_dem", (True, True))):
        choice = choose_automatic(has_s1, has_dem)
        automatic[bench] = " ".join(choice.notes)
        automatic[bench + "_label"] = Path(choice.weights).stem if choice.weights else FILL
        print(automatic[bench])
    section = markdown(results, automatic, time.time() - t0, seen_by_label(args.weights, results))
    if args.update_results:
        update_results(args.results, section)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
