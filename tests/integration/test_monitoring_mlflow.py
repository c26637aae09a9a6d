"""The performance history on real services: one MLflow run per model version, one step per window; S3."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_mlops_provider.core.monitoring.history import WindowStore, log_window_to_mlflow
from airflow_mlops_provider.core.monitoring.types import MetricInterval, Status, Verdict, Window
from airflow_mlops_provider.core.names import (
    TAG_LAST_PERFORMANCE,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_MONITORING_KIND,
    TAG_PIPELINE,
)
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.promotion import new_model_name

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def window(i: int) -> Window:
    return Window(T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1))


def record(i: int, version: str, accuracy: float, *, status: Status = "ok") -> dict[str, Any]:
    realized = MetricInterval(accuracy, accuracy - 0.05, accuracy + 0.05, 200)
    return {
        "window": window(i).to_dict(),
        "model_version": version,
        "rows": 1000,
        "drift": {"drift": False, "share": 0.1 * i, "report_uri": "file:///r.html"},
        "estimated": {"accuracy": MetricInterval(0.88, math.nan, None, 1000).to_dict()},
        "realized": {"accuracy": realized.to_dict()},
        "labels": {"labelled": 200 + i, "pending": 800, "corrected": 0, "null_labels": 0},
        "verdict": Verdict(status, "accuracy", "significant", "why", realized, 0.91).to_dict(),
    }


@pytest.fixture
def model(mlflow_server: str) -> tuple[TrackingSettings, str, list[str]]:
    """A registered model with two versions (the source need not hold a model for tags and runs)."""
    settings = TrackingSettings(tracking_uri=mlflow_server)
    client = settings.client()
    name = new_model_name("perf")
    client.create_registered_model(name)
    versions = [str(client.create_model_version(name, "s3://nowhere/model").version) for _ in range(2)]
    return settings, name, versions


def history(settings: TrackingSettings, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in settings.client().get_metric_history(run_id, key))


def test_windows_of_one_version_are_steps_of_one_run(model: tuple[TrackingSettings, str, list[str]]) -> None:
    settings, name, (v1, _) = model
    pipeline = f"pl-{name}"
    first = log_window_to_mlflow(settings, pipeline, name, v1, record(0, v1, 0.9))
    second = log_window_to_mlflow(settings, pipeline, name, v1, record(1, v1, 0.8))
    assert log_window_to_mlflow(settings, pipeline, name, v1, record(1, v1, 0.8)) == first  # a retry
    assert first == second
    run = settings.client().get_run(first)
    assert run.info.run_name == f"performance-{name}-v{v1}"
    assert run.data.tags[TAG_PIPELINE] == pipeline and run.data.tags[TAG_MODEL_NAME] == name
    assert run.data.tags[TAG_MODEL_VERSION] == v1 and run.data.tags[TAG_MONITORING_KIND] == "performance"
    experiment = settings.client().get_experiment(run.info.experiment_id)
    assert experiment.name == f"{pipeline}-monitoring"
    ends = [int(window(i).end.timestamp()) for i in (0, 1)]
    assert history(settings, first, "realized.accuracy") == [
        (ends[0], ends[0] * 1000, 0.9),
        (ends[1], ends[1] * 1000, 0.8),
    ]
    assert [v for *_, v in history(settings, first, "realized.accuracy.low")] == pytest.approx([0.85, 0.75])
    assert [v for *_, v in history(settings, first, "labelled_rows")] == [200, 201]
    assert [v for *_, v in history(settings, first, "drift_share")] == pytest.approx([0.0, 0.1])
    assert [v for *_, v in history(settings, first, "estimated.accuracy")] == [0.88, 0.88]
    assert "estimated.accuracy.low" not in run.data.metrics  # NaN is skipped
    assert "estimated.accuracy.high" not in run.data.metrics  # None too


def test_a_new_version_gets_a_new_run_and_its_own_tag(model: tuple[TrackingSettings, str, list[str]]) -> None:
    settings, name, (v1, v2) = model
    pipeline = f"pl-{name}"
    old = log_window_to_mlflow(settings, pipeline, name, v1, record(0, v1, 0.9))
    new = log_window_to_mlflow(settings, pipeline, name, v2, record(1, v2, 0.7, status="degraded"))
    assert old != new
    assert settings.client().get_run(new).info.run_name == f"performance-{name}-v{v2}"
    tags = {v: settings.client().get_model_version(name, v).tags[TAG_LAST_PERFORMANCE] for v in (v1, v2)}
    summary = json.loads(tags[v2])
    assert len(tags[v2]) < 4000
    assert summary["window"] == window(1).to_dict()
    assert (summary["status"], summary["metric"], summary["value"]) == ("degraded", "accuracy", 0.7)
    assert json.loads(tags[v1])["status"] == "ok"


def test_a_backfilled_older_window_keeps_the_latest_tag(
    model: tuple[TrackingSettings, str, list[str]],
) -> None:
    settings, name, (v1, _) = model
    run_id = log_window_to_mlflow(settings, f"pl-{name}", name, v1, record(5, v1, 0.8, status="degraded"))
    log_window_to_mlflow(settings, f"pl-{name}", name, v1, record(2, v1, 0.9))
    tag = json.loads(settings.client().get_model_version(name, v1).tags[TAG_LAST_PERFORMANCE])
    assert tag["window"] == window(5).to_dict() and tag["status"] == "degraded"
    assert len(history(settings, run_id, "realized.accuracy")) == 2


def test_windows_logged_at_once_share_one_run(model: tuple[TrackingSettings, str, list[str]]) -> None:
    settings, name, (v1, _) = model
    pipeline = f"pl-{name}"
    run_ids: list[str] = []

    def log(i: int) -> None:
        run_ids.append(log_window_to_mlflow(settings, pipeline, name, v1, record(i, v1, 0.9)))

    threads = [threading.Thread(target=log, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(run_ids)) == 1
    client = settings.client()
    experiment = client.get_experiment_by_name(f"{pipeline}-monitoring")
    assert experiment is not None
    assert [run.info.run_id for run in client.search_runs([experiment.experiment_id])] == run_ids[:1]
    assert len(history(settings, run_ids[0], "labelled_rows")) == 4


def test_the_store_and_the_series_work_on_s3(s3_bucket: str, moto_endpoint: str) -> None:
    store = WindowStore(Location(f"s3://{s3_bucket}/root", {"endpoint_url": moto_endpoint}), "churn")
    for i in (2, 0, 1):
        store.save(record(i, "3", 0.9))
        store.write_series_row(record(i, "3", 0.9 - i / 10))
    store.save_arrival(window(1), {"uri": "s3://x/labels", "rows": 5})
    assert store.windows(T0, T0 + timedelta(hours=2)) == [window(0), window(1)]
    assert store.load(window(2)) == record(2, "3", 0.9)
    assert store.arrivals(T0, T0 + timedelta(days=1)) == [(window(1), {"uri": "s3://x/labels", "rows": 5})]
    series = store.read_series(last=2)
    assert series.column("realized_accuracy").to_pylist() == pytest.approx([0.8, 0.7])
