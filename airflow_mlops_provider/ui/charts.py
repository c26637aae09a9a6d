"""Small inline SVG line charts (no JavaScript, no external assets): one or more series over windows."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 640, 160, 28
COLOURS = ("#1f6feb", "#d1242f", "#2da44e", "#bf8700")


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # one per window; None leaves a gap


def line_chart(title: str, windows: Sequence[str], series: Sequence[Series]) -> str:
    """An SVG chart of ``series`` over ``windows`` (x labels), scaled to the values shown; ``""`` if none."""
    values = [v for s in series for v in s.values if v is not None]
    if not windows or not values:
        return ""
    low, high = min(0.0, *values), max(values)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(windows) - 1, 1)

    def point(i: int, v: float) -> tuple[float, float]:
        return PAD + i * step, HEIGHT - PAD - (v - low) / span * (HEIGHT - 2 * PAD)

    lines, legend = [], []
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        for run in _runs(s.values):
            points = [point(i, v) for i, v in run]
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{joined}"/>')
            lines += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
        legend.append(
            f'<text x="{PAD + 140 * n}" y="14" fill="{colour}" font-size="12">{html.escape(s.label)}</text>'
        )
    axis = (
        f'<text x="2" y="{PAD + 4}" font-size="10">{high:.3g}</text>'
        f'<text x="2" y="{HEIGHT - PAD + 4}" font-size="10">{low:.3g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" font-size="10">{html.escape(windows[0])}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" font-size="10" text-anchor="end">'
        f"{html.escape(windows[-1])}</text>"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
    )
    return (
        f'<svg class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
        f"{axis}{''.join(legend)}{''.join(lines)}</svg>"
    )


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive non-missing points, so a gap breaks the line."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]
