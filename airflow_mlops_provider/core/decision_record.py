"""The decision record: one document saying why a model version was, or was not, promoted.

It holds the trigger cause (schedule, manual, new data, drift or degraded performance, with the
asset events' extra), the data snapshot hashes, the validation summary, both models' metrics,
the gate config, every check and the verdict with its reasons, the approver if any, the alias
changes and the previous champion. It is stored as JSON plus Markdown and HTML renderings among
the artifacts of the challenger's run (``decision_record/``), and summarised in tags on the model
version. The renderings put the trigger and the gate in words, with links to the reports behind
them; text from asset events is escaped, and only known report fields become links.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.gate import HIGHER_IS_BETTER
from airflow_mlops_provider.core.registry import now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

SCHEMA_VERSION = 1
ARTIFACT_DIR = "decision_record"
STATUSES = (
    "rejected", "awaiting_approval", "approved", "rolling_out", "rolled_back", "promoted",
    "already_champion", "superseded",
)  # fmt: skip
_MARKDOWN_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")


@dataclass
class DecisionRecord:
    """Everything a reviewer needs to audit one promotion decision."""

    model_name: str
    version: str  # a record is made once the challenger is registered
    source_run_id: str
    pipeline: str | None
    task: str
    verdict: str
    reasons: list[str]
    checks: list[dict[str, Any]]
    gate: dict[str, Any]
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    champion_version_at_eval: str | None
    evaluation_snapshot: dict[str, Any]
    training_snapshot: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    status: str = "rejected"
    approval: dict[str, Any] | None = None
    alias_changes: list[dict[str, Any]] = field(default_factory=list)
    previous_champion: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    rollout: list[dict[str, Any]] = field(default_factory=list)  # {"at", "event", "text", ...} per step
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    # --- rendering -----------------------------------------------------------------------------
    def metric_rows(self) -> list[tuple[str, Any, Any]]:
        chall = self.challenger.get("metrics") or {}
        champ = (self.champion or {}).get("metrics") or {}
        return [(name, chall.get(name), champ.get(name)) for name in sorted(set(chall) | set(champ))]

    def to_markdown(self) -> str:
        """A short summary for the HITL approval form and the MLflow UI."""
        champ = self.champion
        cause, *events = trigger_lines(self.trigger)
        lines = [
            f"## {self.model_name} v{self.version}: **{self.verdict.upper()}** "
            f"({self.status.replace('_', ' ')})",
            "",
            f"- Trigger: {_markdown_line(cause)}",
            *(f"  - {_markdown_line(line)}" for line in events),
            f"- Challenger run: `{self.source_run_id}`",
            f"- Champion at evaluation: {_champion_text(champ)}",
            f"- Evaluated on: `{_short(self.evaluation_snapshot.get('sha256'))}` split "
            f"`{self.evaluation_snapshot.get('split')}` ({self.evaluation_snapshot.get('rows')} rows"
            f"{_unlabelled_text(self.evaluation_snapshot.get('missing_target_dropped'))})",
        ]
        if self.training_snapshot.get("sha256"):
            dropped = sum((self.training_snapshot.get("missing_target_dropped") or {}).values())
            lines.append(
                f"- Trained on: `{_short(self.training_snapshot['sha256'])}`{_unlabelled_text(dropped)}"
            )
        if self.validation is not None:
            text = _validation_text(self.validation)
            lines.append(f"- Validation: {text if 'success' in self.validation else markdown_text(text)}")
        lines.append(f"- Gate: {markdown_text(gate_text(self.gate))}")
        lines += ["", "| metric | challenger | champion |", "|---|---|---|"]
        lines += [f"| {n} | {_fmt(a)} | {_fmt(b)} |" for n, a, b in self.metric_rows()]
        lines += ["", "**Reasons**", ""] + [f"- {r}" for r in self.reasons]
        if self.approval:
            lines += ["", f"**Approval**: {_approval_text(self.approval)}"]
        if self.rollout:
            lines += ["", "**Rollout**", ""]
            lines += [
                f"- {entry.get('at')}: {markdown_text(str(entry.get('text')))}" for entry in self.rollout
            ]
        if self.alias_changes:
            lines += ["", "**Alias changes**", ""]
            lines += [
                f"- `{c['alias']}`: {_opt(c.get('before'))} -> {_opt(c.get('after'))}"
                for c in self.alias_changes
            ]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(n)}</td><td>{esc(_fmt(a))}</td><td>{esc(_fmt(b))}</td></tr>"
            for n, a, b in self.metric_rows()
        )
        checks = "".join(
            f"<tr class='{'ok' if c.get('passed') else 'bad'}'><td>{esc(str(c.get('check')))}</td>"
            f"<td>{esc(str(c.get('metric')))}</td><td>{esc(str(c.get('slice') or ''))}</td>"
            f"<td>{esc(_fmt(c.get('challenger')))}</td><td>{esc(_fmt(c.get('champion')))}</td>"
            f"<td>{esc(_fmt(c.get('bound')))}</td><td>{'pass' if c.get('passed') else 'FAIL'}</td></tr>"
            for c in self.checks
        )
        changes = "".join(
            f"<li><code>{esc(c['alias'])}</code>: {esc(_opt(c.get('before')))} &rarr; "
            f"{esc(_opt(c.get('after')))}</li>"
            for c in self.alias_changes
        )
        rollout = "".join(
            f"<li>{esc(str(e.get('at')))}: {esc(str(e.get('text')))}</li>" for e in self.rollout
        )
        champ = self.champion
        facts = [
            ("Model", f"{self.model_name} v{self.version}"),
            ("Status", self.status),
            ("Challenger run", self.source_run_id),
            ("Champion at evaluation", "none (first model)" if champ is None else f"v{champ['version']}"),
            (
                "Evaluation snapshot",
                f"{self.evaluation_snapshot.get('sha256')} ({self.evaluation_snapshot.get('split')})",
            ),
            ("Training snapshot", str(self.training_snapshot.get("sha256") or "unknown")),
            ("Validation", _validation_text(self.validation) if self.validation is not None else "not given"),
            ("Approval", _approval_text(self.approval) if self.approval else "not required"),
            ("Previous champion", _opt(self.previous_champion)),
            ("Gate", gate_text(self.gate)),
        ]
        fact_rows = _fact_rows(facts[:2]) + _html_trigger_row(self.trigger) + _fact_rows(facts[2:])
        reasons = "".join(f"<li>{esc(r)}</li>" for r in self.reasons)
        verdict_class = "ok" if self.verdict == "pass" else "bad"
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Decision: {esc(self.model_name)} v{esc(str(self.version))}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
            ".ok{color:#176f2c}.bad{color:#b00020}</style></head><body>"
            f"<h1>{esc(self.model_name)} v{esc(str(self.version))}: "
            f"<span class='{verdict_class}'>{esc(self.verdict.upper())}</span></h1>"
            f"<table>{fact_rows}</table><h2>Reasons</h2><ul>{reasons}</ul>"
            "<h2>Metrics</h2><table><tr><th>metric</th><th>challenger</th><th>champion</th></tr>"
            f"{rows}</table><h2>Checks</h2><table><tr><th>check</th><th>metric</th><th>slice</th>"
            f"<th>challenger</th><th>champion</th><th>bound</th><th>result</th></tr>{checks}</table>"
            + (f"<h2>Rollout</h2><ul>{rollout}</ul>" if rollout else "")
            + f"<h2>Alias changes</h2><ul>{changes or '<li>none</li>'}</ul>"
            f"<p><small>record schema {self.schema_version}, created {esc(self.created_at)}, "
            f"updated {esc(self.updated_at)}</small></p></body></html>"
        )


def _unlabelled_text(dropped: int | None) -> str:
    return f", {dropped} unlabelled rows dropped" if dropped else ""


def _champion_text(champion: dict[str, Any] | None) -> str:
    return "none (first model)" if champion is None else f"v{champion['version']}"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _opt(version: Any) -> str:
    return "none" if version in (None, "") else f"v{version}"


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else "unknown"


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown: every ASCII punctuation mark backslash-escaped, newlines as spaces.

    For text others control (asset-event ``extra`` from REST callers and SQS messages), so it
    can plant no link, image, HTML or emphasis in the approval form.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\g<0>", " ".join(text.splitlines()))


# --- the trigger and the gate in words ------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """A report URI in a rendered line: a link where its scheme allows one, else code text."""

    uri: str


Line = list[str | Link]
_MAX_LISTED = 8
_MAX_TEXT = 120
_HREF_SCHEMES = ("http", "https", "file", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "hdfs")
_HREF = re.compile(rf"^(?:{'|'.join(_HREF_SCHEMES)})://[^\s<>\"'`\x00-\x1f\x7f]+$", re.IGNORECASE)
_AUTOLINK = re.compile(r"^https?://[^\s<>\"'`\x00-\x1f\x7f]+$", re.IGNORECASE)


def trigger_lines(trigger: dict[str, Any]) -> list[Line]:
    """The cause (``"drift"``, ``"new data + drift"``, ``"schedule"``), then one line per asset event.

    Every event is summarised by its kind with its numbers and report links; an unknown kind,
    or an ``extra`` that is not what its kind produces, falls back to a short key=value summary.
    Text pieces are plain text (the renderers escape them); :class:`Link` pieces are URIs.
    """
    cause = _clip(trigger.get("cause") or "unknown").replace("_", " ").replace("+", " + ")
    events = trigger.get("events")
    listed = events if isinstance(events, list) else []
    head: Line = [cause]
    return [head] + [_event_line(e if isinstance(e, dict) else {}) for e in listed]


def _event_line(event: dict[str, Any]) -> Line:
    kind = str(event.get("kind") or "asset")
    raw = event.get("extra")
    extra: dict[str, Any] = raw if isinstance(raw, dict) else {}
    summarise = _EVENT_SUMMARIES.get(kind)
    try:
        line = summarise(extra) if summarise else None
    except (TypeError, ValueError, KeyError, AttributeError):
        line = None  # an extra of another shape (a REST caller's, say): shown as plain key=value text
    return line if line is not None else _generic_line(kind, event, extra)


def _generic_line(kind: str, event: dict[str, Any], extra: dict[str, Any]) -> Line:
    asset = event.get("asset")
    head = f"{kind.replace('_', ' ')} event" + (f" on {_clip(asset)}" if asset else "")
    return [f"{head}: {_pairs(extra)}" if extra else head]


def _new_data_line(extra: dict[str, Any]) -> Line | None:
    if isinstance(extra.get("files"), list):
        files = [str(f) for f in extra["files"]]
        return [f"new data: {len(files)} file{'s' if len(files) != 1 else ''}: {_listing(files)}"]
    snapshot = extra.get("snapshot")
    if isinstance(snapshot, dict):
        rows = snapshot.get("rows")
        head = f"new data: snapshot {_short(snapshot.get('sha256'))}" + (
            f" ({_count(rows)} rows)" if rows is not None else ""
        )
        return [f"{head}; ", Link(str(snapshot["uri"]))] if snapshot.get("uri") else [head]
    if "payload" in extra:
        payload = extra["payload"]
        return [f"new data: message {_pairs(payload) if isinstance(payload, dict) else _clip(payload)}"]
    return None


def _drift_line(extra: dict[str, Any]) -> Line | None:
    if "drifted_columns" not in extra and "drift" not in extra:
        return None
    columns = [str(c) for c in extra.get("drifted_columns") or []]
    text = f"drift: {len(columns)} column{'s' if len(columns) != 1 else ''} drifted"
    if extra.get("share") is not None:
        text += f" (share {float(extra['share']):.0%})"
    text += f": {_listing(columns)}" if columns else ""
    if extra.get("unknown_columns"):
        text += f"; {len(extra['unknown_columns'])} unknown"
    if extra.get("prediction_drift"):
        text += "; the champion's predictions drifted"
    if extra.get("model_version"):
        text += f"; champion v{_clip(extra['model_version'])}"
    return [text, *_report_links(extra)]


def _performance_line(extra: dict[str, Any]) -> Line | None:
    value = extra.get("value")
    if not isinstance(value, dict) or "metric" not in extra:
        return None
    estimated = extra.get("source") == "estimated"
    text = (
        f"performance: {'estimated ' if estimated else ''}{_clip(extra['metric'])} {_num(value.get('value'))}"
    )
    if value.get("low") is not None and value.get("high") is not None:
        text += f" [{_num(value['low'])}, {_num(value['high'])}]"
    if value.get("rows") is not None:
        text += f" on {_count(value['rows'])} {'rows' if estimated else 'labelled rows'}"
    if extra.get("reference") is not None:
        text += f" vs the champion's {_num(extra['reference'])}"
    if extra.get("rule"):
        text += f" (rule {_clip(extra['rule'])})"
    window = extra.get("window")
    if isinstance(window, dict) and window.get("start") and window.get("end"):
        text += f" in window {_window(window['start'], window['end'])}"
    return [text + _performance_notes(extra), *_report_links(extra)]


def _performance_notes(extra: dict[str, Any]) -> str:
    notes = ""
    if extra.get("model_version"):
        notes += f"; champion v{_clip(extra['model_version'])}"
    concept = extra.get("concept_drift")
    if isinstance(concept, dict) and concept.get("suspected"):
        notes += f"; concept drift suspected ({_clip(concept.get('reason') or 'no reason given')})"
    label = extra.get("label_drift")
    if isinstance(label, dict) and label.get("drift"):
        notes += "; the labels drifted"
    return notes


_EVENT_SUMMARIES: dict[str, Callable[[dict[str, Any]], Line | None]] = {
    "new_data": _new_data_line,
    "drift": _drift_line,
    "performance": _performance_line,
}


def _report_links(extra: dict[str, Any]) -> Line:
    links: Line = []
    for key, label in (("report_uri", "report"), ("json_uri", "JSON")):
        if extra.get(key):
            links += [f"; {label} " if links == [] else f", {label} ", Link(str(extra[key]))]
    return links


def _window(start: Any, end: Any) -> str:
    """``2026-12-01 00:00 to 01:00 UTC`` (the end's date only when it differs)."""
    try:
        first, last = (datetime.fromisoformat(str(t)) for t in (start, end))
    except ValueError:
        return f"{_clip(start)} to {_clip(end)}"
    first, last = (t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC) for t in (first, last))
    end_format = "%H:%M" if first.date() == last.date() else "%Y-%m-%d %H:%M"
    return f"{first:%Y-%m-%d %H:%M} to {last.strftime(end_format)} UTC"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _clip(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _clip(value)


def _listing(names: list[str]) -> str:
    shown = ", ".join(_clip(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _pairs(data: dict[str, Any]) -> str:
    """``key=value, ...`` for a few keys; nested values only by their size."""
    items = list(data.items())
    shown = ", ".join(f"{_clip(k)}={_scalar(v)}" for k, v in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    if isinstance(value, list | tuple):
        return f"({len(value)} items)"
    return _num(value) if isinstance(value, float) else _clip(value)


def _clip(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def gate_text(gate: dict[str, Any]) -> str:
    """The gate settings in words: primary metric, thresholds, gains, regressions, approval."""
    parts = [f"primary metric {gate.get('primary_metric') or 'the task default'}"]
    if gate.get("thresholds"):
        parts.append("thresholds " + ", ".join(_bound(m, b) for m, b in sorted(gate["thresholds"].items())))
    if gate.get("min_gain"):
        parts.append(f"min gain {_num(gate['min_gain'])}")
    if gate.get("min_gain_relative"):
        parts.append(f"min relative gain {float(gate['min_gain_relative']):.2%}")
    for key, label in (
        ("max_regression", "max regression"),
        ("slice_max_regression", "max regression per slice"),
    ):
        if gate.get(key):
            parts.append(f"{label} " + ", ".join(f"{m} {_num(b)}" for m, b in sorted(gate[key].items())))
    parts.append("approval required" if gate.get("require_approval") else "no approval needed")
    known = {"primary_metric", "thresholds", "min_gain", "min_gain_relative", "max_regression"}
    known |= {"slice_max_regression", "require_approval"}
    others = {k: v for k, v in gate.items() if k not in known}
    return "; ".join(parts + ([_pairs(others)] if others else []))


def _bound(metric: str, bound: Any) -> str:
    higher = HIGHER_IS_BETTER.get(metric)
    sign = "≥" if higher else "≤" if higher is False else "bound"
    return f"{metric} {sign} {_num(bound)}"


def _markdown_line(line: Line) -> str:
    return "".join(_markdown_link(p.uri) if isinstance(p, Link) else markdown_text(p) for p in line)


def _markdown_link(uri: str) -> str:
    """An autolink for an http(s) URI, else a code span (which Markdown never interprets)."""
    if _AUTOLINK.match(uri):
        return f"<{uri}>"
    text = " ".join(uri.splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _html_line(line: Line) -> str:
    return "".join(_html_link(p.uri) if isinstance(p, Link) else html.escape(p) for p in line)


def _html_link(uri: str) -> str:
    if _HREF.match(uri):
        return f'<a href="{html.escape(uri)}">{html.escape(uri)}</a>'
    return f"<code>{html.escape(uri)}</code>"


def _html_trigger_row(trigger: dict[str, Any]) -> str:
    first, *events = trigger_lines(trigger)
    items = "".join(f"<li>{_html_line(line)}</li>" for line in events)
    return f"<tr><th>Trigger</th><td>{_html_line(first)}{f'<ul>{items}</ul>' if items else ''}</td></tr>"


def _fact_rows(facts: list[tuple[str, Any]]) -> str:
    esc = html.escape
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)


def _validation_text(validation: dict[str, Any]) -> str:
    if "success" in validation:
        failed = validation.get("failed") or []
        ok = "passed" if validation.get("success") else "FAILED"
        return f"{ok} ({validation.get('evaluated', '?')} checks, {len(failed)} failed)"
    return _pairs(validation)


def _approval_text(approval: dict[str, Any]) -> str:
    if not approval.get("required", True) and not approval.get("by"):
        return "not required"
    who = (approval.get("by") or {}).get("name") or (approval.get("by") or {}).get("id") or "unknown"
    outcome = "approved" if approval.get("approved") else "rejected"
    return f"{outcome} by {who} at {approval.get('at', '?')}"


# --- storage ---------------------------------------------------------------------------------------
def record_dir(model_name: str) -> str:
    """Artifact folder of the record, per registered model (a run could feed more than one model)."""
    return f"{ARTIFACT_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', model_name)}"


def record_uri(run_artifact_uri: str, model_name: str, kind: str = "json") -> str:
    return f"{run_artifact_uri.rstrip('/')}/{record_dir(model_name)}/decision.{kind}"


def _repo(client: MlflowClient, uri: str) -> Any:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri, tracking_uri=client.tracking_uri)


def store_record(client: MlflowClient, record: DecisionRecord, run_artifact_uri: str) -> str:
    """Write the record (JSON, Markdown, HTML) among the artifacts of its source run; return the JSON URI.

    ``run_artifact_uri`` is the run's ``info.artifact_uri``. Re-storing overwrites the same three
    files, so retries and later updates (approval, alias changes) leave one current record per
    run and model.
    """
    record.updated_at = now_iso()
    with tempfile.TemporaryDirectory(prefix="decision-") as tmp:
        folder = Path(tmp)
        (folder / "decision.json").write_text(record.to_json())
        (folder / "decision.md").write_text(record.to_markdown())
        (folder / "decision.html").write_text(record.to_html())
        _repo(client, run_artifact_uri).log_artifacts(str(folder), record_dir(record.model_name))
    return record_uri(run_artifact_uri, record.model_name)


def load_record(client: MlflowClient, run_artifact_uri: str, model_name: str) -> DecisionRecord | None:
    """The record stored for a run (by its artifact URI) and ``model_name``; ``None`` when there is none."""
    repo = _repo(client, f"{run_artifact_uri.rstrip('/')}/{record_dir(model_name)}")
    if "decision.json" not in {f.path.rsplit("/", 1)[-1] for f in repo.list_artifacts()}:
        return None
    with tempfile.TemporaryDirectory(prefix="decision-") as tmp:
        local = repo.download_artifacts("decision.json", tmp)
        return DecisionRecord.from_dict(json.loads(Path(local).read_text()))


def record_page_url(ui_base: str | None, experiment_id: str, run_id: str, model_name: str) -> str | None:
    """The MLflow UI page showing the HTML record among the run's artifacts."""
    if not ui_base:
        return None
    base = f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}/artifacts/{record_dir(model_name)}/decision.html"
