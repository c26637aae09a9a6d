"""The rollout in progress, kept in the registry where the prediction service reads it.

A rollout is the ``canary`` alias on the challenger, the traffic policy tags the service follows
(``mlops.canary_weight``, ``mlops.shadow``) and a ``mlops.rollout`` tag on the registered model
naming whose rollout it is (the DAG run), so that the rollback DAG can undo it and the rollout
notices. Every change is appended to the challenger's decision record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core import names, registry
from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.promotion import open_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops_provider.core.tracking import TrackingSettings


class RolloutAborted(PermanentError):
    """The rollout was undone (or replaced) by someone else while it held a step."""


class RolloutRolledBack(PermanentError):
    """A guardrail breached, or the challenger got too little traffic: the rollout was rolled back."""


@dataclass(frozen=True)
class Rollout:
    """Whose rollout is in progress: the challenger, the champion it is compared with, the run."""

    model_name: str
    version: str
    champion: str
    strategy: str  # canary or shadow
    request_id: str  # "<dag_id>/<run_id>" of the run rolling it out
    decision: dict[str, Any]  # the gate's summary (enough to reopen the decision record)
    started_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rollout:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _decision_ref(decision: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("model_name", "version", "verdict", "source_run_id", "run_artifact_uri", "reasons")
    return {k: decision.get(k) for k in keys}


def current(client: MlflowClient, model_name: str) -> Rollout | None:
    """The rollout the registry says is in progress, if any."""
    with registry._step(f"reading the rollout of {model_name!r}", client):
        raw = (client.get_registered_model(model_name).tags or {}).get(names.TAG_ROLLOUT)
    if not raw:
        return None
    try:
        return Rollout.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None  # a hand-edited tag: nothing this code started


def start(
    settings: TrackingSettings, decision: Mapping[str, Any], *, champion: str, strategy: str, request_id: str
) -> Rollout:
    """Claim the rollout (tag first, so an undo can always find it), then point ``canary`` at the
    challenger with no traffic yet. Starting again (a retried task) starts over."""
    client = settings.client()
    rollout = Rollout(
        model_name=decision["model_name"],
        version=str(decision["version"]),
        champion=champion,
        strategy=strategy,
        request_id=request_id,
        decision=_decision_ref(decision),
        started_at=registry.now_iso(),
    )
    _policy(client, rollout.model_name, weight=0.0, shadow=False)
    with registry._step(f"recording the rollout of {rollout.model_name!r}", client):
        client.set_registered_model_tag(rollout.model_name, names.TAG_ROLLOUT, json.dumps(rollout.to_dict()))
    registry.set_alias_verified(client, rollout.model_name, names.CANARY, rollout.version)
    return rollout


def set_step(settings: TrackingSettings, rollout: Rollout, weight: float) -> None:
    """Give the canary ``weight`` percent of requests (canary), or let it score copies (shadow)."""
    check_ours(settings, rollout)
    shadow = rollout.strategy == "shadow"
    _policy(settings.client(), rollout.model_name, weight=0.0 if shadow else weight, shadow=shadow)


def check_ours(settings: TrackingSettings, rollout: Rollout) -> None:
    """:class:`RolloutAborted` when the registry no longer holds this rollout (the rollback DAG undid
    it, or another run started its own)."""
    client = settings.client()
    now = current(client, rollout.model_name)
    canary = registry.alias_number(client, rollout.model_name, names.CANARY)
    if now is not None and now.request_id == rollout.request_id and canary == rollout.version:
        return
    last = (client.get_registered_model(rollout.model_name).tags or {}).get(names.TAG_LAST_ROLLBACK)
    why = f"; last rollback: {last}" if last else ""
    raise RolloutAborted(
        f"the rollout of {rollout.model_name} v{rollout.version} was undone while it held a step "
        f"(canary alias: {canary or 'none'}, rollout in progress: "
        f"{now.request_id if now else 'none'}){why}; champion stays v{rollout.champion}"
    )


def clear(settings: TrackingSettings, rollout: Rollout) -> None:
    """End the rollout: no traffic to the canary first, then the alias and the claim go."""
    client = settings.client()
    _policy(client, rollout.model_name, weight=0.0, shadow=False)
    if registry.alias_number(client, rollout.model_name, names.CANARY) == rollout.version:
        registry.delete_alias(client, rollout.model_name, names.CANARY)
    with registry._step(f"ending the rollout of {rollout.model_name!r}", client):
        client.delete_registered_model_tag(rollout.model_name, names.TAG_ROLLOUT)


def note(
    settings: TrackingSettings,
    rollout: Rollout,
    event: str,
    text: str,
    *,
    status: str | None = None,
    reason: str | None = None,
    **details: Any,
) -> str:
    """Append one entry to the challenger's decision record (and set its status/reasons); its URI."""
    opened = open_decision(settings, rollout.decision)
    record = opened.record
    record.rollout = [*record.rollout, {"at": registry.now_iso(), "event": event, "text": text, **details}]
    if status is not None:
        record.status = status
    if reason is not None:
        record.reasons = [*record.reasons, reason]
    return opened.store()


def abandon(settings: TrackingSettings, rollout: Rollout, reason: str) -> None:
    """End a rollout that never sent the challenger any traffic; its decision stays approved."""
    clear(settings, rollout)
    note(settings, rollout, "abandoned", f"nothing rolled out: {reason}", status="approved")


def roll_back(settings: TrackingSettings, rollout: Rollout, reason: str, **details: Any) -> None:
    """Stop the canary (``champion`` untouched), mark the version rolled back and record why."""
    clear(settings, rollout)
    client = settings.client()
    tag = {"reason": reason, "at": registry.now_iso(), "request_id": rollout.request_id}
    registry.set_version_tags(client, rollout.model_name, rollout.version, {names.TAG_ROLLED_BACK: tag})
    text = f"rolled back: {reason}"
    note(settings, rollout, "rolled_back", text, status="rolled_back", reason=reason, **details)


def undo(
    settings: TrackingSettings, model_name: str, *, reason: str, actor: str | None
) -> dict[str, Any] | None:
    """Undo the rollout in progress (the rollback DAG's first job); None when there is none."""
    client = settings.client()
    rollout = current(client, model_name)
    if rollout is None:
        return None
    who = f" by {actor}" if actor else ""
    roll_back(settings, rollout, f"rollout undone{who}: {reason}", actor=actor)
    return {
        "model_name": model_name,
        "undone_rollout": rollout.version,
        "from_version": rollout.version,
        "to_version": rollout.champion,
        "reason": reason,
        "actor": actor,
        "at": registry.now_iso(),
        "alias_changes": [asdict(registry.AliasChange(names.CANARY, rollout.version, None))],
    }


def _policy(client: MlflowClient, model_name: str, *, weight: float, shadow: bool) -> None:
    with registry._step(f"setting the traffic policy of {model_name!r}", client):
        client.set_registered_model_tag(model_name, names.TAG_CANARY_WEIGHT, f"{weight:g}")
        client.set_registered_model_tag(model_name, names.TAG_SHADOW, names.CANARY if shadow else "off")
