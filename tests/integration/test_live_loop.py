"""The whole retraining loop on a live Airflow (LocalExecutor, PostgreSQL), MLflow server and moto S3.

Everything is driven the way users and upstream systems do it: objects uploaded to S3, asset
events and DAG runs posted to Airflow's REST API, results read from the MLflow registry.
"""

from __future__ import annotations

import io
import itertools
import time
import uuid

import boto3
import mlflow
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.core.decision_record import load_record
from airflow_mlops_provider.links.mlflow import model_version_url
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.browser import browser_available, chromium, login
from tests.support.pipelines import cancer_pipeline_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = "live"
MODEL = "live_cancer"


def _upload(s3, bucket: str, key: str, frame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue().encode())


@pytest.fixture(scope="module")
def live_pipeline(live_airflow, live_dags_folder, moto_endpoint, session_dir):
    bucket = f"live-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    _upload(s3, bucket, "cancer/train/batch-000.csv", datasets.batch("cancer", 0, 2))
    artifact_root = (session_dir / "live-artifacts").as_uri()
    (live_dags_folder / "pipelines" / f"{PIPELINE}.yaml").write_text(
        cancer_pipeline_yaml(PIPELINE, model=MODEL, bucket=bucket, artifact_root=artifact_root)
    )
    live_airflow.ensure_pool(promotion_pool(MODEL), 1, "serialise promotions")
    for dag_id in (f"retrain_{PIPELINE}", f"monitor_{PIPELINE}"):
        live_airflow.wait_for_dag(dag_id, timeout_s=240)
    return {"bucket": bucket, "s3": s3}


