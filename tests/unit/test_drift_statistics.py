"""The drift engine's statistics: soundness at large n, power where drift is real, agreement with scipy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon as scipy_js

from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
from airflow_mlops_provider.core.drift.categorical import chi2_homogeneity, compare_categorical, jensenshannon
from airflow_mlops_provider.core.drift.columns import TableSource
from airflow_mlops_provider.core.drift.engine import adjust_pvalues
from airflow_mlops_provider.core.drift.numeric import (
    KL_EPS,
    bin_counts,
    compare_numeric,
    kl_from_counts,
    kl_threshold,
    merged_ks_wasserstein,
    psi_edges,
    psi_from_counts,
    psi_threshold,
)

N_LARGE = 1_000_000
NUMERIC = [f"x{i}" for i in range(20)]


def _frame(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pa.Table:
    shift = shift or {}
    cols: dict[str, object] = {name: rng.normal(shift.get(name, 0.0), 1.0, n) for name in NUMERIC}
    cols["colour"] = pa.array(rng.choice(["red", "green", "blue", "grey"], n, p=[0.4, 0.3, 0.2, 0.1]))
    cols["flag"] = rng.random(n) < 0.3
    cols["level"] = rng.integers(0, 5, n)  # small integer codes: treated as categorical
    return pa.table(cols)


def _run(ref: pa.Table, cur: pa.Table, **config: object):
    cfg = DriftConfig(**config)
    return compare(reference_from_source(TableSource(ref), cfg), TableSource(cur), cfg)


@pytest.fixture(scope="module")
def large() -> dict[str, pa.Table]:
    rng = np.random.default_rng(20240601)
    return {
        "reference": _frame(rng, N_LARGE),
        "same": _frame(rng, N_LARGE),
        "shifted": _frame(rng, N_LARGE, {"x3": 0.5, "x8": 0.5, "x15": 0.5}),
    }


def test_a_million_identically_distributed_rows_flag_no_column(large):
    result = _run(large["reference"], large["same"])
    assert result.drifted_columns == []
    assert result.drift is False
    assert {c.verdict for c in result.columns} == {"no drift"}
    kinds = {c.name: c.kind for c in result.columns}
    assert kinds["level"] == kinds["colour"] == kinds["flag"] == "categorical"
    # many raw p-values are small at this n; correction plus effect size keep them unflagged
    assert all(c.effect_size < c.threshold for c in result.columns)


def test_half_sigma_shift_in_three_of_twenty_columns_flags_exactly_those(large):
    result = _run(large["reference"], large["shifted"])
    assert sorted(result.drifted_columns) == ["x15", "x3", "x8"]
    assert result.drift is True
    assert result.share == pytest.approx(3 / 23)
    shifted = result.column("x3")
    assert shifted.p_adjusted < 1e-100
    assert shifted.effect_size == pytest.approx(0.5, abs=0.01)  # W1 / sigma of a 0.5 sigma shift


def test_benjamini_hochberg_flags_the_same_shifted_columns(large):
    result = _run(large["reference"], large["shifted"], correction="bh")
    assert sorted(result.drifted_columns) == ["x15", "x3", "x8"]


def test_dataset_verdict_uses_the_drifted_share_and_column_weights(large):
    assert _run(large["reference"], large["shifted"], drift_share=0.2).drift is False
    weighted = _run(
        large["reference"],
        large["shifted"],
        drift_share=0.5,
        columns={"x3": {"weight": 30.0}},
    )
    assert weighted.drift is True
    assert weighted.share == pytest.approx(32 / 52)


def test_a_variance_change_with_equal_mean_is_caught_by_ks():
    rng = np.random.default_rng(7)
    ref = pa.table({"x": rng.normal(0, 1.0, 20_000)})
    cur = pa.table({"x": rng.normal(0, 1.5, 20_000)})
    col = _run(ref, cur).column("x")
    assert col.verdict == "drift"
    assert col.test == "ks" and col.p_adjusted < 1e-10
    assert abs(col.details["current_mean"] - col.details["reference_mean"]) < 0.05


def test_a_new_category_at_ten_percent_is_flagged_with_a_finite_chi_square():
    rng = np.random.default_rng(3)
    base = ["a", "b", "c", "d"]
    ref = pa.table({"c": rng.choice(base, 50_000)})
    cur_values = rng.choice(base, 50_000).astype(object)
    cur_values[rng.random(50_000) < 0.10] = "brand-new"
    col = _run(ref, pa.table({"c": pa.array(cur_values.tolist())})).column("c")
    assert col.verdict == "drift"
    assert np.isfinite(col.statistic)
    assert col.details["unseen_categories"] == ["brand-new"]
    assert col.details["unseen_share"] == pytest.approx(0.10, abs=0.01)
    assert col.effect_size > 0.2  # Jensen-Shannon distance of a 10% new category ~ 0.23


def test_a_single_unseen_value_gives_finite_statistics():
    cmp = compare_categorical({"a": 500, "b": 500}, {"a": 499, "b": 500, "zzz": 1})
    assert np.isfinite(cmp.chi2) and np.isfinite(cmp.psi) and np.isfinite(cmp.jensenshannon)
    assert cmp.unseen_categories == ["zzz"]


def test_two_hundred_rows_with_a_strong_shift_are_flagged_and_without_one_are_not():
    rng = np.random.default_rng(11)
    ref = pa.table({"x": rng.normal(0, 1, 200), "c": rng.choice(["a", "b", "c"], 200)})
    strong = pa.table(
        {"x": rng.normal(1.0, 1, 200), "c": rng.choice(["a", "b", "c"], 200, p=[0.7, 0.2, 0.1])}
    )
    same = pa.table({"x": rng.normal(0, 1, 200), "c": rng.choice(["a", "b", "c"], 200)})
    assert sorted(_run(ref, strong).drifted_columns) == ["c", "x"]
    assert _run(ref, same).drifted_columns == []


def test_psi_threshold_grows_with_its_small_sample_bias():
    rng = np.random.default_rng(5)
    n = m = 200
    bins = 10
    values = []
    for _ in range(300):
        ref = np.sort(rng.normal(size=n))
        edges = psi_edges(ref, bins)
        values.append(psi_from_counts(bin_counts(ref, edges), bin_counts(np.sort(rng.normal(size=m)), edges)))
    bias = (bins - 1) * (1 / n + 1 / m)
    assert np.mean(values) == pytest.approx(bias, rel=0.2)  # PSI is biased upward by ~(bins-1)(1/n+1/m)
    limit = psi_threshold(0.1, bins, n, m)
    assert np.mean(np.array(values) > 0.1) > 0.1  # a fixed 0.1 threshold flags noise at n = 200 ...
    assert np.mean(np.array(values) > limit) < 0.01  # ... the n-aware one does not
    assert psi_threshold(0.1, bins, 10**6, 10**6) == pytest.approx(0.1, abs=1e-4)


def test_psi_effect_at_two_hundred_rows_does_not_flag_noise():
    rng = np.random.default_rng(9)
    flagged = 0
    for _ in range(20):
        ref = pa.table({"x": rng.normal(size=200)})
        cur = pa.table({"x": rng.normal(size=200)})
        flagged += len(_run(ref, cur, numeric_effect="psi", correction="none").drifted_columns)
    assert flagged <= 1


@pytest.mark.parametrize(
    "n,m,rounding", [(40, 55, None), (300, 300, 1), (5000, 3000, 0), (20_000, 15_000, None)]
)
def test_ks_and_wasserstein_match_scipy(n, m, rounding):
    rng = np.random.default_rng(n + m)
    a = rng.normal(0, 1, n)
    b = rng.normal(0.1, 1.2, m)
    if rounding is not None:
        a, b = np.round(a, rounding), np.round(b, rounding)
    ref = np.sort(a)
    d, w = merged_ks_wasserstein(ref, np.sort(b))
    expected = stats.ks_2samp(a, b)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)
    edges = psi_edges(ref, 10)
    cmp = compare_numeric(ref, b, ref_std=float(a.std()), edges=edges, ref_bin_counts=bin_counts(ref, edges))
    if max(n, m) <= 10_000:  # scipy's exact p-value
        assert cmp.ks_pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    else:  # the limiting Kolmogorov distribution
        en = n * m / (n + m)
        assert cmp.ks_pvalue == pytest.approx(stats.kstwobign.sf(np.sqrt(en) * d), rel=1e-12)


def test_large_n_ks_p_value_is_the_asymptotic_one():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200_000), rng.normal(0.005, 1, 150_000)
    ref = np.sort(a)
    edges = psi_edges(ref, 10)
    cmp = compare_numeric(ref, b, ref_std=1.0, edges=edges, ref_bin_counts=bin_counts(ref, edges))
    expected = stats.ks_2samp(a, b, method="asymp")
    assert cmp.ks_statistic == pytest.approx(expected.statistic, abs=1e-12)
    en = 200_000 * 150_000 / 350_000
    assert cmp.ks_pvalue == pytest.approx(stats.kstwobign.sf(np.sqrt(en) * expected.statistic), rel=1e-12)
    # the limiting distribution vs scipy's finite-n one: O(1/sqrt(n)) apart, same decisions
    assert cmp.ks_pvalue == pytest.approx(expected.pvalue, rel=0.02)


def test_optional_cramer_von_mises_and_anderson_darling_match_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=400), rng.normal(0.3, 1, 300)
    ref = np.sort(a)
    edges = psi_edges(ref, 10)
    counts = bin_counts(ref, edges)
    cvm = compare_numeric(ref, b, ref_std=1.0, edges=edges, ref_bin_counts=counts, test="cvm")
    expected = stats.cramervonmises_2samp(a, b, method="asymptotic")
    assert cvm.test_statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert cvm.test_pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    ad = compare_numeric(ref, b, ref_std=1.0, edges=edges, ref_bin_counts=counts, test="ad")
    assert ad.test_statistic == pytest.approx(
        stats.anderson_ksamp([a, b], variant="midrank", method=None).statistic, rel=1e-9
    )


def test_chi_square_and_jensen_shannon_match_scipy():
    ref = np.array([120.0, 340.0, 55.0, 0.0, 7.0])
    cur = np.array([100.0, 360.0, 40.0, 12.0, 0.0])
    stat, p, dof = chi2_homogeneity(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref, cur])[:, (ref + cur) > 0], correction=False)
    assert stat == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    assert dof == expected.dof
    assert jensenshannon(ref, cur) == pytest.approx(scipy_js(ref, cur, base=2), rel=1e-9)


def test_multiple_testing_corrections():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p, "bonferroni").tolist() == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # Benjamini-Hochberg: p_(i) * k / i, made monotone from the top
    assert adjust_pvalues(p, "bh").tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues(p, "none").tolist() == p


def test_the_same_result_streaming_from_parquet_as_from_memory(tmp_path):
    import pyarrow.parquet as pq

    from airflow_mlops_provider.core.drift.columns import ParquetSource

    rng = np.random.default_rng(4)
    ref, cur = _frame(rng, 30_000), _frame(rng, 20_000, {"x1": 0.3})
    pq.write_table(cur, tmp_path / "cur.parquet", row_group_size=4096)
    cfg = DriftConfig()
    in_memory = compare(reference_from_source(TableSource(ref), cfg), TableSource(cur), cfg)
    streamed = compare(
        reference_from_source(TableSource(ref), cfg),
        ParquetSource(pq.ParquetFile(tmp_path / "cur.parquet")),
        cfg,
    )
    assert in_memory.to_dict(plots=False)["columns"] == streamed.to_dict(plots=False)["columns"]
    assert streamed.drifted_columns == ["x1"]


def test_dates_are_compared_in_days_whatever_their_arrow_type():
    rng = np.random.default_rng(11)

    def signups(start: str, n: int = 5000) -> np.ndarray:
        return np.datetime64(start, "D") + rng.integers(0, 3 * 365, n)

    ref = pa.table({"signup": pa.array(signups("2020-01-01"))})
    assert ref.schema.field("signup").type == pa.date32()
    # the same dates, written by another tool as timestamps
    same = pa.table({"signup": pa.array(signups("2020-01-01").astype("datetime64[ns]"))})
    assert _run(ref, same).column("signup").verdict == "no drift"
    shifted = _run(ref, pa.table({"signup": pa.array(signups("2021-01-01").astype("datetime64[us]"))}))
    col = shifted.column("signup")
    assert col.verdict == "drift"
    assert col.details["current_mean"] - col.details["reference_mean"] == pytest.approx(366, abs=30)


def _smoothed(counts: np.ndarray) -> np.ndarray:
    shares = counts / counts.sum()
    return (shares + KL_EPS) / (1 + shares.size * KL_EPS)


def test_kl_divergence_is_current_given_reference_and_matches_scipy():
    ref = np.array([120.0, 340.0, 55.0, 85.0])
    cur = np.array([100.0, 360.0, 40.0, 100.0])
    # D(current || reference): scipy.stats.entropy(pk=current, qk=reference), in nats
    assert kl_from_counts(ref, cur, eps=0.0) == pytest.approx(stats.entropy(cur, ref), rel=1e-12)
    assert kl_from_counts(ref, cur) == pytest.approx(stats.entropy(_smoothed(cur), _smoothed(ref)), rel=1e-12)
    assert kl_from_counts(ref, cur) == pytest.approx(stats.entropy(cur, ref), rel=5e-3)  # smoothing is small
    assert kl_from_counts(ref, cur) != pytest.approx(kl_from_counts(cur, ref), rel=1e-3)  # not symmetric
    assert kl_from_counts(ref, ref * 3) == 0.0  # the same shares


def test_kl_divergence_of_empty_bins_is_large_but_finite():
    ref = np.array([500.0, 500.0, 0.0])
    new_in_current = np.array([450.0, 450.0, 100.0])
    gone_from_current = np.array([1000.0, 0.0, 0.0])
    assert stats.entropy(new_in_current, ref) == np.inf  # unsmoothed, a new category is infinite
    new = kl_from_counts(ref, new_in_current)
    assert np.isfinite(new) and new == pytest.approx(
        stats.entropy(_smoothed(new_in_current), _smoothed(ref)), rel=1e-12
    )
    assert new > 0.5  # 10% of the current window where the reference had nothing
    gone = kl_from_counts(ref, gone_from_current)
    assert gone == pytest.approx(np.log(2), rel=5e-3)  # the current window lies in half of the reference
    assert kl_from_counts(ref, np.array([0.0, 0.0, 1000.0])) == pytest.approx(
        np.log(1 + 1 / KL_EPS), rel=1e-3
    )
    assert kl_from_counts(np.zeros(3), np.zeros(3)) == 0.0  # no values at all: nothing to diverge


def test_kl_effect_flags_a_shifted_numeric_column_and_not_the_same_distribution():
    rng = np.random.default_rng(21)
    ref = pa.table({"x": rng.normal(0, 1, 50_000)})
    same = _run(ref, pa.table({"x": rng.normal(0, 1, 50_000)}), numeric_effect="kl").column("x")
    assert same.verdict == "no drift" and same.effect == "kl"
    assert same.effect_size < 0.005 < same.threshold
    shifted = _run(ref, pa.table({"x": rng.normal(0.5, 1, 50_000)}), numeric_effect="kl").column("x")
    assert shifted.verdict == "drift"
    # binned KL of a 0.5 sigma mean shift: a little under the continuous 0.5^2 / 2 = 0.125
    assert 0.08 < shifted.effect_size < 0.125
    assert shifted.details["kl"] == shifted.effect_size
    assert shifted.threshold == pytest.approx(kl_threshold(0.05, 10, 50_000, 50_000))


def test_kl_effect_on_categories_handles_new_and_vanished_categories():
    rng = np.random.default_rng(22)
    base = ["a", "b", "c", "d"]
    ref = pa.table({"c": rng.choice(base, 20_000)})
    same = _run(ref, pa.table({"c": rng.choice(base, 20_000)}), categorical_effect="kl").column("c")
    assert same.verdict == "no drift"
    cur = rng.choice(base, 20_000).astype(object)
    cur[rng.random(20_000) < 0.10] = "brand-new"
    new = _run(ref, pa.table({"c": pa.array(cur.tolist())}), categorical_effect="kl").column("c")
    assert new.verdict == "drift" and new.effect == "kl"
    assert np.isfinite(new.effect_size) and new.effect_size > 0.5
    # "d" vanishes from the current window: a finite effect, smaller than a new category's
    gone = rng.choice(base[:3], 20_000)
    vanished = _run(ref, pa.table({"c": gone}), categorical_effect="kl").column("c")
    assert vanished.verdict == "drift"
    assert vanished.effect_size == pytest.approx(np.log(4 / 3), rel=0.05)


def test_kl_threshold_is_half_of_psis_bias_and_configurable():
    assert kl_threshold(0.05, 10, 10**7, 10**7) == pytest.approx(0.05, abs=1e-5)
    bias = psi_threshold(0.0, 10, 200, 200)
    assert kl_threshold(0.05, 10, 200, 200) == pytest.approx(0.05 + bias / 2)
    rng = np.random.default_rng(23)
    flagged = 0
    for _ in range(20):
        ref, cur = pa.table({"x": rng.normal(size=200)}), pa.table({"x": rng.normal(size=200)})
        flagged += len(_run(ref, cur, numeric_effect="kl", correction="none").drifted_columns)
    assert flagged <= 1
    ref, cur = pa.table({"x": rng.normal(0, 1, 50_000)}), pa.table({"x": rng.normal(0.5, 1, 50_000)})
    strict = _run(ref, cur, numeric_effect="kl", kl_threshold=0.5).column("x")
    assert strict.verdict == "no drift" and strict.threshold == pytest.approx(0.5, abs=1e-3)
    override = _run(ref, cur, numeric_effect="kl", columns={"x": {"threshold": 0.5}}).column("x")
    assert override.verdict == "no drift"


def test_the_html_report_shows_the_kl_effect():
    from airflow_mlops_provider.core.drift.report import render_html

    rng = np.random.default_rng(24)
    ref = pa.table({"x": rng.normal(0, 1, 5000)})
    result = _run(ref, pa.table({"x": rng.normal(0.5, 1, 5000)}), numeric_effect="kl")
    page = render_html(result.to_dict(), "drift")
    col = result.column("x")
    assert "<td>kl</td>" in page
    assert f"kl = {col.effect_size:.4g} vs threshold {col.threshold:.4g}" in page
