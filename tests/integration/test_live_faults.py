"""Faults production brings, injected into a live Airflow (LocalExecutor, PostgreSQL) mid-run.

Each scenario checks: the task failed or retried (with a clear message wherever the message
does not depend on timing), nothing was left half-written (no snapshot without manifest, no
alias on a version whose artifacts cannot be loaded, no torchrun/worker process left in the
process table), and the run recovers.

The module runs its own deployment: two of its pipelines talk to an MLflow server and a moto
server that the tests stop and start (connections ``mlflow_faulty`` and ``aws_faulty``).
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import mlflow
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.airflow_stack import AirflowStack, airflow_stack
from tests.support.faults import (
    RestartableMoto,
    aliases_without_artifacts,
    alive,
    describe,
    half_written_snapshots,
    restartable_moto,
    task_errors,
    task_log,
    training_processes,
    wait_until_gone,
    workers,
)
from tests.support.promotion import RestartableMlflow, restartable_mlflow
from tests.support.services import postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATA_KEY = "cancer/train/batch-000.csv"
STOPPED = "TrainingError: Training was stopped (the task was killed)"

CONFIG = """
name: {name}
owner: integration
artifact_root: {artifact_root}
model_name: {name}_model
aws_conn_id: {aws}
mlflow_conn_id: {mlflow}
skip_unchanged: false
data:
  source: {{bucket: {bucket}, prefix: cancer/train/, glob: "*.csv", format: csv}}
  split: {{by: hash, key: id, fractions: {{train: 0.6, validation: 0.2, test: 0.2}}}}
training:
  target: diagnosis
  task: classification
  hyperparameters: {{epochs: {epochs}, batch_size: 16, lr: 0.01, hidden: [16]}}
  workers: 1
  timeout: 5m
  retries: {train_retries}
  max_restarts: {max_restarts}
  checkpoint_every: {checkpoint_every}
evaluation:
  split: test
  primary_metric: roc_auc
gate:
  thresholds: {{roc_auc: 0.8}}
triggers:
  schedule: null
  new_data: false
defaults:
  retries: 0
  retry_delay: 2
"""

# Scenario -> pipeline settings. Short training unless the fault needs a worker to be alive.
PIPELINES = {
    "f_sched": dict(epochs=30, train_retries=1, max_restarts=0, checkpoint_every=5),
    "f_mlflow": dict(epochs=5, train_retries=0, max_restarts=0, checkpoint_every=5, mlflow="mlflow_faulty"),
    "f_s3": dict(epochs=5, train_retries=0, max_restarts=0, checkpoint_every=5, aws="aws_faulty"),
    "f_worker": dict(epochs=60, train_retries=0, max_restarts=1, checkpoint_every=2),
    "f_kill": dict(epochs=40, train_retries=0, max_restarts=0, checkpoint_every=20),
}


def _csv(frame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _conn_env(mlflow_url: str, moto_url: str) -> tuple[str, str]:
    mlflow_conn = json.dumps({"conn_type": "mlflow", "host": mlflow_url})
    aws_conn = json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": moto_url, "region_name": "us-east-1"}}
    )
    return mlflow_conn, aws_conn


class Faults:
    """The module's deployment, its restartable servers and where each pipeline keeps its data."""

    def __init__(
        self,
        stack: AirflowStack,
        artifacts: Path,
        flaky_mlflow: RestartableMlflow,
        flaky_moto: RestartableMoto,
        bucket: str,
    ) -> None:
        self.stack = stack
        self.artifacts = artifacts
        self.flaky_mlflow = flaky_mlflow
        self.flaky_moto = flaky_moto
        self.bucket = bucket

    def upload_faulty(self) -> None:
        """(Re)create the bucket on the faulty moto server: moto forgets everything on restart."""
        s3 = boto3.client("s3", endpoint_url=self.flaky_moto.url, region_name="us-east-1")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_object(Bucket=self.bucket, Key=DATA_KEY, Body=_csv(datasets.batch("cancer", 0, 2)))


