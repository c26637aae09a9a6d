"""Every awkward input gets a defined outcome: a clear error or a verdict with its reason."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.drift import (
    DriftConfig,
    DriftError,
    compare,
    parse_config,
    reference_from_source,
)
from airflow_mlops_provider.core.drift.columns import TableSource
from airflow_mlops_provider.core.drift.config import DriftConfigError


def _run(ref: pa.Table, cur: pa.Table, **config: object):
    cfg = DriftConfig(**config)
    return compare(reference_from_source(TableSource(ref), cfg), TableSource(cur), cfg)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_an_empty_current_window_is_a_clear_error(rng):
    ref = pa.table({"x": rng.normal(size=100)})
    with pytest.raises(DriftError, match="current window has no rows"):
        _run(ref, ref.slice(0, 0))


def test_an_empty_reference_is_a_clear_error(rng):
    ref = pa.table({"x": rng.normal(size=100)})
    with pytest.raises(DriftError, match="reference window has no rows"):
        _run(ref.slice(0, 0), ref)


def test_an_all_nan_current_column_is_drift_through_its_missing_share(rng):
    ref = pa.table({"x": rng.normal(size=5000), "y": rng.normal(size=5000)})
    cur = pa.table({"x": np.full(5000, np.nan), "y": rng.normal(size=5000)})
    result = _run(ref, cur)
    col = result.column("x")
    assert col.verdict == "drift"
    assert col.missing_current == 1.0
    assert "missing-value share changed from 0.00% to 100.00%" in col.reason
    assert "no non-missing values" in col.reason
    assert result.drifted_columns == ["x"]


def test_a_column_missing_in_both_windows_is_unknown_not_no_drift(rng):
    nan = pa.array([None] * 500, type=pa.float64())
    ref = pa.table({"x": nan, "y": rng.normal(size=500)})
    cur = pa.table({"x": nan, "y": rng.normal(size=500)})
    col = _run(ref, cur).column("x")
    assert col.verdict == "unknown"
    assert col.reason == "the reference has no non-missing values"
    assert col.p_value is None


def test_a_jump_in_the_missing_share_is_drift_even_when_values_look_alike(rng):
    ref = pa.table({"x": rng.normal(size=20_000)})
    values = rng.normal(size=20_000)
    values[rng.random(20_000) < 0.2] = np.nan
    col = _run(ref, pa.table({"x": values})).column("x")
    assert col.verdict == "drift"
    assert col.missing_current == pytest.approx(0.2, abs=0.01)
    assert col.missing_p_adjusted < 1e-10
    assert col.effect_size < col.threshold  # the present values did not move


def test_nulls_in_categorical_columns_are_counted(rng):
    ref = pa.table({"c": rng.choice(["a", "b"], 4000).tolist()})
    values = rng.choice(["a", "b"], 4000).astype(object)
    values[:400] = None
    col = _run(ref, pa.table({"c": pa.array(values.tolist())})).column("c")
    assert col.missing_current == pytest.approx(0.1)
    assert col.verdict == "drift"


def test_a_column_missing_from_the_current_window(rng):
    ref = pa.table({"x": rng.normal(size=1000), "gone": rng.normal(size=1000)})
    cur = pa.table({"x": rng.normal(size=1000), "extra": rng.normal(size=1000)})
    result = _run(ref, cur)
    col = result.column("gone")
    assert (col.verdict, col.reason) == ("unknown", "column is missing from the current window")
    assert result.unknown_columns == ["gone"]
    assert result.new_columns == ["extra"]
    assert result.drift is False
    assert _run(ref, cur, unknown="drift").drifted_columns == ["gone"]
    with pytest.raises(DriftError, match="gone: column is missing from the current window"):
        _run(ref, cur, unknown="fail")


def test_a_constant_reference_column(rng):
    ref = pa.table({"k": np.full(3000, 2.0)})
    same = _run(ref, pa.table({"k": np.full(3000, 2.0)})).column("k")
    assert (same.verdict, same.effect_size, same.p_value) == ("no drift", 0.0, 1.0)
    changed = np.full(3000, 2.0)
    changed[:600] = rng.normal(2.0, 1.0, 600)
    col = _run(ref, pa.table({"k": changed})).column("k")
    assert col.verdict == "drift"
    assert np.isfinite(col.effect_size)
    assert "constant" in col.details["note"]
    jump = _run(ref, pa.table({"k": np.full(3000, 5.0)})).column("k")
    assert (jump.verdict, jump.effect_size) == ("drift", 1.0)


def test_too_few_values_are_unknown_with_the_count(rng):
    ref = pa.table({"x": rng.normal(size=1000)})
    col = _run(ref, pa.table({"x": rng.normal(size=8)})).column("x")
    assert col.verdict == "unknown"
    assert col.reason == "only 8 non-missing values (min_rows=20)"


def test_a_changed_column_type_is_reported_not_guessed(rng):
    ref = pa.table({"x": rng.normal(size=500)})
    cur = pa.table({"x": pa.array([f"v{i}" for i in range(500)])})
    col = _run(ref, cur).column("x")
    assert col.verdict == "unknown"
    assert col.reason.startswith("could not compare: ArrowInvalid")


def test_unsupported_types_are_unknown(rng):
    ref = pa.table({"l": pa.array([[1, 2]] * 50), "x": rng.normal(size=50)})
    col = _run(ref, ref).column("l")
    assert (col.verdict, col.reason) == ("unknown", "unsupported column type (type list<item: int64>)")


def test_config_typos_name_the_key():
    with pytest.raises(DriftConfigError, match="Invalid drift config: aplha: Extra inputs are not permitted"):
        parse_config({"aplha": 0.01})
    with pytest.raises(ValueError, match=r"columns\.x\.kind: Input should be 'numeric' or 'categorical'"):
        parse_config({"columns": {"x": {"kind": "text"}}})


def test_overrides_per_column(rng):
    ref = pa.table({"code": rng.integers(0, 1000, 5000), "x": rng.normal(size=5000)})
    cur = pa.table({"code": rng.integers(0, 1000, 5000), "x": rng.normal(0.2, 1, 5000)})
    result = _run(
        ref, cur, columns={"code": {"kind": "categorical"}, "x": {"effect": "ks", "threshold": 0.5}}
    )
    assert result.column("code").kind == "categorical"
    assert result.column("x").effect == "ks" and result.column("x").threshold == 0.5
    assert result.column("x").verdict == "no drift"  # significant, but the effect is under 0.5
    with pytest.raises(DriftError, match="'x' is numeric: test 'chi2'"):
        _run(ref, cur, columns={"x": {"test": "chi2"}})


def test_include_and_exclude(rng):
    ref = pa.table({"a": rng.normal(size=100), "b": rng.normal(size=100), "id": np.arange(100)})
    assert [c.name for c in _run(ref, ref, exclude=["id"]).columns] == ["a", "b"]
    assert [c.name for c in _run(ref, ref, include=["b"]).columns] == ["b"]
    with pytest.raises(DriftError, match=r"\['nope'\] named in the drift config 'include'"):
        _run(ref, ref, include=["nope"])
