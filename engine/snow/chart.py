"""The per-date figures of a snow series: the table (CSV) and the chart of the snow area per date.

The chart is plain SVG written here (no plotting library, no network): the snow area (km^2) of
each date on a time axis, **clear** observations as filled blue dots, **cloudy** ones (cloud over
more than :data:`CLOUDY_PERCENT` % of the valid area: their snow area is a lower bound) as hollow
grey dots, the cloud % of each date as grey bars on the right-hand axis, and the period of the
duration product shaded. :func:`chart_html` wraps it with the table into one self-contained page.
"""
from __future__ import annotations

import csv
import html
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import List, Optional, Sequence, Tuple

from ..io.atomic import atomic_output, check_writable

#: A date whose cloud covers more than this share (%) of its valid area is a cloudy observation.
CLOUDY_PERCENT = 20.0
#: Columns of the per-date table.
SERIES_FIELDS = ("date", "snow_km2", "snow_percent", "cloud_percent", "clear_percent", "snowline_m", "observation",
                 "images", "in_period")
SNOW_COLOUR, CLOUD_COLOUR, PERIOD_COLOUR = "#1f78b4", "#9e9e9e", "#eef5fb"


def _nan_none(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None or math.isnan(value) else round(float(value), digits)


@dataclass(frozen=True)
class SeriesRow:
    """Scene-wide figures of one date (images of one date merged); percentages of the valid area."""

    date: date
    snow_km2: float
    snow_percent: float
    cloud_percent: float
    clear_percent: float
    valid_km2: float
    snowline_m: Optional[float]
    images: int
    in_period: bool

    @classmethod
    def of(cls, stats, snowline: Optional[float], images: int, in_period: bool) -> "SeriesRow":
        """From a :class:`~.duration.SnowDateStatistics`."""
        return cls(stats.date, stats.snow_km2, stats.snow_percent, stats.cloud_percent, stats.clear_percent,
                   stats.valid_km2, snowline, images, in_period)

    @property
    def observation(self) -> str:
        """``"clear"``, ``"cloudy"`` (cloud over :data:`CLOUDY_PERCENT` % of the valid area) or ``"no data"``."""
        if math.isnan(self.cloud_percent):
            return "no data"
        return "cloudy" if self.cloud_percent > CLOUDY_PERCENT else "clear"

    def values(self) -> Tuple:
        """The table row (:data:`SERIES_FIELDS`), None for figures that do not exist."""
        return (self.date.isoformat(), _nan_none(self.snow_km2, 6), _nan_none(self.snow_percent, 4),
                _nan_none(self.cloud_percent, 4), _nan_none(self.clear_percent, 4),
                None if self.snowline_m is None else round(float(self.snowline_m), 1), self.observation, self.images,
                self.in_period)


def write_series_csv(rows: Sequence[SeriesRow], path: str) -> str:
    """Write the per-date table (a header of :data:`SERIES_FIELDS`, then one row per date) atomically."""
    check_writable(path)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(SERIES_FIELDS)
        for row in rows:
            out.writerow(["" if v is None else ("yes" if v is True else "no" if v is False else v)
                          for v in row.values()])
    return str(path)


# -- the chart -------------------------------------------------------------------------------------

W, H = 640, 320
#: Below this width (px of the SVG) the chart is laid out narrow: short legend, fewer ticks, no right title.
NARROW = 480


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _month_ticks(first: date, last: date) -> List[date]:
    ticks, current = [], date(first.year, first.month, 1)
    while current <= last:
        if current >= first:
            ticks.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return ticks


def _time_ticks(first: date, last: date, most: int = 7) -> List[Tuple[date, str]]:
    span = (last - first).days
    if span > 75:
        months = _month_ticks(first, last)
        every = max(1, math.ceil(len(months) / most))
        return [(d, d.strftime("%b %Y") if d.month == 1 or i == 0 else d.strftime("%b"))
                for i, d in enumerate(months[::every])]
    step = max(1, math.ceil(span / (most - 1)))
    return [(first + timedelta(days=k), (first + timedelta(days=k)).strftime("%d %b"))
            for k in range(0, span + 1, step)]


def snow_area_svg(rows: Sequence[SeriesRow], start: date, end: date, width: int = W, height: int = H) -> str:
    """The chart of the snow area per date (see the module docstring) as an SVG document of ``width`` x
    ``height`` px (narrower than :data:`NARROW`: a compact layout for docks)."""
    narrow = width < NARROW
    left, right, top, bottom = (44, 36, 30, 40) if narrow else (58, 62, 34, 46)
    dates = [r.date for r in rows]
    first, last = min(dates + [start]), max(dates + [end])
    pad = max(1, round((last - first).days * 0.02))
    first, last = first - timedelta(days=pad), last + timedelta(days=pad)
    span = (last - first).days
    pw, ph = width - left - right, height - top - bottom
    top_km2 = max([r.snow_km2 for r in rows if not math.isnan(r.snow_km2)] + [0.0])
    # a snow-free season stays flat: the axis reaches at least 5 % of the largest valid area
    top_km2 = max([top_km2] + [0.05 * r.valid_km2 for r in rows if not math.isnan(r.valid_km2)])
    step = _nice_step(top_km2 * 1.1 if top_km2 > 0 else 1.0)
    ymax = step * max(1, math.ceil((top_km2 * 1.05) / step)) if top_km2 > 0 else step * 5

    def x(d: date) -> float:
        return left + pw * (d - first).days / span

    def y(km2: float) -> float:
        return top + ph * (1.0 - km2 / ymax)

    def y_pct(pct: float) -> float:
        return top + ph * (1.0 - pct / 100.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" font-family="sans-serif" font-size="11">',
           "<title>Snow area per date (clear and cloudy observations)</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<rect x="{x(start):.1f}" y="{top}" width="{max(1.0, x(end) - x(start)):.1f}" height="{ph}" '
           f'fill="{PERIOD_COLOUR}"/>']
    value = 0.0
    while value <= ymax + 1e-9:
        yy = y(value)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{value:g}</text>')
        value += step
    for pct in (0, 50, 100):
        out.append(f'<text x="{left + pw + 6}" y="{y_pct(pct) + 4:.1f}" fill="{CLOUD_COLOUR}">{pct} %</text>')
    for d, label in _time_ticks(first, last, 4 if narrow else 7):
        xx = x(d)
        out.append(f'<line x1="{xx:.1f}" y1="{top + ph}" x2="{xx:.1f}" y2="{top + ph + 4}" stroke="#555"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + ph + 16}" text-anchor="middle">{html.escape(label)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#555"/>')
    out.append(f'<text x="12" y="{top + ph / 2:.1f}" transform="rotate(-90 12 {top + ph / 2:.1f})" '
               'text-anchor="middle">snow area (km²)</text>')
    if not narrow:
        out.append(f'<text x="{width - 14}" y="{top + ph / 2:.1f}" transform="rotate(90 {width - 14} '
                   f'{top + ph / 2:.1f})" text-anchor="middle" fill="{CLOUD_COLOUR}">'
                   'cloud (% of the valid area)</text>')
    for r in rows:
        if not math.isnan(r.cloud_percent) and r.cloud_percent > 0:
            out.append(f'<rect x="{x(r.date) - 2:.1f}" y="{y_pct(r.cloud_percent):.1f}" width="4" '
                       f'height="{top + ph - y_pct(r.cloud_percent):.1f}" fill="{CLOUD_COLOUR}" opacity="0.45">'
                       f'<title>{r.date.isoformat()}: cloud {r.cloud_percent:.1f} %</title></rect>')
    points = [(x(r.date), y(r.snow_km2)) for r in rows if not math.isnan(r.snow_km2)]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{SNOW_COLOUR}" stroke-width="1.2" opacity="0.6"/>')
    for r in rows:
        if math.isnan(r.snow_km2):
            continue
        clear = r.observation == "clear"
        style = (f'fill="{SNOW_COLOUR}" stroke="{SNOW_COLOUR}"' if clear
                 else f'fill="white" stroke="{CLOUD_COLOUR}" stroke-width="1.6"')
        fade = "" if r.in_period else ' opacity="0.45"'
        tip = (f"{r.date.isoformat()}: snow {r.snow_km2:.3f} km² ({r.snow_percent:.1f} %), cloud "
               f"{r.cloud_percent:.1f} % ({r.observation})")
        out.append(f'<circle cx="{x(r.date):.1f}" cy="{y(r.snow_km2):.1f}" r="4" {style}{fade} '
                   f'class="{r.observation.replace(" ", "-")}"><title>{html.escape(tip)}</title></circle>')
    at = (left - 30, left + 22, left + 86) if narrow else (left, left + 130, left + 284)
    names = (("clear", "cloudy", "period") if narrow
             else ("clear observation", f"cloudy (> {CLOUDY_PERCENT:g} % cloud)", "period"))
    legend = [(f'<circle cx="{at[0] + 6}" cy="14" r="4" fill="{SNOW_COLOUR}"/>', at[0] + 14, names[0]),
              (f'<circle cx="{at[1] + 6}" cy="14" r="4" fill="white" stroke="{CLOUD_COLOUR}" stroke-width="1.6"/>',
               at[1] + 14, names[1]),
              (f'<rect x="{at[2]}" y="9" width="14" height="10" fill="{PERIOD_COLOUR}" stroke="#bbb"/>',
               at[2] + 18, names[2])]
    for mark, tx, label in legend:
        out.append(mark)
        out.append(f'<text x="{tx}" y="18">{html.escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def chart_html(title: str, svg: str, rows: Sequence[SeriesRow], summary: str) -> str:
    """A self-contained HTML page: the chart (inline SVG), the summary and the per-date table."""
    head = "".join(f"<th>{html.escape(f)}</th>" for f in SERIES_FIELDS)
    body = []
    for row in rows:
        cells = "".join("<td>{}</td>".format("" if v is None else html.escape(
            "yes" if v is True else "no" if v is False else str(v))) for v in row.values())
        body.append(f'<tr class="{row.observation.replace(" ", "-")}">{cells}</tr>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:1em;color:#1f2328}}"
            "table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #d0d7de;padding:.2em .5em;"
            "text-align:right}th{background:#f2f4f7}tr.cloudy td{color:#777}svg{max-width:100%;height:auto}"
            f"</style></head><body><h2>{html.escape(title)}</h2>\n{svg}\n<p>{html.escape(summary)}</p>\n"
            f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>\n")
