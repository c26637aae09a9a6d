"""Multi-node training as cooperating node tasks of the generated DAG, on a live Airflow
(LocalExecutor, PostgreSQL, moto S3, mlflow server): two "nodes" on this machine.

A two-node job trains one model in one MLflow run and is promoted; a job whose pool has one slot
(so its second node cannot start while the first waits) fails on every node with the reason, and
no training process is left behind.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import boto3
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.faults import training_processes
from tests.support.pipelines import cancer_pipeline_yaml

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
    live_airflow, live_dags_folder, moto_endpoint, session_dir
):
    dag_id = _pipeline(live_airflow, live_dags_folder, moto_endpoint, session_dir)
    run_id = live_airflow.trigger(dag_id)
    run = live_airflow.wait_for_run(dag_id, run_id, timeout_s=900)
    assert run["state"] == "success", live_airflow.task_states(dag_id, run_id)
    nodes = _train_tis(live_airflow, dag_id, run_id)
    assert [(ti["map_index"], ti["state"]) for ti in nodes] == [(0, "success"), (1, "success")]
    entries = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train/xcomEntries/return_value"
    results = [live_airflow.api("GET", entries, params={"map_index": ti["map_index"]}) for ti in nodes]
    results = [entry["value"] for entry in results]
    assert results[0]["run_id"] == results[1]["run_id"]  # both nodes report the job's one run
    assert results[0]["params"]["world_size"] == 2
    promote = live_airflow.task_states(dag_id, run_id)["promote"]
    assert promote == "success"
    assert training_processes(live_airflow.home, dag_id) == []


def test_a_node_that_cannot_start_fails_every_node_with_the_reason(
    live_airflow, live_dags_folder, moto_endpoint, session_dir
):
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
