"""One pipeline's monitoring history: drift per window (MLflow drift runs) and performance per window
(the monitoring DAG's Parquet series under ``<artifact_root>/<pipeline>/monitoring/series/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.names import TAG_DRIFT_REPORT_URI, TAG_MODEL_NAME, TAG_MODEL_VERSION

if TYPE_CHECKING:
    from mlflow import MlflowClient

WINDOWS = 50


@dataclass(frozen=True)
class DriftPoint:
    at: datetime
    share: float | None
    drift: bool
    model_version: str | None
    report_uri: str | None


@dataclass(frozen=True)
class PerformancePoint:
    window_end: datetime
    model_version: str | None
    status: str | None
    realized: dict[str, float] = field(default_factory=dict)
    estimated: dict[str, float] = field(default_factory=dict)


def drift_history(
    client: MlflowClient, pipeline: str, model_name: str, last: int = WINDOWS
) -> list[DriftPoint]:
    """The latest ``last`` drift checks of the model's champions, oldest first (one search)."""
    from airflow_mlops_provider.core.registry import filter_value

    experiment = client.get_experiment_by_name(f"{pipeline}-monitoring")
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{TAG_MODEL_NAME}` = {filter_value(model_name)}",
        max_results=last * 2,  # performance runs share the experiment
        order_by=["attributes.start_time DESC"],
    )
    points = [
        DriftPoint(
            at=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
            share=run.data.metrics.get("drift_share"),
            drift=bool(run.data.metrics.get("drift")),
            model_version=run.data.tags.get(TAG_MODEL_VERSION),
            report_uri=run.data.tags.get(TAG_DRIFT_REPORT_URI),
        )
        for run in runs
        if "drift_share" in run.data.metrics and TAG_DRIFT_REPORT_URI in run.data.tags
    ]
    return points[:last][::-1]


def performance_history(
    artifact_root: str, pipeline: str, storage_options: dict[str, Any], last: int = WINDOWS
) -> list[PerformancePoint]:
    """The latest ``last`` windows the monitoring DAG measured performance in, oldest first."""
    from airflow_mlops_provider.core.monitoring.history import WindowStore
    from airflow_mlops_provider.core.storage import Location

    rows = WindowStore(Location(artifact_root, storage_options), pipeline).read_series(last).to_pylist()
    return [_performance_point(row) for row in rows]


def _performance_point(row: dict[str, Any]) -> PerformancePoint:
    values: dict[str, dict[str, float]] = {"realized": {}, "estimated": {}}
    for key, value in row.items():
        source, _, metric = key.partition("_")
        if source in values and value is not None and not metric.endswith(("_low", "_high")):
            values[source][metric] = float(value)
    return PerformancePoint(
        window_end=row["window_end"],
        model_version=row.get("model_version"),
        status=row.get("status"),
        realized=values["realized"],
        estimated=values["estimated"],
    )
