"""The gate as a pure decision: thresholds, first model, gain, regressions, slices, NaN and typos."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.gate import GateConfig, GateConfigError, decide


def evaluation(challenger, champion=None, task="classification", c_slices=None, k_slices=None):
    return {
        "task": task,
        "challenger": {"run_id": "new", "metrics": challenger, "slices": c_slices or {}},
        "champion": None
        if champion is None
        else {"version": "1", "run_id": "old", "metrics": champion, "slices": k_slices or {}},
    }


GOOD = {"accuracy": 0.9, "f1": 0.88, "roc_auc": 0.95, "log_loss": 0.3}


def test_first_model_is_promoted_on_thresholds_alone():
    result = decide(evaluation(GOOD), {"thresholds": {"accuracy": 0.8, "log_loss": 0.5}})
    assert result.verdict == "pass" and result.first_model
    assert "first model" in result.reasons[0]
    assert {c.metric for c in result.checks} == {"accuracy", "log_loss"}


def test_first_model_below_a_threshold_is_rejected_with_the_number():
    result = decide(evaluation({**GOOD, "log_loss": 0.7}), {"thresholds": {"accuracy": 0.8, "log_loss": 0.5}})
    assert result.verdict == "fail"
    assert result.reasons == ["log_loss 0.7 does not meet the threshold (<= 0.5)"]


def test_better_challenger_passes_and_worse_fails_on_the_primary_metric():
    gate = {"primary_metric": "roc_auc", "min_gain": 0.01}
    assert decide(evaluation(GOOD, {**GOOD, "roc_auc": 0.9}), gate).passed
    worse = decide(evaluation(GOOD, {**GOOD, "roc_auc": 0.97}), gate)
    assert worse.verdict == "fail"
    assert "roc_auc 0.95 vs champion 0.97: gain -0.02 is below the minimum gain 0.01" in worse.reasons[0]


def test_relative_gain_and_lower_is_better_direction():
    gate = {"primary_metric": "rmse", "min_gain_relative": 0.05}
    ok = decide(evaluation({"rmse": 0.9, "mae": 1, "r2": 0.5}, {"rmse": 1.0}, task="regression"), gate)
    assert ok.passed, ok.reasons
    small = decide(evaluation({"rmse": 0.98}, {"rmse": 1.0}, task="regression"), gate)
    assert small.verdict == "fail" and "relative gain 2.0000% over champion is below" in small.reasons[0]


def test_no_regression_tolerance_on_listed_metrics():
    gate = {"primary_metric": "roc_auc", "max_regression": {"accuracy": 0.02}}
    result = decide(evaluation({**GOOD, "accuracy": 0.85}, {**GOOD, "roc_auc": 0.9}), gate)
    assert result.verdict == "fail"
    assert result.reasons == ["accuracy regressed from 0.9 to 0.85 (by 0.05, tolerance 0.02)"]


def test_slice_regression_is_checked_per_value_and_undefined_slices_are_not_evidence():
    def sl(eu, us):
        return {"region": {"eu": {"accuracy": eu, "roc_auc": None}, "us": {"accuracy": us, "roc_auc": None}}}

    c_slices, k_slices = sl(0.7, 0.95), sl(0.9, 0.9)
    gate = {"slice_max_regression": {"accuracy": 0.05, "roc_auc": 0.0}}
    result = decide(evaluation(GOOD, {**GOOD, "roc_auc": 0.9}, c_slices=c_slices, k_slices=k_slices), gate)
    assert result.verdict == "fail"
    expected = "accuracy on slice region=eu regressed from 0.9 to 0.7 (by 0.2, tolerance 0.05)"
    assert result.reasons == [expected]


@pytest.mark.parametrize("bad", [float("nan"), None, "missing", math.inf])
def test_nan_or_missing_challenger_metrics_are_rejected_with_a_reason(bad):
    metrics = dict(GOOD)
    if bad == "missing":
        del metrics["roc_auc"]
    else:
        metrics["roc_auc"] = bad
    result = decide(evaluation(metrics), {"thresholds": {"accuracy": 0.5}})
    assert result.verdict == "fail"
    assert result.reasons[0].startswith("challenger metric 'roc_auc' is NaN or missing")


def test_nan_champion_metric_cannot_be_beaten_silently():
    result = decide(evaluation(GOOD, {**GOOD, "roc_auc": None}), {})
    assert result.verdict == "fail"
    assert result.reasons == ["champion metric 'roc_auc' is NaN or missing: cannot compare"]


def test_rerun_of_the_champion_run_passes_even_with_a_gain_requirement():
    ev = evaluation(GOOD, GOOD)
    ev["champion"]["run_id"] = "new"
    assert decide(ev, {"min_gain": 0.1}).passed


def test_config_typos_and_task_mismatches_are_named():
    with pytest.raises(ValidationError, match="unknown metric 'acuracy'"):
        GateConfig.model_validate({"thresholds": {"acuracy": 0.8}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        GateConfig.model_validate({"threshold": {"accuracy": 0.8}})
    with pytest.raises(ValidationError, match="must be >= 0"):
        GateConfig.model_validate({"max_regression": {"accuracy": -0.1}})
    with pytest.raises(ValueError, match=r"names metric\(s\) \['rmse'\] that a classification evaluation"):
        decide(evaluation(GOOD), {"thresholds": {"rmse": 1.0}})


def test_config_errors_are_permanent_and_say_they_are_about_the_gate_config():
    for config in ({"thresholds": {"acuracy": 0.8}}, {"thresholds": {"rmse": 1.0}}):
        with pytest.raises(GateConfigError, match=r"^gate config: ") as raised:
            decide(evaluation(GOOD), config)
        assert isinstance(raised.value, PermanentError)
