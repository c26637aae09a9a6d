"""Best-run selection: the best finite metric wins, ties go to the earliest result, nothing usable fails."""

from __future__ import annotations

import math

import pytest

from airflow_mlops_provider.core.selection import select_best


def result(run_id: str, **metrics: float) -> dict:
    return {"run_id": run_id, "metrics": metrics}


def test_max_and_min_pick_the_best_finite_metric():
    results = [result("a", auc=0.7), result("b", auc=0.9), result("c", auc=math.nan), result("d", loss=0.1)]
    assert select_best(results, "auc")["run_id"] == "b"
    assert select_best(results, "auc", "min")["run_id"] == "a"


def test_ties_go_to_the_earliest_result():
    results = [result("a", auc=0.8), result("b", auc=0.8)]
    assert select_best(results, "auc")["run_id"] == "a"
    assert select_best(results, "auc", "min")["run_id"] == "a"


def test_empty_results_are_skipped_and_the_winner_is_a_copy():
    winner = result("a", auc=0.5)
    picked = select_best([None, {}, winner], "auc")
    assert picked == winner and picked is not winner


def test_no_finite_metric_names_the_metric_and_what_was_seen():
    with pytest.raises(
        ValueError, match=r"finite metric 'auc' \(2 results; metrics seen: \['auc', 'loss'\]\)"
    ):
        select_best([result("a", auc=math.inf), result("b", loss=0.2)], "auc")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        select_best([result("a", auc=1.0)], "auc", "best")
