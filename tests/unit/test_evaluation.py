"""Metrics and slices: checked against hand-computed values and real fitted TabularModels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airflow_mlops_provider.core.evaluation import EvaluationError, compute_metrics, evaluate_frame
from tests.support.promotion import fit_model, make_frame


def test_binary_classification_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = compute_metrics("classification", y, pred, proba, classes=[0, 1])
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # precision 2/3, recall 1
    assert m["roc_auc"] == 1.0  # every positive scores above every negative
    expected = -np.mean(np.log([0.9, 0.4, 0.7, 0.8]))
    assert m["log_loss"] == pytest.approx(expected)


def test_string_labels_use_the_models_class_order_for_the_positive_class():
    y = np.array(["no", "yes", "yes"])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    m = compute_metrics("classification", y, np.array(["no", "yes", "no"]), proba, classes=["no", "yes"])
    assert m["f1"] == pytest.approx(2 / 3)  # positive class "yes": precision 1, recall 1/2
    assert m["roc_auc"] == 1.0


def test_multiclass_uses_macro_f1_and_one_vs_rest_auc():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    m = compute_metrics("classification", y, proba.argmax(axis=1), proba, classes=[0, 1, 2])
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(np.mean([1.0, 2 / 3, 2 / 3]))
    assert 0.5 < m["roc_auc"] <= 1.0


def test_regression_metrics():
    y, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0])
    m = compute_metrics("regression", y, pred)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 5)


def test_undefined_metrics_are_none_never_nan():
    one_class = compute_metrics(
        "classification", np.array([1, 1]), np.array([1, 1]), np.full((2, 2), 0.5), [0, 1]
    )
    assert one_class["roc_auc"] is None
    nan_proba = compute_metrics(
        "classification", np.array([0, 1]), np.array([0, 0]), np.full((2, 2), np.nan), [0, 1]
    )
    assert nan_proba["roc_auc"] is None and nan_proba["log_loss"] is None
    assert compute_metrics("regression", np.array([1.0]), np.array([2.0]))["r2"] is None
    assert compute_metrics("regression", np.array([]), np.array([])) == {
        "rmse": None,
        "mae": None,
        "r2": None,
    }


def test_unknown_metric_or_task_is_named():
    with pytest.raises(EvaluationError, match=r"metric\(s\) \['rmse'\] do not apply to classification"):
        compute_metrics("classification", np.array([0]), np.array([0]), metrics=["rmse"])
    with pytest.raises(EvaluationError, match="unknown task 'ranking'"):
        compute_metrics("ranking", np.array([0]), np.array([0]))


@pytest.fixture(scope="module")
def fitted():
    train, test = make_frame(400, seed=1), make_frame(300, seed=2)
    return test, fit_model(train, 0.0), fit_model(train, 0.42, seed=2)


def test_real_models_rank_as_trained_and_slices_cover_each_value(fitted):
    test, good, noisy = fitted
    a = evaluate_frame(good, test, slices=["region"])
    b = evaluate_frame(noisy, test)
    assert a["rows"] == 300 and set(a["metrics"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert (
        a["metrics"]["roc_auc"] > b["metrics"]["roc_auc"]
        and a["metrics"]["log_loss"] < b["metrics"]["log_loss"]
    )
    regions = a["slices"]["region"]
    assert set(regions) == {"apac", "eu", "us"}
    assert sum(v["rows"] for v in regions.values()) == 300
    assert all(math.isfinite(v["accuracy"]) for v in regions.values())


def test_slice_limits_and_bad_inputs_are_named(fitted):
    test, good, _ = fitted
    limited = evaluate_frame(good, test, metrics=["accuracy"], slices=[{"column": "region", "max_values": 1}])
    assert len(limited["slices"]["region"]) == 1 and set(limited["metrics"]) == {"accuracy"}
    with pytest.raises(EvaluationError, match="no target column 'y'"):
        evaluate_frame(good, test.drop(columns=["y"]))
    with pytest.raises(EvaluationError, match="slice column 'country' is not in the evaluation data"):
        evaluate_frame(good, test, slices=["country"])
    with pytest.raises(EvaluationError, match="evaluation data is empty"):
        evaluate_frame(good, test.iloc[:0])
    with pytest.raises(EvaluationError, match="expected keys 'column'"):
        evaluate_frame(good, test, slices=[{"col": "region"}])
