"""The drift engine: compare a current window with reference statistics, column by column.

Per column it measures the configured test (p-value) and effect size, and the change in the
share of missing values; then it corrects all p-values of the run for multiple testing and
flags a column only when a corrected p-value is below ``alpha`` AND its effect reaches the
threshold. Each verdict is ``drift``, ``no drift`` or ``unknown`` (with the reason): a NaN
p-value never reads as "no drift".
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from airflow_mlops_provider.core.drift.categorical import compare_categorical
from airflow_mlops_provider.core.drift.columns import ColumnSource, category_counts, sorted_numeric
from airflow_mlops_provider.core.drift.config import DriftConfig
from airflow_mlops_provider.core.drift.numeric import compare_numeric, kl_threshold, mean_std, psi_threshold
from airflow_mlops_provider.core.drift.reference import ColumnReference, DriftError, ReferenceStats

DRIFT, NO_DRIFT, UNKNOWN = "drift", "no drift", "unknown"
PLOT_BINS = 30


@dataclass
class ColumnResult:
    """The verdict on one column, with everything needed to explain it."""

    name: str
    kind: str
    verdict: str = UNKNOWN
    reason: str | None = None
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effect: str | None = None
    effect_size: float | None = None
    threshold: float | None = None
    n_reference: int = 0
    n_current: int = 0
    missing_reference: float = 0.0
    missing_current: float = 0.0
    missing_p_value: float | None = None
    missing_p_adjusted: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    plot: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriftResult:
    """Column results and the dataset verdict."""

    drift: bool
    share: float
    drifted_columns: list[str]
    unknown_columns: list[str]
    columns: list[ColumnResult]
    config: dict[str, Any]
    rows_reference: int
    rows_current: int
    new_columns: list[str] = field(default_factory=list)
    prediction: DriftResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, plots: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not plots:
            for col in out["columns"]:
                col.pop("plot", None)
        return {key: _finite(value) for key, value in out.items()}

    def column(self, name: str) -> ColumnResult:
        return next(c for c in self.columns if c.name == name)


def compare(
    reference: ReferenceStats,
    current: ColumnSource,
    config: DriftConfig,
) -> DriftResult:
    """Compare ``current`` with ``reference``; raise :class:`DriftError` when it cannot be done."""
    start = time.perf_counter()
    if current.num_rows == 0:
        raise DriftError("The current window has no rows: there is nothing to check for drift")
    names = reference.names
    if not names:
        raise DriftError("No columns to compare: the reference has none left after include/exclude")
    present = set(current.schema.names)
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        results = list(
            pool.map(lambda n: _compare_column(reference, current, n, n in present, config), names)
        )
    reference.commit()
    new = [n for n in current.schema.names if n not in set(names) and n not in config.exclude]
    result = decide(results, config, reference.rows, current.num_rows)
    result.new_columns = new
    result.timings["compare_s"] = time.perf_counter() - start
    return result


def decide(results: list[ColumnResult], config: DriftConfig, rows_ref: int, rows_cur: int) -> DriftResult:
    """Correct p-values across the run, give each column its verdict, and the dataset verdict."""
    family = [(r, "p_value") for r in results if r.p_value is not None]
    family += [(r, "missing_p_value") for r in results if r.missing_p_value is not None]
    adjusted = adjust_pvalues([getattr(r, key) for r, key in family], config.correction)
    for (r, key), p_adj in zip(family, adjusted, strict=True):
        setattr(r, key.replace("p_value", "p_adjusted"), float(p_adj))
    for r in results:
        _verdict(r, config)
    unknown = [r.name for r in results if r.verdict == UNKNOWN]
    if unknown and config.unknown == "fail":
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in results if r.verdict == UNKNOWN)
        raise DriftError(f"Drift is unknown for {len(unknown)} column(s) ({reasons})")
    counted = [r for r in results if r.verdict != UNKNOWN or config.unknown == "drift"]
    drifted = [
        r for r in counted if r.verdict == DRIFT or (r.verdict == UNKNOWN and config.unknown == "drift")
    ]
    weight = {r.name: _weight(config, r.name) for r in counted}
    total = sum(weight.values())
    share = sum(weight[r.name] for r in drifted) / total if total else 0.0
    drift = bool(drifted) and share >= config.drift_share
    return DriftResult(
        drift=drift,
        share=share,
        drifted_columns=[r.name for r in drifted],
        unknown_columns=unknown,
        columns=results,
        config=config.model_dump(),
        rows_reference=rows_ref,
        rows_current=rows_cur,
    )


def adjust_pvalues(pvalues: list[float], method: str) -> np.ndarray:
    """Bonferroni, Benjamini-Hochberg (step-up, monotone) or no correction."""
    p = np.asarray(pvalues, dtype=np.float64)
    k = p.size
    if k == 0 or method == "none":
        return p
    if method == "bonferroni":
        return np.minimum(p * k, 1.0)
    order = np.argsort(p)
    ranked = p[order] * k / np.arange(1, k + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(ranked, 1.0)
    return out


def _weight(config: DriftConfig, name: str) -> float:
    override = config.columns.get(name)
    return override.weight if override and override.weight is not None else 1.0


def _verdict(r: ColumnResult, config: DriftConfig) -> None:
    missing_jump = abs(r.missing_current - r.missing_reference)
    missing_flag = (
        r.missing_p_adjusted is not None
        and r.missing_p_adjusted < config.alpha
        and missing_jump >= config.missing_share_threshold
    )
    dist_flag = (
        r.p_adjusted is not None
        and r.effect_size is not None
        and r.threshold is not None
        and r.p_adjusted < config.alpha
        and r.effect_size >= r.threshold
    )
    if missing_flag:
        r.verdict = DRIFT
        note = f"missing-value share changed from {r.missing_reference:.2%} to {r.missing_current:.2%}"
        r.reason = note if r.reason is None else f"{note}; {r.reason}"
    elif r.reason is not None:
        r.verdict = UNKNOWN
    elif r.p_adjusted is None or math.isnan(r.p_adjusted) or r.effect_size is None:
        r.verdict, r.reason = UNKNOWN, "the test gave no p-value"
    else:
        r.verdict = DRIFT if dist_flag else NO_DRIFT


def _compare_column(
    reference: ReferenceStats, current: ColumnSource, name: str, present: bool, config: DriftConfig
) -> ColumnResult:
    ref = reference.column(name)
    result = ColumnResult(name=name, kind=ref.kind, n_reference=ref.values)
    result.missing_reference = ref.missing / ref.rows if ref.rows else 0.0
    if ref.kind == "unsupported":
        result.reason = f"unsupported column type ({ref.reason})"
        return result
    if not present:
        result.reason = "column is missing from the current window"
        return result
    column = current.column(name)
    rows = len(column)
    try:
        if ref.kind == "numeric":
            values, n_missing = sorted_numeric(column)
            del column
            result.n_current = int(values.size)
            _missing_test(result, ref, n_missing, rows)
            if _enough(result, ref, config):
                _numeric(result, reference, ref, values, config)
        else:
            counts, n_missing = category_counts(column)
            del column
            result.n_current = rows - n_missing
            _missing_test(result, ref, n_missing, rows)
            if _enough(result, ref, config):
                _categorical(result, ref, counts, config)
    except Exception as err:  # an arrow cast of a changed type, say: report it, do not guess
        if isinstance(err, DriftError):
            raise
        result.reason = f"could not compare: {type(err).__name__}: {str(err)[:200]}"
    finally:
        reference.release(name)
    return result


def _enough(result: ColumnResult, ref: ColumnReference, config: DriftConfig) -> bool:
    if ref.values == 0:
        result.reason = "the reference has no non-missing values"
    elif result.n_current == 0:
        result.reason = "the current window has no non-missing values"
    elif min(ref.values, result.n_current) < config.min_rows:
        smaller = min(ref.values, result.n_current)
        result.reason = f"only {smaller} non-missing values (min_rows={config.min_rows})"
    return result.reason is None


def _missing_test(result: ColumnResult, ref: ColumnReference, n_missing: int, rows: int) -> None:
    """Two-proportion chi-square test on the missing-value counts (only when either window has any)."""
    from scipy import stats

    result.missing_current = n_missing / rows if rows else 0.0
    if ref.missing == 0 and n_missing == 0:
        return
    table = np.array([[ref.missing, ref.rows - ref.missing], [n_missing, rows - n_missing]], dtype=float)
    if (table.sum(axis=0) == 0).any():
        result.missing_p_value = 1.0
        return
    _, p, _, _ = stats.chi2_contingency(table, correction=False)
    result.missing_p_value = float(p)


def _column_config(config: DriftConfig, name: str) -> tuple[str | None, str | None, float | None]:
    override = config.columns.get(name)
    if override is None:
        return None, None, None
    return override.test, override.effect, override.threshold


def _numeric(
    result: ColumnResult,
    reference: ReferenceStats,
    ref: ColumnReference,
    cur_sorted: np.ndarray,
    config: DriftConfig,
) -> None:
    test, effect, threshold = _column_config(config, result.name)
    test = test or config.numeric_test
    effect = effect or config.numeric_effect
    if test not in ("ks", "cvm", "ad") or effect not in ("wasserstein", "ks", "psi", "kl"):
        raise DriftError(f"Column {result.name!r} is numeric: test {test!r} / effect {effect!r} do not apply")
    ref_sorted = reference.sorted_values(result.name)
    edges = np.asarray(ref.edges, dtype=np.float64)
    cmp = compare_numeric(
        ref_sorted,
        cur_sorted,
        assume_sorted=True,
        ref_std=ref.std or 0.0,
        edges=edges,
        ref_bin_counts=np.asarray(ref.bin_counts),
        test=test,
    )
    result.test, result.statistic, result.p_value = test, cmp.test_statistic, cmp.test_pvalue
    result.effect = effect
    psi_limit = psi_threshold(
        threshold if (threshold is not None and effect == "psi") else config.psi_threshold,
        cmp.psi_bins,
        ref_sorted.size,
        cur_sorted.size,
    )
    result.effect_size = {
        "wasserstein": cmp.wasserstein_normalised,
        "ks": cmp.ks_statistic,
        "psi": cmp.psi,
        "kl": cmp.kl,
    }[effect]
    result.threshold = _threshold(config, effect, threshold, cmp.psi_bins, ref_sorted.size, cur_sorted.size)
    result.details = {
        "ks_statistic": cmp.ks_statistic,
        "ks_p_value": cmp.ks_pvalue,
        "wasserstein": cmp.wasserstein,
        "wasserstein_normalised": cmp.wasserstein_normalised,
        "psi": cmp.psi,
        "psi_bins": cmp.psi_bins,
        "psi_threshold": psi_limit,
        "kl": cmp.kl,
        "reference_mean": ref.mean,
        "reference_std": ref.std,
        **_moments("current", cur_sorted),
    }
    if ref.std == 0:
        result.details["note"] = (
            "the reference column is constant: Wasserstein is scaled by the current spread"
        )
    result.plot = _numeric_plot(ref_sorted, cur_sorted)


def _threshold(
    config: DriftConfig, effect: str, override: float | None, bins: int, n_ref: int, n_cur: int
) -> float:
    """The column's effect threshold; PSI's and KL's rise by their no-drift bias at these sizes."""
    base = override if override is not None else config.threshold_for(effect)
    if effect == "psi":
        return psi_threshold(base, bins, n_ref, n_cur)
    if effect == "kl":
        return kl_threshold(base, bins, n_ref, n_cur)
    return base


