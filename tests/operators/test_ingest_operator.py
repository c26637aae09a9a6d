"""IngestSnapshotOperator inside a DAG (dag.test) against a moto S3 server and a local artifact root."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest

from airflow_mlops_provider.core.snapshot import open_snapshot
from tests.unit.ingest_support import csv_bytes, parquet_bytes, published_files, sample

DAG_SOURCE = """
from airflow.sdk import DAG, Asset
from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

SNAPSHOTS = Asset("mlops://demo/snapshots")

with DAG("{dag_id}", schedule=None, params={{"prefix": "in/"}}) as dag:
    IngestSnapshotOperator(
        task_id="ingest",
        source="s3://{bucket}/{{{{ params.prefix }}}}",
        artifact_root="{root}",
        pipeline="demo",
        split={split},
        chunk_rows=1000,
        aws_conn_id="{{{{ 'aws_' + 'default' }}}}",
        outlets=[SNAPSHOTS],
    )
"""


@pytest.fixture
def put(s3_bucket, moto_endpoint):
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    return lambda key, data: client.put_object(Bucket=s3_bucket, Key=key, Body=data)


def _dag(dag_id: str, bucket: str, root: Path, split: dict | None = None) -> str:
    return DAG_SOURCE.format(dag_id=dag_id, bucket=bucket, root=root.as_uri(), split=repr(split))


def _asset_event_extras(dag_run) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter_by(source_run_id=dag_run.run_id).all()
        return [e.extra for e in events]


def test_ingest_in_a_dag_returns_the_snapshot_emits_the_asset_event_and_is_idempotent(
    dags, s3_bucket, put, tmp_path
):
    put("in/a.csv.gz", gzip.compress(csv_bytes(sample(0, 3000))))
    put("in/b.parquet", parquet_bytes(sample(3000, 5000)))
    root = tmp_path / "artifacts"
    split = {
        "by": "hash",
        "key": "id",
        "seed": 0,
        "fractions": {"train": 0.7, "validation": 0.15, "test": 0.15},
    }
    source = _dag("ingest_ok", s3_bucket, root, split)

    first = dags.run(source, "ingest_ok")
    assert dags.task_states(first) == {"ingest": "success"}
    ref = dags.xcom(first, "ingest")
    assert ref["rows"] == 5000 and set(ref["splits"]) == {"train", "validation", "test"}
    assert _asset_event_extras(first) == [{"snapshot": ref}]
    manifest = open_snapshot(ref["uri"]).manifest
    assert manifest["producing_run"]["run_id"] == first.run_id
    assert manifest["producing_run"]["task_id"] == "ingest"
    assert [o["uri"] for o in manifest["source_objects"]] == [
        f"s3://{s3_bucket}/in/a.csv.gz",
        f"s3://{s3_bucket}/in/b.parquet",
    ]
    assert all(o["etag"] and o["size"] > 0 for o in manifest["source_objects"])

    files = {p: p.stat().st_mtime_ns for p in published_files(root)}
    second = dags.run(source, "ingest_ok")
    assert dags.xcom(second, "ingest") == ref
    assert {p: p.stat().st_mtime_ns for p in published_files(root)} == files
    assert open_snapshot(ref["uri"]).manifest["producing_run"]["run_id"] == first.run_id


def test_bad_input_fails_the_task_with_the_object_named_and_publishes_nothing(
    dags, s3_bucket, put, tmp_path, capsys
):
    put("in/a.csv", csv_bytes(sample(0, 10)))
    put("in/b.csv", b"id,amount,city\n1,2.0,x,EXTRA\n")
    root = tmp_path / "artifacts"
    run = dags.run(_dag("ingest_bad", s3_bucket, root), "ingest_bad")
    assert dags.task_states(run) == {"ingest": "failed"}
    out = capsys.readouterr()
    assert f"Cannot read s3://{s3_bucket}/in/b.csv as csv: CSV parse error" in out.out + out.err
    assert published_files(root) == []
    assert _asset_event_extras(run) == []


def test_snapshots_can_live_on_s3_too(dags, s3_bucket, put, moto_endpoint):
    put("in/a.csv", csv_bytes(sample(0, 100)))
    root = f"s3://{s3_bucket}/artifacts"
    source = DAG_SOURCE.format(dag_id="ingest_s3_root", bucket=s3_bucket, root=root, split=None)
    run = dags.run(source, "ingest_s3_root")
    ref = dags.xcom(run, "ingest")
    assert ref["uri"].startswith(f"{root}/demo/snapshots/") and ref["splits"] == {"data": 100}
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    keys = client.list_objects_v2(Bucket=s3_bucket, Prefix="artifacts/")["Contents"]
    assert sorted(k["Key"].rsplit("/", 1)[1] for k in keys) == ["data.parquet", "manifest.json"]
    manifest_key = f"artifacts/demo/snapshots/{ref['sha256']}/manifest.json"
    assert json.loads(client.get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())["rows"] == 100


def test_unreachable_endpoint_and_escaping_pipeline_fail_their_tasks_clearly(
    dags, s3_bucket, put, tmp_path, capsys, monkeypatch
):
    from tests.support.services import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEAD",
        json.dumps({"conn_type": "aws", "extra": {"endpoint_url": dead, "region_name": "us-east-1",
                    "config_kwargs": {"retries": {"max_attempts": 1}}}}),
    )  # fmt: skip
    put("in/a.csv", csv_bytes(sample(0, 10)))
    root = tmp_path / "artifacts"
    run = dags.run(
        f"""
        from airflow.sdk import DAG
        from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

        SOURCE, ROOT = "s3://{s3_bucket}/in/", "{root.as_uri()}"

        with DAG("ingest_faults", schedule=None) as dag:
            IngestSnapshotOperator(task_id="unreachable", source=SOURCE, artifact_root=ROOT, pipeline="demo",
                           aws_conn_id="aws_dead", connect_attempts=2)
            IngestSnapshotOperator(task_id="escape", source=SOURCE, artifact_root=ROOT,
                                   pipeline="../../outside")
        """,
        "ingest_faults",
    )  # fmt: skip
    assert dags.task_states(run) == {"unreachable": "failed", "escape": "failed"}
    out = capsys.readouterr()
    logs = out.out + out.err
    assert f"Cannot reach storage to list s3://{s3_bucket}/in/ at {dead} after 2 attempts" in logs
    assert "pipeline '../../outside' is not a safe name" in logs
    assert published_files(root) == [] and not (tmp_path / "outside").exists()
