"""What Airflow's metadata database knows about the pipelines: their DAGs, runs, champion events, approvals.

A pipeline is found by the ``pipeline:<name>`` tag the DAG factory puts on its ``retrain_``,
``monitor_`` and ``rollback_`` DAGs; its registered model name and artifact root come from the
``extra`` of its champion and training-snapshot assets. Every function reads a handful of rows in
a fixed number of queries, whatever the number of pipelines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PIPELINE_TAG = "pipeline:"
KINDS = ("retrain", "monitor", "rollback")


@dataclass(frozen=True)
class RunView:
    run_id: str
    state: str | None
    run_after: datetime | None


@dataclass
class DagView:
    """One DAG of a pipeline: its schedule and next and last run."""

    dag_id: str
    kind: str
    is_paused: bool
    schedule: str | None
    next_run: datetime | None
    last_run: RunView | None = None


@dataclass(frozen=True)
class ChampionEvent:
    """The ``champion`` alias moved (an event on the pipeline's champion asset)."""

    at: datetime
    version: str | None
    previous: str | None
    how: str  # promoted, rolled back, moved
    dag_id: str | None
    run_id: str | None


@dataclass(frozen=True)
class PendingApproval:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    since: datetime


@dataclass
class PipelineView:
    """Everything Airflow knows about one pipeline."""

    name: str
    dags: dict[str, DagView]
    model_name: str
    artifact_root: str | None = None
    last_champion_event: ChampionEvent | None = None
    approvals: list[PendingApproval] = field(default_factory=list)

    def dag(self, kind: str) -> DagView | None:
        return self.dags.get(kind)


def load_pipelines(session: Session, readable: set[str], only: str | None = None) -> list[PipelineView]:
    """The pipelines all of whose DAGs are in ``readable`` (DAG ids the user may read), by name.

    ``only``: just that pipeline (or none when it is unknown or not readable).
    """
    dags = _pipeline_dags(session, only)
    visible = {name: members for name, members in dags.items() if all(d.dag_id in readable for d in members)}
    if not visible:
        return []
    assets = _asset_extras(session, visible)
    pipelines = [
        PipelineView(
            name=name,
            dags={d.kind: d for d in members},
            model_name=str(assets.get(f"mlops.{name}.champion", {}).get("model_name") or name),
            artifact_root=assets.get(f"mlops.{name}.training_snapshot", {}).get("artifact_root"),
        )
        for name, members in sorted(visible.items())
    ]
    _attach_last_runs(session, pipelines)
    _attach_champion_events(session, pipelines)
    _attach_approvals(session, pipelines)
    return pipelines


def pipeline_of_dag(session: Session, dag_id: str) -> str | None:
    """The pipeline a DAG belongs to (by its ``pipeline:`` tag), or None for other DAGs."""
    from airflow.models.dag import DagTag

    tags = session.scalars(
        select(DagTag.name).where(DagTag.dag_id == dag_id, DagTag.name.startswith(PIPELINE_TAG))
    ).all()
    names = [t.removeprefix(PIPELINE_TAG) for t in tags]
    return next((n for n in names if _kind(dag_id, n) is not None), None)


def _kind(dag_id: str, pipeline: str) -> str | None:
    return next((k for k in KINDS if dag_id == f"{k}_{pipeline}"), None)


def _pipeline_dags(session: Session, only: str | None) -> dict[str, list[DagView]]:
    from airflow.models.dag import DagModel, DagTag

    wanted = DagTag.name == f"{PIPELINE_TAG}{only}" if only else DagTag.name.startswith(PIPELINE_TAG)
    rows = session.execute(
        select(
            DagTag.name,
            DagModel.dag_id,
            DagModel.is_paused,
            DagModel.timetable_summary,
            DagModel.next_dagrun_create_after,
        )
        .join(DagModel, DagModel.dag_id == DagTag.dag_id)
        .where(wanted, DagModel.is_stale.is_(False))
    ).all()
    out: dict[str, list[DagView]] = defaultdict(list)
    for tag, dag_id, paused, schedule, next_run in rows:
        name = tag.removeprefix(PIPELINE_TAG)
        kind = _kind(dag_id, name)
        if kind is not None:
            out[name].append(DagView(dag_id, kind, bool(paused), schedule, None if paused else next_run))
    return out


def _asset_extras(session: Session, pipelines: Iterable[str]) -> dict[str, dict[str, Any]]:
    from airflow.models.asset import AssetModel

    names = [f"mlops.{p}.{kind}" for p in pipelines for kind in ("champion", "training_snapshot")]
    rows = session.execute(select(AssetModel.name, AssetModel.extra).where(AssetModel.name.in_(names)))
    return {name: dict(extra or {}) for name, extra in rows}


def _by_dag_id(pipelines: list[PipelineView]) -> dict[str, DagView]:
    return {d.dag_id: d for p in pipelines for d in p.dags.values()}


def _attach_last_runs(session: Session, pipelines: list[PipelineView]) -> None:
    from airflow.models.dagrun import DagRun

    dags = _by_dag_id(pipelines)
    latest = select(func.max(DagRun.id)).where(DagRun.dag_id.in_(dags)).group_by(DagRun.dag_id)
    rows = session.execute(
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_after).where(DagRun.id.in_(latest))
    )
    for dag_id, run_id, state, run_after in rows:
        dags[dag_id].last_run = RunView(run_id, None if state is None else str(state), run_after)


