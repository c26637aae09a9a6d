"""The performance check's StatsD gauges, through Airflow's stats module with a recording backend in
place of a StatsD server (the one part outside our reach)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.observability import stats

from airflow_mlops_provider.core import names
from airflow_mlops_provider.operators.performance import _emit_stats


class _Recorder:
    """Takes the place of a StatsD client: remembers every gauge it is sent."""

    def __init__(self) -> None:
        self.gauges: list[tuple[str, float, dict[str, Any]]] = []

    def gauge(self, stat: str, value: float, **kwargs: Any) -> None:
        self.gauges.append((stat, value, kwargs.get("tags") or {}))

    def __getattr__(self, name: str) -> Any:  # incr, timing...: not used here
        return lambda *args, **kwargs: None


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    backend = _Recorder()
    stats.initialize(factory=lambda: backend, export_legacy_names=False)
    yield backend
    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)


def _interval(value: float, rows: int) -> dict[str, Any]:
    return {"value": value, "low": value - 0.02, "high": value + 0.02, "rows": rows, "confidence": 0.95}


def test_realized_estimated_labelled_and_degraded_are_gauges_tagged_by_pipeline_and_metric(recorder):
    summary = {
        "degraded": True,
        "estimated": {"accuracy": _interval(0.91, 300), "roc_auc": {"value": None}},
        "windows": [
            {"labels": {"labelled": 120}, "realized": {"accuracy": _interval(0.7, 120)}},
            {"labels": {"labelled": 0}, "realized": {}},  # the newest window has no labels yet
        ],
    }
    _emit_stats("churn", summary)
    sent = {(stat, tags.get("metric")): (value, tags["pipeline"]) for stat, value, tags in recorder.gauges}
    assert sent == {
        (names.STAT_PERF_DEGRADED, None): (1, "churn"),
        (names.STAT_PERF_ESTIMATED, "accuracy"): (0.91, "churn"),  # roc_auc undefined: not sent
        (names.STAT_PERF_LABELLED, None): (120, "churn"),  # from the newest window with labels
        (names.STAT_PERF_REALIZED, "accuracy"): (0.7, "churn"),
    }


def test_a_run_without_labels_sends_no_realized_gauge(recorder):
    _emit_stats("churn", {"degraded": False, "estimated": {}, "windows": [{"labels": {}, "realized": {}}]})
    assert [(stat, value) for stat, value, _ in recorder.gauges] == [(names.STAT_PERF_DEGRADED, 0)]
