"""Pictures for the console, drawn on the server as SVG: no chart library, no script.

Colours are SVG attributes (the page's CSP allows no inline style); every mark has a `<title>`
(a tooltip, read by screen readers) and every chart a title and a one-line description, so the
numbers are there for those who would rather read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from ownstream.clock import parse_iso

PALETTE = ("#1f6f5c", "#c0632b", "#3b5ba5", "#8a3f8f", "#7a7a1f", "#b2344f", "#2a8aa0", "#5d6670")
WIDTH = 720
AXIS = 22  # room for the axis labels under a chart


@dataclass(frozen=True)
class Series:
    """One connection's counts per day (YYYY-MM-DD → records)."""

    label: str
    values: dict[str, int]


@dataclass(frozen=True)
class Chart:
    svg: Markup
    legend: list[tuple[str, str]]  # (label, colour), for the legend the page draws in HTML


@dataclass(frozen=True)
class Span:
    """One bar of a timeline: what covered which period."""

    label: str
    start: str | None
    end: str | None
    group: int = 0  # spans of one group (one acquisition path) share a colour


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def day_range(first: date, count: int) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range(count)]


def activity(chart_id: str, title: str, days: list[str], series: list[Series]) -> Chart:
    """Stacked bars, one per day, a colour per connection."""
    height = 160
    plot = height - AXIS
    totals = [sum(s.values.get(day, 0) for s in series) for day in days]
    peak = max(totals, default=0) or 1
    step = WIDTH / max(len(days), 1)
    total = sum(totals)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{total} records over {len(days)} days'
        + "".join(
            f"; {escape(s.label)}: {sum(s.values.get(d, 0) for d in days)}" for s in series
        )
        + f", busiest day {max(totals, default=0)}</desc>",
        f'<line x1="0" y1="{plot}" x2="{WIDTH}" y2="{plot}" class="axis"/>',
    ]
    for index, day in enumerate(days):
        x = index * step
        base = float(plot)
        for number, one in enumerate(series):
            count = one.values.get(day, 0)
            if not count:
                continue
            bar = count / peak * (plot - 4)
            base -= bar
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{max(step - 1, 1):.1f}" '
                f'height="{bar:.1f}" fill="{colour(number)}"><title>{day} · '
                f"{escape(one.label)}: {count}</title></rect>"
            )
        if day.endswith("-01") or index == 0:
            parts.append(
                f'<line x1="{x:.1f}" y1="{plot}" x2="{x:.1f}" y2="{plot + 4}" class="axis"/>'
                f'<text x="{x + 2:.1f}" y="{height - 6}" class="tick">{day[:7]}</text>'
            )
    parts.append(f'<text x="{WIDTH - 4}" y="12" class="tick end">peak {peak}/day</text>')
    parts.append("</svg>")
    legend = [(s.label, colour(i)) for i, s in enumerate(series)]
    return Chart(Markup("".join(parts)), legend)


def timeline(chart_id: str, title: str, spans: list[Span]) -> Markup:
    """One bar per span over the period they cover together, with year ticks."""
    dated = [s for s in spans if s.start and s.end]
    row = 30
    height = max(len(spans), 1) * row + AXIS
    parts = [
        f'<svg class="chart coverage" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">'
        + "; ".join(
            f"{escape(s.label)}: {s.start[:10]} to {s.end[:10]}"
            if s.start and s.end
            else f"{escape(s.label)}: no dated records"
            for s in spans
        )
        + "</desc>",
    ]
    if dated:
        low = min(parse_iso(s.start) for s in dated if s.start)
        high = max(parse_iso(s.end) for s in dated if s.end)
        seconds = max((high - low).total_seconds(), 86400.0)

        def x_of(moment: str) -> float:
            return (parse_iso(moment) - low).total_seconds() / seconds * (WIDTH - 2) + 1

        for year in range(low.year + 1, high.year + 1):
            x = x_of(f"{year}-01-01T00:00:00.000Z")
            parts.append(
                f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - AXIS + 4}" class="grid"/>'
                f'<text x="{x + 2:.1f}" y="{height - 6}" class="tick">{year}</text>'
            )
        parts.append(f'<text x="2" y="{height - 6}" class="tick">{low.date()}</text>')
        parts.append(
            f'<text x="{WIDTH - 2}" y="{height - 6}" class="tick end">{high.date()}</text>'
        )
    for index, span in enumerate(spans):
        y = index * row
        parts.append(f'<text x="2" y="{y + 11}" class="label">{escape(span.label)}</text>')
        if dated and span.start and span.end:
            start, end = x_of(span.start), x_of(span.end)
            parts.append(
                f'<rect x="{start:.1f}" y="{y + 14}" width="{max(end - start, 2):.1f}" '
                f'height="10" rx="2" fill="{colour(span.group)}"><title>{escape(span.label)}: '
                f"{span.start[:10]} to {span.end[:10]}</title></rect>"
            )
        else:
            parts.append(f'<text x="2" y="{y + 24}" class="tick">no dated records</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
