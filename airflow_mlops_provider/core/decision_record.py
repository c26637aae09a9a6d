"""The decision record: one document saying why a model version was, or was not, promoted.

It holds the trigger cause (schedule, new data or drift, with the asset event's extra), the data
snapshot hashes, the validation summary, both models' metrics, the gate config, every check and
the verdict with its reasons, the approver if any, the alias changes and the previous champion.
It is stored as JSON plus Markdown and HTML renderings among the artifacts of the challenger's
run (``decision_record/``), and summarised in tags on the model version.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.registry import now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

SCHEMA_VERSION = 1
ARTIFACT_DIR = "decision_record"
STATUSES = ("rejected", "awaiting_approval", "approved", "promoted", "already_champion", "superseded")
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
        lines = [
            f"## {self.model_name} v{self.version}: **{self.verdict.upper()}** "
            f"({self.status.replace('_', ' ')})",
            "",
            f"- Trigger: {markdown_text(_trigger_text(self.trigger))}",
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
            lines.append(f"- Validation: {_validation_text(self.validation)}")
        lines += ["", "| metric | challenger | champion |", "|---|---|---|"]
        lines += [f"| {n} | {_fmt(a)} | {_fmt(b)} |" for n, a, b in self.metric_rows()]
        lines += ["", "**Reasons**", ""] + [f"- {r}" for r in self.reasons]
        if self.approval:
            lines += ["", f"**Approval**: {_approval_text(self.approval)}"]
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
        champ = self.champion
        facts = [
            ("Model", f"{self.model_name} v{self.version}"),
            ("Status", self.status),
            ("Trigger", _trigger_text(self.trigger)),
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
            ("Gate", json.dumps(self.gate, sort_keys=True)),
        ]
        fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
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
            f"<h2>Alias changes</h2><ul>{changes or '<li>none</li>'}</ul>"
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


def _trigger_text(trigger: dict[str, Any]) -> str:
    cause = trigger.get("cause") or "unknown"
    extra = {k: v for k, v in trigger.items() if k != "cause"}
    return cause if not extra else f"{cause} {json.dumps(extra, sort_keys=True, default=str)[:300]}"


def _validation_text(validation: dict[str, Any]) -> str:
    if "success" in validation:
        failed = validation.get("failed") or []
        ok = "passed" if validation.get("success") else "FAILED"
        return f"{ok} ({validation.get('evaluated', '?')} checks, {len(failed)} failed)"
    return json.dumps(validation, sort_keys=True, default=str)[:300]


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
