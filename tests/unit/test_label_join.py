"""Delayed labels joined to their window's predictions; label drift; concept drift."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.monitoring.labels import LabelError, concept_drift, join_labels, label_drift
from airflow_mlops_provider.core.monitoring.types import MetricInterval, Verdict


def _predictions(ids=(1, 2, 3, 4, 5, 6)) -> pa.Table:
    n = len(ids)
    p1 = np.linspace(0.1, 0.9, n)
    return pa.table(
        {
            "id": list(ids),
            "prediction": (p1 > 0.5).astype(int),
            "proba_0": 1 - p1,
            "proba_1": p1,
        }
    )


def _labels(ids, values) -> pa.Table:
    return pa.table({"id": list(ids), "y": list(values)})


def test_labels_arriving_in_two_later_arrivals_are_all_joined():
    predictions = _predictions()
    first = join_labels(predictions, [_labels([1, 2], [0, 0])], id_column="id", target="y")
    assert (first.labelled, first.pending) == (2, 4)
    both = [_labels([1, 2], [0, 0]), _labels([5, 3, 6], [1, 0, 1])]
    joined = join_labels(predictions, both, id_column="id", target="y")
    assert (joined.labelled, joined.pending) == (5, 1)
    assert joined.classes == ["0", "1"] and joined.task == "classification"
    assert joined.y_true.tolist() == ["0", "0", "0", "1", "1"]  # window order: ids 1, 2, 3, 5, 6
    assert joined.y_pred.tolist() == ["0", "0", "0", "1", "1"]
    expected = predictions.filter(pa.array([True, True, True, False, True, True]))
    assert joined.proba[:, 1].tolist() == expected.column("proba_1").to_pylist()


def test_a_later_arrival_corrects_an_earlier_label():
    arrivals = [_labels([1, 2, 3], [0, 0, 1]), _labels([2, 3], [1, 1])]
    joined = join_labels(_predictions(), arrivals, id_column="id", target="y")
    assert joined.y_true.tolist() == ["0", "1", "1"]
    assert joined.corrected == 1  # id 2 changed; id 3 came again with the same label
    assert joined.counts()["corrected"] == 1


def test_duplicate_ids_inside_one_arrival_keep_the_last_row_and_are_counted():
    joined = join_labels(_predictions(), [_labels([1, 1, 1, 2], [1, 1, 0, 1])], id_column="id", target="y")
    assert joined.y_true.tolist() == ["0", "1"]
    assert (joined.duplicates, joined.corrected, joined.labelled) == (2, 0, 2)


def test_labels_of_another_window_are_ignored_and_counted():
    joined = join_labels(_predictions(), [_labels([1, 99, 100], [1, 0, 0])], id_column="id", target="y")
    assert (joined.labelled, joined.pending, joined.other_windows) == (1, 5, 2)


def test_integer_ids_match_their_string_form():
    labels = pa.table({"id": ["1", "2", "3"], "y": ["0", "1", "1"]})
    joined = join_labels(_predictions(), [labels], id_column="id", target="y")
    assert joined.labelled == 3 and joined.y_true.tolist() == ["0", "1", "1"]
    text_ids = _predictions().set_column(0, "id", pa.array(["1", "2", "3", "4", "5", "6"]))
    again = join_labels(text_ids, [_labels([4, 5], [1, 1])], id_column="id", target="y")
    assert again.labelled == 2


def test_null_labels_do_not_count_and_do_not_erase_an_earlier_label():
    arrivals = [_labels([1, 2], [1, None]), _labels([1], [None])]
    joined = join_labels(_predictions(), arrivals, id_column="id", target="y")
    assert (joined.labelled, joined.pending, joined.null_labels) == (1, 5, 2)
    assert joined.y_true.tolist() == ["1"]


def test_no_arrivals_leave_every_prediction_pending():
    joined = join_labels(_predictions(), [], id_column="id", target="y")
    assert (
        (joined.labelled, joined.pending) == (0, 6)
        and joined.y_true.size == 0
        and joined.proba.shape == (0, 2)
    )


def test_a_regressors_labels_are_floats_and_nan_is_a_null_label():
    predictions = pa.table({"id": [10, 11, 12], "prediction": [1.5, 2.5, 3.5]})
    labels = pa.table({"id": [10, 11, 12], "y": [1.0, float("nan"), 3.0]})
    joined = join_labels(predictions, [labels], id_column="id", target="y")
    assert joined.task == "regression" and joined.classes is None and joined.proba is None
    assert joined.y_true.tolist() == [1.0, 3.0] and joined.y_pred.tolist() == [1.5, 3.5]
    assert joined.null_labels == 1


def test_missing_columns_are_named_with_their_table():
    with pytest.raises(
        LabelError, match=r"predictions has no column 'id' \(columns: \['row', 'prediction'\]\)"
    ):
        join_labels(pa.table({"row": [1], "prediction": [0]}), [], id_column="id", target="y")
    with pytest.raises(LabelError, match=r"label arrival 2 has no column 'y'"):
        join_labels(_predictions(), [_labels([1], [0]), pa.table({"id": [2]})], id_column="id", target="y")
    with pytest.raises(LabelError, match=r"label arrival 1 has no column 'id'"):
        join_labels(_predictions(), [pa.table({"key": [2], "y": [1]})], id_column="id", target="y")


def test_label_drift_is_found_on_a_changed_class_balance_only():
    rng = np.random.default_rng(0)
    reference = pa.array(rng.choice([0, 1], 2000, p=[0.5, 0.5]))
    same = [label_drift(reference, rng.choice(["0", "1"], 500), "classification") for _ in range(40)]
    changed = label_drift(reference, rng.choice(["0", "1"], 500, p=[0.85, 0.15]), "classification")
    assert sum(out["drift"] for out in same) <= 2 and same[0]["test"] == "chi2"
    assert changed["drift"] is True and changed["p_value"] < 1e-6
    assert changed["window_distribution"]["0"] == pytest.approx(0.85, abs=0.05)
    assert set(changed["reference_distribution"]) == {"0", "1"}
    assert (changed["reference_rows"], changed["window_rows"]) == (2000, 500)


def test_label_drift_of_a_regressor_uses_ks_and_quantiles():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=3000)
    shifted = label_drift(reference, rng.normal(1.0, 1.0, 400), "regression")
    assert shifted["drift"] is True and shifted["test"] == "ks"
    false_alarms = [label_drift(reference, rng.normal(size=400), "regression")["drift"] for _ in range(100)]
    assert sum(false_alarms) <= 12  # alpha 0.05 and an effect threshold: rare on the same distribution
    assert shifted["window_distribution"]["q50"] == pytest.approx(1.0, abs=0.2)
    assert list(shifted["reference_distribution"]) == ["q05", "q25", "q50", "q75", "q95"]


def test_label_drift_without_window_labels_says_so():
    out = label_drift([0, 1, None], [], "classification")
    assert out["drift"] is False and out["reason"] == "no labels in the window" and out["reference_rows"] == 2


def _verdict(status: str) -> Verdict:
    value = MetricInterval(0.8, 0.77, 0.83, 500)
    return Verdict(
        status=status, metric="accuracy", rule="significant", reason="", value=value, reference=0.93
    )


def test_concept_drift_is_suspected_when_degraded_without_input_drift():
    finding = concept_drift(_verdict("degraded"), {"drift": False, "share": 0.0})
    assert finding is not None and finding["suspected"] is True
    assert "accuracy degraded while the inputs did not drift" in finding["reason"]
    below = concept_drift(_verdict("degraded"), {"drift": True, "share": 0.1, "drift_share": 0.3})
    assert below is not None and below["suspected"] is True  # a share below its threshold is no drift


def test_concept_drift_is_not_suspected_when_the_inputs_drifted_or_performance_holds():
    drifted = concept_drift(_verdict("degraded"), {"drift": True, "share": 0.5})
    assert drifted is not None and drifted["suspected"] is False and "the inputs drifted" in drifted["reason"]
    fine = concept_drift(_verdict("ok"), {"drift": False})
    assert fine is not None and fine["suspected"] is False and "holds up" in fine["reason"]


def test_concept_drift_has_nothing_to_say_without_a_verdict_or_drift_summary():
    assert concept_drift(None, {"drift": False}) is None
    assert concept_drift(_verdict("degraded"), None) is None
    assert concept_drift(_verdict("not_enough_labels"), {"drift": False}) is None
    assert concept_drift(_verdict("degraded"), {"report_uri": "s3://x"}) is None
