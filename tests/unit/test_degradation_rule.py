"""The degradation rule: each rule fires on a clear drop and not on a small or noisy one."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_mlops_provider.core.monitoring.config import PerformanceConfig
from airflow_mlops_provider.core.monitoring.realized import realized_metrics
from airflow_mlops_provider.core.monitoring.rule import RuleError, judge
from airflow_mlops_provider.core.monitoring.types import MetricInterval


def _accuracy(rate: float, n: int, seed: int = 0) -> MetricInterval:
    """Realized accuracy of a window whose predictions are right with probability ``rate``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < rate, y, 1 - y)
    return realized_metrics("classification", y, pred, None, [0, 1], ["accuracy"], seed=seed)["accuracy"]


def _rmse(noise: float, n: int, seed: int = 0) -> MetricInterval:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    return realized_metrics("regression", y, y + rng.normal(0, noise, n), None, None, ["rmse"], seed=seed)[
        "rmse"
    ]


def test_significant_fires_on_a_clear_drop_with_a_readable_reason():
    value = _accuracy(0.80, 500)
    verdict = judge("accuracy", value, 0.93, PerformanceConfig())
    assert verdict.status == "degraded" and verdict.degraded
    assert verdict.rule == "significant" and verdict.source == "realized"
    assert verdict.details["bound_name"] == "high" and verdict.details["bound"] == value.high < 0.93
    assert "on 500 labelled rows is below the champion's 0.93 beyond the 95% interval" in verdict.reason
    assert verdict.reason.startswith(f"accuracy {round(value.value, 3):g} [")


def test_significant_does_not_fire_on_a_drop_within_the_noise():
    verdict = judge("accuracy", _accuracy(0.92, 300), 0.93, PerformanceConfig())
    assert verdict.status == "ok"
    assert "is not significantly below the champion's 0.93 at 95%" in verdict.reason


def test_significant_tolerance_absorbs_a_small_but_certain_drop():
    value = MetricInterval(0.90, 0.895, 0.905, 100_000)
    assert judge("accuracy", value, 0.93, PerformanceConfig()).degraded
    tolerant = judge("accuracy", value, 0.93, PerformanceConfig(tolerance=0.05))
    assert tolerant.status == "ok" and tolerant.details["limit"] == pytest.approx(0.88)
    assert "minus tolerance 0.05" in tolerant.reason


def test_relative_drop_fires_beyond_the_allowed_share_only():
    config = PerformanceConfig(rule="relative_drop", max_relative_drop=0.05)
    clear = judge("accuracy", MetricInterval(0.85, 0.82, 0.88, 400), 0.93, config)
    small = judge("accuracy", MetricInterval(0.91, 0.88, 0.94, 400), 0.93, config)
    assert clear.degraded and clear.details["bound"] == pytest.approx(0.93 * 0.95)
    assert "8.6% worse than the champion's 0.93 (more than the 5.0% allowed)" in clear.reason
    assert small.status == "ok" and "(within the 5.0% allowed)" in small.reason


def test_floor_fires_below_the_floor_and_needs_no_reference():
    config = PerformanceConfig(rule="floor", floor=0.85)
    low = judge("accuracy", MetricInterval(0.80, 0.77, 0.83, 400), None, config)
    high = judge("accuracy", MetricInterval(0.88, 0.85, 0.91, 400), None, config)
    assert low.degraded and "is below the floor 0.85" in low.reason and low.details["bound"] == 0.85
    assert high.status == "ok" and "is not below the floor 0.85" in high.reason


def test_lower_is_better_metrics_degrade_when_they_rise():
    worse, better = _rmse(1.0, 500), _rmse(0.3, 500)
    significant = judge("rmse", worse, 0.5, PerformanceConfig())
    assert significant.degraded and significant.details["bound_name"] == "low"
    assert "is above the champion's 0.5" in significant.reason
    assert judge("rmse", better, 0.5, PerformanceConfig()).status == "ok"
    relative = PerformanceConfig(rule="relative_drop")
    assert judge("rmse", worse, 0.5, relative).degraded
    assert judge("rmse", better, 0.5, relative).status == "ok"
    ceiling = PerformanceConfig(rule="floor", floor=0.8)
    assert "is above the ceiling 0.8" in judge("rmse", worse, None, ceiling).reason
    assert judge("log_loss", MetricInterval(0.2, 0.18, 0.22, 500), 0.35, PerformanceConfig()).status == "ok"


def test_a_small_window_gets_not_enough_labels_not_a_verdict():
    tiny = _accuracy(0.5, 40)  # a drop no one could miss, on too few rows
    verdict = judge("accuracy", tiny, 0.93, PerformanceConfig(min_labels=100))
    assert verdict.status == "not_enough_labels" and not verdict.degraded
    assert verdict.reason == "40 labelled rows, fewer than the 100 needed to judge accuracy"
    none = judge("accuracy", None, 0.93, PerformanceConfig())
    assert none.status == "not_enough_labels" and none.reason.startswith("0 labelled rows")


def test_a_metric_undefined_on_the_window_gets_not_enough_labels():
    verdict = judge("roc_auc", MetricInterval(None, None, None, 500), 0.9, PerformanceConfig())
    assert verdict.status == "not_enough_labels"
    assert verdict.reason == "roc_auc is undefined on the 500 labelled rows (one class only?)"


def test_no_reference_is_said_rather_than_judged():
    for reference in (None, float("nan")):
        verdict = judge("accuracy", _accuracy(0.5, 500), reference, PerformanceConfig())
        assert verdict.status == "no_reference" and verdict.reference is None
        assert "no reference value of accuracy for the champion" in verdict.reason


def test_the_verdict_travels_as_a_dict():
    verdict = judge("accuracy", _accuracy(0.8, 500), 0.93, PerformanceConfig(), source="estimated")
    data = verdict.to_dict()
    assert data["status"] == "degraded" and data["source"] == "estimated"
    assert data["value"]["rows"] == 500 and data["reference"] == 0.93


def test_an_unknown_metric_is_refused_by_name():
    with pytest.raises(RuleError, match="cannot judge unknown metric 'precision'"):
        judge("precision", MetricInterval(0.8, 0.7, 0.9, 500), 0.9, PerformanceConfig())