@pytest.fixture(scope="module")
def faults(session_dir: Path, mlflow_server: str, moto_endpoint: str) -> Iterator[Faults]:
    work = session_dir / f"faults-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    dags = work / "dags"
    (dags / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "pipelines_loader.py", dags / "pipelines_loader.py")
    artifacts = work / "artifacts"
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=DATA_KEY, Body=_csv(datasets.batch("cancer", 0, 2)))
    for name, settings in PIPELINES.items():
        values = {"aws": "aws_default", "mlflow": "mlflow_default", **settings}
        (dags / "pipelines" / f"{name}.yaml").write_text(
            CONFIG.format(name=name, artifact_root=artifacts.as_uri(), bucket=bucket, **values)
        )
    (work / "mlflow").mkdir()
    with restartable_mlflow(work / "mlflow") as flaky_mlflow, restartable_moto(work) as flaky_moto:
        mlflow_default, aws_default = _conn_env(mlflow_server, moto_endpoint)
        mlflow_faulty, aws_faulty = _conn_env(flaky_mlflow.url, flaky_moto.url)
        env = {
            "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_default,
            "AIRFLOW_CONN_AWS_DEFAULT": aws_default,
            "AIRFLOW_CONN_MLFLOW_FAULTY": mlflow_faulty,
            "AIRFLOW_CONN_AWS_FAULTY": aws_faulty,
            # A task whose supervisor died with the scheduler is noticed within a minute, not five.
            # Not sooner: on a loaded machine a busy scheduler misses several 5 s heartbeats, and
            # with a 10 s threshold it declared itself dead and reset its own running tasks.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "60",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        }
        with (
            postgres_database("airflow_faults") as db_url,
            airflow_stack(work / "airflow", dags, db_url, env) as stack,
        ):
            for name in PIPELINES:
                stack.ensure_pool(promotion_pool(f"{name}_model"), 1, "serialise promotions")
            handle = Faults(stack, artifacts, flaky_mlflow, flaky_moto, bucket)
            handle.upload_faulty()
            for name in PIPELINES:
                stack.wait_for_dag(f"retrain_{name}", timeout_s=240)
            yield handle


# --- helpers -------------------------------------------------------------------------------------
def _wait(
    what: str, check: Callable[[], object], stack: AirflowStack, timeout_s: float, every: float = 0.3
) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        stack.check_alive()
        time.sleep(every)
    raise TimeoutError(f"{what} not seen within {timeout_s}s")


def _state(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> str | None:
    return stack.task_states(dag_id, run_id).get(task_id)


def _wait_state(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, states: set[str], timeout_s: float = 240
) -> object:
    return _wait(
        f"{dag_id}.{task_id} in {states}",
        lambda: _state(stack, dag_id, run_id, task_id) in states,
        stack,
        timeout_s,
    )


def _clear_failed(stack: AirflowStack, dag_id: str, run_id: str) -> None:
    stack.api(
        "POST",
        f"/dags/{dag_id}/clearTaskInstances",
        json={"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True},
    )


def _assert_clean(faults: Faults, pipeline: str, tracking_uri: str) -> None:
    home = faults.stack.home
    assert half_written_snapshots(faults.artifacts, pipeline) == []
    assert aliases_without_artifacts(tracking_uri, f"{pipeline}_model") == {}
    left = wait_until_gone(home, f"retrain_{pipeline}", timeout_s=10)
    assert left == [], describe(left)


def _assert_champion(tracking_uri: str, pipeline: str) -> None:
    """The pipeline's model has a champion, registered from a training run that finished."""
    client = mlflow.MlflowClient(tracking_uri)
    champion = client.get_model_version_by_alias(f"{pipeline}_model", "champion")
    assert champion.tags["mlops.pipeline"] == pipeline, champion.tags
    assert client.get_run(champion.run_id).info.status == "FINISHED", champion.run_id


def _tries(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> int:
    """How many attempts the task instance has made."""
    return stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")["try_number"]


# --- scenarios -----------------------------------------------------------------------------------
def test_scheduler_restarted_during_training_the_run_still_completes(faults, mlflow_server):
    stack, dag_id = faults.stack, "retrain_f_sched"
    run_id = stack.trigger(dag_id)
    _wait("a training worker", lambda: workers(stack.home, dag_id), stack, 300)
    stack.restart("scheduler")
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=420)
    log = task_log(stack.home, dag_id, run_id, "train")
    assert finished["state"] == "success", (stack.task_states(dag_id, run_id), log[-3000:])
    # The LocalExecutor's task processes are the scheduler's children: the restart ended the
    # running attempt and a later one trained to the end. How the ended attempt's log shows it
    # depends on timing (a "Training was stopped" error, or nothing when its supervisor died
    # first), so the outcome is checked: another attempt, a finished champion, no process left.
    assert _tries(stack, dag_id, run_id, "train") >= 2, log[-3000:]
    _assert_champion(mlflow_server, "f_sched")
    _assert_clean(faults, "f_sched", mlflow_server)


def test_mlflow_stopped_during_promotion_fails_clearly_and_a_retry_promotes(faults):
    stack, dag_id, server = faults.stack, "retrain_f_mlflow", faults.flaky_mlflow
    run_id = stack.trigger(dag_id)
    _wait_state(stack, dag_id, run_id, "gate", {"queued", "running"}, timeout_s=300)
    server.stop()
    try:
        finished = stack.wait_for_run(dag_id, run_id, timeout_s=300)
        states = stack.task_states(dag_id, run_id)
        assert finished["state"] == "failed"
        assert states["gate"] == "failed" and states["promote"] == "upstream_failed", states
        # The last attempt's error (on a loaded machine an attempt may have been reset before it).
        error = task_errors(stack.home, dag_id, run_id, "gate")[-1]
        assert error.startswith(f"RegistryUnavailable: MLflow at {server.url} failed"), error
        assert "Connection refused" in error, error
        assert "Nothing after this step was changed" in error, error
    finally:
        server.start()
    # Nothing moved while the server was down: no alias, or none on an unloadable version.
    _assert_clean(faults, "f_mlflow", server.url)
    _clear_failed(stack, dag_id, run_id)
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=300)
    assert finished["state"] == "success", stack.task_states(dag_id, run_id)
    _assert_champion(server.url, "f_mlflow")
    _assert_clean(faults, "f_mlflow", server.url)


def test_s3_stopped_during_ingestion_fails_naming_the_endpoint_and_the_next_run_succeeds(
    faults, mlflow_server
):
    stack, dag_id, moto = faults.stack, "retrain_f_s3", faults.flaky_moto
    run_id = stack.trigger(dag_id)
    _wait_state(stack, dag_id, run_id, "ingest", {"scheduled", "queued", "running"}, timeout_s=240)
    moto.stop()
    try:
        finished = stack.wait_for_run(dag_id, run_id, timeout_s=300)
        states = stack.task_states(dag_id, run_id)
        assert finished["state"] == "failed" and states["ingest"] == "failed", states
        error = task_errors(stack.home, dag_id, run_id, "ingest")[-1]
        assert "Cannot reach storage" in error and moto.url in error, error
        assert half_written_snapshots(faults.artifacts, "f_s3") == []
    finally:
        moto.start()
        faults.upload_faulty()
    next_run = stack.trigger(dag_id)
    finished = stack.wait_for_run(dag_id, next_run, timeout_s=420)
    assert finished["state"] == "success", stack.task_states(dag_id, next_run)
    _assert_clean(faults, "f_s3", mlflow_server)


def test_training_worker_killed_torchrun_restarts_it_and_training_resumes(faults, mlflow_server):
    stack, dag_id = faults.stack, "retrain_f_worker"
    run_id = stack.trigger(dag_id)
    checkpoints = faults.artifacts / "f_worker" / "checkpoints"
    _wait("a checkpoint", lambda: list(checkpoints.glob("*/checkpoint-*.pt")), stack, 300, every=0.1)
    victims = workers(stack.home, dag_id)
    assert victims, describe(training_processes(stack.home))
    victims[0].send_signal(signal.SIGKILL)
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=420)
    log = task_log(stack.home, dag_id, run_id, "train")
    assert finished["state"] == "success", (stack.task_states(dag_id, run_id), log[-3000:])
    assert "resuming after epoch" in log, log[-3000:]
    _assert_champion(mlflow_server, "f_worker")
    _assert_clean(faults, "f_worker", mlflow_server)


def test_task_marked_failed_over_rest_leaves_no_torchrun_worker_and_the_next_run_succeeds(
    faults, mlflow_server
):
    stack, dag_id = faults.stack, "retrain_f_kill"
    run_id = stack.trigger(dag_id)
    _wait("a training worker", lambda: workers(stack.home, dag_id), stack, 300)
    seen = training_processes(stack.home, dag_id)
    stack.api(
        "PATCH",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train",
        json={"new_state": "failed"},
    )
    marked = time.monotonic()
    left = wait_until_gone(stack.home, dag_id, timeout_s=20)
    gone_s = time.monotonic() - marked
    assert left == [], describe(left)
    assert not [p for p in seen if alive(p)], describe(seen)
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=120)
    states = stack.task_states(dag_id, run_id)
    assert finished["state"] == "failed" and states["train"] == "failed", states
    # The supervisor learns of the new state from its heartbeat and says so before it stops the
    # task. Whether the operator's own error follows depends on timing (SIGKILL may come first),
    # and torchrun's exit code varies; any other error would be a bug.
    log = task_log(stack.home, dag_id, run_id, "train")
    assert "shouldn't be running anymore" in log, log[-3000:]
    errors = task_errors(stack.home, dag_id, run_id, "train")
    assert all(e.startswith(STOPPED) for e in errors), errors
    print(f"torchrun and workers gone {gone_s:.1f}s after the REST call")
    _clear_failed(stack, dag_id, run_id)
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=420)
    assert finished["state"] == "success", stack.task_states(dag_id, run_id)
    _assert_champion(mlflow_server, "f_kill")
    _assert_clean(faults, "f_kill", mlflow_server)
