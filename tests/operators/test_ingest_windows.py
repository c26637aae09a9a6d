"""Windowed ingestion: the real ingest on local files (mtimes set with os.utime) and on moto's S3, and
IngestSnapshotOperator ending skipped (or failed) on an empty window."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.ingest import IngestError, ingest_snapshot
from airflow_mlops_provider.core.ingest.errors import EmptyWindowError
from airflow_mlops_provider.core.monitoring.window import WindowFilter
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.storage import Location
from tests.unit.ingest_support import csv_bytes, parquet_bytes, published_files, sample

T0 = datetime(2026, 12, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _window(hour: int, by: str = "mtime", **extra: object) -> WindowFilter:
    return WindowFilter.from_dict(
        {"by": by, "start": T0 + hour * HOUR, "end": T0 + (hour + 1) * HOUR, **extra}
    )


def _land(folder: Path, name: str, table: pa.Table, modified: datetime) -> Path:
    """One object of live data, last modified at ``modified``."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(parquet_bytes(table) if name.endswith(".parquet") else csv_bytes(table))
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def _ingest(root: Path, source: object, **kwargs: object):
    return ingest_snapshot(source, Location(root.as_uri()), "demo", chunk_rows=100, **kwargs)


def test_an_mtime_window_reads_only_the_objects_modified_in_it(tmp_path):
    live = tmp_path / "live"
    _land(live, "a.csv", sample(0, 10), T0 - timedelta(seconds=1))
    _land(live, "b.csv", sample(10, 20), T0)  # the start is inside
    _land(live, "c.parquet", sample(20, 30), T0 + HOUR - timedelta(microseconds=1))
    _land(live, "d.csv", sample(30, 40), T0 + HOUR)  # the end is outside
    ref = _ingest(tmp_path / "art", live.as_uri(), window=_window(0))
    snap = open_snapshot(ref)
    assert snap.read().equals(sample(10, 30))
    assert [Path(o["uri"]).name for o in snap.manifest["source_objects"]] == ["b.csv", "c.parquet"]
    assert snap.manifest["window"] == {
        "by": "mtime",
        "start": "2026-12-01T00:00:00+00:00",
        "end": "2026-12-01T01:00:00+00:00",
        "column": None,
        "objects_listed": 4,
        "objects_skipped": 2,
        "objects_undated": 0,
        "rows_outside": 0,
        "rows_null": 0,
    }


def test_an_mtime_window_with_nothing_modified_in_it_is_an_empty_window(tmp_path):
    live = tmp_path / "live"
    _land(live, "a.csv", sample(0, 10), T0)
    with pytest.raises(EmptyWindowError) as caught:
        _ingest(tmp_path / "art", live.as_uri(), window=_window(5))
    assert str(caught.value) == (
        "Empty window [2026-12-01T05:00:00+00:00, 2026-12-01T06:00:00+00:00) (by mtime) for "
        f"{live.as_uri()}: 1 object(s) listed, all 1 modified outside it"
    )
    assert published_files(tmp_path / "art") == []


@pytest.mark.parametrize("pattern", ["dt=2026-12-02/", "dt=2026-12-02/*.csv", "dt=2026-12-02/rows.csv"])
def test_a_partition_path_with_no_objects_is_an_empty_window_and_without_a_window_still_bad_input(
    tmp_path, pattern
):
    live = tmp_path / "live"
    _land(live, "dt=2026-12-01/rows.csv", sample(0, 10), T0)
    source = f"{live.as_uri()}/{pattern}"
    with pytest.raises(EmptyWindowError) as caught:
        _ingest(tmp_path / "art", source, window=_window(24, "partition"))
    assert str(caught.value) == (
        "Empty window [2026-12-02T00:00:00+00:00, 2026-12-02T01:00:00+00:00) (by partition) for "
        f"{source}: no object there"
    )
    with pytest.raises(IngestError):
        _ingest(tmp_path / "art", source)
    assert published_files(tmp_path / "art") == []


def test_a_partition_window_reads_its_partition_whatever_the_mtimes(tmp_path):
    live = tmp_path / "live"
    _land(live, "dt=2026-12-01/rows.csv", sample(0, 10), T0 - 100 * HOUR)
    _land(live, "dt=2026-12-02/rows.csv", sample(10, 20), T0)
    ref = _ingest(tmp_path / "art", f"{live.as_uri()}/dt=2026-12-01/", window=_window(0, "partition"))
    assert open_snapshot(ref).read().equals(sample(0, 10))
    assert open_snapshot(ref).manifest["window"]["objects_skipped"] == 0


