"""Performance estimation (CBPE / DLE) against the realized metrics on data whose truth is known.

Tolerances: windows of 20,000 rows (realized accuracy's sampling deviation ~0.003) and a
reference of 5,000 rows, from which the calibration is learned (~0.006): an estimate within
0.02 of the realized value is three combined deviations. DLE's RMSE rests on a model of the
squared error, whose heavy tail the trees shrink: 8 % (its MAE: 3 %).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from airflow_mlops_provider.core.evaluation import compute_metrics
from airflow_mlops_provider.core.monitoring import estimation as est
from airflow_mlops_provider.core.monitoring.estimation import (
    ClassifierEstimator,
    EstimationError,
    RegressorEstimator,
    fit_estimator,
)
from airflow_mlops_provider.core.monitoring.synthetic import (
    ClassificationScenario,
    Sample,
    classification_scenario,
    regression_scenario,
)

METRICS = ("accuracy", "f1", "roc_auc")
ROWS = 20_000
TOL = 0.02


@pytest.fixture(scope="module")
def binary() -> tuple[ClassificationScenario, ClassifierEstimator]:
    scenario = classification_scenario(2)
    ref = scenario.reference
    return scenario, ClassifierEstimator.fit(ref.y_true, ref.proba, scenario.classes)


@pytest.fixture(scope="module")
def multiclass() -> tuple[ClassificationScenario, ClassifierEstimator]:
    scenario = classification_scenario(3)
    ref = scenario.reference
    return scenario, ClassifierEstimator.fit(ref.y_true, ref.proba, scenario.classes)


def realized(scenario: ClassificationScenario, window: Sample) -> dict[str, float | None]:
    return compute_metrics(
        "classification", window.y_true, window.y_pred, window.proba, scenario.classes, METRICS
    )


def values(estimator: ClassifierEstimator, window: Sample) -> dict[str, float | None]:
    return {name: m.value for name, m in estimator.estimate(window.proba, metrics=METRICS).items()}


def test_expected_metrics_on_one_hot_labels_are_the_realized_metrics() -> None:
    """The estimator's formulas, fed the labels' one-hot, give exactly what compute_metrics gives."""
    for n_classes in (2, 3):
        scenario = classification_scenario(n_classes, reference_rows=3_000)
        ref = scenario.reference
        assert ref.proba is not None
        onehot = np.eye(n_classes)[ref.y_true]
        truth = compute_metrics("classification", ref.y_true, ref.y_pred, ref.proba, scenario.classes)
        for name in est.CLASSIFIER_METRICS:
            mine = est._metric(name, ref.proba, onehot, np.argmax(ref.proba, axis=1))
            assert mine == pytest.approx(truth[name], abs=1e-9), name


@pytest.mark.parametrize("shift", ["none", "boundary", "away", "irrelevant", "mean"])
@pytest.mark.parametrize(("problem", "seed"), [("binary", 11), ("multiclass", 12)])
def test_estimate_tracks_realized_under_covariate_shift(
    request: pytest.FixtureRequest, problem: str, seed: int, shift: str
) -> None:
    scenario, estimator = request.getfixturevalue(problem)
    window = scenario.window(shift, ROWS, seed=seed)
    estimated, truth = values(estimator, window), realized(scenario, window)
    for name in METRICS:
        assert estimated[name] == pytest.approx(truth[name], abs=TOL), name


@pytest.mark.parametrize("fixture", ["binary", "multiclass"])
def test_a_hurting_shift_shows_in_the_estimate_and_a_harmless_one_does_not(request, fixture: str) -> None:
    scenario, estimator = request.getfixturevalue(fixture)
    base = scenario.window("none", ROWS, seed=13)
    hurt = scenario.window("boundary", ROWS, seed=14)
    harmless = scenario.window("irrelevant", ROWS, seed=15)
    for name in METRICS:
        real_drop = realized(scenario, base)[name] - realized(scenario, hurt)[name]
        estimated_drop = values(estimator, base)[name] - values(estimator, hurt)[name]
        assert real_drop > 0.08, name
        assert estimated_drop == pytest.approx(real_drop, abs=TOL), name
        assert values(estimator, harmless)[name] == pytest.approx(values(estimator, base)[name], abs=0.01)


@pytest.mark.parametrize("fixture", ["binary", "multiclass"])
def test_concept_shift_is_invisible_to_the_estimate(request, fixture: str) -> None:
    """The documented limitation: P(y|x) changes, the inputs do not, the estimate does not move."""
    scenario, estimator = request.getfixturevalue(fixture)
    base, concept = scenario.window("none", ROWS, seed=16), scenario.window("concept", ROWS, seed=17)
    estimated = estimator.estimate(concept.proba, metrics=METRICS)
    for name in METRICS:
        assert realized(scenario, base)[name] - realized(scenario, concept)[name] > 0.15, name
        assert estimated[name].value == pytest.approx(values(estimator, base)[name], abs=0.01), name
        assert estimated[name].low > realized(scenario, concept)[name], name  # the band misses it


def test_band_covers_the_realized_value_in_most_windows(binary) -> None:
    scenario, estimator = binary
    covered = dict.fromkeys(METRICS, 0)
    trials = 40
    for seed in range(trials):
        window = scenario.window("mean", 2_000, seed=100 + seed)
        estimated, truth = estimator.estimate(window.proba, metrics=METRICS), realized(scenario, window)
        for name in METRICS:
            covered[name] += estimated[name].low <= truth[name] <= estimated[name].high
    assert all(count >= 0.85 * trials for count in covered.values()), covered
    # the band narrows with the window's rows, down to the share the reference's own size leaves
    width = {}
    for rows in (500, 5_000, 200_000):
        f1 = estimator.estimate(scenario.window("mean", rows, seed=3).proba, metrics=["f1"])["f1"]
        assert f1.rows == rows and f1.confidence == 0.95
        width[rows] = f1.high - f1.low
    floor = 2 * 1.959964 * estimator.sigma["f1"] / np.sqrt(estimator.reference_rows)
    assert width[500] > width[5_000] > width[200_000] > floor
    assert width[200_000] == pytest.approx(floor, rel=0.05)


def test_json_round_trip_gives_identical_estimates(multiclass) -> None:
    scenario, estimator = multiclass
    stored = json.loads(json.dumps(estimator.to_json()))
    window = scenario.window("mean", 5_000, seed=4)
    restored = ClassifierEstimator.from_json(stored)
    assert restored.estimate(window.proba, metrics=est.CLASSIFIER_METRICS) == estimator.estimate(
        window.proba, metrics=est.CLASSIFIER_METRICS
    )


def test_string_classes_and_the_positive_class_follow_the_model_order() -> None:
    scenario = classification_scenario(2)
    names = np.array(["stay", "churn"])
    ref, window = scenario.reference, scenario.window("boundary", ROWS, seed=5)
    estimator = ClassifierEstimator.fit(names[ref.y_true], ref.proba, list(names))
    truth = compute_metrics(
        "classification", names[window.y_true], names[window.y_pred], window.proba, list(names)
    )
    estimated = estimator.estimate(window.proba, metrics=METRICS)
    assert json.loads(json.dumps(estimator.to_json()))["classes"] == ["stay", "churn"]
    for name in METRICS:
        assert estimated[name].value == pytest.approx(truth[name], abs=TOL), name


def test_dle_tracks_mae_under_covariate_shift_with_heteroscedastic_noise() -> None:
    scenario = regression_scenario()
    ref = scenario.reference
    estimator = fit_estimator("regression", features=ref.features, y_true=ref.y_true, y_pred=ref.y_pred)
    assert isinstance(estimator, RegressorEstimator)
    base = scenario.window("none", ROWS, seed=6)
    base_estimate = estimator.estimate(base.features, base.y_pred)["mae"].value
    for shift in ("spread", "calm", "irrelevant"):
        window = scenario.window(shift, ROWS, seed=7)
        estimated = estimator.estimate(window.features, window.y_pred)
        truth = compute_metrics("regression", window.y_true, window.y_pred)
        assert estimated["mae"].value == pytest.approx(truth["mae"], rel=0.03), shift
        assert estimated["rmse"].value == pytest.approx(truth["rmse"], rel=0.08), shift
        assert estimated["mae"].low <= truth["mae"] * 1.03 and estimated["mae"].high >= truth["mae"] * 0.97
    spread = scenario.window("spread", ROWS, seed=8)
    assert estimator.estimate(spread.features, spread.y_pred)["mae"].value > 1.3 * base_estimate


def test_fit_estimator_dispatches_and_validates() -> None:
    scenario = classification_scenario(2, reference_rows=1_000)
    ref = scenario.reference
    fitted = fit_estimator("classification", y_true=ref.y_true, proba=ref.proba, classes=scenario.classes)
    assert isinstance(fitted, ClassifierEstimator)
    with pytest.raises(EstimationError, match="unknown task 'ranking'"):
        fit_estimator("ranking", y_true=ref.y_true)
    with pytest.raises(EstimationError, match="needs the reference's proba and classes"):
        fit_estimator("classification", y_true=ref.y_true)
    with pytest.raises(EstimationError, match="needs the reference's features and predictions"):
        fit_estimator("regression", y_true=ref.y_true)


def test_bad_classifier_input_raises_clear_errors(binary) -> None:
    scenario, estimator = binary
    ref = scenario.reference
    with pytest.raises(EstimationError, match=r"shape \(10, 3\): expected one column per class \(2"):
        estimator.estimate(np.full((10, 3), 1 / 3))
    with pytest.raises(EstimationError, match="window is empty"):
        estimator.estimate(np.empty((0, 2)))
    with pytest.raises(EstimationError, match="NaN, infinite or negative"):
        estimator.estimate(np.array([[0.5, np.nan]]))
    with pytest.raises(EstimationError, match=r"cannot estimate metric\(s\) \['rmse'\]"):
        estimator.estimate(ref.proba, metrics=["rmse"])
    with pytest.raises(EstimationError, match=r"confidence must lie in \(0.5, 1\)"):
        estimator.estimate(ref.proba, confidence=1.5)
    with pytest.raises(EstimationError, match=r"labels \['7'\] are not among the model's classes \[0, 1\]"):
        ClassifierEstimator.fit(np.r_[ref.y_true[:-1], 7], ref.proba, scenario.classes)
    with pytest.raises(EstimationError, match="100 labels but 5000 probability rows"):
        ClassifierEstimator.fit(ref.y_true[:100], ref.proba, scenario.classes)
    with pytest.raises(EstimationError, match="at least 2 classes"):
        ClassifierEstimator.fit(ref.y_true, ref.proba[:, :1], [0])
    with pytest.raises(EstimationError, match="not a stored CBPE estimator"):
        ClassifierEstimator.from_json({"format": "pickle"})


def test_bad_regressor_input_raises_clear_errors() -> None:
    scenario = regression_scenario(reference_rows=500)
    ref = scenario.reference
    estimator = RegressorEstimator.fit(ref.features, ref.y_true, ref.y_pred)
    with pytest.raises(EstimationError, match="r2 depends on the window's unseen label variance"):
        estimator.estimate(ref.features, ref.y_pred, metrics=["mae", "r2"])
    with pytest.raises(EstimationError, match="window is empty"):
        estimator.estimate(ref.features.iloc[:0], ref.y_pred[:0])
    with pytest.raises(EstimationError, match="500 feature rows but 10 predictions"):
        estimator.estimate(ref.features, ref.y_pred[:10])
    with pytest.raises(EstimationError, match=r"lacks the reference's feature columns \['segment'\]"):
        estimator.estimate(ref.features.drop(columns=["segment"]), ref.y_pred)
    with pytest.raises(EstimationError, match="500 feature rows, 499 labels and 500 predictions"):
        RegressorEstimator.fit(ref.features, ref.y_true[:-1], ref.y_pred)
    with pytest.raises(EstimationError, match="at least 20 rows with finite labels"):
        RegressorEstimator.fit(ref.features, np.r_[ref.y_true[:-1], np.nan], ref.y_pred)


def test_unseen_categories_and_missing_values_are_estimated_not_refused() -> None:
    scenario = regression_scenario(reference_rows=2_000)
    ref = scenario.reference
    estimator = RegressorEstimator.fit(ref.features, ref.y_true, ref.y_pred)
    window = scenario.window("none", 1_000, seed=9)
    odd = window.features.copy()
    odd.loc[:99, "segment"] = "never-seen"
    odd.loc[100:199, "x1"] = np.nan
    odd.loc[200:299, "day"] = None
    result = estimator.estimate(odd, window.y_pred)
    assert all(m.value is not None and m.value > 0 for m in result.values())
