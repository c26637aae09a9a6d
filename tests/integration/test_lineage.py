"""OpenLineage from a live retraining loop: the graph rebuilt from the emitted events, with no dangling edge.

A live Airflow (LocalExecutor, PostgreSQL) with the OpenLineage provider's file transport runs the
retraining DAG of the cancer pipeline on objects in moto S3 (ingest -> validate -> train -> evaluate ->
gate -> promote). Its COMPLETE events are read back as a consumer (Marquez, DataHub) would, and the
graph must lead from the S3 objects (with their ETags) to the snapshot, the MLflow run and the
registered model version the champion alias points at.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3
import mlflow
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.core.lineage import mlflow_namespace
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.pipelines import cancer_pipeline_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = "lineage"
MODEL = "lineage_cancer"
DAG_ID = f"retrain_{PIPELINE}"
KEYS = ["cancer/train/batch-000.csv", "cancer/train/batch-001.csv"]

Node = tuple[str, str]  # (namespace, name)


@pytest.fixture(scope="module")
def loop(live_airflow, live_dags_folder, moto_endpoint, session_dir) -> dict[str, Any]:
    """One retraining run on two S3 objects, finished; its XComs and the objects' ETags."""
    bucket = f"lineage-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    for index, key in enumerate(KEYS):
        buffer = io.StringIO()
        datasets.batch("cancer", index, 4).to_csv(buffer, index=False)
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue().encode())
    artifact_root = (session_dir / "live-artifacts").as_uri()
    (live_dags_folder / "pipelines" / f"{PIPELINE}.yaml").write_text(
        cancer_pipeline_yaml(PIPELINE, model=MODEL, bucket=bucket, artifact_root=artifact_root)
    )
    live_airflow.ensure_pool(promotion_pool(MODEL), 1, "serialise promotions")
    live_airflow.wait_for_dag(DAG_ID, timeout_s=240)
    run_id = live_airflow.trigger(DAG_ID)
    finished = live_airflow.wait_for_run(DAG_ID, run_id, timeout_s=900)
    assert finished["state"] == "success", live_airflow.task_states(DAG_ID, run_id)
    etags = {key: s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"') for key in KEYS}
    return {
        "bucket": bucket,
        "run_id": run_id,
        "etags": etags,
        "xcom": lambda task: _xcom(live_airflow, run_id, task),
    }


def _xcom(stack, run_id: str, task_id: str) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.api("GET", path, params={"deserialize": True})["value"]


def _complete_events(lineage_file: Path, run_id: str, tasks: int) -> dict[str, list[dict[str, Any]]]:
    """The COMPLETE events of the run's tasks by task id (a mapped task has one per map index), once
    ``tasks`` task ids have one: the worker may still be writing the last task's event."""
    deadline = time.monotonic() + 60
    while True:
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        lines = lineage_file.read_text().splitlines() if lineage_file.exists() else []
        for event in map(json.loads, lines):
            airflow = event["run"]["facets"].get("airflow", {})
            if event["eventType"] == "COMPLETE" and airflow.get("dagRun", {}).get("run_id") == run_id:
                by_task[airflow["task"]["task_id"]].append(event)
        if len(by_task) >= tasks or time.monotonic() > deadline:
            return dict(by_task)
        time.sleep(1)


def _nodes(datasets_: list[dict[str, Any]]) -> list[Node]:
    return [(d["namespace"], d["name"]) for d in datasets_]


def test_the_graph_leads_from_the_s3_objects_to_the_champion_version(
    loop, live_airflow, lineage_file, mlflow_server
):
    tasks = ["ingest", "check_unchanged", "validate", "train", "evaluate", "gate", "promote"]
    events = _complete_events(lineage_file, loop["run_id"], len(tasks))
    assert set(tasks) <= set(events), sorted(events)

    # ingest: the S3 objects, each versioned by the ETag it was read at -> the snapshot
    [ingest] = events["ingest"]
    bucket = f"s3://{loop['bucket']}"
    assert sorted(_nodes(ingest["inputs"])) == [(bucket, key) for key in KEYS]
    for source in ingest["inputs"]:
        assert source["facets"]["mlopsSourceObject"]["etag"] == loop["etags"][source["name"]]
        assert source["facets"]["version"]["datasetVersion"] == loop["etags"][source["name"]]
    snapshot = loop["xcom"]("ingest")
    [written] = ingest["outputs"]
    assert (written["namespace"], written["name"]) == ("file", snapshot["uri"].removeprefix("file://"))
    assert written["facets"]["mlopsSnapshot"]["splits"] == snapshot["splits"]

    # validate: the snapshot, with every check as an assertion
    [validate] = events["validate"]
    [checked] = validate["inputs"]
    assertions = checked["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == loop["xcom"]("validate")["evaluated"] and all(a["success"] for a in assertions)

    # promote: the run -> the version the champion alias points at, in the MLflow server's namespace
    champion = mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(MODEL, "champion")
    namespace = mlflow_namespace(mlflow_server)
    [promote] = events["promote"]
    assert _nodes(promote["outputs"]) == [(namespace, f"models/{MODEL}/versions/{champion.version}")]
    assert promote["outputs"][0]["facets"]["mlopsModelVersion"]["aliases"] == ["champion"]
    assert _nodes(promote["inputs"]) == [(namespace, f"runs/{champion.run_id}")]

    # the chain, walked back through the producers: version <- run <- snapshot <- S3 objects
    producers = _producers(events)
    run = producers[(namespace, f"models/{MODEL}/versions/{champion.version}")]
    assert {"gate", "promote"} <= run  # gate registered it (challenger), promote made it champion
    assert "train" in producers[(namespace, f"runs/{champion.run_id}")]
    assert producers[_nodes(ingest["outputs"])[0]] == {"ingest"}
    train_inputs = {node for event in events["train"] for node in _nodes(event["inputs"])}
    assert train_inputs == set(_nodes(ingest["outputs"]))


def test_no_input_of_any_task_dangles(loop, lineage_file):
    """Every dataset a task read was written by an upstream task of the run, or is a source object."""
    events = _complete_events(lineage_file, loop["run_id"], 7)
    producers = _producers(events)
    sources = {(f"s3://{loop['bucket']}", key) for key in KEYS}
    dangling = {
        (task, node)
        for task, task_events in events.items()
        for event in task_events
        for node in _nodes(event["inputs"])
        if node not in producers and node not in sources
    }
    assert dangling == set()
    assert producers  # the run wrote something


def _producers(events: dict[str, list[dict[str, Any]]]) -> dict[Node, set[str]]:
    out: dict[Node, set[str]] = defaultdict(set)
    for task, task_events in events.items():
        for event in task_events:
            for node in _nodes(event["outputs"]):
                out[node].add(task)
    return dict(out)
