"""A self-contained HTML drift report: a summary, then one card per column with its plot.

Plots are inline SVG (reference vs current histogram shares, or category shares), so the file
opens anywhere without scripts or network access.
"""

from __future__ import annotations

from html import escape
from typing import Any

_COLOURS = {"reference": "#4c78a8", "current": "#f58518"}
_VERDICT_COLOURS = {"drift": "#c0392b", "no drift": "#27ae60", "unknown": "#7f8c8d"}


def render_html(result: dict[str, Any], title: str) -> str:
    """Render a drift result (``DriftResult.to_dict()``) as one HTML page."""
    cards = [_card(col) for col in result["columns"]]
    prediction = result.get("prediction")
    if prediction:
        cards.append("<h2>Prediction drift</h2>")
        cards += [_card(col) for col in prediction["columns"]]
    verdict = "DRIFT" if result["drift"] else "no drift"
    colour = _VERDICT_COLOURS["drift" if result["drift"] else "no drift"]
    cfg = result["config"]
    summary = (
        f"<p class='verdict' style='color:{colour}'>{verdict}: {len(result['drifted_columns'])} of "
        f"{len(result['columns'])} columns drifted (share {result['share']:.1%}, "
        f"dataset threshold {cfg['drift_share']:.1%})</p>"
        f"<p>Reference rows: {result['rows_reference']:,} &middot; current rows: {result['rows_current']:,}"
        f" &middot; correction: {escape(cfg['correction'])} at alpha {cfg['alpha']}"
        f" &middot; a column drifts when its corrected p-value &lt; alpha AND its effect size reaches "
        f"its threshold, or its missing-value share changes significantly by at least "
        f"{cfg['missing_share_threshold']:.0%}.</p>"
    )
    if result["unknown_columns"]:
        summary += f"<p>Unknown: {escape(', '.join(result['unknown_columns']))}</p>"
    if result.get("new_columns"):
        summary += f"<p>Columns only in the current window: {escape(', '.join(result['new_columns']))}</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{summary}{_table(result['columns'])}"
        f"<div class='cards'>{''.join(cards)}</div></body></html>"
    )


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return format(value, spec)
    return escape(str(value))


def _table(columns: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>corrected p</th><th>effect</th><th>effect size</th><th>threshold</th><th>n ref / cur</th>"
        "<th>missing ref / cur</th><th>verdict</th></tr>"
    )
    rows = []
    for c in columns:
        colour = _VERDICT_COLOURS[c["verdict"]]
        rows.append(
            f"<tr><td><a href='#col-{escape(c['name'])}'>{escape(c['name'])}</a></td><td>{c['kind']}</td>"
            f"<td>{_fmt(c['test'])}</td><td>{_fmt(c['statistic'])}</td><td>{_fmt(c['p_value'])}</td>"
            f"<td>{_fmt(c['p_adjusted'])}</td><td>{_fmt(c['effect'])}</td><td>{_fmt(c['effect_size'])}</td>"
            f"<td>{_fmt(c['threshold'])}</td><td>{c['n_reference']:,} / {c['n_current']:,}</td>"
            f"<td>{c['missing_reference']:.1%} / {c['missing_current']:.1%}</td>"
            f"<td style='color:{colour}'><b>{c['verdict']}</b>"
            f"{'<br><small>' + escape(c['reason']) + '</small>' if c.get('reason') else ''}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _card(col: dict[str, Any]) -> str:
    plot = col.get("plot") or {}
    svg = _bars(plot) if plot else "<p>no plot</p>"
    colour = _VERDICT_COLOURS[col["verdict"]]
    return (
        f"<div class='card' id='col-{escape(col['name'])}'><h3>{escape(col['name'])} "
        f"<span style='color:{colour}'>{col['verdict']}</span></h3>{svg}"
        f"<p>{_fmt(col['test'])} = {_fmt(col['statistic'])}, p = {_fmt(col['p_value'])} "
        f"(corrected {_fmt(col['p_adjusted'])}); {_fmt(col['effect'])} = {_fmt(col['effect_size'])} "
        f"vs threshold {_fmt(col['threshold'])}</p></div>"
    )


def _bars(plot: dict[str, Any], width: int = 360, height: int = 140) -> str:
    ref, cur = plot["reference"], plot["current"]
    k = len(ref)
    if k == 0:
        return "<p>no values</p>"
    top = max(max(ref), max(cur), 1e-12)
    slot = width / k
    bar = slot / 2.4
    parts = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = i * slot + slot * 0.1
        for offset, value, name in ((0.0, r, "reference"), (bar, c, "current")):
            h = value / top * (height - 20)
            parts.append(
                f"<rect x='{x + offset:.1f}' y='{height - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{_COLOURS[name]}'><title>{name}: {value:.3%}</title></rect>"
            )
    if plot["type"] == "bars":
        labels = "".join(
            f"<text x='{i * slot + slot / 2:.1f}' y='{height + 12}' font-size='9' text-anchor='middle'>"
            f"{escape(str(name)[:10])}</text>"
            for i, name in enumerate(plot["categories"])
        )
    else:
        edges = plot["edges"]
        labels = (
            f"<text x='0' y='{height + 12}' font-size='9'>{edges[0]:.3g}</text>"
            f"<text x='{width}' y='{height + 12}' font-size='9' text-anchor='end'>{edges[-1]:.3g}</text>"
        )
    legend = (
        f"<text x='{width - 4}' y='10' font-size='10' text-anchor='end' fill='{_COLOURS['reference']}'>"
        f"reference</text><text x='{width - 4}' y='22' font-size='10' text-anchor='end' "
        f"fill='{_COLOURS['current']}'>current</text>"
    )
    return f"<svg width='{width}' height='{height + 16}' role='img'>{''.join(parts)}{labels}{legend}</svg>"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}td:first-child,"
    "th:first-child{text-align:left}.verdict{font-size:1.3em;font-weight:bold}.cards{display:flex;"
    "flex-wrap:wrap;gap:12px;margin-top:1em}.card{border:1px solid #ddd;padding:8px;width:380px}"
    ".card h3{margin:0 0 4px;font-size:14px}.card p{font-size:12px;margin:4px 0}"
)
