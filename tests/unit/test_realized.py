"""Realized metrics: point values as the evaluation stage computes them, bootstrap intervals that cover."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airflow_mlops_provider.core.evaluation import EvaluationError, compute_metrics
from airflow_mlops_provider.core.monitoring.realized import MAX_BOOTSTRAP_ROWS, _Sample, realized_metrics


def _classifier_window(rng: np.random.Generator, n: int, accuracy: float, classes: int = 2):
    """Labels, predictions right with probability ``accuracy``, probabilities leaning to the prediction."""
    y = rng.integers(0, classes, n)
    wrong = (y + rng.integers(1, classes, n)) % classes
    pred = np.where(rng.random(n) < accuracy, y, wrong)
    proba = rng.dirichlet(np.ones(classes), n) * 0.5
    proba[np.arange(n), pred] += 0.5
    return y, pred, proba


def test_the_interval_covers_the_true_accuracy_in_most_windows():
    truth, windows, covered = 0.8, 300, 0
    for seed in range(windows):
        rng = np.random.default_rng(1000 + seed)
        y, pred, _ = _classifier_window(rng, 400, truth)
        interval = realized_metrics("classification", y, pred, None, [0, 1], ["accuracy"], seed=seed)[
            "accuracy"
        ]
        covered += interval.low <= truth <= interval.high
    assert covered / windows == pytest.approx(0.95, abs=0.04)  # nominal 95%, percentile bootstrap


def test_point_values_are_the_evaluation_stages_metrics():
    rng = np.random.default_rng(1)
    y, pred, proba = _classifier_window(rng, 300, 0.7, classes=3)
    out = realized_metrics("classification", y, pred, proba, [0, 1, 2], None)
    expected = compute_metrics("classification", y, pred, proba, [0, 1, 2])
    assert {m: v.value for m, v in out.items()} == expected
    for interval in out.values():
        assert interval.rows == 300 and interval.confidence == 0.95
        assert interval.low < interval.value < interval.high


@pytest.mark.parametrize("classes", [2, 3])
def test_each_resample_is_measured_as_compute_metrics_would(classes):
    rng = np.random.default_rng(classes)
    y, pred, proba = _classifier_window(rng, 200, 0.75, classes)
    proba[:20] = proba[0]  # ties in the scores
    sample = _Sample("classification", y, pred, proba, list(range(classes)))
    draw = rng.integers(0, 200, 200)
    weights = np.vstack([np.ones(200), np.bincount(draw, minlength=200)])
    for metric in ("accuracy", "f1", "roc_auc", "log_loss"):
        measured = sample.measure(metric, weights)
        assert measured[0] == pytest.approx(
            compute_metrics("classification", y, pred, proba, list(range(classes)), [metric])[metric]
        )
        resampled = compute_metrics(
            "classification", y[draw], pred[draw], proba[draw], list(range(classes)), [metric]
        )
        assert measured[1] == pytest.approx(resampled[metric]), metric


def test_regression_resamples_match_compute_metrics():
    rng = np.random.default_rng(3)
    y = rng.normal(10, 2, 150)
    pred = y + rng.normal(0, 1, 150)
    draw = rng.integers(0, 150, 150)
    weights = np.vstack([np.ones(150), np.bincount(draw, minlength=150)])
    sample = _Sample("regression", y, pred, None, None)
    for metric in ("rmse", "mae", "r2"):
        measured = sample.measure(metric, weights)
        assert measured[0] == pytest.approx(compute_metrics("regression", y, pred, metrics=[metric])[metric])
        assert measured[1] == pytest.approx(
            compute_metrics("regression", y[draw], pred[draw], metrics=[metric])[metric]
        )


def test_the_bootstrap_is_reproducible_with_a_seed():
    rng = np.random.default_rng(4)
    y, pred, proba = _classifier_window(rng, 250, 0.8)
    first = realized_metrics("classification", y, pred, proba, [0, 1], None, seed=7)
    again = realized_metrics("classification", y, pred, proba, [0, 1], None, seed=7)
    other = realized_metrics("classification", y, pred, proba, [0, 1], None, seed=8)
    assert first == again
    assert first["roc_auc"].low != other["roc_auc"].low


def test_lower_is_better_metrics_get_intervals_around_their_value():
    rng = np.random.default_rng(5)
    y = rng.normal(size=500)
    out = realized_metrics("regression", y, y + rng.normal(0, 0.5, 500), None, None, None, confidence=0.9)
    assert out["rmse"].low < out["rmse"].value < out["rmse"].high
    assert out["rmse"].value == pytest.approx(0.5, abs=0.05)
    assert out["r2"].confidence == 0.9


def test_a_window_over_the_cap_is_bootstrapped_on_a_subsample_with_the_full_windows_spread():
    rng = np.random.default_rng(6)
    n = 4 * MAX_BOOTSTRAP_ROWS
    y, pred, _ = _classifier_window(rng, n, 0.8)
    interval = realized_metrics("classification", y, pred, None, [0, 1], ["accuracy"])["accuracy"]
    expected_width = 2 * 1.96 * math.sqrt(interval.value * (1 - interval.value) / n)
    assert interval.high - interval.low == pytest.approx(expected_width, rel=0.2)
    assert interval.low < interval.value < interval.high
    assert interval.rows == n


def test_metrics_undefined_on_one_class_are_none():
    y = np.zeros(50, dtype=int)
    proba = np.tile([0.7, 0.3], (50, 1))
    out = realized_metrics("classification", y, np.zeros(50, dtype=int), proba, [0, 1], None)
    assert out["roc_auc"].value is None and out["roc_auc"].low is None and out["roc_auc"].high is None
    assert out["accuracy"].value == 1.0


def test_no_rows_gives_every_metric_none_with_zero_rows():
    out = realized_metrics("classification", np.array([]), np.array([]), None, [0, 1], ["accuracy", "f1"])
    assert set(out) == {"accuracy", "f1"}
    assert all(v.value is None and v.low is None and v.rows == 0 for v in out.values())


def test_a_metric_of_another_task_is_refused_by_name():
    with pytest.raises(EvaluationError, match=r"\['rmse'\] do not apply to classification"):
        realized_metrics("classification", np.array([0, 1]), np.array([0, 1]), None, [0, 1], ["rmse"])
