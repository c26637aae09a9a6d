"""Multi-node training as cooperating node tasks of the generated DAG, on a live Airflow
(PostgreSQL, moto S3, mlflow server) with the CeleryExecutor and two Celery workers of one slot
each: two "nodes" on this machine (the LocalExecutor runs the same node tasks; Celery's separate
workers are the harder case, and one stack keeps the suite's time down).

A two-node job trains one model in one MLflow run and is promoted; a job whose pool has one slot
(so its second node cannot start while the first waits) fails on every node with the reason; when
the Celery worker of either node is killed mid-training (a lost machine), every node task is
retried and the job resumes from its last checkpoint. No training process is left behind.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.airflow_stack import AirflowStack
from tests.support.faults import alive, training_processes, wait_until_gone
from tests.support.pipelines import cancer_pipeline_yaml
from tests.unit.test_training_fns import ENTRY

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]


def _pipeline(live_airflow, live_dags_folder, moto_endpoint, session_dir, **training: Any) -> str:
    """A two-node pipeline on its own bucket and model; returns its retrain DAG's id."""
    name = f"nodes_{uuid.uuid4().hex[:6]}"
    bucket = name.replace("_", "-")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    buffer = io.StringIO()
    datasets.batch("cancer", 0, 2).to_csv(buffer, index=False)
    s3.put_object(Bucket=bucket, Key="cancer/train/batch-000.csv", Body=buffer.getvalue().encode())
    artifact_root = (session_dir / "live-artifacts").as_uri()
    (live_dags_folder / "pipelines" / f"{name}.yaml").write_text(
        cancer_pipeline_yaml(
            name, model=name, bucket=bucket, artifact_root=artifact_root, epochs=4, nodes=2, **training
        )
    )
    live_airflow.ensure_pool(promotion_pool(name), 1, "serialise promotions")
    live_airflow.wait_for_dag(f"retrain_{name}", timeout_s=300)
    return f"retrain_{name}"


