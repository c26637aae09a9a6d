"""A self-contained HTML trend report of a pipeline's per-window performance history.

Three inline SVG line charts over window time (drift share, the realized metric with its
interval as a band, the estimated metric with its band), the champion's reference as a dashed
line, a vertical marker where the model version changes, and a table of the windows, newest
first. No scripts, no network; every text from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import pyarrow as pa

from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.storage import Location

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 720, 170, 52, 16, 16, 26
_LINE, _BAND, _REF, _MARK = "#4c78a8", "#4c78a8", "#c0392b", "#7f8c8d"
_STATUS_COLOURS = {"degraded": "#c0392b", "ok": "#27ae60"}


@dataclass(frozen=True)
class _Marker:
    time: float
    label: str


@dataclass(frozen=True)
class _Frame:
    """Maps window time and metric values onto the chart's pixels."""

    t0: float
    t1: float
    v0: float
    v1: float

    def x(self, t: float) -> float:
        return _LEFT + (t - self.t0) / (self.t1 - self.t0) * (_W - _LEFT - _RIGHT)

    def y(self, v: float) -> float:
        return _TOP + (self.v1 - v) / (self.v1 - self.v0) * (_H - _TOP - _BOTTOM)


def render_trend(series: pa.Table, *, title: str, metric: str, reference: float | None) -> str:
    """The trend report of ``series`` (``WindowStore.read_series()``) for ``metric`` as one HTML page."""
    rows = sorted(series.to_pylist(), key=lambda row: row["window_start"])
    times = [row["window_end"].timestamp() for row in rows]
    markers = _version_markers(rows, times)

    def column(name: str) -> list[float | None]:
        return [row.get(name) for row in rows]

    charts = [
        _chart("drift share", times, column("drift_share"), None, None, None, markers, fixed=(0.0, 1.0)),
        _chart(
            f"realized {metric}",
            times,
            column(f"realized_{metric}"),
            column(f"realized_{metric}_low"),
            column(f"realized_{metric}_high"),
            reference,
            markers,
        ),
        _chart(
            f"estimated {metric}",
            times,
            column(f"estimated_{metric}"),
            column(f"estimated_{metric}_low"),
            column(f"estimated_{metric}_high"),
            reference,
            markers,
        ),
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{_summary(rows, metric, reference)}{''.join(charts)}"
        f"{_table(rows, metric)}</body></html>"
    )


def write_trend(root: Location, pipeline: str, html: str) -> str:
    """Store the trend report at ``<root>/<pipeline>/reports/performance/trend.html``; its URI."""
    location = root.join(safe_component(pipeline, "pipeline"), "reports", "performance", "trend.html")
    location.write_bytes_atomic(html.encode())
    return location.uri


def _version_markers(rows: list[dict[str, Any]], times: list[float]) -> list[_Marker]:
    """A marker halfway between two windows whose model versions differ."""
    return [
        _Marker(
            (times[i - 1] + times[i]) / 2,
            f"v{rows[i - 1].get('model_version')} -> v{rows[i].get('model_version')}",
        )
        for i in range(1, len(rows))
        if rows[i].get("model_version") != rows[i - 1].get("model_version")
    ]


def _summary(rows: list[dict[str, Any]], metric: str, reference: float | None) -> str:
    if not rows:
        return "<p>No monitored windows yet.</p>"
    latest = rows[-1]
    status = latest.get("status") or "no verdict"
    colour = _STATUS_COLOURS.get(status, _MARK)
    return (
        f"<p class='verdict' style='color:{colour}'>latest window: {escape(status)}</p>"
        f"<p>{len(rows)} windows from {_time(rows[0]['window_start'])} to {_time(latest['window_end'])}"
        f" &middot; model version {escape(str(latest.get('model_version')))}"
        f" &middot; champion's reference {escape(metric)}: {_fmt(reference)}</p>"
    )


def _chart(
    label: str,
    times: list[float],
    values: list[float | None],
    lows: list[float | None] | None,
    highs: list[float | None] | None,
    reference: float | None,
    markers: list[_Marker],
    fixed: tuple[float, float] | None = None,
) -> str:
    """One SVG line chart: the band, the line and its points, the reference and the version markers."""
    known = [v for v in [*values, *(lows or []), *(highs or []), reference] if v is not None]
    if not known or not times:
        return f"<h2>{escape(label)}</h2><p class='empty'>no values yet</p>"
    frame = _Frame(*_span(times), *(fixed or _span(known)))
    parts = [_axes(frame)]
    if lows is not None and highs is not None:
        parts += _band(frame, times, lows, highs)
    parts += _line(frame, times, values, label)
    if reference is not None:
        y = frame.y(reference)
        parts.append(
            f"<line x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='{_REF}' "
            f"stroke-dasharray='6 4' class='reference'><title>reference {_fmt(reference)}</title></line>"
        )
    parts += [_marker(frame, marker) for marker in markers]
    return f"<h2>{escape(label)}</h2><svg width='{_W}' height='{_H}' role='img'>{''.join(parts)}</svg>"


