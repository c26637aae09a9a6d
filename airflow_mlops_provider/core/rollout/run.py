"""Begin a rollout, and say what a step saw, in the words the decision record keeps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core import names, registry
from airflow_mlops_provider.core.promotion import PromotionRefused, check_approval, open_decision
from airflow_mlops_provider.core.rollout import state

if TYPE_CHECKING:
    from airflow_mlops_provider.core.rollout.config import RolloutConfig
    from airflow_mlops_provider.core.tracking import TrackingSettings


def begin(
    settings: TrackingSettings,
    decision: Mapping[str, Any],
    *,
    config: RolloutConfig,
    request_id: str,
    approval: Mapping[str, Any] | None = None,
) -> state.Rollout | None:
    """Claim the rollout of a passing, approved decision; None when there is nothing to compare the
    challenger with (no champion yet, or it already is the champion): it is then promoted directly.

    Refuses, with nothing changed, a failing or unapproved decision and a version rolled back before.
    """
    opened = open_decision(settings, decision)
    record, client = opened.record, opened.client
    version_tags = registry.get_version(client, record.model_name, record.version).tags
    if version_tags.get(names.TAG_ROLLED_BACK):
        raise PromotionRefused(
            f"{record.model_name} v{record.version} was rolled back ({version_tags[names.TAG_ROLLED_BACK]}); "
            "it is not rolled out again. Train and gate a new run"
        )
    check_approval(record, approval, opened.store)
    champion = registry.alias_number(client, record.model_name, names.CHAMPION)
    if champion is None or champion == record.version:
        return None
    rollout = state.start(
        settings, decision, champion=champion, strategy=config.strategy, request_id=request_id
    )
    plan = (
        f"{len(config.weights)} steps at {', '.join(f'{w:g}%' for w in config.weights)}"
        if config.strategy == "canary"
        else f"a shadow of champion v{champion} until it scored {config.min_requests} requests"
    )
    state.note(
        settings, rollout, "start",
        f"{config.strategy} rollout against champion v{champion}: {plan}; each step holds at least "
        f"{config.hold:g}s and {config.min_requests} requests, at most {config.max_step_wait:g}s",
        status="rolling_out",
    )  # fmt: skip
    return rollout


def describe(reading: Mapping[str, Any] | None) -> str:
    """One line for a guardrail reading (see ``signals.GuardrailReading.to_dict``)."""
    if not reading:
        return "no metrics could be read"
    canary, champion = reading.get("canary") or {}, reading.get("champion") or {}
    distance = reading.get("prediction_distance")
    kind = reading.get("distance") or "none"
    parts = [
        f"canary {_side(canary)}",
        f"champion {_side(champion)}",
        f"prediction distance {_num(distance)} ({kind.replace('_', ' ')})",
    ]
    return "; ".join(parts)


def _side(side: Mapping[str, Any]) -> str:
    return (
        f"{_num(side.get('scored'), '.0f')} answered, {_num(side.get('errors'), '.0f')} errors "
        f"(rate {_num(side.get('error_rate'))}), p99 {_num(side.get('p99_ms'), '.1f')} ms"
    )


def _num(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(float(value), spec)
