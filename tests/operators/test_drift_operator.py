"""The monitoring loop in dag.test(): score with the champion, detect drift, emit the drift asset.

The DAG is score -> detect_drift -> retrain_marker, with the drift asset as detect_drift's
outlet. A window whose ``x1`` moved by one sigma must produce exactly one asset event (with
the summary in ``extra``) and run the downstream task; a window from the training
distribution must produce none and skip the downstream task.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import live_window, register_champion

pytestmark = pytest.mark.integration

PIPELINE = "monitoring"

DAG_SOURCE = """
from airflow.sdk import DAG, Asset, task
from airflow_mlops_provider.operators.drift import DetectDriftOperator
from airflow_mlops_provider.operators.score import ScoreBatchOperator

LIVE = {live}
drift_asset = Asset(name="{asset}", uri="{asset_uri}")

with DAG("{dag_id}", schedule=None) as dag:
    score = ScoreBatchOperator(
        task_id="score", snapshot=LIVE, model_name="{model}", artifact_root="{root}",
        pipeline="{pipeline}", retries=0,
    )
    drift = DetectDriftOperator(
        task_id="detect_drift", current=LIVE, predictions=score.output, model_name="{model}",
        config={config}, artifact_root="{root}", pipeline="{pipeline}", outlets=[drift_asset], retries=0,
    )

    @task
    def retrain_marker():
        return "downstream ran"

    score >> drift >> retrain_marker()
"""


def _recorder() -> Any:
    """Airflow's no-op stats backend, keeping the gauges and timings it is sent (a StatsD stand-in)."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    class RecordingStats(NoStatsLogger):
        def __init__(self) -> None:
            self.gauges: dict[str, float] = {}
            self.timings: dict[str, Any] = {}

        def gauge(self, stat: str, value: float, *args: Any, **kwargs: Any) -> None:
            self.gauges[stat] = value

        def timing(self, stat: str, dt: Any, *args: Any, **kwargs: Any) -> None:
            self.timings[stat] = dt

    return RecordingStats()


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-root")
    return {**register_champion(TrackingSettings(mlflow_server), root, PIPELINE), "root": root}


@pytest.fixture
def recorded_stats():
    from airflow.sdk.observability import stats

    recorder = _recorder()
    stats.initialize(factory=lambda: recorder, export_legacy_names=False)
    yield recorder
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    stats.initialize(factory=NoStatsLogger, export_legacy_names=False)


def _run(dags, champion: dict, live: dict, config: dict | None = None):
    dag_id = f"monitor_{uuid.uuid4().hex[:8]}"
    asset = f"drift_{dag_id}"
    source = DAG_SOURCE.format(
        live=json.dumps(live),
        asset=asset,
        asset_uri=f"file:///tmp/mlops-assets/{asset}",
        dag_id=dag_id,
        model=champion["name"],
        root=champion["root"].as_uri(),
        pipeline=PIPELINE,
        config=json.dumps(config or {}),
    )
    run = dags.run(source, dag_id)
    return run, asset


def _asset_events(run: Any, asset: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.name == asset)
            .all()
        )
        return [
            {"extra": e.extra, "dag_id": e.source_dag_id, "run_id": e.source_run_id, "task": e.source_task_id}
            for e in rows
        ]


def test_drifted_window_emits_the_drift_asset_event_and_runs_downstream(
    dags, mlflow_conn, champion, recorded_stats
):
    live = live_window(champion["root"], PIPELINE, shift=1.0, seed=21)
    run, asset = _run(dags, champion, live)
    assert dags.task_states(run) == {
        "score": "success",
        "detect_drift": "success",
        "retrain_marker": "success",
    }
    summary = dags.xcom(run, "detect_drift")
    assert summary["drift"] is True
    assert summary["drifted_columns"] == ["x1"]
    assert summary["prediction_drift"] is True  # the shifted feature moves the champion's outputs
    assert summary["reference_sha256"] == champion["snapshot"]["sha256"]  # the champion's training data
    assert summary["current_sha256"] == live["sha256"]
    assert summary["model_version"] == champion["version"]
    events = _asset_events(run, asset)
    assert len(events) == 1
    assert events[0]["extra"] == summary
    assert (events[0]["dag_id"], events[0]["run_id"], events[0]["task"]) == (
        run.dag_id,
        run.run_id,
        "detect_drift",
    )
    # report, link, MLflow metrics against the champion version, StatsD gauges
    html = Location(summary["report_uri"]).read_bytes().decode()
    assert "DRIFT" in html and "Prediction drift" in html
    assert dags.xcom(run, "detect_drift", key="report_url") == summary["report_uri"]
    client = TrackingSettings(_server(mlflow_conn)).client()
    version = client.get_model_version(champion["name"], champion["version"])
    drift_run = client.get_run(version.tags["mlops.last_drift_run_id"])
    assert drift_run.data.metrics["drift"] == 1.0
    assert drift_run.data.metrics["drifted.x1"] == 1.0
    assert drift_run.data.tags["mlops.model_version"] == champion["version"]
    assert recorded_stats.gauges["mlops.drift.detected"] == 1
    assert recorded_stats.gauges["mlops.drift.columns"] == 1


def test_stable_window_emits_no_event_and_skips_downstream(dags, mlflow_conn, champion, recorded_stats):
    live = live_window(champion["root"], PIPELINE, shift=0.0, seed=22)
    run, asset = _run(dags, champion, live)
    assert dags.task_states(run) == {
        "score": "success",
        "detect_drift": "skipped",
        "retrain_marker": "skipped",
    }
    assert str(run.state) == "success"
    summary = dags.xcom(run, "detect_drift")
    assert summary["drift"] is False and summary["drifted_columns"] == []
    assert summary["prediction_drift"] is False
    assert _asset_events(run, asset) == []
    assert recorded_stats.gauges["mlops.drift.detected"] == 0
    assert Location(summary["report_uri"]).exists()


def test_a_reference_without_snapshot_tag_fails_clearly(dags, mlflow_conn, champion):
    client = TrackingSettings(_server(mlflow_conn)).client()
    name = champion["name"]
    version = champion["version"]
    uri = client.get_model_version(name, version).tags["mlops.snapshot_uri"]
    client.delete_model_version_tag(name, version, "mlops.snapshot_uri")
    try:
        live = live_window(champion["root"], PIPELINE, shift=1.0, seed=23, rows=300)
        run, asset = _run(dags, champion, live)
        states = dags.task_states(run)
        assert states["detect_drift"] == "failed"
        assert _asset_events(run, asset) == []
        from airflow_mlops_provider.core.drift import DriftError, run_drift_check

        with pytest.raises(
            DriftError, match=f"Champion version {version} of '{name}' has no 'mlops.snapshot_uri' tag"
        ):
            run_drift_check(
                live,
                artifact_root=Location(champion["root"].as_uri()),
                pipeline=PIPELINE,
                model_name=name,
                settings=TrackingSettings(_server(mlflow_conn)),
            )
    finally:
        client.set_model_version_tag(name, version, "mlops.snapshot_uri", uri)


def _server(conn_id: str) -> str:
    import os

    return json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])["host"]
