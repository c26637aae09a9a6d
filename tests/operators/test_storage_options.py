"""S3 storage options from an Airflow connection reach a real (moto) S3 endpoint through fsspec."""

from __future__ import annotations

import pyarrow as pa

from airflow_mlops_provider.core.snapshot import open_snapshot, write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.operators.base import MlopsBaseOperator


def operator(artifact_root: str, aws_conn_id: str | None = "aws_default") -> MlopsBaseOperator:
    return MlopsBaseOperator(task_id="t", artifact_root=artifact_root, aws_conn_id=aws_conn_id)


def test_file_uris_and_no_connection_need_no_options():
    assert operator("file:///tmp/x").storage_options() == {}
    assert operator("s3://bucket/x", aws_conn_id=None).storage_options() == {}


def test_snapshot_round_trip_on_s3_with_connection_credentials(s3_bucket, moto_endpoint):
    root = f"s3://{s3_bucket}/artifacts"
    options = operator(root).storage_options()
    assert operator("file:///elsewhere").storage_options(root) == options
    assert options["endpoint_url"] == moto_endpoint
    ref = write_snapshot(pa.table({"x": [1, 2]}), Location(root, options), "demo")
    assert ref.uri.startswith(f"s3://{s3_bucket}/artifacts/demo/snapshots/")
    assert open_snapshot(ref, options).read().column("x").to_pylist() == [1, 2]
