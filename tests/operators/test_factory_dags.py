"""Generated DAGs run end to end with dag.test() against a real MLflow server.

The classification loop: a first retrain makes a champion (and notifies a webhook), an
unchanged rerun skips training, monitoring finds drift in a shifted live window and emits the
drift asset, and the run that consumes that event together with a new-data event records both
causes in its decision record, and a manual rollback restores the first champion. The example
regression pipeline, as shipped, retrains, monitors a stable window, and refuses a rollback
with no previous champion.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.testing.local_runs import ensure_pools, post_asset_event, run_asset_triggered
from tests.operators.conftest import LOADER
from tests.operators.conftest import champion_version as _champion
from tests.operators.conftest import pipeline_config as _pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "dags" / "pipelines"


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Hooks.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hooks.received
    server.shutdown()


def test_classification_loop(factory, dags, tmp_path: Path, webhook, monkeypatch: pytest.MonkeyPatch):
    plan_cache = tmp_path / "plans"
    monkeypatch.setenv("MLOPS_PLAN_CACHE", str(plan_cache))
    write, load = factory
    url, received = webhook
    data, root = tmp_path / "data", tmp_path / "artifacts"
    name = "loop"
    write(
        _pipeline(
            name, "cancer", data, root, notifications={"on_promotion": [{"type": "webhook", "url": url}]}
        )
    )
    datasets.write(datasets.batch("cancer", 0, 2), data / "train", "batch-000")

    # 1. first retrain: a champion, and the promotion webhook
    retrain = load(f"retrain_{name}")
    run = retrain.test()
    states = dags.task_states(run)
    assert run.state == "success", states
    assert states["promote"] == "success"
    assert dags.xcom(run, "record_trigger_cause")["cause"] == "manual"
    decision = dags.xcom(run, "gate")
    assert decision["verdict"] == "pass"
    first_version = decision["version"]
    assert _champion(name) == str(first_version)
    assert [m["event"] for m in received] == ["promotion"]
    assert received[0]["decision"]["version"] == decision["version"]

    # 2. same data, same config: skipped, and the log-worthy reason is in XCom; the same holds
    # with the plan read back from the cache (warm) and after a dag-processor restart (cold)
    for cache in ("warm", "cold"):
        if cache == "cold":
            shutil.rmtree(plan_cache)
        run = load(f"retrain_{name}").test()
        states = dags.task_states(run)
        check = dags.xcom(run, "check_unchanged")
        assert check["skip"] is True and "Skipping training and promotion" in check["reason"], (cache, check)
        assert {states[t] for t in ("validate", "train", "evaluate", "gate", "promote")} == {"skipped"}
        assert run.state == "success"

    # 3. monitoring a shifted live window: drift found, drift asset event emitted
    datasets.write(datasets.live_window("cancer", rows=150, drift=1.0, seed=5), data / "live", "window-005")
    run = load(f"monitor_{name}").test()
    assert run.state == "success", dags.task_states(run)
    drift = dags.xcom(run, "detect_drift")
    assert drift["drift"] is True and drift["drifted_columns"]

    # 4. new labelled data (with its new-data event) and the drift event fold into one run
    shifted = datasets.drifted_batch("cancer", drift=1.0, seed=5)
    landed = datasets.write(shifted, data / "train", "drifted-000")
    post_asset_event(f"mlops.{name}.new_data", {"files": [landed.as_uri()]})
    run = run_asset_triggered(load(f"retrain_{name}"), [f"mlops.{name}.new_data", f"mlops.{name}.drift"])
    states = dags.task_states(run)
    assert run.state == "success", states
    cause = dags.xcom(run, "record_trigger_cause")
    assert cause["cause"] == "drift+new_data"
    by_kind = {e["kind"]: e for e in cause["events"]}
    assert (
        by_kind["drift"]["extra"]["drift"] is True and by_kind["drift"]["source_dag_id"] == f"monitor_{name}"
    )
    assert by_kind["new_data"]["extra"] == {"files": [landed.as_uri()]}
    decision = dags.xcom(run, "gate")
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    version = MlflowHook().client.get_model_version(name, decision["version"])
    assert version.tags["mlops.trigger_cause"] == "drift+new_data"  # in the decision record too
    assert decision["verdict"] == "pass" and _champion(name) == str(decision["version"])  # lenient gate

    # 5. manual rollback restores the first champion
    run = load(f"rollback_{name}").test(run_conf={"reason": "regression spotted in review"})
    assert run.state == "success", dags.task_states(run)
    assert _champion(name) == str(first_version)


def test_example_regression_pipeline_verbatim(dags, mlflow_conn, tmp_path: Path, monkeypatch):
    """The shipped ``diabetes.yaml``: retrain, monitor, and a rollback with nothing to roll back to."""
    data, root = tmp_path / "data", tmp_path / "artifacts"
    monkeypatch.setenv("MLOPS_DATA_ROOT", data.as_uri())
    monkeypatch.setenv("MLOPS_ARTIFACT_ROOT", root.as_uri())
    loader = dags.write(LOADER.format(folder=str(EXAMPLES)))
    for index in range(2):
        datasets.write(
            datasets.batch("diabetes", index, 2), data / "diabetes" / "train", f"batch-{index:03d}"
        )

    def load(dag_id: str) -> Any:
        dag = dags.load(loader, dag_id)
        ensure_pools(dag)
        return dag

    run = load("retrain_diabetes").test()
    assert run.state == "success", dags.task_states(run)
    decision = dags.xcom(run, "gate")
    assert decision["verdict"] == "pass", decision["reasons"]
    assert _champion("diabetes") == str(decision["version"])
    assert set(dags.xcom(run, "evaluate")["challenger"]["metrics"]) == {"rmse", "mae", "r2"}

    window = datasets.live_window("diabetes", rows=200, drift=0.0, seed=1)
    datasets.write(window, data / "diabetes" / "live", "window-001")
    run = load("monitor_diabetes").test()
    assert run.state == "success", dags.task_states(run)
    assert dags.xcom(run, "detect_drift")["drift"] is False
    estimated = dags.xcom(run, "measure_performance")["estimated"]  # no labels: DLE's estimate
    assert set(estimated) == {"rmse", "mae"}
    assert 0 < estimated["mae"]["low"] <= estimated["mae"]["value"] <= estimated["mae"]["high"]

    run = load("rollback_diabetes").test(run_conf={"reason": "checking the rollback path"})
    assert run.state == "failed" and dags.task_states(run) == {"rollback": "failed"}
    assert _champion("diabetes") == str(decision["version"])  # nothing to roll back to: unchanged


def test_unlabelled_rows_are_dropped_and_counted_or_stop_the_run_in_validation(factory, dags, tmp_path: Path):
    """A public regression table with a few missing target values trains (rows dropped, counted in the
    MLflow run and the decision record); with ``missing_target: fail`` validation stops the run first."""
    from airflow_mlops_provider.core.decision_record import load_record
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    write, load = factory
    data, root = tmp_path / "data", tmp_path / "artifacts"
    frame = datasets.batch("diabetes", 0, 1)
    target = datasets.target_of("diabetes")
    frame.loc[frame.index[::70], target] = None  # 7 of 442 rows (1.6%) have no label yet
    unlabelled = int(frame[target].isna().sum())
    datasets.write(frame, data / "train", "batch-000")

    write(_pipeline("unlabelled", "diabetes", data, root))
    run = load("retrain_unlabelled").test()
    assert run.state == "success", dags.task_states(run)
    decision = dags.xcom(run, "gate")
    client = MlflowHook().client
    record = load_record(client, decision["run_artifact_uri"], "unlabelled")
    trained = record.training_snapshot["missing_target_dropped"]
    assert set(trained) == {"train", "validation"}
    assert sum(trained.values()) + record.evaluation_snapshot["missing_target_dropped"] == unlabelled
    metrics = client.get_run(decision["source_run_id"]).data.metrics
    assert metrics["missing_target_dropped_train"] == trained["train"]

    strict = _pipeline("unlabelled_strict", "diabetes", data, root)
    strict["training"]["missing_target"] = "fail"
    write(strict)
    run = load("retrain_unlabelled_strict").test()
    states = dags.task_states(run)
    assert run.state == "failed" and states["validate"] == "failed", states
    stages = ("train", "select_best", "evaluate", "gate", "promote")
    assert not [t for t, state in states.items() if t.startswith(stages) and state == "success"], states
    assert client.search_registered_models("name = 'unlabelled_strict'") == []
    report = json.loads(
        next((root / "unlabelled_strict" / "reports" / "validation").rglob("*.json")).read_text()
    )
    (check,) = [c for c in report["checks"] if c.get("role") == "target" and not c["success"]]
    assert f"target column {target!r}: {unlabelled} of 442 rows have no label" in check["note"]


def test_performance_loop_windows_late_labels_and_a_retrain_that_names_the_drop(
    factory, dags, tmp_path: Path
):
    """Monitoring reads only its window; labels two windows late land in the right window; a drop fires
    the performance trigger (input drift alone does not) and the retrain's decision record names it."""
    from datetime import UTC, datetime, timedelta

    from airflow_mlops_provider.core.decision_record import load_record
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    write, load = factory
    data, root = tmp_path / "data", tmp_path / "artifacts"
    name, hour = "perf", "hour={{ data_interval_start.strftime('%Y%m%dT%H') }}/"
    config = _pipeline(name, "cancer", data, root)
    config["training"]["hyperparameters"]["epochs"] = 8
    config["monitoring"].update(
        window={"by": "partition", "partition": hour},
        labels={
            "source": {"uri": (data / "labels").as_uri() + "/", "glob": "*.csv"},
            "window": {"by": "partition", "partition": hour},
            "max_delay": "3h",
        },
        performance={"metric": "accuracy", "min_labels": 50, "resamples": 100},
    )
    config["triggers"] = {"performance": True}
    write(config)
    datasets.write(datasets.batch("cancer", 0, 2), data / "train", "batch-000")
    run = load(f"retrain_{name}").test()
    assert run.state == "success", dags.task_states(run)

    start = datetime(2026, 11, 30, tzinfo=UTC)
    ends = [start + timedelta(hours=i + 1) for i in range(3)]
    part = [f"hour={(end - timedelta(hours=1)):%Y%m%dT%H}" for end in ends]
    target = datasets.target_of("cancer")

    def monitor(end: datetime) -> tuple[Any, dict[str, str]]:
        run = load(f"monitor_{name}").test(logical_date=end)
        return run, dags.task_states(run)

    # window 1: live rows (their labels come two windows later); nothing to judge yet but the estimate
    first = datasets.live_window("cancer", rows=200, seed=11, labelled=True)
    datasets.write(first.drop(columns=[target]), data / "live" / part[0], "live")
    datasets.write(
        datasets.live_window("cancer", rows=50, seed=12), data / "live" / "hour=20261129T00", "old"
    )
    run, states = monitor(ends[0])
    assert states["ingest_live"] == "success" and states["measure_performance"] == "skipped", states
    assert dags.xcom(run, "ingest_live")["rows"] == 200  # the older partition is not read
    summary = dags.xcom(run, "measure_performance")
    assert (
        summary["estimated"]["accuracy"]["value"] > 0.6 and summary["windows"][0]["labels"]["labelled"] == 0
    )

    # window 2: input drift (benign rows only) with their true labels: drift fires, performance does not
    benign = datasets.live_window("cancer", rows=400, seed=21, labelled=True)
    benign = benign[benign[target] == "benign"]
    datasets.write(benign.drop(columns=[target]), data / "live" / part[1], "live")
    datasets.write(datasets.labels_of("cancer", benign), data / "labels" / part[1], "labels")
    run, states = monitor(ends[1])
    assert states["detect_drift"] == "success" and states["measure_performance"] == "skipped", states
    judged = {w["window"]["start"]: w for w in dags.xcom(run, "measure_performance")["windows"]}
    assert judged[ends[0].isoformat()]["status"] == "ok"
    assert judged[start.isoformat()]["labels"]["labelled"] == 0  # window 1's labels are not here yet

    # window 3: no live rows (skipped, not failed); window 1's labels arrive, 45% of them changed
    datasets.write(
        datasets.labels_of("cancer", first, flip=0.45, seed=3), data / "labels" / part[2], "labels"
    )
    run, states = monitor(ends[2])
    assert states["ingest_live"] == "skipped" and states["score"] == "skipped", states
    assert states["measure_performance"] == "success", states
    fired = dags.xcom(run, "measure_performance")["fired"]
    assert fired["window"]["start"] == start.isoformat() and fired["labelled"] == 200
    assert fired["metric"] == "accuracy" and fired["value"]["high"] < fired["reference"]
    assert fired["concept_drift"]["suspected"] is True

    # the performance event starts a retrain (new labelled data is there too) whose record names it
    datasets.write(datasets.batch("cancer", 1, 2), data / "train", "batch-001")
    run = run_asset_triggered(load(f"retrain_{name}"), [f"mlops.{name}.performance"])
    assert run.state == "success", dags.task_states(run)
    cause = dags.xcom(run, "record_trigger_cause")
    assert cause["cause"] == "performance"
    assert cause["events"][0]["extra"]["window"] == fired["window"]
    decision = dags.xcom(run, "gate")
    record = load_record(MlflowHook().client, decision["run_artifact_uri"], name)
    assert record.trigger["cause"] == "performance"
    markdown = record.to_markdown()
    assert "accuracy" in markdown and "2026" in markdown
