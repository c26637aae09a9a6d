"""The champion/challenger gate: a pure decision over two models' metrics and a config.

The gate never talks to MLflow. It takes the evaluation (both models scored on the same held-out
snapshot, see :mod:`airflow_mlops_provider.core.evaluation`) and a :class:`GateConfig`, and returns
a :class:`GateResult` whose ``checks`` say what was compared and whose ``reasons`` say why the
verdict is what it is, in words a reviewer can read in the decision record.

Rules, in order:

1. Every metric the gate uses must be present and finite for the challenger; NaN or missing
   rejects it ("challenger metric 'roc_auc' is NaN or missing").
2. Absolute thresholds (a minimum for metrics where higher is better, a maximum where lower is).
3. With a champion: a minimum gain on the primary metric (absolute and/or relative), and no
   regression beyond a tolerance on listed metrics and on listed metrics per slice value.
   Without a champion (the pipeline's first model) the thresholds alone decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_mlops_provider.core.errors import PermanentError

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_PRIMARY = {"classification": "roc_auc", "regression": "rmse"}
_EPS = 1e-12


class GateConfigError(PermanentError, ValueError):
    """The gate config is invalid or names metrics the evaluation does not compute."""


class GateConfig(BaseModel):
    """What a challenger must show to replace the champion.

    ``thresholds`` are absolute bounds in each metric's own direction (``{"accuracy": 0.8}`` means
    at least 0.8, ``{"rmse": 3.0}`` at most 3.0). ``min_gain`` / ``min_gain_relative`` apply to
    ``primary_metric`` against the champion (relative is a fraction of the champion's value, 0.01
    = 1 %). ``max_regression`` maps a metric to how much worse than the champion it may get;
    ``slice_max_regression`` does the same per slice value (for slices both models were scored on).
    """

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Metric to an absolute bound in its own direction: a minimum where "
            "higher is better, a maximum where lower is"
        ),
    )
    primary_metric: str | None = Field(
        default=None,
        description=(
            "Metric the minimum gain applies to; None: roc_auc (classification) or rmse (regression)"
        ),
    )
    min_gain: float = Field(
        default=0.0, description="Least absolute improvement of the primary metric over the champion"
    )
    min_gain_relative: float | None = Field(
        default=None,
        description=(
            "Least improvement of the primary metric as a fraction of the champion's value (0.01 = 1 %)"
        ),
    )
    max_regression: dict[str, float] = Field(
        default_factory=dict,
        description="Metric to how much worse than the champion the challenger may get on it",
    )
    slice_max_regression: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Metric to how much worse than the champion it may get on any slice "
            "value both models were scored on"
        ),
    )
    require_approval: bool = Field(
        default=False, description="A passing challenger still waits for human approval before promotion"
    )

    @field_validator("thresholds", "max_regression", "slice_max_regression")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name, bound in value.items():
            _check_metric_name(name)
            if not math.isfinite(bound):
                raise ValueError(f"bound for metric {name!r} must be a finite number, got {bound!r}")
        return value

    @field_validator("primary_metric")
    @classmethod
    def _known_primary(cls, value: str | None) -> str | None:
        if value is not None:
            _check_metric_name(value)
        return value

    @field_validator("max_regression", "slice_max_regression")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for name, tolerance in value.items():
            if tolerance < 0:
                raise ValueError(f"tolerance for metric {name!r} must be >= 0, got {tolerance}")
        return value

    def metrics_used(self, task: str) -> list[str]:
        """Every metric this config looks at for ``task`` (primary first), checked against the task."""
        names = [self.primary_for(task), *self.thresholds, *self.max_regression, *self.slice_max_regression]
        allowed = TASK_METRICS.get(task)
        if allowed is None:
            raise GateConfigError(
                f"gate config: unknown task {task!r}: expected one of {sorted(TASK_METRICS)}"
            )
        wrong = sorted({n for n in names if n not in allowed})
        if wrong:
            raise GateConfigError(
                f"gate config: names metric(s) {wrong} that a {task} evaluation does not compute "
                f"(it computes {list(allowed)})"
            )
        return list(dict.fromkeys(names))

    def primary_for(self, task: str) -> str:
        return self.primary_metric or DEFAULT_PRIMARY.get(task, "")


def parse_gate(config: GateConfig | Mapping[str, Any] | None) -> GateConfig:
    """``config`` as a :class:`GateConfig`; an invalid one raises :class:`GateConfigError`."""
    if isinstance(config, GateConfig):
        return config
    try:
        return GateConfig.model_validate(dict(config or {}))
    except ValidationError as err:
        raise GateConfigError(f"gate config: {err}") from err


def _check_metric_name(name: str) -> None:
    if name not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {name!r}: expected one of {sorted(HIGHER_IS_BETTER)}")


@dataclass
class Check:
    """One comparison the gate made, as it appears in the decision record."""

    check: str
    metric: str
    passed: bool
    challenger: float | None = None
    champion: float | None = None
    bound: float | None = None
    slice: str | None = None
    detail: str = ""


@dataclass
class GateResult:
    """The verdict, the reasons behind it and every check made."""

    verdict: str
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)
    first_model: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "checks": [asdict(c) for c in self.checks],
            "first_model": self.first_model,
        }


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else ``None`` (NaN, inf, missing, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _better_by(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (negative: worse), in the metric's own direction."""
    return challenger - champion if HIGHER_IS_BETTER[metric] else champion - challenger


