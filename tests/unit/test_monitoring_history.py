"""The per-window monitoring history on local files: records, label arrivals, Parquet series, trend report."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.monitoring.history import (
    HistoryError,
    WindowStore,
    log_window_to_mlflow,
    performance_summary,
    window_metrics,
)
from airflow_mlops_provider.core.monitoring.trend import render_trend, write_trend
from airflow_mlops_provider.core.monitoring.types import MetricInterval, Verdict, Window
from airflow_mlops_provider.core.paths import UnsafeNameError
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def window(i: int) -> Window:
    return Window(T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1))


def record(i: int, version: str = "3", metrics: dict[str, MetricInterval] | None = None) -> dict[str, Any]:
    """A window record as the monitoring run builds it."""
    realized = metrics or {"accuracy": MetricInterval(0.9 - i / 100, 0.85 - i / 100, 0.95 - i / 100, 200)}
    verdict = Verdict("ok", "accuracy", "significant", "within the interval", realized.get("accuracy"), 0.91)
    return {
        "window": window(i).to_dict(),
        "pipeline": "churn",
        "model_name": "churn-model",
        "model_version": version,
        "live": {"uri": f"file:///live/{i}", "sha256": "a" * 64},
        "predictions": None,
        "rows": 1000 + i,
        "drift": {"drift": i % 2 == 1, "share": i / 10, "report_uri": "file:///r.html"},
        "estimated": {"accuracy": MetricInterval(0.88, 0.8, 0.93, 1000).to_dict()},
        "realized": {name: value.to_dict() for name, value in realized.items()},
        "labels": {"labelled": 200, "pending": 800 + i, "corrected": 0, "null_labels": 1},
        "verdict": verdict.to_dict(),
        "label_drift": None,
        "concept_drift": None,
        "updated_at": (T0 + timedelta(days=2)).isoformat(),
    }


@pytest.fixture
def store(tmp_path: Path) -> WindowStore:
    return WindowStore(Location(tmp_path.as_uri()), "churn")


def test_a_record_round_trips_and_a_rerun_overwrites_it(store: WindowStore, tmp_path: Path) -> None:
    first = record(0)
    uri = store.save(first)
    assert uri.endswith("churn/monitoring/windows/20261201T000000Z--20261201T010000Z/record.json")
    assert store.load(window(0)) == first
    later = {**first, "realized": {}, "labels": {**first["labels"], "labelled": 900}}
    store.save(later)
    assert store.load(window(0)) == later
    assert store.load(window(1)) is None
    folder = tmp_path / "churn/monitoring/windows/20261201T000000Z--20261201T010000Z"
    assert [p.name for p in folder.iterdir()] == ["record.json"]


def test_a_record_with_nan_is_stored_as_standard_json(store: WindowStore, tmp_path: Path) -> None:
    rec = record(0)
    rec["drift"]["share"] = math.nan
    store.save(rec)
    text = (tmp_path / f"churn/monitoring/windows/{window(0).key}/record.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["drift"]["share"] is None


@pytest.mark.parametrize("bad", [{}, {"window": None}, {"window": {"start": "2026-12-01T01:00:00+00:00"}}])
def test_a_record_without_a_window_is_refused(store: WindowStore, bad: dict[str, Any]) -> None:
    with pytest.raises(HistoryError, match="window record has no valid 'window'"):
        store.save(bad)
    with pytest.raises(HistoryError, match="window record has no valid 'window'"):
        store.write_series_row(bad)


def test_an_unsafe_pipeline_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeNameError, match=re.escape("pipeline '../x' is not a safe name")):
        WindowStore(Location(tmp_path.as_uri()), "../x")


def test_windows_lists_the_starts_in_a_half_open_range(store: WindowStore, tmp_path: Path) -> None:
    assert store.windows(T0, T0 + timedelta(days=1)) == []  # nothing stored yet
    for i in (3, 0, 2, 1):
        store.save(record(i))
    (tmp_path / "churn/monitoring/windows/not-a-window").mkdir()
    assert store.windows(T0, T0 + timedelta(hours=4)) == [window(0), window(1), window(2), window(3)]
    assert store.windows(T0 + timedelta(hours=1), T0 + timedelta(hours=3)) == [window(1), window(2)]
    assert store.windows(T0 + timedelta(minutes=1), T0 + timedelta(hours=1)) == []
    assert store.windows(T0 + timedelta(hours=3), T0) == []


def test_naive_range_bounds_are_refused(store: WindowStore) -> None:
    with pytest.raises(HistoryError, match="since must be a timezone-aware datetime"):
        store.windows(datetime(2026, 12, 1), T0)
    with pytest.raises(HistoryError, match="until must be a timezone-aware datetime"):
        store.arrivals(T0, datetime(2026, 12, 2))


def test_label_arrivals_round_trip_in_range(store: WindowStore) -> None:
    refs = {i: {"uri": f"file:///labels/{i}", "sha256": str(i) * 64, "rows": 10 * i} for i in range(3)}
    for i, ref in refs.items():
        store.save_arrival(window(i), ref)
    store.save_arrival(window(1), {**refs[1], "rows": 99})  # the interval re-ran
    assert store.arrivals(T0, T0 + timedelta(hours=3)) == [
        (window(0), refs[0]),
        (window(1), {**refs[1], "rows": 99}),
        (window(2), refs[2]),
    ]
    assert store.arrivals(T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == [
        (window(1), {**refs[1], "rows": 99})
    ]


def test_the_series_row_is_flat_and_typed(store: WindowStore) -> None:
    store.write_series_row(record(2))
    table = store.read_series()
    assert table.num_rows == 1
    assert table.schema.field("window_start").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("window_end").type == pa.timestamp("us", tz="UTC")
    row = table.to_pylist()[0]
    assert row["window_start"] == window(2).start and row["window_end"] == window(2).end
    assert (row["model_version"], row["rows"], row["labelled"], row["pending"]) == ("3", 1002, 200, 802)
    assert (row["drift"], row["drift_share"], row["status"]) == (False, 0.2, "ok")
    assert row["realized_accuracy"] == pytest.approx(0.88)
    assert (row["realized_accuracy_low"], row["realized_accuracy_high"]) == pytest.approx((0.83, 0.93))
    assert (row["estimated_accuracy"], row["estimated_accuracy_low"], row["estimated_accuracy_high"]) == (
        0.88,
        0.8,
        0.93,
    )


def test_read_series_unifies_differing_columns_and_keeps_the_last(store: WindowStore) -> None:
    store.write_series_row(record(0))
    store.write_series_row(record(1, metrics={"f1": MetricInterval(0.7, 0.6, 0.8, 100)}))
    nan_window = record(2, metrics={"accuracy": MetricInterval(math.nan, None, None, 0)})
    nan_window["labels"] = {}
    store.write_series_row(nan_window)
    store.write_series_row(record(3))
    table = store.read_series()
    assert [r["window_start"] for r in table.to_pylist()] == [window(i).start for i in range(4)]
    assert table.column("realized_f1").to_pylist() == [None, 0.7, None, None]
    assert table.column("realized_accuracy").to_pylist()[1:3] == [None, None]
    assert table.column("labelled").to_pylist() == [200, 200, None, 200]
    last_two = store.read_series(last=2)
    assert [r["window_start"] for r in last_two.to_pylist()] == [window(2).start, window(3).start]
    assert "realized_f1" not in last_two.column_names  # only the files asked for were read


def test_a_window_without_a_model_version_is_not_logged(tmp_path: Path) -> None:
    settings = TrackingSettings(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(HistoryError, match="no model version was given"):
        log_window_to_mlflow(settings, "churn", "churn-model", None, record(0))  # type: ignore[arg-type]
    assert not (tmp_path / "mlflow.db").exists()


def test_read_series_of_nothing_is_an_empty_table_and_last_must_be_positive(store: WindowStore) -> None:
    empty = store.read_series()
    assert empty.num_rows == 0 and "window_start" in empty.column_names
    with pytest.raises(HistoryError, match="read_series needs last >= 1 windows, got 0"):
        store.read_series(last=0)


def test_window_metrics_name_every_bound_and_skip_missing_values() -> None:
    rec = record(
        1,
        metrics={
            "accuracy": MetricInterval(0.9, math.nan, None, 5),
            "log loss": MetricInterval(0.3, 0.2, 0.4, 5),
        },
    )
    rec["drift"] = None
    metrics = window_metrics(rec)
    assert metrics == {
        "labelled_rows": 200.0,
        "pending_rows": 801.0,
        "realized.accuracy": 0.9,
        "realized.log loss": 0.3,
        "realized.log loss.low": 0.2,
        "realized.log loss.high": 0.4,
        "estimated.accuracy": 0.88,
        "estimated.accuracy.low": 0.8,
        "estimated.accuracy.high": 0.93,
    }


def test_the_version_tag_summary_is_short() -> None:
    rec = record(0)
    rec["verdict"]["metric"] = "m" * 10_000
    rec["verdict"]["reason"] = "r" * 10_000
    summary = performance_summary(window(0), rec)
    assert len(json.dumps(summary)) < 4000
    assert summary["status"] == "ok" and summary["value"] == 0.9 and summary["window"] == window(0).to_dict()


# --- the trend report -----------------------------------------------------------------------------
def series(store: WindowStore, records: list[dict[str, Any]]) -> pa.Table:
    for rec in records:
        store.write_series_row(rec)
    return store.read_series()


def test_the_trend_has_charts_bands_reference_and_version_markers(store: WindowStore, tmp_path: Path) -> None:
    table = series(store, [record(0), record(1), record(2, version="4"), record(3, version="4")])
    html = render_trend(table, title="Churn <champion> & co", metric="accuracy", reference=0.91)
    assert "<title>Churn &lt;champion&gt; &amp; co</title>" in html
    assert "<champion>" not in html and "<script" not in html
    assert html.count("<svg") == 3
    assert html.count("<polyline") == 3 and html.count("class='band'") == 2
    assert html.count("class='reference'") == 2
    assert html.count("v3 -&gt; v4") == 3 and html.count("class='version'") == 3
    table_rows = re.findall(r"<tr><td>(2026-12-01 \d\d:00Z)", html)
    assert table_rows == ["2026-12-01 03:00Z", "2026-12-01 02:00Z", "2026-12-01 01:00Z", "2026-12-01 00:00Z"]
    uri = write_trend(Location(tmp_path.as_uri()), "churn", html)
    assert uri.endswith("churn/reports/performance/trend.html")
    assert (tmp_path / "churn/reports/performance/trend.html").read_text() == html


def test_the_trend_escapes_versions_and_metric_names(store: WindowStore) -> None:
    rec = record(0, metrics={"<b>": MetricInterval(0.5, 0.4, 0.6, 10)})
    table = series(store, [rec, record(1, version="<i>x</i>")])
    html = render_trend(table, title="t", metric="<b>", reference=None)
    assert "<b>" not in html and "<i>" not in html
    assert "v3 -&gt; v&lt;i&gt;x&lt;/i&gt;" in html and "realized &lt;b&gt;" in html


def test_the_trend_renders_edge_cases(store: WindowStore) -> None:
    empty = render_trend(store.read_series(), title="nothing", metric="accuracy", reference=0.9)
    assert "No monitored windows yet" in empty and "<table>" in empty and "<svg" not in empty
    one = series(store, [record(0)])
    html = render_trend(one, title="one", metric="accuracy", reference=None)
    assert html.count("<svg") == 3 and "class='version'" not in html
    all_null = render_trend(one, title="null", metric="f1", reference=None)
    assert all_null.count("no values yet") == 2 and all_null.count("<svg") == 1


def test_a_version_change_at_the_first_point_gets_its_marker(store: WindowStore) -> None:
    table = series(store, [record(0, version="2"), record(1, version="3"), record(2, version="3")])
    html = render_trend(table, title="t", metric="accuracy", reference=0.9)
    assert html.count("v2 -&gt; v3") == 3
    assert "v3 -&gt; v3" not in html
