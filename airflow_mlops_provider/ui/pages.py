"""What the pages show, built from Airflow's view of the pipelines and the registry's: plain data that
the templates render and the JSON route returns. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_mlops_provider.ui.charts import Series, line_chart
from airflow_mlops_provider.ui.reports import relative_report_path

if TYPE_CHECKING:
    from airflow_mlops_provider.ui.airflow_state import ChampionEvent, PendingApproval, PipelineView
    from airflow_mlops_provider.ui.history import DriftPoint, PerformancePoint
    from airflow_mlops_provider.ui.registry_view import ModelView, VersionView


@dataclass(frozen=True)
class Urls:
    """Addresses of this app's pages (under ``app``) and of Airflow's own UI (under ``airflow``)."""

    app: str
    airflow: str

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}"

    def approval(self, a: PendingApproval) -> str:
        task = f"{self.dag(a.dag_id)}/runs/{quote(a.run_id, safe='')}/tasks/{quote(a.task_id, safe='')}"
        return f"{task}{f'/mapped/{a.map_index}' if a.map_index >= 0 else ''}/required_actions"

    def pipeline(self, name: str) -> str:
        return f"{self.app}/pipelines/{quote(name, safe='')}"

    def decision(self, pipeline: str, version: str) -> str:
        return f"{self.pipeline(pipeline)}/decisions/{quote(version, safe='')}"

    def files(self, pipeline: str) -> str:
        return f"{self.pipeline(pipeline)}/files"

    def report(self, pipeline: str, relative: str) -> str:
        return f"{self.files(pipeline)}/{quote(relative)}"


@dataclass(frozen=True)
class Link:
    text: str
    href: str | None = None


@dataclass
class ModelRow:
    """One line of the Models page."""

    pipeline: str
    pipeline_url: str
    model_name: str
    champion: str | None
    champion_since: datetime | None
    champion_how: str | None
    metrics: dict[str, float]
    decision: Link | None
    drift: Link | None
    approvals: list[Link]
    schedule: list[Link]  # per DAG: its next run, linked to the DAG
    last_runs: list[Link]


def model_rows(pipelines: list[PipelineView], models: dict[str, ModelView], urls: Urls) -> list[ModelRow]:
    return [model_row(p, models[p.model_name], urls) for p in pipelines]


def model_row(pipeline: PipelineView, model: ModelView, urls: Urls) -> ModelRow:
    champion = model.champion
    event = pipeline.last_champion_event
    moved = (
        event if event is not None and champion is not None and event.version == champion.version else None
    )
    return ModelRow(
        pipeline=pipeline.name,
        pipeline_url=urls.pipeline(pipeline.name),
        model_name=model.name,
        champion=champion.version if champion else None,
        champion_since=moved.at if moved else None,
        champion_how=moved.how if moved else None,
        metrics=dict(model.champion_metrics),
        decision=_decision_link(pipeline.name, model.last_decision, urls),
        drift=_drift_link(pipeline, champion, urls),
        approvals=[Link(a.subject or f"{a.dag_id} {a.run_id}", urls.approval(a)) for a in pipeline.approvals],
        schedule=[
            _next_run(d.kind, d.next_run, d.schedule, d.is_paused, urls.dag(d.dag_id))
            for d in pipeline.dags.values()
            if d.kind != "rollback"
        ],
        last_runs=[
            Link(f"{d.kind}: {d.last_run.state}", urls.dag(d.dag_id))
            for d in pipeline.dags.values()
            if d.last_run is not None
        ],
    )


def _decision_link(pipeline: str, version: VersionView | None, urls: Urls) -> Link | None:
    if version is None or version.decision is None:
        return None
    text = f"v{version.version}: {version.decision}"
    return Link(text, urls.decision(pipeline, version.version) if version.record_uri else None)


def _drift_link(pipeline: PipelineView, champion: VersionView | None, urls: Urls) -> Link | None:
    drift = champion.last_drift if champion else None
    if drift is None:
        return None
    share = drift.get("share")
    text = ("drift" if drift.get("drift") else "no drift") + (
        f" ({float(share):.0%} of columns)" if isinstance(share, int | float) else ""
    )
    relative = relative_report_path(pipeline.artifact_root, pipeline.name, drift.get("report_uri"))
    return Link(text, urls.report(pipeline.name, relative) if relative else None)


def _next_run(kind: str, at: datetime | None, schedule: str | None, paused: bool, href: str) -> Link:
    if paused:
        when = "paused"
    elif at is not None:
        when = f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    else:
        when = "on events" if schedule and schedule != "None" else "manual"
    return Link(f"{kind}: {when}", href)


# --- the pipeline page ------------------------------------------------------------------------------
@dataclass
class PipelinePage:
    """A pipeline's history: champion moves, decisions, drift and performance per window, reports."""

    row: ModelRow
    champion_moves: list[ChampionEvent]
    decisions: list[dict[str, Any]]
    drift_chart: str
    drift_windows: list[dict[str, Any]]
    performance_chart: str
    performance_windows: list[dict[str, Any]]
    reports: list[Link] = field(default_factory=list)


def pipeline_page(
    pipeline: PipelineView,
    model: ModelView,
    urls: Urls,
    *,
    moves: list[ChampionEvent],
    drift: list[DriftPoint],
    performance: list[PerformancePoint],
    reports: list[str],
) -> PipelinePage:
    return PipelinePage(
        row=model_row(pipeline, model, urls),
        champion_moves=moves,
        decisions=[
            {
                "version": v.version,
                "decision": v.decision,
                "status": v.status,
                "aliases": ", ".join(v.aliases),
                "registered": datetime.fromtimestamp(v.created_ms / 1000, UTC),
                "href": urls.decision(pipeline.name, v.version) if v.record_uri else None,
            }
            for v in model.versions
            if v.decision is not None or v.aliases
        ],
        drift_chart=line_chart(
            "Drift share per window",
            [_short(p.at) for p in drift],
            [Series("share of drifted columns", [p.share for p in drift])],
        ),
        drift_windows=[_drift_window(pipeline, p, urls) for p in reversed(drift)],
        performance_chart=_performance_chart(performance),
        performance_windows=[
            {
                "window_end": p.window_end,
                "version": p.model_version,
                "status": p.status,
                "realized": p.realized,
                "estimated": p.estimated,
            }
            for p in reversed(performance)
        ],
        reports=[Link(r, urls.report(pipeline.name, r)) for r in reports],
    )


def _drift_window(pipeline: PipelineView, point: DriftPoint, urls: Urls) -> dict[str, Any]:
    relative = relative_report_path(pipeline.artifact_root, pipeline.name, point.report_uri)
    return {
        "at": point.at,
        "share": point.share,
        "drift": point.drift,
        "version": point.model_version,
        "href": urls.report(pipeline.name, relative) if relative else None,
    }


def _performance_chart(points: list[PerformancePoint]) -> str:
    metrics = sorted({m for p in points for m in (*p.realized, *p.estimated)})
    series = [
        Series(f"{source} {metric}", [getattr(p, source).get(metric) for p in points])
        for metric in metrics[:2]
        for source in ("realized", "estimated")
        if any(metric in getattr(p, source) for p in points)
    ]
    return line_chart("Performance per window", [_short(p.window_end) for p in points], series)


def _short(at: datetime) -> str:
    return f"{at.astimezone(UTC):%m-%d %H:%M}"
