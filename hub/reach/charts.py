"""Charts drawn on the server as SVG: a page needs no script and no chart library to show them.

This module does the geometry; ``reach/_chart.html`` writes it out as SVG (escaped by
Jinja like any text). The SVG scales to its box (viewBox, width 100 %), so the same
drawing serves a 360 px phone and a desktop. Colours come from classes in hub.css (the
CSP forbids inline styles); counts masked as "< N" are drawn as nothing and labelled so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from hub.i18n import gettext
from hub.reach.dashboard import Counts, ReachRow


@dataclass(frozen=True)
class Rect:
    cls: str
    x: float
    y: float
    w: float
    h: float
    tip: str  # shown on hover and read by screen readers


@dataclass(frozen=True)
class Label:
    cls: str
    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass
class Drawing:
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    axis: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2


def _nice_max(value: int) -> int:
    """A round top for an axis: 1, 2, 5 × a power of ten, at least ``value``."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def _shown(counts: Counts, kind: str) -> int:
    return 0 if kind in counts.masked else counts.values.get(kind, 0)


def trend(weeks: Sequence[tuple[date, Counts]], mask_below: int) -> Drawing | None:
    """Plays and downloads per week, as two bars side by side."""
    if not weeks:
        return None
    width, height, left, bottom, top_pad = 400, 160, 34, 20, 8
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    peak = _nice_max(max([max(_shown(c, "play"), _shown(c, "download")) for _, c in weeks] + [1]))
    slot = plot_w / len(weeks)
    bar = max(1.0, slot * 0.38)
    drawing = Drawing(gettext("Plays and downloads per week"), width, height)
    drawing.axis = (left, top_pad + plot_h, width - 4, top_pad + plot_h)
    drawing.labels += [
        Label("tick", left - 4, top_pad + 8, str(peak), "end"),
        Label("tick", left - 4, top_pad + plot_h, "0", "end"),
    ]
    names = {"play": gettext("Plays"), "download": gettext("Downloads")}
    every = max(1, -(-len(weeks) // 5))  # at most five dates under the axis: no overlap at 360 px
    for i, (week, counts) in enumerate(weeks):
        x = left + i * slot + slot * 0.1
        for j, kind in enumerate(("play", "download")):
            h = plot_h * _shown(counts, kind) / peak
            tip = f"{week.isoformat()} · {names[kind]} {counts.text(kind, mask_below)}"
            drawing.rects.append(
                Rect(
                    f"bar {kind}",
                    round(x + j * bar, 1),
                    round(top_pad + plot_h - h, 1),
                    round(bar, 1),
                    round(h, 1),
                    tip,
                )
            )
        if i % every == 0:
            drawing.labels.append(Label("tick", round(x, 1), height - 6, f"{week.month}/{week.day}"))
    return drawing


def bars(rows: Sequence[ReachRow], mask_below: int) -> Drawing | None:
    """The top rows' plays as horizontal bars, labelled with their names."""
    if not rows:
        return None
    row_h, width, label_w = 22, 400, 130
    drawing = Drawing(gettext("Plays"), width, row_h * len(rows) + 4)
    peak = _nice_max(max([_shown(r.counts, "play") for r in rows] + [1]))
    for i, row in enumerate(rows):
        y = i * row_h + 2
        w = (width - label_w - 50) * _shown(row.counts, "play") / peak
        name = row.label if len(row.label) <= 9 else row.label[:8] + "…"
        value = row.counts.text("play", mask_below)
        drawing.labels.append(Label("label", label_w - 6, y + 16, name, "end"))
        drawing.rects.append(Rect("bar play", label_w, y + 4, round(w, 1), row_h - 8, f"{row.label} · {value}"))
        drawing.labels.append(Label("value", round(label_w + w + 4, 1), y + 16, value))
    return drawing
