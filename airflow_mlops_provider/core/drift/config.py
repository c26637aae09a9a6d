"""Drift check configuration: which test and effect size per column, thresholds, correction.

Users pass a plain dict (``DriftOperator(config={...})``); unknown keys fail with the key's name,
so a typo never silently falls back to a default (DESIGN.md rule 6).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ColumnKind = Literal["numeric", "categorical"]
NumericTest = Literal["ks", "cvm", "ad"]
NumericEffect = Literal["wasserstein", "ks", "psi"]
CategoricalTest = Literal["chi2"]
CategoricalEffect = Literal["jensenshannon", "psi"]


class ColumnConfig(BaseModel):
    """Per-column overrides; anything left ``None`` uses the dataset-wide default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ColumnKind | None = None
    test: NumericTest | CategoricalTest | None = None
    effect: NumericEffect | CategoricalEffect | None = None
    threshold: float | None = Field(default=None, ge=0)
    weight: float | None = Field(default=None, ge=0)


class DriftConfig(BaseModel):
    """How a reference window and a current window are compared.

    A column is flagged only when its test is significant after the multiple-testing
    ``correction`` across all tests of the run (``alpha`` is the family-wise error rate for
    Bonferroni, the false discovery rate for Benjamini-Hochberg) AND its effect size reaches
    its threshold. Effect sizes: ``wasserstein`` is the Wasserstein-1 distance divided by the
    reference standard deviation; ``ks`` is the KS statistic D; ``psi`` is the population
    stability index whose threshold is ``psi_threshold`` plus its no-drift bias at the
    window sizes (see :func:`airflow_mlops_provider.core.drift.numeric.psi_threshold`);
    ``jensenshannon`` is the base-2 Jensen-Shannon distance in [0, 1].

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

    alpha: float = Field(default=0.05, gt=0, lt=1)
    correction: Literal["bonferroni", "bh", "none"] = "bonferroni"
    numeric_test: NumericTest = "ks"
    numeric_effect: NumericEffect = "wasserstein"
    categorical_test: CategoricalTest = "chi2"
    categorical_effect: CategoricalEffect = "jensenshannon"
    wasserstein_threshold: float = Field(default=0.1, ge=0)
    ks_threshold: float = Field(default=0.1, ge=0)
    psi_threshold: float = Field(default=0.1, ge=0)
    jensenshannon_threshold: float = Field(default=0.1, ge=0)
    psi_bins: int = Field(default=10, ge=2, le=1000)
    missing_share_threshold: float = Field(default=0.05, ge=0, le=1)
    categorical_max_unique: int = Field(default=20, ge=1)
    min_rows: int = Field(default=20, ge=1)
    drift_share: float = Field(default=0.0, ge=0, le=1)
    prediction_drift: bool = True
    unknown: Literal["warn", "drift", "fail"] = "warn"
    columns: dict[str, ColumnConfig] = Field(default_factory=dict)
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    workers: int = Field(default=2, ge=1, le=64)

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: object) -> object:
        return value or {}

    def threshold_for(self, effect: str) -> float:
        return {
            "wasserstein": self.wasserstein_threshold,
            "ks": self.ks_threshold,
            "psi": self.psi_threshold,
            "jensenshannon": self.jensenshannon_threshold,
        }[effect]

    def digest(self) -> str:
        """A short hash of everything that changes the verdicts (names the report location)."""
        data = self.model_dump(exclude={"workers"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_config(config: DriftConfig | dict | None) -> DriftConfig:
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
        raise ValueError(f"Invalid drift config: {problems}") from None
