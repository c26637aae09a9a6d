"""The drift engine on messy columns: its statistics keep agreeing with scipy, column by column.

Missing values (Arrow nulls and NaN), heavy ties, constant and all-missing columns,
high-cardinality strings with nulls (plain and dictionary-encoded) and categories seen in one
window only. Each statistic is compared with scipy on the values scipy would be given (missing
ones dropped), to the tolerances of ``test_drift_statistics``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
from airflow_mlops_provider.core.drift.columns import TableSource, category_counts, sorted_numeric
from airflow_mlops_provider.core.drift.numeric import ks_statistic, quantile_wasserstein


def _run(ref: pa.Table, cur: pa.Table, **config: object):
    cfg = DriftConfig(**config)
    return compare(reference_from_source(TableSource(ref), cfg), TableSource(cur), cfg)


def _with_missing(rng: np.random.Generator, values: np.ndarray, nulls: float, nans: float) -> pa.Array:
    """``values`` with a share of Arrow nulls and a share of NaN values."""
    values = values.astype(np.float64)
    values[rng.random(values.size) < nans] = np.nan
    return pa.array(values, mask=rng.random(values.size) < nulls)


def _present(column: pa.Array) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False)
    return values[~np.isnan(values)]


def _assert_numeric_matches_scipy(col, a: np.ndarray, b: np.ndarray) -> None:
    expected = stats.ks_2samp(a, b)
    assert col.details["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    if max(a.size, b.size) <= 10_000:  # scipy's exact p-value
        assert col.details["ks_p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    else:  # the limiting Kolmogorov distribution
        en = a.size * b.size / (a.size + b.size)
        limit = stats.kstwobign.sf(np.sqrt(en) * expected.statistic)
        assert col.details["ks_p_value"] == pytest.approx(limit, rel=1e-12)
    w = stats.wasserstein_distance(a, b)
    assert col.details["wasserstein"] == pytest.approx(w, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n,m", [(3000, 2000), (60_000, 45_000)])
def test_nulls_and_nan_are_missing_and_the_rest_matches_scipy(n, m):
    rng = np.random.default_rng(n)
    ref_col = _with_missing(rng, rng.exponential(1.0, n), nulls=0.05, nans=0.02)
    cur_col = _with_missing(rng, rng.exponential(1.1, m), nulls=0.12, nans=0.01)
    col = _run(pa.table({"e": ref_col}), pa.table({"e": cur_col})).column("e")
    a, b = _present(ref_col), _present(cur_col)
    assert (col.n_reference, col.n_current) == (a.size, b.size)
    assert col.missing_reference == pytest.approx(1 - a.size / n, abs=1e-15)
    assert col.missing_current == pytest.approx(1 - b.size / m, abs=1e-15)
    expected = stats.chi2_contingency([[n - a.size, a.size], [m - b.size, b.size]], correction=False).pvalue
    assert col.missing_p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    _assert_numeric_matches_scipy(col, a, b)
    assert col.details["current_mean"] == pytest.approx(b.mean(), rel=1e-12)


@pytest.mark.parametrize("n,m,lam", [(4000, 3500, 3), (200_000, 150_000, 40), (100_000, 100_000, 60)])
def test_integer_columns_with_heavy_ties_match_scipy(n, m, lam):
    rng = np.random.default_rng(lam)
    a, b = rng.poisson(lam, n), rng.poisson(lam * 1.02, m)
    ref = pa.table({"k": pa.array(a, pa.int64())})
    cur = pa.table({"k": pa.array(b, pa.int64())})
    col = _run(ref, cur, categorical_max_unique=5).column("k")
    assert col.kind == "numeric"
    _assert_numeric_matches_scipy(col, a.astype(float), b.astype(float))


def test_ties_at_the_maximum_gap_give_scipys_statistic_exactly():
    rng = np.random.default_rng(8)
    for _ in range(200):
        n, m = (int(v) for v in rng.integers(1, 400, 2))
        a = np.sort(rng.integers(0, rng.integers(1, 8), n).astype(float))
        b = np.sort(rng.integers(0, rng.integers(1, 8), m).astype(float))
        assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
        expected = stats.wasserstein_distance(a, b)
        assert quantile_wasserstein(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n,m", [(1, 7), (7, 1), (999, 1000), (1000, 999), (640, 960), (50_000, 47_123)])
def test_wasserstein_of_unequal_sizes_matches_scipy(n, m):
    rng = np.random.default_rng(n * m)
    a, b = rng.lognormal(0, 1.2, n), rng.lognormal(0.1, 1.0, m)
    expected = stats.wasserstein_distance(a, b)
    assert quantile_wasserstein(np.sort(a), np.sort(b)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_constant_columns_equal_or_jumping():
    same = _run(pa.table({"x": np.full(500, 2.5)}), pa.table({"x": np.full(400, 2.5)})).column("x")
    assert same.verdict == "no drift"
    assert same.details["ks_statistic"] == 0.0 and same.details["wasserstein"] == 0.0
    assert same.effect_size == 0.0
    jump = _run(pa.table({"x": np.full(500, 2.5)}), pa.table({"x": np.full(400, 3.0)})).column("x")
    assert jump.verdict == "drift"
    assert jump.details["ks_statistic"] == stats.ks_2samp(np.full(500, 2.5), np.full(400, 3.0)).statistic
    assert jump.details["wasserstein"] == pytest.approx(0.5)
    assert jump.effect_size == 1.0  # both constant: a jump between two constants is the maximal effect


def test_an_all_missing_column_is_unknown_or_missing_share_drift():
    rng = np.random.default_rng(2)
    values = rng.normal(size=3000)
    nulls = pa.array([None] * 3000, pa.float64())
    gone = _run(pa.table({"x": values}), pa.table({"x": nulls})).column("x")
    assert gone.verdict == "drift"
    assert gone.missing_current == 1.0 and gone.n_current == 0
    assert gone.reason.startswith("missing-value share changed from 0.00% to 100.00%")
    never = _run(pa.table({"x": nulls}), pa.table({"x": values})).column("x")
    assert never.verdict == "drift" and never.n_reference == 0
    assert never.reason.endswith("the reference has no non-missing values")


def test_sorted_numeric_drops_nulls_and_nan_and_keeps_infinities():
    column = pa.chunked_array(
        [pa.array([3.0, None, np.nan, -np.inf]), pa.array([np.inf, 1.0, None], pa.float64())]
    )
    values, missing = sorted_numeric(column)
    assert values.tolist() == [-np.inf, 1.0, 3.0, np.inf]
    assert missing == 3
    ints, none = sorted_numeric(pa.chunked_array([pa.array([5, 2, 9], pa.int32())]))
    assert ints.tolist() == [2.0, 5.0, 9.0] and none == 0


def test_an_integer_beyond_float_precision_is_reported_not_rounded():
    ref = pa.table({"id": pa.array(np.arange(100, dtype=np.int64))})
    cur = pa.table({"id": pa.array(np.arange(100, dtype=np.int64) + 2**60 + 1)})
    col = _run(ref, cur).column("id")
    assert col.verdict == "unknown"
    assert col.reason.startswith("could not compare: ArrowInvalid: Integer value")


def _levels(rng: np.random.Generator, n: int, levels: int, start: int, nulls: float) -> pa.Array:
    weights = 1.0 / np.arange(1, levels + 1)
    codes = rng.choice(levels, n, p=weights / weights.sum())
    labels = np.array([f"level-{k}" for k in range(start, start + levels)], dtype=object)
    return pa.array(labels[codes], mask=rng.random(n) < nulls)


def _table_counts(ref: pa.Array, cur: pa.Array) -> np.ndarray:
    """The 2 x K table of category counts (missing values dropped), for scipy."""
    counts = [Counter(side.drop_null().to_pylist()) for side in (ref, cur)]
    names = sorted(set(counts[0]) | set(counts[1]))
    return np.array([[side[name] for name in names] for side in counts], dtype=float)


def test_high_cardinality_strings_with_nulls_and_one_window_levels_match_scipy():
    rng = np.random.default_rng(12)
    # 2,000 levels; the current window drops the first 40 and adds 40 new ones
    ref_col = _levels(rng, 60_000, 2000, 0, nulls=0.03)
    cur_col = _levels(rng, 50_000, 2000, 40, nulls=0.05)
    result = _run(pa.table({"c": ref_col}), pa.table({"c": cur_col}))
    col = result.column("c")
    assert col.kind == "categorical"
    assert (col.n_reference, col.n_current) == (len(ref_col.drop_null()), len(cur_col.drop_null()))
    table = _table_counts(ref_col, cur_col)
    expected = stats.chi2_contingency(table, correction=False)
    assert col.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert col.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert col.details["dof"] == expected.dof
    assert col.details["categories"] == table.shape[1]
    unseen = set(cur_col.drop_null().to_pylist()) - set(ref_col.drop_null().to_pylist())
    assert set(col.details["unseen_categories"]) <= unseen and len(col.details["unseen_categories"]) == 20
    assert col.details["unseen_share"] == pytest.approx(table[1][table[0] == 0].sum() / table[1].sum())
    # the same columns dictionary-encoded (as Parquet or pandas categoricals give them): same figures
    encoded = _run(
        pa.table({"c": ref_col.dictionary_encode()}), pa.table({"c": cur_col.dictionary_encode()})
    ).column("c")
    assert encoded.kind == "categorical"
    for key in ("chi2", "dof", "jensenshannon", "psi", "kl", "categories", "unseen_share"):
        assert encoded.details[key] == pytest.approx(col.details[key], rel=1e-12)
    assert encoded.p_value == pytest.approx(col.p_value, rel=1e-9, abs=1e-300)
    assert encoded.missing_current == col.missing_current


def test_dictionary_counts_add_up_over_chunks_with_their_own_dictionaries():
    column = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0]), pa.array(["a", "b"])),
            pa.DictionaryArray.from_arrays(pa.array([0, 0, 2]), pa.array(["c", "unused", "a"])),
        ]
    )
    assert category_counts(column) == ({"a": 3, "b": 1, "c": 2}, 1)
    assert category_counts(column.cast(pa.string())) == ({"a": 3, "b": 1, "c": 2}, 1)
