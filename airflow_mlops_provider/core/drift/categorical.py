"""Categorical two-sample statistics on category counts.

The chi-square statistic is the test of homogeneity on the 2 x K table of reference and
current counts (``scipy.stats.chi2_contingency(..., correction=False)``): its expected counts
pool both windows, so a category seen only in the current window contributes a finite term
instead of the division by zero a goodness-of-fit test against reference shares would make.
The KL divergence D(current || reference) smooths both share vectors (see
:func:`airflow_mlops_provider.core.drift.numeric.kl_from_counts`), so a new category gives a
large finite value too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from airflow_mlops_provider.core.drift.numeric import kl_from_counts, psi_from_counts


@dataclass(frozen=True)
class CategoricalComparison:
    """Everything measured for one categorical column (missing values excluded)."""

    chi2: float
    chi2_pvalue: float
    dof: int
    jensenshannon: float
    psi: float
    kl: float
    categories: int
    unseen_categories: list[str]
    unseen_share: float


def align_counts(
    ref_counts: Mapping[str, int], cur_counts: Mapping[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories of both windows (reference order first) with their counts in each."""
    names = list(ref_counts) + [c for c in cur_counts if c not in ref_counts]
    ref = np.array([ref_counts.get(c, 0) for c in names], dtype=np.float64)
    cur = np.array([cur_counts.get(c, 0) for c in names], dtype=np.float64)
    return names, ref, cur


def chi2_homogeneity(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, int]:
    """Pearson chi-square test that both count vectors come from one distribution."""
    from scipy import stats

    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    k = ref.size
    if k < 2:
        return 0.0, 1.0, 0
    n_ref, n_cur = ref.sum(), cur.sum()
    total = n_ref + n_cur
    col = ref + cur
    exp_ref = col * (n_ref / total)
    exp_cur = col * (n_cur / total)
    stat = float(np.sum((ref - exp_ref) ** 2 / exp_ref) + np.sum((cur - exp_cur) ** 2 / exp_cur))
    dof = k - 1
    return stat, float(stats.chi2.sf(stat, dof)), dof


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Base-2 Jensen-Shannon distance in [0, 1] between the two count vectors' shares."""
    from scipy.special import rel_entr

    p = ref / ref.sum()
    q = cur / cur.sum()
    mix = (p + q) / 2.0
    js = (np.sum(rel_entr(p, mix)) + np.sum(rel_entr(q, mix))) / 2.0
    return float(np.sqrt(max(js, 0.0) / np.log(2.0)))


def compare_categorical(
    ref_counts: Mapping[str, int], cur_counts: Mapping[str, int]
) -> CategoricalComparison:
    """Compare category counts (missing values excluded) of both windows."""
    names, ref, cur = align_counts(ref_counts, cur_counts)
    stat, p, dof = chi2_homogeneity(ref, cur)
    unseen = [c for c, r, k in zip(names, ref, cur, strict=True) if r == 0 and k > 0]
    unseen_share = float(sum(cur_counts[c] for c in unseen) / max(cur.sum(), 1))
    return CategoricalComparison(
        chi2=stat,
        chi2_pvalue=p,
        dof=dof,
        jensenshannon=jensenshannon(ref, cur),
        psi=psi_from_counts(ref, cur),
        kl=kl_from_counts(ref, cur),
        categories=len(names),
        unseen_categories=unseen[:20],
        unseen_share=unseen_share,
    )