def _moments(prefix: str, values: np.ndarray) -> dict[str, float]:
    mean, std = mean_std(values)
    return {f"{prefix}_mean": mean, f"{prefix}_std": std}


def _numeric_plot(ref_sorted: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """Histogram shares of both windows over the reference's 0.5-99.5% range (both arrays sorted)."""
    lo = float(ref_sorted[int(0.005 * (ref_sorted.size - 1))])
    hi = float(ref_sorted[int(0.995 * (ref_sorted.size - 1))])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, PLOT_BINS + 1)
    ref_counts = np.diff(np.searchsorted(ref_sorted, edges, side="left"))
    cur_counts = np.diff(np.searchsorted(values, edges, side="left"))
    return {
        "type": "histogram",
        "edges": edges.round(6).tolist(),
        "reference": (ref_counts / ref_sorted.size).round(6).tolist(),
        "current": (cur_counts / values.size).round(6).tolist(),
    }


def _categorical(
    result: ColumnResult, ref: ColumnReference, counts: dict[str, int], config: DriftConfig
) -> None:
    test, effect, threshold = _column_config(config, result.name)
    test = test or config.categorical_test
    effect = effect or config.categorical_effect
    if test != "chi2" or effect not in ("jensenshannon", "psi", "kl"):
        raise DriftError(
            f"Column {result.name!r} is categorical: test {test!r} / effect {effect!r} do not apply"
        )
    cmp = compare_categorical(ref.counts or {}, counts)
    result.test, result.statistic, result.p_value = "chi2", cmp.chi2, cmp.chi2_pvalue
    result.effect = effect
    result.threshold = _threshold(config, effect, threshold, cmp.categories, ref.values, result.n_current)
    result.effect_size = {"psi": cmp.psi, "kl": cmp.kl, "jensenshannon": cmp.jensenshannon}[effect]
    result.details = {
        "chi2": cmp.chi2,
        "dof": cmp.dof,
        "jensenshannon": cmp.jensenshannon,
        "psi": cmp.psi,
        "kl": cmp.kl,
        "categories": cmp.categories,
        "unseen_categories": cmp.unseen_categories,
        "unseen_share": cmp.unseen_share,
    }
    total_ref = max(sum((ref.counts or {}).values()), 1)
    total_cur = max(sum(counts.values()), 1)
    top = sorted(
        set(ref.counts or {}) | set(counts), key=lambda c: -(counts.get(c, 0) + (ref.counts or {}).get(c, 0))
    )
    result.plot = {
        "type": "bars",
        "categories": top[:12],
        "reference": [round((ref.counts or {}).get(c, 0) / total_ref, 6) for c in top[:12]],
        "current": [round(counts.get(c, 0) / total_cur, 6) for c in top[:12]],
    }


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``None``; NumPy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