def test_in_a_window_a_missing_key_of_several_is_left_out_but_bad_input_still_fails(tmp_path):
    live = tmp_path / "live"
    _land(live, "dt=2026-12-01/a.csv", sample(0, 10), T0)
    keys = [f"{live.as_uri()}/dt=2026-12-01/{name}.csv" for name in ("a", "b")]
    assert _ingest(tmp_path / "art", keys, window=_window(0, "partition")).rows == 10
    (live / "dt=2026-12-01" / "empty.csv").write_bytes(b"")
    with pytest.raises(IngestError, match=r"empty\.csv is empty \(0 bytes\)"):
        _ingest(tmp_path / "art", f"{live.as_uri()}/dt=2026-12-01/empty.csv", window=_window(0, "partition"))


def _events(start: int, stop: int) -> pa.Table:
    """Rows one minute apart from T0 + ``start`` minutes, every 7th time null."""
    times = [None if i % 7 == 6 else T0 + timedelta(minutes=i) for i in range(start, stop)]
    return pa.table({"id": list(range(start, stop)), "ts": pa.array(times, pa.timestamp("ms", "UTC"))})


def test_a_column_window_keeps_its_rows_before_the_split(tmp_path):
    live = tmp_path / "live"
    _land(live, "a.parquet", _events(0, 90), T0)
    _land(live, "b.csv", _events(90, 200), T0)  # CSV times come back as timestamps too
    split = {"by": "hash", "key": "id", "seed": 0, "fractions": {"train": 0.5, "test": 0.5}}
    ref = _ingest(tmp_path / "art", live.as_uri(), window=_window(1, "column", column="ts"), split=split)
    snap = open_snapshot(ref)
    expected = [i for i in range(60, 120) if i % 7 != 6]
    assert (
        sorted(pa.concat_tables(snap.read(s) for s in ("train", "test")).column("id").to_pylist()) == expected
    )
    assert ref.rows == len(expected) and set(ref.splits) == {"train", "test"}
    window = snap.manifest["window"]
    nulls = sum(1 for i in range(200) if i % 7 == 6)
    assert (window["rows_null"], window["rows_outside"]) == (nulls, 200 - nulls - len(expected))


def test_a_column_window_without_rows_in_it_is_empty_and_a_bad_column_is_bad_input(tmp_path):
    live = tmp_path / "live"
    _land(live, "a.parquet", _events(0, 10), T0)
    with pytest.raises(EmptyWindowError) as caught:
        _ingest(tmp_path / "art", live.as_uri(), window=_window(3, "column", column="ts"))
    assert str(caught.value) == (
        "Empty window [2026-12-01T03:00:00+00:00, 2026-12-01T04:00:00+00:00) (by column 'ts') for "
        f"{live.as_uri()}: none of the 10 row(s) read from 1 object(s) is in it "
        "(9 outside, 1 with a null 'ts')"
    )
    with pytest.raises(IngestError, match="Window column 'id' is int64, not a time"):
        _ingest(tmp_path / "art", live.as_uri(), window=_window(0, "column", column="id"))
    assert published_files(tmp_path / "art") == []


def test_a_backfill_reads_its_interval_only_and_gives_the_first_runs_snapshot(tmp_path):
    live = tmp_path / "live"

    def land(hours: range) -> None:
        for hour in hours:
            _land(
                live,
                f"h{hour}.csv",
                sample(hour * 100, hour * 100 + 100),
                T0 + hour * HOUR + timedelta(minutes=5),
            )

    land(range(2))
    first = _ingest(tmp_path / "art", live.as_uri(), window=_window(1))
    land(range(2, 6))  # history grows
    backfill = _ingest(tmp_path / "art", live.as_uri(), window=_window(1))
    assert backfill == first
    assert open_snapshot(backfill).read().equals(sample(100, 200))
    elsewhere = _ingest(tmp_path / "art2", live.as_uri(), window=_window(1))
    assert elsewhere.sha256 == first.sha256
    assert open_snapshot(elsewhere).manifest["window"]["objects_skipped"] == 5


def test_s3_objects_written_now_fall_in_a_window_around_now_not_in_a_past_one(
    tmp_path, s3_bucket, moto_endpoint
):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    client = S3Hook(aws_conn_id="aws_default").get_conn()
    boto3.client("s3", endpoint_url=moto_endpoint).put_object(
        Bucket=s3_bucket, Key="live/a.csv", Body=csv_bytes(sample(0, 10))
    )
    now = datetime.now(UTC)
    around = WindowFilter.from_dict({"by": "mtime", "start": now - HOUR, "end": now + HOUR})
    ref = _ingest(tmp_path / "art", f"s3://{s3_bucket}/live/", window=around, s3_client=client)
    assert ref.rows == 10
    past = WindowFilter.from_dict({"by": "mtime", "start": now - 3 * HOUR, "end": now - 2 * HOUR})
    with pytest.raises(EmptyWindowError, match=f"for s3://{s3_bucket}/live/: 1 object\\(s\\) listed, all 1"):
        _ingest(tmp_path / "art", f"s3://{s3_bucket}/live/", window=past, s3_client=client)
    with pytest.raises(EmptyWindowError, match=f"for s3://{s3_bucket}/live/dt=2026-12-01/: no object there"):
        _ingest(tmp_path / "art", f"s3://{s3_bucket}/live/dt=2026-12-01/", window=around, s3_client=client)


