"""The degradation rule: a window's metric against the champion's reference, as a readable verdict.

Order of the checks: too few labelled rows (or a metric undefined on them) gives
``not_enough_labels``; a rule that compares with the champion (``significant``,
``relative_drop``) without a reference value gives ``no_reference`` (``floor`` needs none);
otherwise the configured rule decides between ``degraded`` and ``ok``. "Worse" follows the
metric's direction (:data:`~airflow_mlops_provider.core.gate.HIGHER_IS_BETTER`): for RMSE, MAE and
log loss a rise is a drop in quality, and the floor is a ceiling.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.gate import HIGHER_IS_BETTER
from airflow_mlops_provider.core.monitoring.config import PerformanceConfig
from airflow_mlops_provider.core.monitoring.types import MetricInterval, Verdict

Source = Literal["realized", "estimated"]


class RuleError(PermanentError, ValueError):
    """The rule was asked to judge a metric it does not know the direction of."""


def judge(
    metric: str,
    value: MetricInterval | None,
    reference: float | None,
    config: PerformanceConfig,
    *,
    source: Source = "realized",
) -> Verdict:
    """The verdict on ``metric`` measured as ``value`` against the champion's ``reference``."""
    if metric not in HIGHER_IS_BETTER:
        raise RuleError(f"cannot judge unknown metric {metric!r}: expected one of {sorted(HIGHER_IS_BETTER)}")
    base: dict[str, Any] = {"metric": metric, "rule": config.rule, "source": source, "value": value}
    known = None if reference is None or not math.isfinite(reference) else float(reference)
    short = _too_few(metric, value, config.min_labels)
    if short is not None:
        return Verdict(status="not_enough_labels", reason=short, reference=known, **base)
    assert value is not None and value.value is not None  # _too_few said so
    if config.rule == "floor":
        return _floor(metric, value, known, config, base)
    if known is None:
        reason = f"no reference value of {metric} for the champion: nothing to compare the window with"
        return Verdict(status="no_reference", reason=reason, **base)
    if config.rule == "relative_drop":
        return _relative_drop(metric, value, known, config, base)
    return _significant(metric, value, known, config, base)


def _too_few(metric: str, value: MetricInterval | None, min_labels: int) -> str | None:
    """Why there is no verdict yet, or None when there are enough labelled rows."""
    rows = 0 if value is None else value.rows
    if rows < min_labels:
        return f"{rows} labelled rows, fewer than the {min_labels} needed to judge {metric}"
    if value is None or value.value is None:
        return f"{metric} is undefined on the {rows} labelled rows (one class only?)"
    return None


def _worse(metric: str, a: float, b: float) -> bool:
    return a < b if HIGHER_IS_BETTER[metric] else a > b


def _side(metric: str) -> str:
    return "below" if HIGHER_IS_BETTER[metric] else "above"


def _measured(metric: str, value: MetricInterval) -> str:
    interval = "" if value.low is None or value.high is None else f" [{_n(value.low)}, {_n(value.high)}]"
    return f"{metric} {_n(value.value)}{interval} on {value.rows} labelled rows"


def _significant(
    metric: str, value: MetricInterval, reference: float, config: PerformanceConfig, base: dict[str, Any]
) -> Verdict:
    higher = HIGHER_IS_BETTER[metric]
    edge = value.high if higher else value.low  # the interval's end nearest the reference
    bound_name = "high" if higher else "low"
    if edge is None:  # no interval (every resample undefined): the value alone
        edge, bound_name = value.value, "value"
    assert edge is not None
    limit = reference - config.tolerance if higher else reference + config.tolerance
    degraded = _worse(metric, edge, limit)
    margin = f" {'minus' if higher else 'plus'} tolerance {_n(config.tolerance)}" if config.tolerance else ""
    level = f"{round(value.confidence * 100, 1):g}%"
    if degraded:
        what = f"is {_side(metric)} the champion's {_n(reference)}{margin} beyond the {level} interval"
    else:
        what = f"is not significantly {_side(metric)} the champion's {_n(reference)}{margin} at {level}"
    details = {"bound": edge, "bound_name": bound_name, "limit": limit, "tolerance": config.tolerance}
    return Verdict(
        status="degraded" if degraded else "ok",
        reason=f"{_measured(metric, value)} {what}",
        reference=reference,
        details=details,
        **base,
    )


def _relative_drop(
    metric: str, value: MetricInterval, reference: float, config: PerformanceConfig, base: dict[str, Any]
) -> Verdict:
    assert value.value is not None
    allowed = abs(reference) * config.max_relative_drop
    limit = reference - allowed if HIGHER_IS_BETTER[metric] else reference + allowed
    degraded = _worse(metric, value.value, limit)
    loss = abs(value.value - reference) / abs(reference) if reference else math.inf
    worse = _worse(metric, value.value, reference)
    change = f"{loss:.1%} {'worse than' if worse else 'from'} the champion's {_n(reference)}"
    verdict = "more than" if degraded else "within"
    reason = f"{_measured(metric, value)} is {change} ({verdict} the {config.max_relative_drop:.1%} allowed)"
    return Verdict(
        status="degraded" if degraded else "ok",
        reason=reason,
        reference=reference,
        details={
            "bound": limit,
            "relative_change": loss if worse else -loss,
            "allowed": config.max_relative_drop,
        },
        **base,
    )


def _floor(
    metric: str,
    value: MetricInterval,
    reference: float | None,
    config: PerformanceConfig,
    base: dict[str, Any],
) -> Verdict:
    assert value.value is not None and config.floor is not None  # the config validates the floor
    degraded = _worse(metric, value.value, config.floor)
    name = "floor" if HIGHER_IS_BETTER[metric] else "ceiling"
    where = _side(metric) if degraded else f"not {_side(metric)}"
    reason = f"{_measured(metric, value)} is {where} the {name} {_n(config.floor)}"
    return Verdict(
        status="degraded" if degraded else "ok",
        reason=reason,
        reference=reference,
        details={"bound": config.floor},
        **base,
    )


def _n(number: float | None) -> str:
    """A number as people read it: three decimals at most, thousands grouped."""
    if number is None:
        return "n/a"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    text = f"{number:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
