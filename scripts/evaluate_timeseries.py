#!/usr/bin/env python3
"""Held-out evaluation of multi-temporal cloud removal on the real SEN12MS-CR-TS series near Rome.

    .venv/bin/python scripts/evaluate_timeseries.py --results  # tables, the cards and RESULTS.md
    # or in parallel parts, then merged:
    .venv/bin/python scripts/evaluate_timeseries.py --targets 2018-07-20 --raw build/ts_a.json  # (one per target)
    .venv/bin/python scripts/evaluate_timeseries.py --merge build/ts_*.json --results

**Samples.** The targets are the clear dates of the held-out last months (July, August and
November 2018: never trained on; 07-20, 07-30, 08-09 and 08-24 are clear, 07-05 partly cloudy,
11-02 overcast). Each gets the real cloud shape of a cloudy date (07-05, 01-21 and 03-07), the
cloudy date's own values copied inside it (real cloud radiance), and is cleared with other dates of
the series, each with its own real clouds (masks of the mask engine, automatic method). The
truth is the clear target.

* **by number of other dates** (1, 2, 4, all 20): the nearest dates in time, whatever their clouds;
* **by temporal distance**: one clear other date from each distance bin.

**Methods**: the time-series fill (:mod:`topoclear.engine.clouds.timeseries_fill`, defaults),
CA-MTCR with the shipped optical-only weights (``ca_mtcr_nosar``; whole 256 px patch, every date),
the single-image fill (:mod:`topoclear.engine.clouds.methods.fill`) and the shipped single-image
networks that read Sentinel-2 alone (clear pixels kept for all). Metrics on reflectance in [0, 1]
over the network's 10 bands (B2-B8A, B11, B12): PSNR (dB), SSIM, SAM (degrees) and MAE, inside the
cloud mask and over the whole image.

Writes ``metrics.held_out["real_series"]`` into the CA-MTCR card (its rows hold every method scored,
the time-series fill and the single-image ones included), the tables to ``build/timeseries_eval.json`` and the
section "## Multi-temporal cloud removal" of ``benchmarks/RESULTS.md`` (with ``--results``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

import numpy as np  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WEIGHTS = REPO / "models" / "weights"
HELD_OUT_TARGETS = ("2018-07-20", "2018-07-30", "2018-08-09", "2018-08-24")
SHAPES = ("2018-07-05", "2018-01-21", "2018-03-07")
COUNTS = (1, 2, 4, "all")
BINS = ((1, 15), (16, 30), (31, 60), (61, 120), (121, 365))
PAPER = {"psnr": 31.79, "ssim": 0.903, "sam": 5.18, "mae": 0.019,
         "source": "You et al. 2026 (seed 003), Table 1: SEN12MS-CR-TS test split, 13 bands, two auxiliary dates, "
                   "S2 + S1, trained on 10176 samples on GPUs"}
SECTION = "## Multi-temporal cloud removal"


def metrics(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    import torch

    from topoclear.models.metrics import mae, psnr, sam, ssim, ssim_map

    p, t = np.clip(pred, 0, 1).astype(np.float64), np.clip(truth, 0, 1).astype(np.float64)
    out = {"whole": {"psnr": float(psnr(p, t)), "ssim": float(ssim(p, t)), "sam": float(sam(p, t)),
                     "mae": float(mae(p, t))}}
    smap = ssim_map(torch.from_numpy(p)[None], torch.from_numpy(t)[None]).numpy()[0].mean(axis=0)
    crop = (mask.shape[0] - smap.shape[0]) // 2
    inner = mask[crop:crop + smap.shape[0], crop:crop + smap.shape[1]]
    out["mask"] = {"psnr": float(psnr(p, t, mask)), "ssim": float(smap[inner].mean()) if inner.any() else math.nan,
                   "sam": float(sam(p, t, mask)), "mae": float(mae(p, t, mask))}
    return out


def mean(rows):
    out = {}
    for region in ("whole", "mask"):
        out[region] = {k: float(np.nanmean([r[region][k] for r in rows])) for k in rows[0][region]}
    out["pairs"] = len(rows)
    return out


def load_series(cache: Path):
    from topoclear.engine.training.series_data import SERIES_BANDS, date_of, image_mask, read_image

    series = {}
    for path in sorted((DATA / "sen12ms-cr-ts").glob("s2_*.tif")):
        mask, method = image_mask(path, "auto", cache)
        img = read_image(path, SERIES_BANDS)
        series[str(date_of(path.name))] = (img, mask | ~np.isfinite(img).all(axis=0), method)
    return series


def single_image_networks():
    """(name, model) of the shipped single-image networks that read Sentinel-2 alone (no prior input)."""
    from topoclear.engine import checkpoints
    from topoclear.engine.clouds.weights import shipped_weights_of
    from topoclear.models.registry import removal_models

    out = []
    for spec in removal_models():
        if getattr(spec, "prior", None):
            continue
        try:
            shipped = shipped_weights_of(spec.name)
        except Exception:  # noqa: BLE001 - an unreadable card is left out
            continue
        for w in shipped:
            if w.s1 or w.terrain:
                continue
            model, _ = checkpoints.load_model(w.path)
            if tuple(model.input_layout.inputs) == ("s2",):
                out.append((w.name.replace(".safetensors", ""), model))
    return out


def predict_single(model, cloudy: np.ndarray, mask: np.ndarray, bands) -> np.ndarray:
    import torch

    from topoclear.models.registry import get_spec
    from topoclear.models.scaling import scale_s2, unscale_s2

    spec = get_spec(model.spec_name)
    idx = [list(bands).index(b) for b in model.input_layout.s2]
    x = scale_s2(cloudy[idx] * 10000.0, spec.scaling).astype(np.float32)
    h, w = x.shape[1:]
    m = max(1, spec.size_multiple)
    x = np.pad(x, ((0, 0), (0, -h % m), (0, -w % m)), mode="reflect")
    with torch.no_grad():
        y = model(s2=torch.from_numpy(x)[None])[0, :, :h, :w].numpy()
    pred = cloudy.copy()
    out = np.clip(unscale_s2(y, spec.scaling) / 10000.0, 0, 1)
    for k, b in enumerate(model.input_layout.output):
        pred[list(bands).index(b)] = out[k]
    return np.where(mask[None], pred, cloudy)


GROUPS = ("timeseries_fill", "ca_mtcr", "single")


def run(args) -> dict:
    """The raw scores: one row per sample, table row and method (``tabulate`` makes the tables)."""
    import torch

    from topoclear.engine import checkpoints
    from topoclear.engine.clouds.methods.fill import fill_block
    from topoclear.engine.clouds.timeseries_fill import Acquisition, timeseries_fill
    from topoclear.engine.training.series_data import SERIES_BANDS

    torch.set_num_threads(args.threads)
    want = set(args.methods.split(",")) if args.methods else set(GROUPS)
    targets = args.targets.split(",") if args.targets else HELD_OUT_TARGETS
    series = load_series(REPO / "build" / "ca_mtcr" / "masks")
    dates = sorted(series)
    ca_path = Path(args.weights) if args.weights else WEIGHTS / "ca_mtcr_nosar.safetensors"
    ca_model = None
    if "ca_mtcr" in want and ca_path.is_file():
        ca_model = checkpoints.load_model(ca_path, expect_model="ca_mtcr")[0]
    singles = single_image_networks() if "single" in want else []
    print("single-image networks:", [n for n, _ in singles], flush=True)

    single_cache = {}

    def single_image(cloudy, tmask, key):
        """The single-image methods (they do not read the other dates: computed once per sample)."""
        if key not in single_cache:
            out = {"fill": fill_block(cloudy, tmask, np.ones(tmask.shape, bool))[0]}
            for name, model in singles:
                out[name] = predict_single(model, cloudy, tmask, SERIES_BANDS)
            single_cache.clear()
            single_cache[key] = out
        return single_cache[key]

    def methods(cloudy, tmask, target_date, aux_dates, key):
        out = {}
        if "timeseries_fill" in want:
            aux = [Acquisition(series[d][0], series[d][1], d) for d in aux_dates]
            out["timeseries_fill"] = timeseries_fill(cloudy, tmask, target_date, aux).image
        if ca_model is not None:
            order = sorted(aux_dates)
            s2 = np.stack([np.nan_to_num(series[d][0]) for d in order] + [cloudy]).clip(0, 1)[None]
            m = np.stack([series[d][1] for d in order] + [tmask])[None, :, None].astype(np.float32)
            with torch.no_grad():
                y = ca_model(torch.from_numpy(s2.astype(np.float32)), mask=torch.from_numpy(m))[0].numpy()
            out["ca_mtcr"] = np.where(tmask[None], np.clip(y, 0, 1), cloudy)
        if "single" in want:
            out.update(single_image(cloudy, tmask, key))
        return out

    raw, samples = [], []
    t0 = time.perf_counter()
    for target in targets:
        truth, own, _ = series[target]
        tday = dt.date.fromisoformat(target)
        others = [d for d in dates if d != target]
        by_distance = sorted(others, key=lambda d: (abs((dt.date.fromisoformat(d) - tday).days), d))
        for shape in SHAPES:
            img, smask, _ = series[shape]
            cloudy = np.nan_to_num(truth).copy()
            inside = smask & np.isfinite(img).all(axis=0)
            cloudy[:, inside] = img[:, inside]
            tmask = inside
            samples.append({"target": target, "shape": shape, "cloud_fraction": float(tmask.mean())})
            for k in COUNTS:
                aux = by_distance if k == "all" else by_distance[:k]
                for name, pred in methods(cloudy, tmask, target, aux, (target, shape)).items():
                    raw.append({"target": target, "shape": shape, "table": "by_auxiliary_dates", "row": str(k),
                                "method": name, "scores": metrics(pred, truth, tmask)})
            for a, b in BINS:
                clear = [d for d in by_distance if a <= abs((dt.date.fromisoformat(d) - tday).days) <= b
                         and series[d][1].mean() <= 0.01]
                if not clear:
                    continue
                for name, pred in methods(cloudy, tmask, target, clear[:1], (target, shape)).items():
                    raw.append({"target": target, "shape": shape, "table": "by_temporal_distance", "row": f"{a}-{b}",
                                "method": name, "scores": metrics(pred, truth, tmask)})
            print(f"{target} + {shape} cloud ({tmask.mean():.1%}) done, {time.perf_counter() - t0:.0f} s", flush=True)
    return {"raw": raw, "samples": samples, "singles": [n for n, _ in singles],
            "seconds": round(time.perf_counter() - t0, 1),
            "weights": str(ca_path.name) if ca_model is not None else None}


def merge(parts) -> dict:
    """One raw set from several runs (later runs replace the same sample, row and method)."""
    rows, samples, singles, seconds, weights = {}, {}, [], 0.0, None
    for part in parts:
        for r in part["raw"]:
            rows[(r["target"], r["shape"], r["table"], r["row"], r["method"])] = r
        for s in part["samples"]:
            samples[(s["target"], s["shape"])] = s
        singles += [n for n in part["singles"] if n not in singles]
        seconds += float(part["seconds"])
        weights = part.get("weights") or weights
    return {"raw": list(rows.values()), "samples": list(samples.values()), "singles": singles, "seconds": seconds,
            "weights": weights}


def tabulate(raw: dict) -> dict:
    """The tables (means over the samples) of a raw set."""
    order = {"by_auxiliary_dates": [str(k) for k in COUNTS], "by_temporal_distance": [f"{a}-{b}" for a, b in BINS]}
    table = {}
    for name, keys in order.items():
        grouped = {}
        for r in raw["raw"]:
            if r["table"] == name:
                grouped.setdefault(r["row"], {}).setdefault(r["method"], []).append(r["scores"])
        table[name] = {k: {m: mean(v) for m, v in grouped[k].items()} for k in keys if k in grouped}
    for k in COUNTS:
        if str(k) in table["by_auxiliary_dates"]:
            table["by_auxiliary_dates"][str(k)]["auxiliary_dates"] = 20 if k == "all" else k
    table.update({"samples": raw["samples"], "seconds": raw["seconds"], "singles": raw["singles"],
                  "ca_mtcr_weights": raw.get("weights")})
    return table


def held_out_entry(table: dict, method: str) -> dict:
    rows = table["by_auxiliary_dates"]
    entry = dict(rows["all"][method]) if method in rows["all"] else {}
    entry.update({
        "description": "clear held-out dates of the real SEN12MS-CR-TS series near Rome (07-20, 07-30, 08-09, 08-24 "
                       "2018, never trained on) with the real cloud shapes and cloudy values of 07-05, 01-21 and 03-07 "
                       "transplanted; other dates of the series with their own clouds; 10 bands B2-B8A, B11, B12; "
                       "clear pixels kept; scripts/evaluate_timeseries.py",
        "by_auxiliary_dates": rows,
        "by_temporal_distance": table["by_temporal_distance"],
        "samples": table["samples"], "paper_for_scale": PAPER, "ca_mtcr_weights_scored": table.get("ca_mtcr_weights"),
    })
    return entry


def write_cards(table: dict) -> None:
    from topoclear.engine.io.atomic import write_text_atomic
    from topoclear.engine.clouds.timeseries_methods import BENCHMARK

    ca_card = WEIGHTS / "ca_mtcr_nosar.json"
    if ca_card.is_file():
        card = json.loads(ca_card.read_text())
        card.setdefault("metrics", {}).setdefault("held_out", {})[BENCHMARK] = held_out_entry(table, "ca_mtcr")
        write_text_atomic(ca_card, json.dumps(card, indent=1, allow_nan=False))


NAMES = {"timeseries_fill": "time-series fill", "ca_mtcr": "CA-MTCR (compact, optical-only, CPU-trained)",
         "fill": "single-image fill (GDAL FillNodata)"}


def markdown(table: dict) -> str:
    rows = table["by_auxiliary_dates"]
    methods = [m for m in ("timeseries_fill", "ca_mtcr", "fill") if m in rows["all"]] + \
        [m for m in table["singles"] if m in rows["all"]]
    lines = [SECTION, "",
             "Held-out evaluation (`scripts/evaluate_timeseries.py`) on the **real** SEN12MS-CR-TS series near Rome: "
             "the clear dates of the last months (2018-07-20, 07-30, 08-09, 08-24; July, August and November were "
             "never trained on) each get the real cloud shape of a cloudy date (07-05, 01-21, 03-07) with that date's "
             "own cloudy values, and are cleared with other dates of the series (their own real clouds, masks by the "
             "mask engine's detector): "
             f"{len(table['samples'])} samples, cloud cover {100 * min(s['cloud_fraction'] for s in table['samples']):.0f}-"
             f"{100 * max(s['cloud_fraction'] for s in table['samples']):.0f} %. Reflectance in [0, 1] over 10 bands "
             "(B2-B8A, B11, B12); clear pixels kept by every method; PSNR dB, SAM degrees. CA-MTCR: the weights "
             f"`{table.get('ca_mtcr_weights')}` over the whole 256 px patch with every date given.", ""]
    for title, key in (("By number of other dates (the nearest in time, whatever their clouds)", "by_auxiliary_dates"),
                       ("By temporal distance (one clear other date in the distance bin, days)",
                        "by_temporal_distance")):
        lines += [f"**{title}**", "",
                  "| other dates | method | PSNR mask | SSIM mask | SAM mask | MAE mask | PSNR whole | SSIM whole | "
                  "SAM whole | MAE whole | samples |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row, entries in table[key].items():
            for m in methods:
                if m not in entries:
                    continue
                e = entries[m]
                lines.append(f"| {row} | {NAMES.get(m, m)} | {e['mask']['psnr']:.2f} | {e['mask']['ssim']:.3f} | "
                             f"{e['mask']['sam']:.2f} | {e['mask']['mae']:.4f} | {e['whole']['psnr']:.2f} | "
                             f"{e['whole']['ssim']:.3f} | {e['whole']['sam']:.2f} | {e['whole']['mae']:.4f} | "
                             f"{e['pairs']} |")
        lines.append("")
    lines += summary(table, methods)
    lines += [f"For scale, the paper (seed 003, Table 1): CA-MTCR on the SEN12MS-CR-TS test split, whole image, 13 "
              f"bands, S2 + S1, two auxiliary dates: PSNR {PAPER['psnr']} dB, SSIM {PAPER['ssim']}, SAM {PAPER['sam']} "
              f"deg, MAE {PAPER['mae']} (trained on 10176 samples on two GPUs; not the same samples: one patch, "
              "one region here).", ""]
    return "\n".join(lines)


def summary(table: dict, methods) -> list:
    """Plain lines: who wins where, the best single-image method, what automatic picks."""
    singles = [m for m in methods if m not in ("timeseries_fill", "ca_mtcr")]
    rows = table["by_auxiliary_dates"]
    best_single = max(singles, key=lambda m: rows["all"][m]["mask"]["psnr"]) if singles else None
    lines = ["**Who wins where** (PSNR; the best single-image method on these samples is "
             f"{NAMES.get(best_single, best_single)}):", ""]
    for key, label in (("by_auxiliary_dates", "other dates"), ("by_temporal_distance", "days away")):
        for row, entries in table[key].items():
            parts = []
            for region, name in (("mask", "inside the mask"), ("whole", "whole image")):
                scored = {m: entries[m][region]["psnr"] for m in methods if m in entries}
                win = max(scored, key=scored.get)
                parts.append(f"{name} {NAMES.get(win, win)} {scored[win]:.2f} dB")
            lines.append(f"- {row} {label}: " + "; ".join(parts))
    fills = {round(e["timeseries_fill"]["mask"]["psnr"], 3) for e in rows.values() if "timeseries_fill" in e}
    if len(fills) == 1:
        lines.append("- the time-series fill takes each cloudy pixel from the nearest date on which it is clear: the "
                     "nearest date of every target here is clear, so more dates change nothing; farther dates "
                     "(the distance rows) cost it accuracy as the ground changes")
    lines.append("")
    picks = []
    for row, entries in rows.items():
        scored = {m: entries[m]["mask"]["psnr"] for m in ("timeseries_fill", "ca_mtcr") if m in entries}
        if scored:
            win = max(scored, key=scored.get)
            picks.append(f"{row}: {NAMES.get(win, win)}")
    lines += ["**What *Automatic* picks** (`topoclear:removeclouds_timeseries`, from these scores in the cards: the "
              "higher PSNR inside the mask of the time-series fill and CA-MTCR, in the row nearest to the number of "
              "other dates given): " + "; ".join(picks) + ".", "",
              "There is **no real Sentinel-1 time series** in the sample data: every figure here is of Sentinel-2 "
              "alone, CA-MTCR is its optical-only variant (the SAR branch is untrained), and the paper's change "
              "detection from Sentinel-1 is not measured.", ""]
    return lines


def update_results(text: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    old = path.read_text() if path.is_file() else ""
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        end = old.find("\n### Whole scenes", start)  # the benchmark subsection is kept
        cut = end if end >= 0 and (nxt < 0 or end < nxt) else nxt
        new = old[:start] + text.rstrip() + ("\n" + old[cut:] if cut >= 0 else "\n")
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", action="store_true", help="rewrite the section of benchmarks/RESULTS.md")
    ap.add_argument("--no-cards", action="store_true")
    ap.add_argument("--weights", help="CA-MTCR weights to score (default: the shipped ca_mtcr_nosar); use with --no-cards")
    ap.add_argument("--json", default=str(REPO / "build" / "timeseries_eval.json"), help="where the tables go")
    ap.add_argument("--targets", help="comma-separated held-out target dates (default: all of them)")
    ap.add_argument("--methods", help=f"comma-separated groups of {', '.join(GROUPS)} (default: all)")
    ap.add_argument("--raw", help="write the raw scores there and stop (run parts in parallel, then --merge)")
    ap.add_argument("--merge", nargs="+", help="tabulate raw score files of earlier runs instead of running "
                                               "(later files replace the same sample, row and method)")
    args = ap.parse_args()
    if args.merge:
        raw = merge(json.loads(Path(f).read_text()) for f in args.merge)
    else:
        raw = run(args)
        if args.raw:
            Path(args.raw).write_text(json.dumps(raw))
            print(f"raw scores: {args.raw} ({len(raw['raw'])} rows, {raw['seconds']:.0f} s)")
            return
    table = tabulate(raw)
    out = Path(args.json)
    out.write_text(json.dumps(table, indent=1))
    text = markdown(table)
    print(text)
    if not args.no_cards:
        write_cards(table)
    if args.results:
        update_results(text)


if __name__ == "__main__":
    main()