def champion_events(
    session: Session, pipelines: list[str], per_pipeline: int = 1
) -> dict[str, list[ChampionEvent]]:
    """The latest ``per_pipeline`` champion moves of each pipeline, newest first."""
    from airflow.models.asset import AssetEvent, AssetModel

    names = {f"mlops.{p}.champion": p for p in pipelines}
    ranked = (
        select(
            AssetModel.name,
            AssetEvent.timestamp,
            AssetEvent.extra,
            AssetEvent.source_dag_id,
            AssetEvent.source_run_id,
            func.row_number()
            .over(partition_by=AssetEvent.asset_id, order_by=AssetEvent.id.desc())
            .label("rank"),
        )
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.name.in_(names))
        .subquery()
    )
    rows = session.execute(select(ranked).where(ranked.c.rank <= per_pipeline)).mappings()
    out: dict[str, list[ChampionEvent]] = defaultdict(list)
    for row in rows:
        out[names[row["name"]]].append(_champion_event(row))
    for events in out.values():
        events.sort(key=lambda e: e.at, reverse=True)
    return out


def _champion_event(row: Any) -> ChampionEvent:
    extra = row["extra"] if isinstance(row["extra"], dict) else {}
    if "to_version" in extra:  # a rollback
        version, previous, how = extra.get("to_version"), extra.get("from_version"), "rolled back"
    elif extra.get("promoted"):
        version, previous, how = extra.get("champion"), extra.get("previous_champion"), "promoted"
    else:  # an event without our extra (a rollout step, a REST caller)
        version, previous, how = None, None, "moved"
    return ChampionEvent(
        at=row["timestamp"],
        version=None if version is None else str(version),
        previous=None if previous in (None, "") else str(previous),
        how=how,
        dag_id=row["source_dag_id"],
        run_id=row["source_run_id"],
    )


def _attach_champion_events(session: Session, pipelines: list[PipelineView]) -> None:
    events = champion_events(session, [p.name for p in pipelines])
    for pipeline in pipelines:
        latest = events.get(pipeline.name)
        pipeline.last_champion_event = latest[0] if latest else None


def _attach_approvals(session: Session, pipelines: list[PipelineView]) -> None:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance

    retrain = {d.dag_id: p for p in pipelines if (d := p.dag("retrain")) is not None}
    rows = session.execute(
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            HITLDetail.subject,
            HITLDetail.created_at,
        )
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(
            TaskInstance.dag_id.in_(retrain),
            HITLDetail.responded_at.is_(None),
            TaskInstance.state == "deferred",
        )
        .order_by(HITLDetail.created_at)
    )
    for dag_id, run_id, task_id, map_index, subject, created in rows:
        retrain[dag_id].approvals.append(
            PendingApproval(dag_id, run_id, task_id, map_index, subject, created)
        )
