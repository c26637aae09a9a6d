"""The prediction service's request log: hourly Parquet partitions the monitoring DAG reads."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_mlops_provider.core.ingest import ingest_snapshot
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.serving.request_log import RequestLog, RequestLogError

T0 = datetime(2026, 3, 1, 9, 59, 58, tzinfo=UTC)
HOUR_OFF = 3600.0  # no timed flush during a test: the tests flush or close themselves


def record(i: int, time: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "time": time,
        "alias": "champion",
        "model_version": "3",
        "inputs": {"amount": i * 0.5, "city": f"c{i % 3}"},
        "prediction": i % 2,
        "probabilities": {"0": 0.25, "1": 0.75},
        "latency_ms": 1.5,
        **extra,
    }


def open_log(tmp_path: Path, **kwargs: Any) -> RequestLog:
    return RequestLog(Location(str(tmp_path / "artifacts")), "fraud", flush_s=HOUR_OFF, **kwargs)


def partition(tmp_path: Path, day: str, hour: str, kind: str = "requests") -> Path:
    return tmp_path / "artifacts" / "fraud" / "serving" / kind / f"dt={day}" / f"hour={hour}"


def read_folder(folder: Path) -> list[dict[str, Any]]:
    rows = [row for path in sorted(folder.glob("[!.]*.parquet")) for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda row: row["request_id"])


def test_rows_land_in_the_partition_of_their_time_across_an_hour_boundary(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for i in range(6):  # 09:59:58 .. 10:00:03
        log.append(record(i, T0 + timedelta(seconds=i)))
    log.append(record(9, datetime(2026, 3, 1, 12, 0, 1, tzinfo=timezone(timedelta(hours=2)))))
    log.close()
    nine = read_folder(partition(tmp_path, "2026-03-01", "09"))
    ten = read_folder(partition(tmp_path, "2026-03-01", "10"))
    assert [row["request_id"] for row in nine] == ["r0", "r1"]
    assert [row["request_id"] for row in ten] == ["r2", "r3", "r4", "r5", "r9"]
    assert ten[-1]["time"] == datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)
    assert nine[0] == {
        "request_id": "r0",
        "time": T0,
        "pipeline": "fraud",
        "alias": "champion",
        "model_version": "3",
        "prediction": 0,
        "latency_ms": 1.5,
        "amount": 0.0,
        "city": "c0",
        "proba_0": 0.25,
        "proba_1": 0.75,
    }
    names = [path.name for path in partition(tmp_path, "2026-03-01", "09").iterdir()]
    assert len(names) == 1 and names[0].startswith("20260301T095958000000Z-")


def test_nothing_is_lost_on_close(tmp_path: Path) -> None:
    log = open_log(tmp_path, flush_rows=10)
    for i in range(25):
        log.append(record(i))
    log.close()
    got = read_folder(partition(tmp_path, "2026-03-01", "09"))
    assert [row["request_id"] for row in got] == sorted(f"r{i}" for i in range(25))
    assert log.pending == 0
    with pytest.raises(RequestLogError, match="The request log is closed"):
        log.append(record(99))


def test_a_full_buffer_is_flushed_by_the_background_thread(tmp_path: Path) -> None:
    log = open_log(tmp_path, flush_rows=5)
    for i in range(5):
        log.append(record(i))
    folder = partition(tmp_path, "2026-03-01", "09")
    deadline = time.monotonic() + 30
    while not list(folder.glob("[!.]*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(read_folder(folder)) == 5
    assert log.pending == 0
    log.close()


def test_concurrent_appends_from_threads_all_land(tmp_path: Path) -> None:
    log = open_log(tmp_path, flush_rows=37)

    def send(thread: int) -> None:
        for i in range(500):
            log.append(record(thread * 1000 + i))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    got = [row["request_id"] for row in read_folder(partition(tmp_path, "2026-03-01", "09"))]
    assert sorted(got) == sorted(f"r{n * 1000 + i}" for n in range(8) for i in range(500))


def test_the_monitoring_ingest_reads_a_partition_as_its_window(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        for i in range(10):
            log.append(record(i, T0 + timedelta(seconds=3)))
            if i == 4:
                log.flush()
    folder = partition(tmp_path, "2026-03-01", "10")
    assert len(list(folder.glob("[!.]*.parquet"))) >= 2
    ref = ingest_snapshot(f"file://{folder}/", Location(str(tmp_path / "snapshots")), "fraud")
    table = open_snapshot(ref).read()
    assert sorted(table.column("request_id").to_pylist()) == sorted(f"r{i}" for i in range(10))
    assert {"amount", "city", "prediction", "proba_1", "model_version"} <= set(table.column_names)


def test_shadow_scorings_go_beside_the_live_window_not_into_it(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        log.append(record(1))
        log.append(record(1, alias="canary", model_version="4", shadow=True))
    live = read_folder(partition(tmp_path, "2026-03-01", "09"))
    shadow = read_folder(partition(tmp_path, "2026-03-01", "09", kind="shadow"))
    assert [(row["request_id"], row["alias"]) for row in live] == [("r1", "champion")]
    assert [(row["request_id"], row["model_version"]) for row in shadow] == [("r1", "4")]


def test_records_with_different_columns_go_to_separate_files(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        log.append(record(1))
        log.append({**record(2), "inputs": {"amount": 1.0}, "probabilities": None})
    files = sorted(partition(tmp_path, "2026-03-01", "09").glob("[!.]*.parquet"))
    assert sorted(pq.read_table(path).num_columns for path in files) == [8, 11]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": datetime(2026, 3, 1, 9)}, "'time' must be a timezone-aware datetime"),
        ({"time": "2026-03-01T09:00:00Z"}, "'time' must be a timezone-aware datetime"),
        ({"inputs": {}}, "'inputs' must be a non-empty mapping"),
        ({"inputs": {"prediction": 1}}, r"Input column\(s\) \['prediction'\] clash"),
        ({"inputs": {"proba_x": 1}}, r"Input column\(s\) \['proba_x'\] clash"),
        ({"probabilities": [0.1, 0.9]}, "'probabilities' must map class to probability"),
        ({"pipeline": "other"}, "Record of pipeline 'other' sent to 'fraud'"),
    ],
)
def test_a_bad_record_is_refused_with_the_reason(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with open_log(tmp_path) as log:
        with pytest.raises(RequestLogError, match=message):
            log.append({**record(1), **change})
        assert log.pending == 0


def test_a_record_missing_fields_is_refused(tmp_path: Path) -> None:
    with (
        open_log(tmp_path) as log,
        pytest.raises(RequestLogError, match=r"lacks \['request_id', 'latency_ms'\]"),
    ):
        log.append({k: v for k, v in record(1).items() if k not in ("request_id", "latency_ms")})


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RequestLogError, match="flush_rows must be >= 1 and flush_s > 0, got 0, 10"):
        RequestLog(Location(str(tmp_path)), "fraud", flush_rows=0)
    with pytest.raises(ValueError, match=r"pipeline '\.\./x' is not a safe name"):
        RequestLog(Location(str(tmp_path)), "../x")


def test_rows_that_do_not_fit_one_table_are_dropped_and_the_rest_written(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(record(1))
    log.append(record(2, prediction="yes"))  # same columns, the prediction turned to text
    log.append(record(3, T0 + timedelta(hours=1)))
    with pytest.raises(RequestLogError, match=r"Dropped 2 request row\(s\) for .*dt=2026-03-01/hour=09"):
        log.flush()
    assert log.pending == 0
    assert [row["request_id"] for row in read_folder(partition(tmp_path, "2026-03-01", "10"))] == ["r3"]
    log.close()


def test_rows_whose_write_fails_stay_buffered(tmp_path: Path) -> None:
    blocker = tmp_path / "artifacts"
    blocker.write_text("a file where the log's folder should be")
    log = open_log(tmp_path)
    log.append(record(1))
    log.append(record(2))
    with pytest.raises(
        RequestLogError, match=r"Could not write 2 request row\(s\) under .*they stay buffered"
    ):
        log.flush()
    assert log.pending == 2
    with pytest.raises(RequestLogError, match="Could not write 2"):
        log.close()
    assert log.pending == 2
