"""Ingestion from S3 (a moto server, reached through the amazon provider's S3Hook) and every bad input
the issue names: each fails with a message naming the object or column and publishes nothing."""

from __future__ import annotations

import gzip
import json
import logging
import tempfile

import boto3
import pytest

from airflow_mlops_provider.core.ingest import IngestError, SourceUnreachableError, ingest_snapshot
from airflow_mlops_provider.core.ingest.sources import RetryPolicy
from airflow_mlops_provider.core.paths import UnsafeNameError
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.storage import Location
from tests.unit.ingest_support import csv_bytes, jsonl_bytes, parquet_bytes, published_files, sample

pytestmark = pytest.mark.integration


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """Snapshot writers stage under this test's own temp dir, so leftovers can be checked."""
    path = tmp_path / "staging"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def s3(s3_bucket, moto_endpoint, staging):
    """(boto3 client from S3Hook, bucket, put(key, bytes))."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    client = S3Hook(aws_conn_id="aws_default").get_conn()
    raw = boto3.client("s3", endpoint_url=moto_endpoint)

    def put(key: str, data: bytes) -> None:
        raw.put_object(Bucket=s3_bucket, Key=key, Body=data)

    return client, s3_bucket, put


def _ingest(tmp_path, client, source, **kwargs):
    return ingest_snapshot(source, Location((tmp_path / "art").as_uri()), "demo", s3_client=client, **kwargs)


def _assert_nothing_left(tmp_path, staging):
    assert published_files(tmp_path / "art") == []
    assert list(staging.iterdir()) == []


def test_prefix_of_gzip_csv_and_jsonl_with_etags_in_the_manifest(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/part-1.csv.gz", gzip.compress(csv_bytes(sample(0, 500))))
    put("in/part-2.jsonl", jsonl_bytes(sample(500, 900)))
    put("in/part-3.parquet", parquet_bytes(sample(900, 1000)))
    put("elsewhere/x.csv", csv_bytes(sample(0, 5)))
    ref = _ingest(tmp_path, client, f"s3://{bucket}/in/")
    snap = open_snapshot(ref)
    assert ref.rows == 1000 and snap.read().equals(sample(0, 1000))
    objects = snap.manifest["source_objects"]
    assert [o["uri"] for o in objects] == [f"s3://{bucket}/in/part-{i}" + ext for i, ext in
                                           [(1, ".csv.gz"), (2, ".jsonl"), (3, ".parquet")]]  # fmt: skip
    head = client.head_object(Bucket=bucket, Key="in/part-1.csv.gz")
    assert objects[0]["etag"] == head["ETag"].strip('"') and objects[0]["size"] == head["ContentLength"]
    assert list(staging.iterdir()) == []


def test_single_object_and_glob(tmp_path, s3):
    client, bucket, put = s3
    for i in range(3):
        put(f"day={i}/rows.csv", csv_bytes(sample(i * 10, i * 10 + 10)))
    assert _ingest(tmp_path, client, f"s3://{bucket}/day=1/rows.csv").rows == 10
    assert _ingest(tmp_path, client, f"s3://{bucket}/day=*/rows.csv").rows == 30


def test_versioned_bucket_records_version_ids(tmp_path, s3):
    client, bucket, put = s3
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put("v/a.parquet", parquet_bytes(sample()))
    ref = _ingest(tmp_path, client, f"s3://{bucket}/v/a.parquet")
    (obj,) = open_snapshot(ref).manifest["source_objects"]
    assert obj["version_id"] == client.head_object(Bucket=bucket, Key="v/a.parquet")["VersionId"]


def test_corrupt_parquet(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/a.parquet", parquet_bytes(sample()))
    put("in/b.parquet", b"PAR1" + b"\x00garbage" * 100)
    with pytest.raises(
        IngestError, match=rf"Cannot read s3://{bucket}/in/b.parquet as parquet: .*magic bytes"
    ):
        _ingest(tmp_path, client, f"s3://{bucket}/in/")
    _assert_nothing_left(tmp_path, staging)


def test_truncated_gzip(tmp_path, s3, staging):
    client, bucket, put = s3
    data = gzip.compress(csv_bytes(sample(0, 20000)))
    put("in/a.csv.gz", data[: len(data) // 2])
    with pytest.raises(IngestError, match=rf"s3://{bucket}/in/a.csv.gz as csv\+gzip: truncated or corrupt"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/a.csv.gz", block_bytes=4096)
    _assert_nothing_left(tmp_path, staging)


def test_csv_with_ragged_rows(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/a.csv", b"id,amount,city\n1,2.0,x\n2,3.0,y,EXTRA\n")
    with pytest.raises(IngestError, match=rf"s3://{bucket}/in/a.csv as csv: CSV parse error: Expected 3 col"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/a.csv")
    _assert_nothing_left(tmp_path, staging)


def test_missing_object(tmp_path, s3, staging):
    client, bucket, _ = s3
    with pytest.raises(IngestError, match=rf"Missing object: s3://{bucket}/in/nope.csv does not exist"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/nope.csv")
    with pytest.raises(IngestError, match="Bucket 'no-such-bucket' does not exist"):
        _ingest(tmp_path, client, "s3://no-such-bucket/in/")
    _assert_nothing_left(tmp_path, staging)


def test_empty_prefix_and_empty_glob(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/", b"")  # a "folder" marker is not data
    with pytest.raises(IngestError, match=rf"Empty prefix: no objects under s3://{bucket}/in/"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/")
    with pytest.raises(IngestError, match=rf"No object matches s3://{bucket}/in/\*.csv"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/*.csv")
    _assert_nothing_left(tmp_path, staging)


def test_header_only_csv_has_no_rows(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/a.csv", b"id,amount,city\n")
    with pytest.raises(IngestError, match=rf"No rows in s3://{bucket}/in/a.csv"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/a.csv")
    _assert_nothing_left(tmp_path, staging)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (sample(10, 20).drop_columns(["city"]), r"in/b.csv: column 'city' missing"),
        (
            sample(10, 20).rename_columns(["id", "amount", "town"]),
            r"in/b.csv: column 'city' missing and unexpected column 'town' \(renamed\?\)",
        ),
        (
            sample(10, 20).set_column(1, "amount", sample(10, 20).column("city")),
            r"in/b.csv as csv: In CSV column 'amount': CSV conversion error to double",
        ),
    ],
    ids=["column-missing", "column-renamed", "dtype-changed"],
)
def test_schema_change_between_csv_objects(tmp_path, s3, staging, second, message):
    client, bucket, put = s3
    put("in/a.csv", csv_bytes(sample(0, 10)))
    put("in/b.csv", csv_bytes(second))
    with pytest.raises(IngestError, match=message):
        _ingest(tmp_path, client, f"s3://{bucket}/in/")
    _assert_nothing_left(tmp_path, staging)


def test_schema_change_between_parquet_objects_and_against_the_configured_schema(tmp_path, s3, staging):
    client, bucket, put = s3
    put("in/a.parquet", parquet_bytes(sample(0, 10)))
    changed = sample(10, 20).set_column(0, "id", sample(10, 20).column("id").cast("string"))
    put("in/b.parquet", parquet_bytes(changed))
    with pytest.raises(IngestError, match=r"in/b.parquet: column 'id' has type string, expected int64"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/")
    with pytest.raises(IngestError, match=r"in/a.parquet: column 'label' missing"):
        _ingest(tmp_path, client, f"s3://{bucket}/in/a.parquet",
                schema={"id": "int64", "amount": "double", "city": "string", "label": "int64"})  # fmt: skip
    _assert_nothing_left(tmp_path, staging)


def test_unreachable_endpoint_is_retried_then_fails_clearly(tmp_path, monkeypatch, staging, caplog):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tests.support.services import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "extra": {
                    "endpoint_url": endpoint,
                    "region_name": "us-east-1",
                    "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
                },
            }
        ),
    )
    client = S3Hook(aws_conn_id="aws_default").get_conn()
    caplog.set_level(logging.WARNING, logger="airflow_mlops_provider")
    with pytest.raises(SourceUnreachableError) as err:
        _ingest(tmp_path, client, "s3://bucket/in/", retry=RetryPolicy(attempts=3, backoff_s=0.05))
    assert f"Cannot reach storage to list s3://bucket/in/ at {endpoint} after 3 attempts" in str(err.value)
    ours = [r for r in caplog.records if r.name.startswith("airflow_mlops_provider")]
    assert [r.getMessage().split(" to ")[0] for r in ours] == [
        "Storage unreachable (attempt 1/3)",
        "Storage unreachable (attempt 2/3)",
    ]
    _assert_nothing_left(tmp_path, staging)


@pytest.mark.parametrize(
    ("pipeline", "split", "message"),
    [
        ("../../etc", None, "pipeline '../../etc' is not a safe name"),
        ("demo/../../x", None, "pipeline 'demo/../../x' is not a safe name"),
        ("demo", {"by": "hash", "key": "id", "fractions": {"../up": 0.5, "test": 0.5}}, "split name '../up'"),
    ],
)
def test_names_that_would_escape_the_artifact_root(tmp_path, s3, staging, pipeline, split, message):
    client, bucket, put = s3
    put("in/a.csv", csv_bytes(sample()))
    with pytest.raises(UnsafeNameError, match=message.replace(".", r"\.")):
        ingest_snapshot(
            f"s3://{bucket}/in/a.csv", Location((tmp_path / "art").as_uri()), pipeline, s3_client=client,
            split=split,
        )  # fmt: skip
    _assert_nothing_left(tmp_path, staging)
    assert not any(tmp_path.parent.glob("*/snapshots"))
