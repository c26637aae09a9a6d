"""ValidateSnapshotOperator after IngestSnapshotOperator in one DAG (dag.test, moto S3, local root)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.unit.ingest_support import csv_bytes, sample

DAG_SOURCE = """
from airflow.sdk import DAG
from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator
from airflow_mlops_provider.operators.validate import ValidateSnapshotOperator

with DAG("{dag_id}", schedule=None) as dag:
    ingest = IngestSnapshotOperator(
        task_id="ingest",
        source="s3://{bucket}/in/",
        artifact_root="{root}",
        pipeline="demo",
        split={{"by": "hash", "key": "id"}},
    )
    ValidateSnapshotOperator(
        task_id="validate",
        snapshot=ingest.output,
        suite={suite!r},
        reference={reference},
        split="{{{{ 'train' }}}}",
        mode="{mode}",
        streaming={streaming},
        artifact_root="{root}",
        pipeline="demo",
    )
"""

SUITE = [
    {
        "expectation": "expect_column_values_to_be_between",
        "column": "amount",
        "min_value": 0,
        "max_value": 100,
    },
    {"expectation": "expect_column_values_to_be_unique", "column": "id"},
]


@pytest.fixture
def put(s3_bucket, moto_endpoint):
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    return lambda key, data: client.put_object(Bucket=s3_bucket, Key=key, Body=data)


def _source(dag_id, bucket, root: Path, suite=SUITE, mode="fail", reference="None", streaming="None") -> str:
    return DAG_SOURCE.format(
        dag_id=dag_id,
        bucket=bucket,
        root=root.as_uri(),
        suite=suite,
        mode=mode,
        reference=reference,
        streaming=streaming,
    )


def test_ingest_then_validate_returns_the_summary_and_links_the_report(dags, s3_bucket, put, tmp_path):
    put("in/a.csv", csv_bytes(sample(0, 400)))
    root = tmp_path / "artifacts"
    run = dags.run(_source("validate_ok", s3_bucket, root), "validate_ok")
    assert dags.task_states(run) == {"ingest": "success", "validate": "success"}
    snapshot = dags.xcom(run, "ingest")
    summary = dags.xcom(run, "validate")
    assert (
        summary["success"]
        and summary["split"] == "train"
        and summary["snapshot_sha256"] == snapshot["sha256"]
    )
    assert summary["report_uri"].startswith(
        (root / "demo" / "reports" / "validation" / snapshot["sha256"]).as_uri()
    )
    assert Path(summary["report_uri"].removeprefix("file://")).read_text().startswith("<!doctype html>")
    assert dags.xcom(run, "validate", key="report_url") == summary["report_uri"]


@pytest.mark.parametrize("streaming", ["None", "{'stream_above_mb': 0, 'batch_rows': 100}"])
def test_failed_suite_fails_the_task_listing_each_expectation_and_still_links_the_report(
    dags, s3_bucket, put, tmp_path, capsys, streaming
):
    put("in/a.csv", csv_bytes(sample(0, 1000)))  # amount goes up to 249.75
    root = tmp_path / "artifacts"
    run = dags.run(_source("validate_bad", s3_bucket, root, streaming=streaming), "validate_bad")
    assert dags.task_states(run) == {"ingest": "success", "validate": "failed"}
    out = capsys.readouterr()
    logs = out.out + out.err
    assert "1 of 6 expectations failed" in logs
    assert "expect_column_values_to_be_between on column 'amount' (min_value=0.0, max_value=100.0)" in logs
    assert dags.xcom(run, "validate", key="report_url").endswith(".html")


def test_warn_mode_and_a_suite_inferred_from_a_reference_snapshot(dags, s3_bucket, put, tmp_path):
    put("in/a.csv", csv_bytes(sample(0, 300)))
    root = tmp_path / "artifacts"
    first = dags.run(_source("validate_ref", s3_bucket, root, suite=None), "validate_ref")
    reference = dags.xcom(first, "ingest")
    put("in/b.csv", csv_bytes(sample(5000, 5100)))  # ids and amounts far outside the reference
    run = dags.run(
        _source("validate_warn", s3_bucket, root, suite=None, mode="warn", reference=repr(reference)),
        "validate_warn",
    )
    assert dags.task_states(run) == {"ingest": "success", "validate": "success"}
    summary = dags.xcom(run, "validate")
    assert summary["success"] is False
    assert {f["column"] for f in summary["failed"]} == {"id", "amount"}


def test_unknown_streaming_option_fails_when_the_dag_is_built():
    from airflow_mlops_provider.operators.validate import ValidateSnapshotOperator

    with pytest.raises(ValueError, match=r"streaming: unknown key\(s\) \['rows'\]"):
        ValidateSnapshotOperator(task_id="v", snapshot="file:///x", streaming={"rows": 5})
