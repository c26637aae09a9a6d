"""WindowFilter on its own: which objects and rows belong to one half-open monitoring window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.monitoring.types import Window
from airflow_mlops_provider.core.monitoring.window import WindowError, WindowFilter

START, END = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, 1, tzinfo=UTC)


def _filter(by: str = "mtime", **extra: object) -> WindowFilter:
    return WindowFilter.from_dict({"by": by, "start": "2026-12-01 00:00:00+00:00", "end": END, **extra})


def test_from_dict_reads_rendered_templates_datetimes_and_naive_times_as_utc():
    window = _filter(column=None)
    assert window == WindowFilter("mtime", Window(START, END))
    naive = WindowFilter.from_dict(
        {"by": "column", "column": "ts", "start": "2026-12-01T00:00:00", "end": END}
    )
    assert naive.window == Window(START, END) and naive.column == "ts"
    paris = WindowFilter.from_dict({"by": "partition", "start": "2026-12-01T01:00:00+01:00", "end": END})
    assert paris.window.start == START
    assert paris.describe() == {
        "by": "partition",
        "start": "2026-12-01T00:00:00+00:00",
        "end": "2026-12-01T01:00:00+00:00",
        "column": None,
        "objects_listed": 0,
        "objects_skipped": 0,
        "objects_undated": 0,
        "rows_outside": 0,
        "rows_null": 0,
    }


def test_window_key_names_the_interval_and_round_trips():
    window = _filter().window
    assert window.key == "20261201T000000Z--20261201T010000Z"
    assert Window.from_key(window.key) == window


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"by": "size", "start": START, "end": END},
            "window.by must be one of ['mtime', 'partition', 'column']",
        ),
        ({"by": "column", "start": START, "end": END}, "window.column is required for a column window"),
        ({"by": "mtime", "end": END}, "window.start is required"),
        ({"by": "mtime", "start": START, "end": ""}, "window.end is required"),
        ({"by": "mtime", "start": "yesterday", "end": END}, "window: Invalid isoformat string: 'yesterday'"),
        ({"by": "mtime", "start": END, "end": START}, "window: window ends before it starts"),
        ({"by": "mtime", "start": START, "end": END, "colum": "ts"}, "window: unknown field(s) ['colum']"),
    ],
)
def test_bad_window_fields_are_permanent_errors_naming_the_field(data, message):
    with pytest.raises(WindowError) as caught:
        WindowFilter.from_dict(data)
    assert isinstance(caught.value, PermanentError) and message in str(caught.value)


def test_mtime_bounds_are_half_open_and_undated_objects_are_kept_and_counted(caplog):
    window = _filter()
    assert window.keeps_object(START.isoformat())
    assert window.keeps_object("2026-12-01 00:59:59.999999+00:00")  # str() of S3's LastModified
    assert not window.keeps_object(END.isoformat())
    assert not window.keeps_object((START - timedelta(microseconds=1)).isoformat())
    assert window.keeps_object("2026-12-01T01:30:00+01:00")  # 00:30 UTC
    with caplog.at_level("WARNING"):
        assert window.keeps_object(None)
        assert window.keeps_object("not a time")
    assert "no usable modification time (None)" in caplog.text
    counts = window.counts
    assert (counts.objects_listed, counts.objects_skipped, counts.objects_undated) == (7, 2, 2)


def test_partition_and_column_windows_keep_every_object_and_mtime_keeps_every_row():
    for window in (_filter("partition"), _filter("column", column="ts")):
        assert window.keeps_object("2020-01-01T00:00:00+00:00")
        assert window.counts.objects_skipped == 0
    table = pa.table({"ts": [1, 2]})
    assert _filter().filter_rows(table) is table


def _times(*offsets_min: float | None) -> list[datetime | None]:
    return [None if m is None else START + timedelta(minutes=m) for m in offsets_min]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_column_window_on_timestamps_of_any_unit_and_zone(unit, tz):
    moments = _times(-1, 0, 30, 59, 60, None, 120)
    values = [None if m is None else (m if tz else m.replace(tzinfo=None)) for m in moments]
    table = pa.table({"ts": pa.array(values, pa.timestamp(unit, tz)), "id": list(range(7))})
    window = _filter("column", column="ts")
    kept = window.filter_rows(table)
    assert kept.column("id").to_pylist() == [1, 2, 3]
    assert (window.counts.rows_outside, window.counts.rows_null, window.counts.rows_kept) == (3, 1, 3)


def test_column_window_on_iso_strings_with_offsets_naive_or_mixed():
    window = _filter("column", column="at")
    with_offsets = ["2026-12-01T00:00:00Z", "2026-12-01T02:59:00+02:00", "2026-12-01T01:00:00Z", None]
    assert window.filter_rows(pa.table({"at": with_offsets})).column("at").to_pylist() == with_offsets[:2]
    mixed = pa.table({"at": pa.array(["2026-12-01 00:10:00", "2026-12-01T00:20:00+00:00", "2026-11-30"],
                                     pa.large_string())})  # fmt: skip
    assert window.filter_rows(mixed).num_rows == 2
    assert (window.counts.rows_read, window.counts.rows_null, window.counts.rows_outside) == (7, 1, 2)


def test_column_window_on_dates_counts_a_date_at_midnight_utc():
    table = pa.table({"day": pa.array([date(2026, 11, 30), date(2026, 12, 1), None], pa.date32())})
    daily = WindowFilter.from_dict(
        {"by": "column", "column": "day", "start": START, "end": START + timedelta(days=1)}
    )
    assert daily.filter_rows(table).column("day").to_pylist() == [date(2026, 12, 1)]
    hourly_later = WindowFilter.from_dict(
        {
            "by": "column",
            "column": "day",
            "start": START + timedelta(hours=5),
            "end": START + timedelta(hours=6),
        }
    )
    assert hourly_later.filter_rows(table.cast(pa.schema([("day", pa.date64())]))).num_rows == 0


def test_bounds_in_other_zones_compare_as_instants():
    window = WindowFilter(
        "column", Window(START.astimezone(timezone(timedelta(hours=-5))), END), column="ts"
    )  # same instant as START
    table = pa.table({"ts": pa.array(_times(0, 60), pa.timestamp("us", "UTC"))})
    assert window.filter_rows(table).num_rows == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"ts": [1, 2]}), "Window column 'ts' is int64, not a time"),
        (pa.table({"ts": [1.5]}), "Window column 'ts' is double, not a time"),
        (pa.table({"other": ["x"]}), "Window column 'ts' is not in the data (columns: ['other'])"),
        (pa.table({"ts": ["2026-12-01", "soon"]}), "Window column 'ts' holds 'soon', not an ISO-8601 time"),
    ],
)
def test_a_column_that_is_missing_or_not_a_time_fails_naming_it_and_its_type(table, message):
    with pytest.raises(WindowError) as caught:
        _filter("column", column="ts").filter_rows(table)
    assert message in str(caught.value)


def test_a_window_keeps_whole_seconds_rounded_up_in_utc_so_consecutive_windows_tile_time():
    from datetime import timedelta, timezone

    due = datetime(2026, 12, 2, 1, 10, 18, 612762, tzinfo=UTC)
    window = Window(due - timedelta(hours=1), due)
    assert window.end == datetime(2026, 12, 2, 1, 10, 19, tzinfo=UTC)  # up: that second is in
    assert window.start == datetime(2026, 12, 2, 0, 10, 19, tzinfo=UTC)
    assert Window.from_key(window.key) == window
    # the next run's window starts at this one's (unrounded) end: an object stored just before
    # the first run was due lands in exactly one of them
    following = Window(due, due + timedelta(hours=1))
    stored = due - timedelta(milliseconds=300)
    assert following.start == window.end
    assert window.contains(stored) and not following.contains(stored)
    eastern = Window(datetime(2026, 12, 1, 20, tzinfo=timezone(timedelta(hours=-5))), due)
    assert eastern.start == datetime(2026, 12, 2, 1, tzinfo=UTC) and eastern.start.tzinfo is UTC
