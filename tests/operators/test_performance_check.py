"""The performance check against a real MLflow registry: a window is estimated before its labels, judged
when they arrive (two runs later), and a bad label arrival fails before anything is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.monitoring.history import WindowStore
from airflow_mlops_provider.core.monitoring.labels import LabelError
from airflow_mlops_provider.core.monitoring.run import LabelSettings, run_performance_check
from airflow_mlops_provider.core.monitoring.types import Window
from airflow_mlops_provider.core.scoring import score_snapshot
from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import frame, register_champion

pytestmark = pytest.mark.integration

PIPELINE = "perfcheck"
T0 = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
LABELS = LabelSettings(id_column="row_id", target="y", max_delay=3 * 3600)


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("perf-root")
    return {**register_champion(TrackingSettings(mlflow_server), root, PIPELINE), "root": root}


def _window(hour: int) -> Window:
    return Window(T0 + hour * HOUR, T0 + (hour + 1) * HOUR)


def _check(champion: dict, mlflow_server: str, hour: int, **inputs: object):
    return run_performance_check(
        _window(hour),
        task="classification",
        artifact_root=Location(champion["root"].as_uri()),
        pipeline=PIPELINE,
        model_name=champion["name"],
        settings=TrackingSettings(mlflow_server),
        config={"metric": "accuracy", "min_labels": 50, "resamples": 50},
        label_settings=LABELS,
        **inputs,
    )


def test_a_window_is_estimated_first_and_judged_when_its_labels_arrive_two_runs_later(
    champion, mlflow_server
):
    root = Location(champion["root"].as_uri())
    rows = frame(400, seed=31)
    rows["row_id"] = [f"w0-{i}" for i in range(len(rows))]
    live = write_snapshot(
        pa.Table.from_pandas(rows.drop(columns=["y"]), preserve_index=False), root, PIPELINE
    )
    settings = TrackingSettings(mlflow_server)
    scored = score_snapshot(
        live.to_dict(), model_name=champion["name"], settings=settings, artifact_root=root, pipeline=PIPELINE,
        keep_columns=["row_id"],
    )  # fmt: skip

    first = _check(champion, mlflow_server, 0, predictions=scored, live=live.to_dict())
    estimated = first.summary()["estimated"]["accuracy"]
    assert 0.8 < estimated["value"] <= 1 and estimated["low"] <= estimated["value"] <= estimated["high"]
    assert first.summary()["windows"][0]["labels"]["labelled"] == 0 and first.fired is None

    # two windows later the labels arrive (with an unknown id, which belongs to no window)
    labels = rows[["row_id", "y"]].assign(y=rows["y"].astype(str))
    labels.loc[len(labels)] = ["elsewhere", "1"]
    arrival = write_snapshot(pa.Table.from_pandas(labels, preserve_index=False), root, PIPELINE)
    later = _check(champion, mlflow_server, 2, labels=arrival.to_dict())
    (judged,) = later.judged
    assert judged["window"] == _window(0).to_dict()
    assert judged["labels"]["labelled"] == 400 and judged["labels"]["pending"] == 0
    realized = judged["realized"]["accuracy"]
    assert realized["low"] <= realized["value"] <= realized["high"] and realized["value"] > 0.8
    # the champion was crowned by hand, without a gate: nothing to compare with, so no verdict
    assert judged["verdict"]["status"] == "no_reference" and later.fired is None
    assert judged["label_drift"]["drift"] is False
    store = WindowStore(root, PIPELINE)
    assert store.load(_window(0))["labels"]["labelled"] == 400
    assert store.read_series().num_rows == 1
    assert later.report_uri.endswith("/perfcheck/reports/performance/trend.html")


def test_a_label_arrival_without_the_id_column_fails_naming_it_and_stores_nothing(champion, mlflow_server):
    root = Location(champion["root"].as_uri())
    bad = write_snapshot(pa.table({"id": ["a", "b"], "y": ["0", "1"]}), root, PIPELINE)
    store = WindowStore(root, PIPELINE)
    before = store.arrivals(T0, T0 + 48 * HOUR)
    with pytest.raises(LabelError, match=r"labels snapshot .* has no column 'row_id'"):
        _check(champion, mlflow_server, 5, labels=bad.to_dict())
    assert store.arrivals(T0, T0 + 48 * HOUR) == before
    assert store.load(_window(5)) is None