def decide(evaluation: Mapping[str, Any], config: GateConfig | Mapping[str, Any]) -> GateResult:
    """Apply ``config`` to an evaluation dict (``{"task", "challenger": {...}, "champion": {...}|None}``)."""
    config = parse_gate(config)
    task = evaluation.get("task") or ""
    used = config.metrics_used(task)
    primary = config.primary_for(task)
    challenger = evaluation.get("challenger") or {}
    champion = evaluation.get("champion")
    c_metrics = challenger.get("metrics") or {}
    checks: list[Check] = []
    reasons: list[str] = []

    values = _finite_metrics(used, c_metrics, checks, reasons)
    if reasons:
        return GateResult("fail", reasons, checks, first_model=champion is None)

    _threshold_checks(config, values, checks, reasons)
    if champion is None:
        return _first_model_result(config, checks, reasons)

    k_metrics = champion.get("metrics") or {}
    if challenger.get("run_id") and challenger.get("run_id") == champion.get("run_id"):
        reasons.append(f"the challenger run is already champion (version {champion.get('version')})")
        return GateResult("pass" if all(c.passed for c in checks) else "fail", reasons, checks)

    _gain_checks(config, primary, values[primary], k_metrics, checks, reasons)
    for name, tolerance in config.max_regression.items():
        _regression_check(name, tolerance, c_metrics.get(name), k_metrics.get(name), None, checks, reasons)
    _slice_checks(config, challenger.get("slices") or {}, champion.get("slices") or {}, checks, reasons)

    passed = all(c.passed for c in checks)
    if passed:
        reasons.append(
            f"{primary} {values[primary]:.6g} vs champion {finite(k_metrics[primary]):.6g}: "
            "gain and no-regression checks passed"
        )
    return GateResult("pass" if passed else "fail", reasons, checks)


def _finite_metrics(
    used: list[str], c_metrics: Mapping[str, Any], checks: list[Check], reasons: list[str]
) -> dict[str, float]:
    """The challenger's values of the metrics the gate uses; each NaN or missing one is a failed check."""
    values: dict[str, float] = {}
    for name in used:
        value = finite(c_metrics.get(name))
        if value is None:
            raw = c_metrics.get(name, "missing")
            checks.append(Check("finite", name, False, detail=f"value {raw!r}"))
            reasons.append(f"challenger metric {name!r} is NaN or missing (got {raw!r})")
        else:
            values[name] = value
    return values