def _wait_for_new_run(stack, dag_id: str, known: set[str], timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        fresh = [r for r in stack.runs(dag_id) if r["dag_run_id"] not in known]
        if fresh:
            return fresh[0]
        time.sleep(2)
    raise TimeoutError(f"no new run of {dag_id} within {timeout_s}s")


def _new_runs_until_idle(stack, dag_id: str, known: set[str], timeout_s: float = 900) -> list[dict]:
    """The runs of ``dag_id`` not in ``known``, once at least one exists and none is queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        fresh = [r for r in stack.runs(dag_id) if r["dag_run_id"] not in known]
        if fresh and all(r["state"] in ("success", "failed") for r in fresh):
            return fresh
        time.sleep(3)
    raise TimeoutError(f"runs of {dag_id} still active after {timeout_s}s")


def _xcom(stack, dag_id: str, run_id: str, task_id: str):
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.api("GET", path, params={"deserialize": True})["value"]


def test_new_data_event_trains_and_promotes_the_first_champion(live_airflow, live_pipeline, mlflow_server):
    dag_id = f"retrain_{PIPELINE}"
    known = {r["dag_run_id"] for r in live_airflow.runs(dag_id)}
    live_airflow.post_asset_event(f"mlops.{PIPELINE}.new_data", {"keys": ["cancer/train/batch-000.csv"]})
    run = _wait_for_new_run(live_airflow, dag_id, known)
    finished = live_airflow.wait_for_run(dag_id, run["dag_run_id"], timeout_s=900)
    assert finished["state"] == "success", live_airflow.task_states(dag_id, run["dag_run_id"])
    assert finished["run_type"] == "asset_triggered"
    champion = mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(MODEL, "champion")
    decision = _xcom(live_airflow, dag_id, run["dag_run_id"], "gate")
    assert decision["verdict"] == "pass"
    assert str(decision["version"]) == champion.version
    assert champion.tags["mlops.trigger_cause"] == "new_data"


@pytest.mark.skipif(not browser_available(), reason="Debian chromium/chromedriver not installed")
def test_the_ui_links_the_promote_task_to_its_model_version(live_airflow, live_pipeline, mlflow_server):
    dag_id = f"retrain_{PIPELINE}"
    run_id = next(r for r in reversed(live_airflow.runs(dag_id)) if r["state"] == "success")["dag_run_id"]
    version = mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(MODEL, "champion").version
    expected = model_version_url(mlflow_server, MODEL, version)
    links = live_airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/promote/links")
    assert links["extra_links"]["MLflow model version"] == expected
    live_airflow._headers()
    task_page = f"{live_airflow.api_url}/dags/{dag_id}/runs/{run_id}/tasks/promote"
    with chromium() as driver:
        login(driver, live_airflow.api_url, live_airflow._token)
        hrefs: set[str] = set()
        for page in (task_page, f"{task_page}/details"):
            driver.get(page)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and expected not in hrefs:
                anchors = _anchors(driver)
                hrefs |= set(anchors)
                time.sleep(0.5)
            if expected in hrefs:
                break
        assert expected in hrefs, sorted(h for h in hrefs if h)
        assert "MLflow model version" in anchors[expected]


def _anchors(driver) -> dict[str, str]:
    """href -> text of the page's links; the React UI re-renders, so a vanished element is skipped."""
    from selenium.common.exceptions import StaleElementReferenceException

    found = {}
    for anchor in driver.find_elements("tag name", "a"):
        try:
            found[anchor.get_attribute("href")] = anchor.text
        except StaleElementReferenceException:
            continue
    return found


def test_drifted_live_data_emits_drift_and_retrains_with_drift_as_cause(
    live_airflow, live_pipeline, mlflow_server
):
    bucket, s3 = live_pipeline["bucket"], live_pipeline["s3"]
    _upload(s3, bucket, "cancer/live/window-000.csv", datasets.live_window("cancer", 300, drift=2.0, seed=3))
    _upload(s3, bucket, "cancer/train/drifted-000.csv", datasets.drifted_batch("cancer", 2.0, seed=3))
    retrain, monitor = f"retrain_{PIPELINE}", f"monitor_{PIPELINE}"
    known = {r["dag_run_id"] for r in live_airflow.runs(retrain)}
    run_id = live_airflow.trigger(monitor)
    finished = live_airflow.wait_for_run(monitor, run_id, timeout_s=600)
    assert finished["state"] == "success", live_airflow.task_states(monitor, run_id)
    drift = _xcom(live_airflow, monitor, run_id, "detect_drift")
    assert drift["drift"] is True and drift["drifted_columns"]
    run = _wait_for_new_run(live_airflow, retrain, known)
    done = live_airflow.wait_for_run(retrain, run["dag_run_id"], timeout_s=900)
    assert done["state"] == "success", live_airflow.task_states(retrain, run["dag_run_id"])
    decision = _xcom(live_airflow, retrain, run["dag_run_id"], "gate")
    version = mlflow.MlflowClient(mlflow_server).get_model_version(MODEL, decision["version"])
    assert version.tags["mlops.trigger_cause"] == "drift", version.tags
    record = load_record(mlflow.MlflowClient(mlflow_server), decision["run_artifact_uri"], MODEL)
    assert record.trigger["cause"] == "drift"
    assert record.trigger["events"][0]["extra"]["drifted_columns"]


def test_late_labels_showing_a_drop_emit_the_performance_event_that_starts_a_retrain(
    live_airflow, live_pipeline, mlflow_server
):
    """The labels of the drifted window arrive (with many diagnoses changed: a concept shift): a manual
    monitoring run joins them, finds the champion's accuracy significantly down and its event starts
    a retrain whose recorded cause is ``performance``."""
    bucket, s3 = live_pipeline["bucket"], live_pipeline["s3"]
    window = datasets.live_window("cancer", 300, drift=2.0, seed=3, labelled=True)  # the drift test's rows
    _upload(
        s3, bucket, "cancer/labels/labels-000.csv", datasets.labels_of("cancer", window, flip=0.45, seed=4)
    )
    retrain, monitor = f"retrain_{PIPELINE}", f"monitor_{PIPELINE}"
    known = {r["dag_run_id"] for r in live_airflow.runs(retrain)}
    run_id = live_airflow.trigger(monitor)
    finished = live_airflow.wait_for_run(monitor, run_id, timeout_s=600)
    states = live_airflow.task_states(monitor, run_id)
    assert finished["state"] == "success" and states["measure_performance"] == "success", states
    fired = _xcom(live_airflow, monitor, run_id, "measure_performance")["fired"]
    assert fired["metric"] == "accuracy" and fired["labelled"] == 300
    assert fired["value"]["high"] < fired["reference"]
    # the same run found drift first: its event may start a retrain of its own, and the performance
    # event then lands in that run's record or starts the next one; either way exactly one names it
    causes = []
    for run in _new_runs_until_idle(live_airflow, retrain, known):
        assert run["state"] == "success", live_airflow.task_states(retrain, run["dag_run_id"])
        causes.append(_xcom(live_airflow, retrain, run["dag_run_id"], "record_trigger_cause"))
    events = [e for cause in causes for e in cause["events"] if e["kind"] == "performance"]
    assert len(events) == 1, causes
    assert events[0]["extra"]["window"] == fired["window"]
    assert any("performance" in cause["cause"].split("+") for cause in causes)


def test_events_arriving_during_a_run_queue_one_run_and_none_is_lost(live_airflow, live_pipeline):
    dag_id = f"retrain_{PIPELINE}"
    asset = f"mlops.{PIPELINE}.new_data"
    known = {r["dag_run_id"] for r in live_airflow.runs(dag_id)}
    live_airflow.post_asset_event(asset, {"burst": 0})
    first = _wait_for_new_run(live_airflow, dag_id, known)
    for n in (1, 2, 3):
        live_airflow.post_asset_event(asset, {"burst": n})
    live_airflow.wait_for_run(dag_id, first["dag_run_id"], timeout_s=600)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = [r for r in live_airflow.runs(dag_id) if r["dag_run_id"] not in known]
        if len(runs) >= 2 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(2)
    runs = [r for r in live_airflow.runs(dag_id) if r["dag_run_id"] not in known]
    assert all(r["state"] == "success" for r in runs), runs
    spans = sorted((r["start_date"], r["end_date"]) for r in runs)
    assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(spans)), spans
    seen = [
        event["extra"].get("burst")
        for r in runs
        for event in _xcom(live_airflow, dag_id, r["dag_run_id"], "record_trigger_cause")["events"]
    ]
    assert sorted(b for b in seen if b is not None) == [0, 1, 2, 3], seen
