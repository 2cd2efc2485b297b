"""The lateness chart of a task's runs: an inline SVG, drawn on the server (no JavaScript).

One bar per started run, oldest on the left, its height the lateness of the run's start
(``started_at - scheduled_for``) on a square-root scale, so a 2 s outlier does not flatten
runs a few milliseconds late; its colour the run's status. A dashed line marks the median.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 56, 22, 12
COLOURS = {"succeeded": "#2e7d32", "dead": "#c62828", "expired": "#8d6e63", "skipped": "#9e9e9e"}
OTHER = "#f9a825"  # running, retrying, queued: not finished yet


def _ms(run: Any) -> float | None:
    late = run.lateness
    return None if late is None else max(0.0, late.total_seconds() * 1000)


def _label(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def lateness_svg(runs: Sequence[Any]) -> str:
    """The chart for ``runs`` (any order; at most the ones given), as an ``<svg>`` string."""
    started = sorted((r for r in runs if _ms(r) is not None), key=lambda r: r.scheduled_for)
    if not started:
        return (
            f'<svg class="chart" width="{WIDTH}" height="40" role="img" '
            'aria-label="no started run yet"><text x="8" y="24">no started run yet</text></svg>'
        )
    values = [_ms(r) or 0.0 for r in started]
    top = max(max(values), 1.0)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / len(started)

    def y(ms: float) -> float:
        return PAD_TOP + plot_h * (1 - math.sqrt(ms / top))

    bars = []
    for i, (run, ms) in enumerate(zip(started, values, strict=True)):
        height = max(1.0, PAD_TOP + plot_h - y(ms))
        colour = COLOURS.get(run.status.value, OTHER)
        tip = escape(f"{run.run_id}: {run.status.value}, {_label(ms)} late, attempt {run.attempt}")
        bars.append(
            f'<rect class="bar {escape(run.status.value)}" x="{PAD_LEFT + i * step + 1:.1f}" '
            f'y="{PAD_TOP + plot_h - height:.1f}" width="{max(1.0, step - 2):.1f}" '
            f'height="{height:.1f}" fill="{colour}"><title>{tip}</title></rect>'
        )
    median = sorted(values)[(len(values) - 1) // 2]
    axis = (
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" '
        f'y2="{PAD_TOP + plot_h}" stroke="#555"/>'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" text-anchor="end">{_label(top)}</text>'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>'
        f'<line x1="{PAD_LEFT}" y1="{y(median):.1f}" x2="{WIDTH - 8}" y2="{y(median):.1f}" '
        'stroke="#1565c0" stroke-dasharray="4 3"/>'
        f'<text x="{WIDTH - 10}" y="{max(PAD_TOP + 10, y(median) - 4):.1f}" text-anchor="end" '
        f'fill="#1565c0">p50 {_label(median)}</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}">oldest</text>'
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" text-anchor="end">newest '
        f"({len(started)} started runs)</text>"
    )
    return (
        f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="lateness of {len(started)} runs" font-size="11" '
        f'font-family="sans-serif">{axis}{"".join(bars)}</svg>'
    )