DAG_SOURCE = """
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

with DAG("{dag_id}", schedule=None, params={{"start": "{start}", "end": "{end}"}}) as dag:
    ingest = IngestSnapshotOperator(
        task_id="ingest_live",
        source="{source}",
        artifact_root="{root}",
        pipeline="demo",
        window={{"by": "mtime", "start": "{{{{ params.start }}}}", "end": "{{{{ params.end }}}}"}},
        empty="{empty}",
        aws_conn_id=None,
    )
    ingest >> EmptyOperator(task_id="detect_drift")
"""


def _dag(dag_id: str, live: Path, root: Path, hour: int, empty: str) -> str:
    start, end = T0 + hour * HOUR, T0 + (hour + 1) * HOUR
    return DAG_SOURCE.format(
        dag_id=dag_id, source=live.as_uri(), root=root.as_uri(), start=start, end=end, empty=empty
    )


def test_the_operator_renders_its_window_and_skips_an_empty_one_with_the_reason(dags, tmp_path, capsys):
    live, root = tmp_path / "live", tmp_path / "art"
    _land(live, "a.csv", sample(0, 10), T0 + timedelta(minutes=1))
    run = dags.run(_dag("window_ok", live, root, 0, "skip"), "window_ok")
    assert dags.task_states(run) == {"ingest_live": "success", "detect_drift": "success"}
    ref = dags.xcom(run, "ingest_live")
    assert ref["rows"] == 10
    assert open_snapshot(ref["uri"]).manifest["window"]["start"] == "2026-12-01T00:00:00+00:00"

    skipped = dags.run(_dag("window_skip", live, root, 2, "skip"), "window_skip")
    assert dags.task_states(skipped) == {"ingest_live": "skipped", "detect_drift": "skipped"}
    out = capsys.readouterr()
    assert (
        "Empty window [2026-12-01T02:00:00+00:00, 2026-12-01T03:00:00+00:00) (by mtime) for "
        f"{live.as_uri()}: 1 object(s) listed, all 1 modified outside it"
    ) in out.out + out.err
    assert dags.xcom(skipped, "ingest_live") is None


def test_the_operator_fails_on_an_empty_window_by_default(dags, tmp_path):
    live, root = tmp_path / "live", tmp_path / "art"
    _land(live, "a.csv", sample(0, 10), T0)
    run = dags.run(_dag("window_fail", live, root, 2, "fail"), "window_fail")
    assert dags.task_states(run)["ingest_live"] == "failed"
    assert published_files(root) == []


def test_the_operator_refuses_an_unknown_empty_policy():
    from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

    with pytest.raises(ValueError, match="empty must be 'fail' or 'skip', got 'ignore'"):
        IngestSnapshotOperator(
            task_id="x", source="file:///x", artifact_root="file:///y", pipeline="p", empty="ignore"
        )


UNSCHEDULED_DAG = """
from airflow.sdk import DAG
from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

with DAG("{dag_id}", schedule=None) as dag:
    IngestSnapshotOperator(
        task_id="ingest_live", source="{source}", artifact_root="{root}", pipeline="demo",
        window={{"by": "mtime", "length": 600}}, empty="skip", aws_conn_id=None,
    )
"""


def test_a_run_without_a_data_interval_reads_the_length_before_it_was_due(dags, tmp_path):
    """A manual run of an unscheduled DAG (no data interval to render) still gets a window: the
    ``length`` seconds up to the run's due time."""
    live, root = tmp_path / "live", tmp_path / "art"
    now = datetime.now(UTC)
    _land(live, "recent.csv", sample(0, 7), now - timedelta(minutes=2))
    _land(live, "older.csv", sample(1, 5), now - timedelta(minutes=30))
    source = UNSCHEDULED_DAG.format(dag_id="window_unscheduled", source=live.as_uri(), root=root.as_uri())
    run = dags.run(source, "window_unscheduled")
    assert dags.task_states(run) == {"ingest_live": "success"}
    ref = dags.xcom(run, "ingest_live")
    assert ref["rows"] == 7
    window = open_snapshot(ref["uri"]).manifest["window"]
    length = datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"])
    assert timedelta(minutes=10) <= length <= timedelta(minutes=10, seconds=1)  # bounds round outwards
