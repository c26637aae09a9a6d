"""Drift check configuration: which test and effect size per column, thresholds, correction.

Users pass a plain dict (``DriftOperator(config={...})``); unknown keys fail with the key's name,
so a typo never silently falls back to a default (DESIGN.md rule 6).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_mlops_provider.core.errors import PermanentError

ColumnKind = Literal["numeric", "categorical"]
NumericTest = Literal["ks", "cvm", "ad"]
NumericEffect = Literal["wasserstein", "ks", "psi", "kl"]
CategoricalTest = Literal["chi2"]
CategoricalEffect = Literal["jensenshannon", "psi", "kl"]


class ColumnConfig(BaseModel):
    """Per-column overrides; anything left ``None`` uses the dataset-wide default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ColumnKind | None = Field(
        default=None, description="Treat the column as numeric or categorical; None: chosen from its type"
    )
    test: NumericTest | CategoricalTest | None = Field(
        default=None,
        description="Significance test for this column; None: numeric_test or categorical_test",
    )
    effect: NumericEffect | CategoricalEffect | None = Field(
        default=None, description="Effect size for this column; None: numeric_effect or categorical_effect"
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        description="Effect size at which this column drifts; None: the effect's dataset-wide threshold",
    )
    weight: float | None = Field(
        default=None, ge=0, description="Weight of this column in the drifted share; None: 1"
    )


