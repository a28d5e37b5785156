"""The automatic choice: for the inputs given, the method with the best held-out score in the shipped cards.

Every shipped card (the fill's ``models/weights/fill.json``, each network weights file's JSON
card) records, under ``metrics.held_out``, its scores on the held-out benchmarks that
``scripts/evaluate_cloud_removal.py`` runs (:data:`BENCHMARKS`): real test scenes never trained
on, scored whole-image and inside the cloud / shadow mask. For a run's inputs,
:func:`choose_automatic`

1. takes the benchmark of the input set (:func:`benchmark_for`): Sentinel-2 alone (with or
   without a DEM) -> the real SEN12MS-CR pairs of the held-out scenes; with Sentinel-1 -> the
   real Sentinel-1 + Sentinel-2 + DEM tiles held out, with real cloud shapes;
2. lists the candidates that can run on those inputs: the fill and every shipped weights file
   whose inputs are given (an optical-only file also runs when Sentinel-1 is there);
3. keeps those whose mean whole-image PSNR on the benchmark is at most
   :data:`WHOLE_IMAGE_TOLERANCE_DB` below the fill's, and picks the best mean PSNR inside the mask
   (the fill wins ties and whenever a card has no score for the benchmark); a card whose entry lists
   pairs its weights were trained on (``seen_in_training``: an earlier data build had them in its
   training split) has no held-out score there and is left out;
4. says which it picked and why: every candidate's score, in the log.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

__all__ = ["BENCHMARKS", "SELECTION_METRIC", "WHOLE_IMAGE_TOLERANCE_DB", "benchmark_for", "Candidate",
           "AutomaticChoice", "candidates", "choose_automatic", "fill_card"]

#: Held-out benchmarks: key -> what it is (the keys of ``metrics.held_out`` in the cards).
BENCHMARKS = {
    "real_s2": "real SEN12MS-CR pairs of held-out scenes (Sentinel-2 only, real clouds)",
    "real_s1_dem": "real Sentinel-1 + Sentinel-2 + DEM tiles held out, with real cloud shapes",
}
#: The score compared: mean over the benchmark's pairs of the PSNR (dB) inside the cloud / shadow mask.
SELECTION_METRIC = ("mask", "psnr")
#: A candidate may not score more than this below the fill on the whole image (mean PSNR, dB).
WHOLE_IMAGE_TOLERANCE_DB = 0.5


def benchmark_for(has_s1: bool, has_dem: bool) -> str:
    """The benchmark key of an input set (see the module notes)."""
    return "real_s1_dem" if has_s1 else "real_s2"


def input_set(has_s1: bool, has_dem: bool) -> str:
    return "Sentinel-2" + (" + Sentinel-1" if has_s1 else "") + (" + DEM" if has_dem else "")


def fill_card() -> Optional[dict]:
    """The fill's card (``models/weights/fill.json``), or None when missing or unreadable."""
    from ..weights import WEIGHTS_DIR

    path = os.path.join(WEIGHTS_DIR, "fill.json")
    try:
        with open(path, encoding="utf-8") as handle:
            card = json.load(handle)
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


@dataclass
class Candidate:
    """One method that can run: its key, its weights (None for the fill), its title and scores."""

    method: str
    weights: Optional[str]
    title: str
    mask_psnr: Optional[float]
    whole_psnr: Optional[float]
    pairs: int = 0
    seen: Tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return os.path.basename(self.weights).replace(".safetensors", "") if self.weights else self.method


def _scores(card: Optional[dict], benchmark: str) -> Tuple[Optional[float], Optional[float], int, Tuple[str, ...]]:
    entry = (((card or {}).get("metrics") or {}).get("held_out") or {}).get(benchmark)
    if not isinstance(entry, dict):
        return None, None, 0, ()
    seen = tuple(str(p) for p in (entry.get("seen_in_training") or ()))
    try:
        mask = float(entry[SELECTION_METRIC[0]][SELECTION_METRIC[1]])
        whole = float(entry["whole"]["psnr"])
    except (KeyError, TypeError, ValueError):
        return None, None, 0, seen
    if seen:  # trained on pairs of the benchmark: not a held-out score
        return None, None, int(entry.get("pairs", 0) or 0), seen
    return mask, whole, int(entry.get("pairs", 0) or 0), ()


def candidates(has_s1: bool, has_dem: bool) -> List[Candidate]:
    """The fill and every shipped weights file that can run on the inputs, with their benchmark scores."""
    from ... import checkpoints
    from ...errors import InputError
    from ....models.registry import removal_models
    from ..weights import shipped_weights_of
    from .catalogue import FILL

    bench = benchmark_for(has_s1, has_dem)
    out = [Candidate(FILL.key, None, FILL.title, *_scores(fill_card(), bench))]
    for spec in removal_models():
        try:
            shipped = shipped_weights_of(spec.name)
        except InputError:
            continue
        for w in shipped:
            if (w.s1 and not has_s1) or (w.terrain and not has_dem):
                continue
            try:
                card = checkpoints.read_card(w.path)
            except InputError:
                continue
            title = spec.short_title + ("" if w.s1 or not spec.needs_s1 else " (optical-only)")
            out.append(Candidate(spec.name, w.path, title, *_scores(card, bench)))
    return out


@dataclass
class AutomaticChoice:
    """What automatic runs and why."""

    method: str
    weights: Optional[str]
    title: str
    notes: List[str] = field(default_factory=list)
    candidates: List[Candidate] = field(default_factory=list)


def choose_automatic(has_s1: bool, has_dem: bool) -> AutomaticChoice:
    """The method automatic runs for these inputs (module notes), with the notes for the log."""
    bench = benchmark_for(has_s1, has_dem)
    found = candidates(has_s1, has_dem)
    fill = found[0]
    scored = [c for c in found if c.mask_psnr is not None and c.whole_psnr is not None]
    eligible = [c for c in scored if c is fill or fill.whole_psnr is None
                or c.whole_psnr >= fill.whole_psnr - WHOLE_IMAGE_TOLERANCE_DB]
    best = fill
    for c in eligible:
        if c is not fill and (best.mask_psnr is None or c.mask_psnr > best.mask_psnr):
            best = c
    head = f"Automatic method for {input_set(has_s1, has_dem)}: "
    if fill.mask_psnr is None:
        return AutomaticChoice(fill.method, None, fill.title, [
            head + "the fill's card (models/weights/fill.json) has no held-out score for this input set; running the "
                   "fill from the surroundings, which needs nothing but a cloud mask"], found)
    table = ", ".join(f"{c.label} {c.mask_psnr:.2f} dB" + ("" if c in eligible else
                                                           f" (whole image {c.whole_psnr:.2f} dB, more than "
                                                           f"{WHOLE_IMAGE_TOLERANCE_DB} dB below the fill: left out)")
                      for c in sorted(scored, key=lambda c: -c.mask_psnr))
    unscored = [c.label + (f" (trained on {', '.join(c.seen)}: not a held-out score)" if c.seen else "")
                for c in found if c not in scored]
    why = (f"the best mean PSNR inside the cloud mask on {BENCHMARKS[bench]} ({fill.pairs} pairs): {table}"
           + (f"; not scored there: {', '.join(unscored)}" if unscored else ""))
    if best is fill:
        note = head + f"the fill from the surroundings, {why}. No network beats the fill for these inputs."
    else:
        note = (head + f"{best.title} ({os.path.basename(best.weights)}), {why}: "
                f"{best.mask_psnr - fill.mask_psnr:+.2f} dB over the fill inside the mask")
    return AutomaticChoice(best.method, best.weights, best.title, [note], found)