def _threshold_checks(
    config: GateConfig, values: dict[str, float], checks: list[Check], reasons: list[str]
) -> None:
    for name, bound in config.thresholds.items():
        value = values[name]
        higher = HIGHER_IS_BETTER[name]
        ok = value >= bound - _EPS if higher else value <= bound + _EPS
        word = ">=" if higher else "<="
        checks.append(Check("threshold", name, ok, challenger=value, bound=bound, detail=f"{word} {bound}"))
        if not ok:
            reasons.append(f"{name} {value:.6g} does not meet the threshold ({word} {bound:g})")


def _first_model_result(config: GateConfig, checks: list[Check], reasons: list[str]) -> GateResult:
    """No champion yet: the thresholds alone decide."""
    if not reasons:
        met = ", ".join(f"{n}" for n in config.thresholds) or "none configured"
        reasons.append(f"first model of this pipeline: absolute thresholds met ({met})")
    return GateResult("pass" if all(c.passed for c in checks) else "fail", reasons, checks, True)


def _gain_checks(
    config: GateConfig,
    primary: str,
    value: float,
    k_metrics: dict[str, Any],
    checks: list[Check],
    reasons: list[str],
) -> None:
    base = finite(k_metrics.get(primary))
    if base is None:
        checks.append(Check("min_gain", primary, False, challenger=value, detail="champion value missing"))
        reasons.append(f"champion metric {primary!r} is NaN or missing: cannot compare")
        return
    gain = _better_by(primary, value, base)
    ok = gain >= config.min_gain - _EPS
    checks.append(Check("min_gain", primary, ok, value, base, config.min_gain, detail=f"gain {gain:.6g}"))
    if not ok:
        reasons.append(
            f"{primary} {value:.6g} vs champion {base:.6g}: gain {gain:.6g} is below the minimum "
            f"gain {config.min_gain:g}"
        )
    if config.min_gain_relative is not None:
        relative = gain / abs(base) if abs(base) > _EPS else (math.inf if gain > 0 else 0.0)
        ok = relative >= config.min_gain_relative - _EPS
        checks.append(
            Check(
                "min_gain_relative", primary, ok, value, base, config.min_gain_relative,
                detail=f"relative gain {relative:.6g}",
            )
        )  # fmt: skip
        if not ok:
            reasons.append(
                f"{primary} relative gain {relative:.4%} over champion is below the minimum "
                f"{config.min_gain_relative:.4%}"
            )


def _regression_check(
    name: str,
    tolerance: float,
    value: Any,
    base: Any,
    where: str | None,
    checks: list[Check],
    reasons: list[str],
) -> None:
    value, base = finite(value), finite(base)
    label = f"{name} on slice {where}" if where else name
    if base is None and value is None and where:
        # A metric undefined on a slice for both models (one class only, say) is not evidence.
        checks.append(Check("no_regression", name, True, slice=where, detail="undefined for both"))
        return
    if value is None:
        checks.append(Check("no_regression", name, False, None, base, tolerance, where, "challenger NaN"))
        reasons.append(f"challenger {label} is NaN or missing")
        return
    if base is None:
        checks.append(Check("no_regression", name, False, value, None, tolerance, where, "champion NaN"))
        reasons.append(f"champion {label} is NaN or missing: cannot compare")
        return
    drop = -_better_by(name, value, base)
    ok = drop <= tolerance + _EPS
    checks.append(Check("no_regression", name, ok, value, base, tolerance, where, f"regression {drop:.6g}"))
    if not ok:
        reasons.append(
            f"{label} regressed from {base:.6g} to {value:.6g} (by {drop:.6g}, tolerance {tolerance:g})"
        )


def _slice_checks(
    config: GateConfig,
    c_slices: dict[str, Any],
    k_slices: dict[str, Any],
    checks: list[Check],
    reasons: list[str],
) -> None:
    if not config.slice_max_regression:
        return
    for column in sorted(set(c_slices) & set(k_slices)):
        for value in sorted(set(c_slices[column]) & set(k_slices[column])):
            c_metrics, k_metrics = c_slices[column][value], k_slices[column][value]
            for name, tolerance in config.slice_max_regression.items():
                _regression_check(
                    name, tolerance, c_metrics.get(name), k_metrics.get(name), f"{column}={value}", checks,
                    reasons,
                )  # fmt: skip