def _train_tis(live_airflow, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    tis = [ti for ti in live_airflow.task_instances(dag_id, run_id) if ti["task_id"] == "train"]
    return sorted(tis, key=lambda ti: ti["map_index"])


def test_a_two_node_job_trains_one_run_on_two_node_tasks_and_is_promoted(
    celery_airflow, live_dags_folder, moto_endpoint, session_dir
):
    live_airflow = celery_airflow
    dag_id = _pipeline(live_airflow, live_dags_folder, moto_endpoint, session_dir)
    run_id = live_airflow.trigger(dag_id)
    run = live_airflow.wait_for_run(dag_id, run_id, timeout_s=900)
    assert run["state"] == "success", live_airflow.task_states(dag_id, run_id)
    nodes = _train_tis(live_airflow, dag_id, run_id)
    assert [(ti["map_index"], ti["state"]) for ti in nodes] == [(0, "success"), (1, "success")]
    results = [_result(live_airflow, dag_id, run_id, ti) for ti in nodes]
    assert results[0]["run_id"] == results[1]["run_id"]  # both nodes report the job's one run
    assert results[0]["params"]["world_size"] == 2
    promote = live_airflow.task_states(dag_id, run_id)["promote"]
    assert promote == "success"
    assert training_processes(live_airflow.home, dag_id) == []
    # each node ran on a worker of its own
    assert {live_airflow.celery_worker_that_ran(ti) for ti in nodes} == {"celery worker", "celery worker 2"}


def test_a_node_that_cannot_start_fails_every_node_with_the_reason(
    celery_airflow, live_dags_folder, moto_endpoint, session_dir
):
    live_airflow = celery_airflow
    pool = f"one_slot_{uuid.uuid4().hex[:6]}"
    live_airflow.ensure_pool(pool, 1, "too small for a two-node job")
    dag_id = _pipeline(
        live_airflow, live_dags_folder, moto_endpoint, session_dir,
        join_timeout="20s", resources={"pool": pool},
    )  # fmt: skip
    run_id = live_airflow.trigger(dag_id)
    run = live_airflow.wait_for_run(dag_id, run_id, timeout_s=900)
    assert run["state"] == "failed"
    nodes = _train_tis(live_airflow, dag_id, run_id)
    assert [ti["state"] for ti in nodes] == ["failed", "failed"]
    logs = {ti["map_index"]: live_airflow.task_log(dag_id, run_id, "train", ti["map_index"]) for ti in nodes}
    joined = [i for i, text in logs.items() if "only 1 of 2 nodes joined" in text]
    late = [i for i, text in logs.items() if "before this node joined" in text or "did not publish" in text]
    assert len(joined) == 1 and len(late) == 1, logs
    assert "at least `nodes` slots" in logs[joined[0]]
    assert training_processes(live_airflow.home, dag_id) == []


@pytest.mark.parametrize("lost", ["follower", "leader"])
def test_a_killed_worker_is_replaced_and_the_job_resumes_from_its_last_checkpoint(
    celery_airflow, live_dags_folder, moto_endpoint, session_dir, lost
):
    """A preempted machine: the Celery worker running node 1 (follower) or node 0 (leader: the
    rendezvous host and the MLflow run's owner) is SIGKILLed mid-training and nothing of it
    survives. The surviving node's training fails at its next collective and its task fails;
    Airflow fails the lost node's task for its missing heartbeats. Both are retried (the lost one
    on the replaced worker): node 0's retry publishes a new rendezvous, node 1's retry waits past
    the old one, and the job resumes from its last checkpoint in the same MLflow run."""
    stack = celery_airflow
    dag_id = _pipeline(
        stack, live_dags_folder, moto_endpoint, session_dir,
        entry_point=f"{ENTRY}:slow_tabular", retries=1, join_timeout="5m",
        hyperparameters={"epochs": 24, "batch_size": 32, "lr": 0.01, "hidden": [16], "pause_s": 1.0},
        defaults={"retry_delay": "2s"},
    )  # fmt: skip
    run_id = stack.trigger(dag_id)
    agent = _wait_for_training_agent(stack, dag_id, run_id, leader=lost == "leader")
    worker = _worker_of(stack, agent)
    stack.kill(worker)
    assert _wait_until_family_gone(agent, timeout_s=60) == [], f"the {lost}'s training outlived its worker"
    stack.start(worker)  # the replacement machine

    run = stack.wait_for_run(dag_id, run_id, timeout_s=900)
    assert run["state"] == "success", stack.task_states(dag_id, run_id)
    nodes = _train_tis(stack, dag_id, run_id)
    assert [(ti["state"], ti["try_number"]) for ti in nodes] == [("success", 2), ("success", 2)]
    results = [_result(stack, dag_id, run_id, ti) for ti in nodes]
    assert results[0]["run_id"] == results[1]["run_id"]  # one MLflow run, continued
    assert "resuming after epoch" in stack.task_log(dag_id, run_id, "train", 0)
    assert stack.task_states(dag_id, run_id)["promote"] == "success"
    assert wait_until_gone(stack.home, dag_id, timeout_s=30) == []


def _result(stack: AirflowStack, dag_id: str, run_id: str, ti: dict[str, Any]) -> dict[str, Any]:
    entries = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train/xcomEntries/return_value"
    return stack.api("GET", entries, params={"map_index": ti["map_index"]})["value"]


def _wait_for_training_agent(stack: AirflowStack, dag_id: str, run_id: str, leader: bool) -> psutil.Process:
    """The torchrun agent of node 0 (``leader``) or node 1, once the job wrote its first checkpoint."""
    role = f"is_host={str(leader).lower()}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stack.check_alive()
        states = stack.task_states(dag_id, run_id)
        assert states.get("train") not in ("failed", "upstream_failed"), states
        agents = [
            p for p in training_processes(stack.home, dag_id)
            if "torch.distributed.run" in " ".join(p.cmdline()) and role in " ".join(p.cmdline())
        ]  # fmt: skip
        if agents and _checkpoints(stack, dag_id.removeprefix("retrain_")):
            return agents[0]
        time.sleep(1)
    raise AssertionError(f"the job never trained past a checkpoint: {stack.task_states(dag_id, run_id)}")


def _checkpoints(stack: AirflowStack, pipeline: str) -> list[Path]:
    root = Path(stack.env["MLOPS_ARTIFACT_ROOT"].removeprefix("file://"))
    return list((root / pipeline / "checkpoints").glob("*/*"))


def _worker_of(stack: AirflowStack, proc: psutil.Process) -> str:
    """The stack's Celery worker that ``proc`` descends from."""
    ancestors = {parent.pid for parent in proc.parents()}
    for name, worker in stack.processes.items():
        if name.startswith("celery worker") and worker.pid in ancestors:
            return name
    raise AssertionError(f"{proc.pid} runs under no Celery worker of the stack")


def _wait_until_family_gone(agent: psutil.Process, timeout_s: float) -> list[psutil.Process]:
    """Wait until ``agent`` and its training workers are gone; returns those left after the timeout."""
    family = [agent, *agent.children(recursive=True)]
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.25)
    return [p for p in family if alive(p)]
