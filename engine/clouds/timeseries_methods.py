"""The multi-temporal cloud-removal methods a user can choose, and the automatic choice between them.

* ``"timeseries_fill"``: the radiometrically matched time-series fill (:mod:`.timeseries_fill`):
  each cloudy pixel from the nearest date on which it is clear, matched to the target by robust
  local linear fits, borders feathered; pixels clear on no date get the single-image fill.
* ``"ca_mtcr"``: the CA-MTCR network (seed 003, :mod:`topoclear.models.ca_mtcr`) over the whole
  scene in tiles, with every date (the optical-only variant without Sentinel-1).
* ``"automatic"`` (default): the method with the best **held-out** score recorded in the shipped
  CA-MTCR model card for the inputs given (with or without Sentinel-1; the number of other dates):
  PSNR inside the cloud mask (:data:`SCORE`) on the held-out dates of the real series
  (``metrics.held_out["real_series"]["by_auxiliary_dates"]``, the row nearest to the number of other
  dates given), where the card also records the time-series fill and the single-image fill on the
  same samples (written by ``scripts/evaluate_timeseries.py``). Without such a card (no
  weights shipped for the inputs), the time-series fill. The log says which and why.

New methods are appended at the end of :data:`SERIES_METHODS` (Processing enums are stored by index).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import InputError

__all__ = ["SeriesMethod", "AUTOMATIC", "TIMESERIES_FILL", "CA_MTCR", "SERIES_METHODS", "SCORE", "BENCHMARK",
           "series_method",
           "series_cards", "choose_series_method", "MethodChoice"]

#: The score automatic compares (higher is better): PSNR (dB) inside the cloud / shadow mask.
SCORE = ("mask", "psnr")
#: The held-out benchmark of the cards (key of ``metrics.held_out``): clear held-out dates of the real
#: SEN12MS-CR-TS series with real cloud shapes transplanted, scored against the clear truth.
BENCHMARK = "real_series"
#: Names of the methods in the cards' ``metrics.test`` tables.
CARD_KEYS = {"timeseries_fill": "timeseries_fill", "ca_mtcr": "ca_mtcr"}


@dataclass(frozen=True)
class SeriesMethod:
    """One way to remove clouds from a target date with other dates; ``network``: its registry model."""

    key: str
    title: str
    description: str
    network: Optional[str] = None


AUTOMATIC = SeriesMethod(
    "automatic", "Automatic (best held-out score)",
    "the method with the best held-out score in the shipped model cards for the inputs given (the time-series "
    "fill where no network weights are shipped for them); the log says which and why")
TIMESERIES_FILL = SeriesMethod(
    "timeseries_fill", "Time-series fill (radiometrically matched)",
    "each cloudy pixel from the nearest date on which it is clear, matched to the target by robust local linear "
    "fits, seams feathered; pixels clear on no date get the single-image fill")
CA_MTCR = SeriesMethod(
    "ca_mtcr", "CA-MTCR network (S2 + S1 time series)",
    "change-aware multi-temporal network (You et al. 2026) over the whole scene in tiles, every date at once; "
    "optical-only without Sentinel-1 (the shipped weights are optical-only)", network="ca_mtcr")
#: Every method, in menu order (new ones at the end).
SERIES_METHODS: Tuple[SeriesMethod, ...] = (AUTOMATIC, TIMESERIES_FILL, CA_MTCR)


def series_method(key: Optional[str]) -> SeriesMethod:
    text = (key or AUTOMATIC.key).strip().lower().replace("-", "_")
    for m in SERIES_METHODS:
        if text in (m.key, m.title.lower()) or (text == "auto" and m is AUTOMATIC):
            return m
    raise InputError(f"multi-temporal method {key!r} is not one of {', '.join(m.key for m in SERIES_METHODS)}")


def series_cards(with_s1: bool) -> List[Tuple[str, dict]]:
    """(weights path, card) of the shipped CA-MTCR weights for a run with (or without) Sentinel-1."""
    from .. import checkpoints
    from .weights import WEIGHTS_DIR

    try:
        from ...models.registry import get_spec

        names = list(get_spec("ca_mtcr").weights)
    except Exception:  # noqa: BLE001 - the catalogue is readable without it
        names = []
    if not names and os.path.isdir(WEIGHTS_DIR):
        names = sorted(n for n in os.listdir(WEIGHTS_DIR) if n.startswith("ca_mtcr") and n.endswith(".safetensors"))
    out = []
    for name in names:
        path = os.path.join(WEIGHTS_DIR, name)
        if not os.path.isfile(path):
            continue
        card = checkpoints.read_card(path)
        uses_s1 = bool(card["architecture"]["input_layout"].get("s1"))
        if uses_s1 == bool(with_s1):
            out.append((path, card))
    return out


@dataclass(frozen=True)
class MethodChoice:
    method: SeriesMethod
    reason: str
    weights: Optional[str] = None

    def describe(self) -> str:
        return f"Method: {self.method.title} ({self.reason})"


def _row_key(rows: dict, count: int) -> Optional[str]:
    """The table row of ``rows`` (keys "1", "2", "4", "all"...) nearest to ``count`` other dates."""
    def size(key: str) -> float:
        if key == "all":
            return float(rows[key].get("auxiliary_dates", 20))
        return float(key)

    keys = [k for k in rows if k == "all" or k.isdigit()]
    if not keys:
        return None
    return min(keys, key=lambda k: (abs(math.log(max(1, count)) - math.log(max(1.0, size(k)))), size(k)))


def _score(entry) -> Optional[float]:
    try:
        value = float(entry[SCORE[0]][SCORE[1]])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def choose_series_method(key: Optional[str], has_s1: bool, aux_count: int, weights: Optional[str] = None
                         ) -> MethodChoice:
    """The method for ``key`` with ``"automatic"`` decided (see the module notes)."""
    method = series_method(key)
    if method is TIMESERIES_FILL:
        return MethodChoice(method, "as chosen")
    if method is CA_MTCR:
        return MethodChoice(method, "as chosen", weights)
    if weights:
        return MethodChoice(CA_MTCR, "a CA-MTCR weights file was given", weights)
    cards = series_cards(has_s1) or (series_cards(False) if has_s1 else [])
    for path, card in cards:
        held = ((card.get("metrics") or {}).get("held_out") or {}).get(BENCHMARK) or {}
        rows = held.get("by_auxiliary_dates") or {}
        row = _row_key(rows, aux_count)
        if row is None:
            continue
        scores = {k: _score(rows[row].get(k)) for k in CARD_KEYS.values()}
        scores = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if not scores:
            continue
        best = max(scores, key=scores.get)
        chosen = CA_MTCR if best == "ca_mtcr" else TIMESERIES_FILL
        text = ", ".join(f"{'CA-MTCR' if k == 'ca_mtcr' else 'time-series fill'} {v:.2f} dB" for k, v in
                         sorted(scores.items(), key=lambda kv: -kv[1]))
        fill = _score(rows[row].get("fill"))
        if isinstance(fill, (int, float)):
            text += f", single-image fill {fill:.2f} dB"
        return MethodChoice(chosen, f"best held-out PSNR inside the cloud mask in {os.path.basename(path)[:-12]}.json "
                                    f"with {row} other date(s) (nearest to the {aux_count} given): {text}",
                            path if chosen is CA_MTCR else None)
    return MethodChoice(TIMESERIES_FILL, "no CA-MTCR weights with held-out scores are shipped for these inputs")
