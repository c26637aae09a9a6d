"""Gate, promote and roll back: the three registry steps the promotion operators call.

* :func:`gate_and_register` decides (``core.gate``), registers the challenger once (found by its
  source-run tag on retries), verifies its artifacts, points ``challenger`` at it and stores the
  decision record. It never touches ``champion``.
* :func:`promote` moves ``champion`` for a passing decision, inside the per-model critical
  section the caller provides (a one-slot Airflow pool). When the champion moved since the
  evaluation it re-evaluates the challenger against the new champion on the same snapshot and
  applies the gate again, so a better champion is never silently overwritten.
* :func:`rollback_champion` moves ``champion`` back to ``previous_champion`` with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core import names, registry
from airflow_mlops_provider.core.decision_record import DecisionRecord, load_record, record_uri, store_record
from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.gate import GateConfig, decide, parse_gate
from airflow_mlops_provider.core.paths import check_model_name
from airflow_mlops_provider.core.payloads import Decision, Evaluation, PromotionResult

if TYPE_CHECKING:
    from airflow_mlops_provider.core.evaluation import Model
    from airflow_mlops_provider.core.tracking import TrackingSettings

Loader = Callable[[str, "TrackingSettings"], "Model"]


class PromotionRefused(PermanentError, registry.RegistryError):
    """The decision does not allow moving ``champion`` (failed gate, missing approval, ...)."""


def _loader(loader: Loader | None) -> Loader:
    if loader is not None:
        return loader
    from airflow_mlops_provider.core.model_io import load_model

    return load_model


def _trigger(trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    trigger = dict(trigger or {})
    trigger.setdefault("cause", "manual")
    return trigger


def gate_and_register(
    settings: TrackingSettings,
    evaluation: Mapping[str, Any],
    gate: GateConfig | Mapping[str, Any] | None = None,
    *,
    pipeline: str | None = None,
    trigger: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    loader: Loader | None = None,
) -> Decision:
    """Decide on the challenger of ``evaluation``, register it and record the decision; returns a summary.

    The summary (small, JSON) is what :func:`promote` and the approval form need: verdict,
    version, reasons, record URI, the champion the decision was made against and how to
    re-evaluate. Retrying registers nothing new and leaves the aliases as they were.
    """
    model_name = check_model_name(evaluation["model_name"])
    config = parse_gate(gate)
    load = _loader(loader)
    client = settings.client()
    run_id = evaluation["challenger"]["run_id"]
    trigger = _trigger(trigger)
    result = decide(dict(evaluation), config)

    run = registry.get_run(client, run_id)
    artifact_uri = run.info.artifact_uri
    uri = record_uri(artifact_uri, model_name)
    status = "rejected"
    if result.passed:
        status = "awaiting_approval" if config.require_approval else "approved"
    tags = {
        names.TAG_TRIGGER: trigger["cause"],
        names.TAG_EVAL_SNAPSHOT: evaluation.get("snapshot_sha256"),
        **_decision_tags(uri, result.verdict, status, result.reasons),
    }
    registration = registry.register_version(client, model_name, run_id, tags=tags, run=run)
    version = registration.version
    with registry._step(f"reading the decision record of run {run_id}", client):
        existing = load_record(client, artifact_uri, model_name)
    if existing is not None and existing.status == "promoted" and existing.version == version:
        return summary(existing, uri, evaluation, artifact_uri)

    registry.verify_artifacts(client, model_name, version, lambda model_uri: load(model_uri, settings))
    run_tags = run.data.tags
    record = DecisionRecord(
        model_name=model_name,
        version=version,
        source_run_id=run_id,
        pipeline=pipeline or run_tags.get(names.TAG_PIPELINE),
        task=evaluation.get("task", ""),
        verdict=result.verdict,
        reasons=result.reasons,
        checks=result.to_dict()["checks"],
        gate=config.model_dump(),
        challenger=dict(evaluation["challenger"]),
        champion=evaluation.get("champion"),
        champion_version_at_eval=evaluation.get("champion_version_at_eval"),
        evaluation_snapshot=dict(evaluation.get("snapshot") or {"sha256": evaluation.get("snapshot_sha256")}),
        training_snapshot={
            "uri": run_tags.get(names.TAG_SNAPSHOT_URI),
            "sha256": run_tags.get(names.TAG_SNAPSHOT_SHA),
            "training_config_hash": run_tags.get(names.TAG_TRAINING_CONFIG),
            "missing_target_dropped": registry.missing_target_dropped(dict(run.data.metrics)),
        },
        trigger=trigger,
        validation=dict(validation) if validation is not None else None,
        status=status,
        approval={"required": True} if config.require_approval else None,
        previous_champion=evaluation.get("champion_version_at_eval"),
    )
    if existing is not None:
        record.created_at, record.history = existing.created_at, existing.history
    store_decision(client, record, artifact_uri, registration.tags)
    # Concurrent runs may each set `challenger`: the latest one wins, no read-back needed.
    registry.set_alias(client, model_name, names.CHALLENGER, version)
    return summary(record, uri, evaluation, artifact_uri)


def _decision_tags(uri: str, verdict: str, status: str, reasons: list[str]) -> dict[str, str]:
    return {
        names.TAG_RECORD_URI: uri,
        names.TAG_VERDICT: verdict,
        names.TAG_STATUS: status,
        names.TAG_REASONS: registry._clip("; ".join(reasons)),
    }


def store_decision(
    client: Any, record: DecisionRecord, artifact_uri: str, known_tags: Mapping[str, str]
) -> str:
    """Store the record and update the version's decision tags that changed."""
    with registry._step(f"storing the decision record of run {record.source_run_id}", client):
        uri = store_record(client, record, artifact_uri)
    wanted = _decision_tags(uri, record.verdict, record.status, record.reasons)
    changed = {k: v for k, v in wanted.items() if known_tags.get(k) != v}
    registry.set_version_tags(client, record.model_name, record.version, changed)
    return uri


