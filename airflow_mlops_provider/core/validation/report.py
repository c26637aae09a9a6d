"""The failure message and the readable HTML report of one validation."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

MAX_MESSAGE_EXAMPLES = 5


def describe_failure(check: Mapping[str, Any]) -> str:
    """One line: expectation, column, expected arguments, observed value, unexpected count and examples."""
    column = f" on column {check['column']!r}" if check.get("column") else ""
    args = _args(check.get("expected"))
    parts = [f"{check['expectation']}{column}{args}"]
    if check.get("exception"):
        parts.append(f"error: {check['exception']}")
    if check.get("observed") is not None:
        parts.append(f"observed {_short(check['observed'])}")
    if check.get("unexpected_count"):
        percent = check.get("unexpected_percent")
        share = f" ({percent:.2f}%)" if isinstance(percent, int | float) else ""
        parts.append(f"{check['unexpected_count']} unexpected{share}")
    if check.get("examples"):
        parts.append(f"e.g. {_short(list(check['examples'])[:MAX_MESSAGE_EXAMPLES])}")
    if check.get("note"):
        parts.append(str(check["note"]))
    tag = " [builtin]" if check.get("source") == "builtin" else ""
    return ": ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if parts[1:] else "") + tag


def failure_message(outcome: Mapping[str, Any], failed: Sequence[Mapping[str, Any]]) -> str:
    split = f" split {outcome['split']!r}" if outcome.get("split") else ""
    head = (
        f"Validation failed for snapshot {outcome['snapshot_uri']}{split}: {len(failed)} of "
        f"{outcome['evaluated']} expectations failed (report: {outcome['report_uri']})"
    )
    return "\n".join([head, *(f"  - {describe_failure(c)}" for c in failed)])


def render_html(document: Mapping[str, Any]) -> str:
    """A self-contained HTML page: status, statistics, then every check (failed first)."""
    checks = sorted(document["checks"], key=lambda c: c["success"])
    ok = document["success"]
    rows = "\n".join(
        "<tr class='{cls}'><td>{status}</td><td>{exp}</td><td>{col}</td><td>{args}</td><td>{obs}</td>"
        "<td>{count}</td><td>{examples}</td><td>{source}</td><td>{note}</td></tr>".format(
            cls="ok" if c["success"] else "bad",
            status="pass" if c["success"] else "FAIL",
            exp=_e(c["expectation"]),
            col=_e(c.get("column") or ""),
            args=_e(_short(c.get("expected"), 200)),
            obs=_e(c["exception"] if c.get("exception") else _short(c.get("observed"), 200)),
            count=_e(c.get("unexpected_count") if c.get("unexpected_count") is not None else ""),
            examples=_e(_short(c.get("examples") or "", 200)),
            source=_e(c.get("source", "")),
            note=_e(c.get("note") or ""),
        )
        for c in checks
    )
    snapshot = document["snapshot"]
    facts = {
        "Snapshot": snapshot["uri"],
        "SHA-256": snapshot["sha256"],
        "Split": document.get("split") or "all",
        "Rows": document["rows"],
        "Reference": (document.get("reference") or {}).get("uri", "none"),
        "Mode": document["mode"],
        "Engine": document.get("engine", "memory"),
        "Validated at": document["validated_at"],
        "Run": json.dumps(document.get("run") or {}),
    }
    fact_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items())
    stats = document["statistics"]
    title = f"Validation {'passed' if ok else 'FAILED'}: {stats['failed']} of {stats['evaluated']} failed"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} h1{{color:{"#1a7f37" if ok else "#cf222e"}}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top;font-size:13px}} tr.bad td{{background:#ffebe9}} tr.ok td:first-child{{color:#1a7f37}}
th{{background:#f6f8fa}}
</style></head><body>
<h1>{_e(title)}</h1>
<table>{fact_rows}</table>
<table><tr><th>Status</th><th>Expectation</th><th>Column</th><th>Arguments</th><th>Observed</th>
<th>Unexpected</th><th>Examples</th><th>Source</th><th>Note</th></tr>
{rows}
</table></body></html>
"""


def _args(expected: Any) -> str:
    if not isinstance(expected, Mapping) or not expected:
        return ""
    inner = ", ".join(f"{k}={_short(v, 80)}" for k, v in expected.items() if v is not None)
    return f" ({inner})" if inner else ""


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _e(value: Any) -> str:
    return html.escape(str(value))