def _marker(frame: _Frame, marker: _Marker) -> str:
    """A dashed vertical line where the model version changes, labelled inside the chart."""
    x = frame.x(marker.time)
    side, shift = ("end", -3) if x > _W / 2 else ("start", 3)
    return (
        f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{_TOP}' y2='{_H - _BOTTOM}' stroke='{_MARK}' "
        f"stroke-dasharray='2 3' class='version'/><text x='{x + shift:.1f}' y='{_TOP + 10}' font-size='10' "
        f"text-anchor='{side}' fill='{_MARK}'>{escape(marker.label)}</text>"
    )


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The range of ``values``, widened around a single value so that it can be drawn."""
    low, high = min(values), max(values)
    if high > low:
        return low, high
    pad = abs(low) * 0.05 or 1.0
    return low - pad, high + pad


def _axes(frame: _Frame) -> str:
    bottom = _H - _BOTTOM
    return (
        f"<line x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{bottom}' y2='{bottom}' stroke='#999'/>"
        f"<line x1='{_LEFT}' x2='{_LEFT}' y1='{_TOP}' y2='{bottom}' stroke='#999'/>"
        f"<text x='{_LEFT - 4}' y='{_TOP + 4}' font-size='10' text-anchor='end'>{_fmt(frame.v1)}</text>"
        f"<text x='{_LEFT - 4}' y='{bottom}' font-size='10' text-anchor='end'>{_fmt(frame.v0)}</text>"
        f"<text x='{_LEFT}' y='{_H - 6}' font-size='10'>{_time(frame.t0)}</text>"
        f"<text x='{_W - _RIGHT}' y='{_H - 6}' font-size='10' text-anchor='end'>{_time(frame.t1)}</text>"
    )


def _runs(*columns: list[float | None]) -> list[list[int]]:
    """The runs of consecutive indices where every column has a value (gaps break lines and bands)."""
    runs: list[list[int]] = []
    previous = -2
    for i in range(len(columns[0])):
        if any(column[i] is None for column in columns):
            continue
        if i != previous + 1:
            runs.append([])
        runs[-1].append(i)
        previous = i
    return runs


def _band(
    frame: _Frame, times: list[float], lows: list[float | None], highs: list[float | None]
) -> list[str]:
    parts = []
    for run in _runs(lows, highs):
        upper = [f"{frame.x(times[i]):.1f},{frame.y(highs[i] or 0.0):.1f}" for i in run]
        lower = [f"{frame.x(times[i]):.1f},{frame.y(lows[i] or 0.0):.1f}" for i in reversed(run)]
        shape = "polygon" if len(run) > 1 else "polyline"
        parts.append(
            f"<{shape} points='{' '.join(upper + lower)}' fill='{_BAND}' fill-opacity='0.18' "
            f"stroke='{_BAND}' stroke-opacity='0.3' class='band'/>"
        )
    return parts


def _line(frame: _Frame, times: list[float], values: list[float | None], label: str) -> list[str]:
    parts = []
    for run in _runs(values):
        points = " ".join(f"{frame.x(times[i]):.1f},{frame.y(values[i] or 0.0):.1f}" for i in run)
        parts.append(f"<polyline points='{points}' fill='none' stroke='{_LINE}' stroke-width='1.6'/>")
        parts += [
            f"<circle cx='{frame.x(times[i]):.1f}' cy='{frame.y(values[i] or 0.0):.1f}' r='2.5'>"
            f"<title>{escape(label)} {_fmt(values[i])} at {_time(times[i])}</title></circle>"
            for i in run
        ]
    return parts


def _table(rows: list[dict[str, Any]], metric: str) -> str:
    name = escape(metric)
    head = (
        "<tr><th>window</th><th>version</th><th>status</th><th>rows</th><th>labelled</th><th>pending</th>"
        f"<th>drift share</th><th>realized {name} [interval]</th><th>estimated {name} [interval]</th></tr>"
    )
    body = []
    for row in reversed(rows):
        status = row.get("status")
        colour = _STATUS_COLOURS.get(status or "", _MARK)
        body.append(
            f"<tr><td>{_time(row['window_start'])} &ndash; {_time(row['window_end'])}</td>"
            f"<td>{escape(str(row.get('model_version')))}</td>"
            f"<td style='color:{colour}'>{escape(status) if status else '&ndash;'}</td>"
            f"<td>{_fmt(row.get('rows'))}</td><td>{_fmt(row.get('labelled'))}</td><td>{_fmt(row.get('pending'))}</td>"
            f"<td>{_fmt(row.get('drift_share'))}</td><td>{_interval(row, 'realized_' + metric)}</td>"
            f"<td>{_interval(row, 'estimated_' + metric)}</td></tr>"
        )
    return f"<h2>Windows</h2><table>{head}{''.join(body)}</table>"


def _interval(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        return "&ndash;"
    return f"{_fmt(value)} [{_fmt(row.get(column + '_low'))}, {_fmt(row.get(column + '_high'))}]"


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return format(value, ".4g")
    return escape(str(value))


def _time(value: datetime | float) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return escape(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ"))


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}td:first-child,"
    "th:first-child{text-align:left}.verdict{font-size:1.3em;font-weight:bold}h2{font-size:15px;"
    "margin:1em 0 2px}.empty{color:#7f8c8d}circle{fill:#4c78a8}"
)