def summary(
    record: DecisionRecord, uri: str, evaluation: Mapping[str, Any], run_artifact_uri: str
) -> Decision:
    """The small dict a gate task returns (XCom): enough to promote, approve or re-evaluate."""
    return {
        "verdict": record.verdict,
        "status": record.status,
        "model_name": record.model_name,
        "version": record.version,
        "source_run_id": record.source_run_id,
        "reasons": list(record.reasons),
        "record_uri": uri,
        "run_artifact_uri": run_artifact_uri,
        "champion_version_at_eval": record.champion_version_at_eval,
        "require_approval": bool(record.gate.get("require_approval")),
        "gate": record.gate,
        "challenger_metrics": record.challenger.get("metrics") or {},
        "champion_metrics": (record.champion or {}).get("metrics"),
        "reevaluate": {
            "challenger": {
                "run_id": record.source_run_id,
                "model_uri": record.challenger.get("model_uri") or f"runs:/{record.source_run_id}/model",
            },
            "snapshot": (evaluation.get("snapshot") or {}).get("uri"),
            "split": (evaluation.get("snapshot") or {}).get("split"),
            "metrics": evaluation.get("metrics_requested"),
            "slices": evaluation.get("slices_requested") or [],
        },
        "markdown": record.to_markdown(),
    }