class DriftConfig(BaseModel):
    """How a reference window and a current window are compared.

    A column is flagged only when its test is significant after the multiple-testing
    ``correction`` across all tests of the run (``alpha`` is the family-wise error rate for
    Bonferroni, the false discovery rate for Benjamini-Hochberg) AND its effect size reaches
    its threshold. Effect sizes: ``wasserstein`` is the Wasserstein-1 distance divided by the
    reference standard deviation; ``ks`` is the KS statistic D; ``psi`` is the population
    stability index whose threshold is ``psi_threshold`` plus its no-drift bias at the
    window sizes (see :func:`airflow_mlops_provider.core.drift.numeric.psi_threshold`);
    ``jensenshannon`` is the base-2 Jensen-Shannon distance in [0, 1]; ``kl`` is the
    Kullback-Leibler divergence D(current || reference) in nats, on PSI's bins for numeric
    columns (the reference's ``psi_bins`` quantile bins, so it costs no second pass over the
    data) and on the categories for categorical ones. Its direction weighs the current window:
    mass where the reference had none (a new category, a new tail) counts most, a reference
    region the current window stopped using counts little. Empty bins: both share vectors are
    smoothed additively by 1e-4 and renormalised, so a category only in the current window
    gives a large finite value (at most ln(1 + 1e4), about 9.2), never infinity or NaN. Like
    PSI, its threshold ``kl_threshold`` is raised by its no-drift bias at the window sizes
    (half of PSI's, see :func:`airflow_mlops_provider.core.drift.numeric.kl_threshold`).

    Automatic choices, each overridable per column in ``columns``: floats, decimals and
    timestamps are numeric; strings, booleans and dictionaries categorical; integers with at
    most ``categorical_max_unique`` distinct values in the reference are codes (categorical),
    other integers numeric. By size: the KS p-value is exact up to 10,000 values per sample and
    asymptotic above; PSI thresholds grow at small n; fewer than ``min_rows`` values give
    ``unknown``. A change of the missing-value share by at least ``missing_share_threshold``
    (significant after the same correction) is drift by itself.

    Dataset verdict: drift when at least one column drifted and the drifted share of the
    columns with a known verdict (weighted by ``columns[name].weight``, default 1) reaches
    ``drift_share``; ``unknown`` decides whether unknown columns are only reported (``warn``),
    count as drifted (``drift``) or fail the check (``fail``). With ``prediction_drift`` the
    champion's outputs are compared too, and their drift alone also makes the dataset drift.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Family-wise error rate (bonferroni) or false discovery rate (bh) of the tests",
    )
    correction: Literal["bonferroni", "bh", "none"] = Field(
        default="bonferroni", description="Multiple-testing correction across all tests of a run"
    )
    numeric_test: NumericTest = Field(
        default="ks",
        description="Test for numeric columns: Kolmogorov-Smirnov, Cramer-von Mises or Anderson-Darling",
    )
    numeric_effect: NumericEffect = Field(
        default="wasserstein", description="Effect size for numeric columns"
    )
    categorical_test: CategoricalTest = Field(
        default="chi2", description="Test for categorical columns (chi-square on the category counts)"
    )
    categorical_effect: CategoricalEffect = Field(
        default="jensenshannon", description="Effect size for categorical columns"
    )
    wasserstein_threshold: float = Field(
        default=0.1,
        ge=0,
        description="Wasserstein-1 distance, in reference standard deviations, at which a column drifts",
    )
    ks_threshold: float = Field(default=0.1, ge=0, description="KS statistic D at which a column drifts")
    psi_threshold: float = Field(
        default=0.1,
        ge=0,
        description="PSI at which a column drifts, on top of PSI's no-drift bias at the window sizes",
    )
    kl_threshold: float = Field(
        default=0.05,
        ge=0,
        description=(
            "KL divergence D(current || reference), in nats, at which a column drifts, on top of "
            "its no-drift bias at the window sizes (0.05: PSI's 0.1, since PSI is about twice KL "
            "for small shifts; a normal mean shift of about 0.3 standard deviations)"
        ),
    )
    jensenshannon_threshold: float = Field(
        default=0.1, ge=0, description="Base-2 Jensen-Shannon distance (0 to 1) at which a column drifts"
    )
    psi_bins: int = Field(
        default=10, ge=2, le=1000, description="Quantile bins of the reference for numeric PSI"
    )
    missing_share_threshold: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Change of a column's missing-value share that is drift by itself (when significant)",
    )
    categorical_max_unique: int = Field(
        default=20,
        ge=1,
        description=(
            "Integer columns with at most this many distinct reference values are categorical codes"
        ),
    )
    min_rows: int = Field(
        default=20,
        ge=1,
        description="Fewer values than this in either window make the column's verdict unknown",
    )
    drift_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Weighted share of the columns with a known verdict that must drift for "
            "the dataset to drift (0: any drifted column)"
        ),
    )
    prediction_drift: bool = Field(
        default=True, description="Compare the champion's predictions on both windows too"
    )
    unknown: Literal["warn", "drift", "fail"] = Field(
        default="warn",
        description=(
            "Columns with an unknown verdict: warn: only reported; drift: count as "
            "drifted; fail: fail the check"
        ),
    )
    columns: dict[str, ColumnConfig] = Field(
        default_factory=dict, description="Column name to per-column overrides"
    )
    include: list[str] | None = Field(
        default=None,
        description=(
            "Columns to check; None: every column of the reference, or the champion's feature "
            "columns when the reference is its training snapshot"
        ),
    )
    exclude: list[str] = Field(default_factory=list, description="Columns never checked")
    workers: int = Field(default=2, ge=1, le=64, description="Threads that test columns in parallel")

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: object) -> object:
        return value or {}

    def threshold_for(self, effect: str) -> float:
        return {
            "wasserstein": self.wasserstein_threshold,
            "ks": self.ks_threshold,
            "psi": self.psi_threshold,
            "kl": self.kl_threshold,
            "jensenshannon": self.jensenshannon_threshold,
        }[effect]

    def digest(self) -> str:
        """A short hash of everything that changes the verdicts (names the report location)."""
        data = self.model_dump(exclude={"workers"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class DriftConfigError(PermanentError, ValueError):
    """The drift config is invalid; the message names the offending keys."""


def parse_config(config: DriftConfig | dict[str, Any] | None) -> DriftConfig:
    """Validate a user config; errors name the offending key."""
    if isinstance(config, DriftConfig):
        return config
    from pydantic import ValidationError

    try:
        return DriftConfig.model_validate(config or {})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise DriftConfigError(f"Invalid drift config: {problems}") from None