def _approval(record: DecisionRecord, approval: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise the HITL approval task's result (``chosen_options``, ``responded_by_user``, ...)."""
    chosen = list(approval.get("chosen_options") or [])
    return {
        "required": bool(record.gate.get("require_approval")),
        "approved": chosen == ["Approve"] or approval.get("approved") is True,
        "by": approval.get("responded_by_user") or approval.get("by"),
        "at": str(approval.get("responded_at") or approval.get("at") or registry.now_iso()),
        "chosen_options": chosen,
    }


@dataclass(frozen=True)
class OpenDecision:
    """A passing decision's record, read for an update: ``store()`` writes it back with its tags."""

    client: Any
    record: DecisionRecord
    artifact_uri: str
    store: Callable[[], str]


def open_decision(settings: TrackingSettings, decision: Mapping[str, Any]) -> OpenDecision:
    """The record of a decision (the gate's summary) that passed; :class:`PromotionRefused` otherwise."""
    client = settings.client()
    model_name, version = decision["model_name"], str(decision["version"])
    if decision.get("verdict") != "pass":
        raise PromotionRefused(
            f"{model_name} v{version}: the gate said {decision.get('verdict')!r} "
            f"({'; '.join(decision.get('reasons') or [])}); champion not moved"
        )
    run_id = decision["source_run_id"]
    artifact_uri = decision.get("run_artifact_uri") or registry.get_run(client, run_id).info.artifact_uri
    with registry._step(f"reading the decision record of run {run_id}", client):
        record = load_record(client, artifact_uri, model_name)
    if record is None or record.version != version:
        raise PromotionRefused(f"{model_name} v{version}: no decision record for run {run_id}")
    known = _decision_tags(
        record_uri(artifact_uri, model_name), record.verdict, record.status, record.reasons
    )
    return OpenDecision(
        client, record, artifact_uri, partial(store_decision, client, record, artifact_uri, known)
    )


def promote(
    settings: TrackingSettings,
    decision: Mapping[str, Any],
    *,
    approval: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    loader: Loader | None = None,
    reevaluate: bool = True,
    max_attempts: int = 3,
) -> PromotionResult:
    """Move ``champion`` to the decided version. Call it serialised per model (one-slot pool).

    Returns ``{"promoted": bool, "status", "version", "champion", "previous_champion",
    "alias_changes", "reasons", "record_uri"}``. ``promoted`` is False when a re-evaluation
    against a champion that moved since the decision rejected the challenger. Raises
    :class:`PromotionRefused` for a failing or unapproved decision, and the registry's errors
    (unreachable MLflow, unloadable artifacts) with nothing moved.
    """
    load = _loader(loader)
    opened = open_decision(settings, decision)
    client, record, store = opened.client, opened.record, opened.store
    model_name, version, artifact_uri = record.model_name, record.version, opened.artifact_uri
    if record.status == "promoted" and registry.alias_number(client, model_name, names.CHAMPION) == version:
        return _result(record, True, [], record_uri(artifact_uri, model_name))
    rolled_back = registry.get_version(client, model_name, version).tags.get(names.TAG_ROLLED_BACK)
    if rolled_back:
        raise PromotionRefused(
            f"{model_name} v{version} was rolled back ({rolled_back}); re-running its old promotion "
            "must not undo that. Train and gate a new run, or set the alias by hand"
        )
    check_approval(record, approval, store)

    expected = record.champion_version_at_eval
    verify: registry.Verifier = lambda uri: load(uri, settings)  # noqa: E731
    gate = GateConfig.model_validate(record.gate)
    for _ in range(max_attempts):
        try:
            changes = registry.move_champion(
                client, model_name, version, expected_champion=expected, verify=verify
            )
        except registry.ChampionChanged as changed:
            if not reevaluate or changed.current is None:
                record.status = "superseded"
                record.reasons = [*record.reasons, f"refused: {changed}"]
                store()
                raise PromotionRefused(f"{changed}; re-run the evaluation") from changed
            evaluation = _reevaluate(settings, decision, changed.current, storage_options, load)
            if not _regate(record, evaluation, gate, changed):
                record.status = "rejected"
                return _result(record, False, [], store())
            expected = changed.current
            continue
        if not changes and record.status != "promoted":  # a retry after the aliases moved
            changes = _changes_already_made(client, model_name, version)
        record.status = "promoted"
        record.alias_changes = [*record.alias_changes, *(asdict(c) for c in changes)]
        record.previous_champion = expected
        return _result(record, True, [asdict(c) for c in changes], store())
    raise registry.RegistryError(
        f"{model_name} v{version}: the champion kept moving during {max_attempts} re-evaluations"
    )


def check_approval(
    record: DecisionRecord, approval: Mapping[str, Any] | None, store: Callable[[], str]
) -> None:
    """Record the human approval, when given; a decision that required one and did not get it is
    stored as rejected and refused."""
    if approval is not None:
        record.approval = _approval(record, approval)
    if record.gate.get("require_approval") and not (record.approval or {}).get("approved"):
        record.status = "rejected"
        record.reasons = [*record.reasons, "human approval was required and not given"]
        uri = store()
        raise PromotionRefused(
            f"{record.model_name} v{record.version}: approval required and not given; record {uri}"
        )


def _regate(
    record: DecisionRecord,
    evaluation: Evaluation,
    gate: GateConfig,
    changed: registry.ChampionChanged,
) -> bool:
    """Apply the gate again to a re-evaluation against the champion that moved, keeping the earlier
    verdict in the record's history; whether the challenger still passes."""
    result = decide(evaluation, gate)
    record.history.append(
        {"at": registry.now_iso(), "event": str(changed), "previous_verdict": record.verdict,
         "previous_reasons": record.reasons, "previous_champion": record.champion}
    )  # fmt: skip
    champion = evaluation["champion"]
    record.champion = None if champion is None else dict(champion)
    record.champion_version_at_eval = changed.current
    record.verdict, record.reasons = result.verdict, [f"re-evaluated: {changed}", *result.reasons]
    record.checks, record.previous_champion = result.to_dict()["checks"], changed.current
    return result.passed


def record_rejection(
    settings: TrackingSettings, decision: Mapping[str, Any], approval: Mapping[str, Any]
) -> str:
    """Record that a human rejected the promotion (the champion did not move); returns the record URI."""
    client = settings.client()
    model_name, run_id = decision["model_name"], decision["source_run_id"]
    artifact_uri = decision.get("run_artifact_uri") or registry.get_run(client, run_id).info.artifact_uri
    with registry._step(f"reading the decision record of run {run_id}", client):
        record = load_record(client, artifact_uri, model_name)
    if record is None:
        raise PromotionRefused(f"{model_name}: no decision record for run {run_id}")
    known = _decision_tags(
        record_uri(artifact_uri, model_name), record.verdict, record.status, record.reasons
    )
    record.approval = _approval(record, approval)
    who = (record.approval.get("by") or {}).get("name") or "a reviewer"
    record.status = "rejected"
    record.reasons = [*record.reasons, f"promotion rejected by {who}; champion not moved"]
    return store_decision(client, record, artifact_uri, known)


def _reevaluate(
    settings: TrackingSettings,
    decision: Mapping[str, Any],
    champion_version: str,
    storage_options: Mapping[str, Any] | None,
    load: Loader,
) -> Evaluation:
    from airflow_mlops_provider.core.evaluation import evaluate_challenger_and_champion

    spec = decision.get("reevaluate") or {}
    if not spec.get("snapshot"):
        raise PromotionRefused(
            f"{decision['model_name']}: the champion moved since evaluation and the decision has no "
            "snapshot to re-evaluate on"
        )
    return evaluate_challenger_and_champion(
        challenger=spec["challenger"],
        snapshot=spec["snapshot"],
        split=spec.get("split"),
        model_name=decision["model_name"],
        settings=settings,
        metrics=spec.get("metrics"),
        slices=spec.get("slices") or [],
        storage_options=storage_options,
        champion_version=champion_version,
        loader=load,
    )


def _changes_already_made(client: Any, model_name: str, version: str) -> list[registry.AliasChange]:
    """The alias moves an interrupted earlier attempt made (from the version's previous-champion tag)."""
    previous = registry.get_version(client, model_name, version).tags.get(names.TAG_PREVIOUS) or None
    changes = [registry.AliasChange(names.PREVIOUS_CHAMPION, None, previous)] if previous else []
    return [*changes, registry.AliasChange(names.CHAMPION, previous, version)]


def _result(
    record: DecisionRecord, promoted: bool, changes: list[dict[str, Any]], uri: str
) -> PromotionResult:
    return {
        "promoted": promoted,
        "status": record.status,
        "model_name": record.model_name,
        "version": record.version,
        "champion": record.version if promoted else record.champion_version_at_eval,
        "previous_champion": record.previous_champion,
        "alias_changes": changes,
        "reasons": list(record.reasons),
        "record_uri": uri,
        "approval": record.approval,
    }


def rollback_champion(
    settings: TrackingSettings,
    model_name: str,
    *,
    reason: str,
    request_id: str,
    actor: str | None = None,
    loader: Loader | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to ``previous_champion`` (see :func:`registry.rollback`); returns the record."""
    check_model_name(model_name)
    load = _loader(loader)
    client = settings.client()
    done = registry.rollback(
        client, model_name, reason=reason, request_id=request_id, actor=actor,
        verify=lambda uri: load(uri, settings),
    )  # fmt: skip
    return done.to_dict()
