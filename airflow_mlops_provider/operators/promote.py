"""Gate, promote and roll back registered models; every decision leaves an auditable record.

Task order in a retraining DAG (the factory wires it)::

    evaluate ─► gate ─► [approve (HITL, optional)] ─► promote

* :class:`GateChallengerOperator` applies the gate, registers the challenger once (found by its
  ``mlops.source_run_id`` tag on retries), verifies its artifacts, points ``challenger`` at it
  and stores the decision record. It never moves ``champion``.
* :class:`PromoteModelOperator` moves ``champion`` (keeping ``previous_champion``). It must run in the
  model's one-slot pool (:func:`promotion_pool`) so that promotions of one model never overlap:
  MLflow's alias update is last-writer-wins, with no compare-and-set. Inside the slot it checks
  the champion is still the one the decision was made against; if it moved, the challenger is
  re-evaluated against the new champion on the same snapshot, and promoted only if it still
  passes.
* :class:`RollbackChampionOperator` moves ``champion`` back to ``previous_champion``, recording why; it
  belongs in the same pool.

Parse time stays light: mlflow and the core modules are imported inside ``execute()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.skipmixin import SkipMixin
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_mlops_provider.core.names import CHALLENGER, CHAMPION
from airflow_mlops_provider.links.mlflow import MlflowModelVersionLink, model_version_url
from airflow_mlops_provider.links.report import ReportLink
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops_provider.core.lineage import Lineage
    from airflow_mlops_provider.core.payloads import Decision, PromotionResult

ON_FAIL = ("fail", "skip")
DECISION_MARKDOWN_KEY = "decision_markdown"
PROMOTION_POOL_PREFIX = "mlops_promote_"


def promotion_pool(model_name: str) -> str:
    """Name of the one-slot pool that serialises promotions and rollbacks of ``model_name``.

    The provider's scheduler plugin (:mod:`airflow_mlops_provider.plugins`) creates it when a run
    that uses it starts and it is missing; a deployment may create it beforehand, e.g.
    ``airflow pools set mlops_promote_<model> 1 "Serialise promotions of <model>"``.
    """
    return PROMOTION_POOL_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", model_name)


def _check_on_fail(on_fail: str) -> str:
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, not {on_fail!r}")
    return on_fail


def persist_links(context: Context, settings: Any, model_name: str, version: str, run_id: str | None) -> None:
    """Model version page and decision record page in the MLflow UI (nothing for local stores)."""
    MlflowModelVersionLink.persist(context, model_version_url(settings.browser_url, model_name, version))
    record_page = None
    if run_id and settings.browser_url:
        from airflow_mlops_provider.core.decision_record import record_page_url

        experiment_id = settings.client().get_run(run_id).info.experiment_id
        record_page = record_page_url(settings.browser_url, experiment_id, run_id, model_name)
    ReportLink.persist(context, record_page)


class GateChallengerOperator(MlopsBaseOperator, SkipMixin):
    """Decide whether the challenger may replace the champion; register it and record why.

    The gate (``core.gate.GateConfig``): ``thresholds`` (absolute bounds), ``primary_metric`` with
    ``min_gain`` / ``min_gain_relative`` over the champion, ``max_regression`` and
    ``slice_max_regression`` tolerances, ``require_approval``. The first model of a pipeline (no
    champion) needs only the thresholds; NaN or missing metrics reject.

    Returns the decision summary (also what :class:`PromoteModelOperator` and the approval form read)::

        {"verdict": "pass"|"fail", "status", "model_name", "version", "source_run_id", "reasons",
         "record_uri", "run_artifact_uri", "champion_version_at_eval", "require_approval", "gate",
         "challenger_metrics", "champion_metrics", "reevaluate": {...}, "markdown"}

    The Markdown summary is also pushed under XCom key ``decision_markdown``. On a failing gate
    the champion never moves and, with ``on_fail="fail"``, the task fails (no retry) naming the
    reasons; with ``on_fail="skip"`` it succeeds and skips everything downstream.

    :param evaluation: the evaluate task's result (XComArg).
    :param gate: gate settings (see above).
    :param trigger: why the run started (``{"cause", ...}``, e.g. the trigger-cause task's result
        with asset event extras); kept in the record and the ``mlops.trigger_cause`` tag.
    :param validation: the validate task's summary, kept in the record.
    :param pipeline: pipeline name (default: the training run's ``mlops.pipeline`` tag).
    :param model_name: registered model; must match the evaluation's when given.
    :param on_fail: ``"fail"`` or ``"skip"``.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "evaluation",
        "gate",
        "trigger",
        "validation",
        "model_name",
    )
    template_fields_renderers = {
        "evaluation": "json",
        "gate": "json",
        "trigger": "json",
        "validation": "json",
    }
    operator_extra_links = (MlflowModelVersionLink(), ReportLink())
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        evaluation: Any,
        gate: Mapping[str, Any] | None = None,
        trigger: Any = None,
        validation: Any = None,
        model_name: str | None = None,
        on_fail: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.gate = gate
        self.trigger = trigger
        self.validation = validation
        self.model_name = model_name
        self.on_fail = _check_on_fail(on_fail)

    def execute(self, context: Context) -> Decision:
        from airflow_mlops_provider.core.promotion import gate_and_register

        if self.model_name and self.evaluation.get("model_name") != self.model_name:
            raise AirflowFailException(
                f"evaluation is for model {self.evaluation.get('model_name')!r}, not {self.model_name!r}"
            )
        settings = self.mlflow_settings()
        decision = gate_and_register(
            settings,
            self.evaluation,
            dict(self.gate or {}),
            pipeline=self.pipeline,
            trigger=self.trigger if isinstance(self.trigger, Mapping) else None,
            validation=self.validation if isinstance(self.validation, Mapping) else None,
        )
        name, version = decision["model_name"], decision["version"]
        persist_links(context, settings, name, version, decision["source_run_id"])
        context["ti"].xcom_push(key=DECISION_MARKDOWN_KEY, value=decision["markdown"])
        self.log.info("Decision record for %s v%s: %s", name, version, decision["record_uri"])
        if decision["verdict"] == "pass":
            self.log.info("Gate PASSED for %s v%s: %s", name, version, "; ".join(decision["reasons"]))
            return decision
        message = (
            f"Gate FAILED for {name} v{version}; champion unchanged "
            f"(still {decision['champion_version_at_eval'] or 'none'}). Reasons: "
            f"{'; '.join(decision['reasons'])}. Record: {decision['record_uri']}"
        )
        if self.on_fail == "fail":
            raise AirflowFailException(message)
        self.log.warning("%s. Skipping everything downstream.", message)
        downstream = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        if downstream:
            # skip() ends execute() with an exception, so the summary is pushed first.
            context["ti"].xcom_push(key="return_value", value=decision)
            self.skip(ti=context["ti"], tasks=downstream)
        return decision

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The challenger's run -> the model version registered for it (alias ``challenger``)."""
        return _run_to_version(self, self.evaluation["challenger"]["run_id"], result, CHALLENGER)


class PromoteModelOperator(MlopsBaseOperator):
    """Move ``champion`` to the version a passing gate registered; keep the old one as ``previous_champion``.

    Run it in the model's one-slot pool (``pool=promotion_pool(model_name)``). Re-running it
    after success changes nothing. When the decision required approval, the approval task's
    result (``approval``, or found among the upstream tasks' results) must say "Approve"; the
    approver is recorded. On success the outlet assets get an event whose extra is the result::

        {"promoted": True, "status", "model_name", "version", "champion", "previous_champion",
         "alias_changes": [{"alias", "before", "after", "at"}], "reasons", "record_uri", "approval"}

    If a re-evaluation against a champion that moved since the gate rejects the challenger,
    ``on_fail`` decides: ``"fail"`` (no retry) or ``"skip"`` (no asset event, downstream skipped).
    An unreachable MLflow server or unloadable artifacts fail the task with nothing moved; a
    retry completes the promotion.

    :param decision: the gate task's result (XComArg).
    :param approval: the HITL approval task's result (XComArg), optional.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "decision", "approval")
    template_fields_renderers = {"decision": "json", "approval": "json"}
    operator_extra_links = (MlflowModelVersionLink(), ReportLink())
    ui_color = "#d7f5dd"

    def __init__(
        self,
        *,
        decision: Any,
        approval: Any = None,
        on_fail: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.approval = approval
        self.on_fail = _check_on_fail(on_fail)

    def _find_approval(self, context: Context) -> Mapping[str, Any] | None:
        if isinstance(self.approval, Mapping):
            return self.approval
        for task_id in sorted(self.upstream_task_ids):
            value = context["ti"].xcom_pull(task_ids=task_id)
            if isinstance(value, Mapping) and "chosen_options" in value:
                return value
        return None

    def execute(self, context: Context) -> PromotionResult:
        from airflow_mlops_provider.core.promotion import promote

        decision = self.decision
        settings = self.mlflow_settings()
        snapshot_uri = (decision.get("reevaluate") or {}).get("snapshot") or ""
        approval = self._find_approval(context) if decision.get("require_approval") else None
        result = promote(
            settings, decision, approval=approval, storage_options=self.storage_options(snapshot_uri)
        )
        name, version = result["model_name"], result["version"]
        persist_links(context, settings, name, version, decision.get("source_run_id"))
        if not result["promoted"]:
            message = (
                f"{result['model_name']} v{result['version']} not promoted after re-evaluation; champion "
                f"stays v{result['champion']}. Reasons: {'; '.join(result['reasons'])}"
            )
            if self.on_fail == "fail":
                raise AirflowFailException(message)
            raise AirflowSkipException(message)
        self.log.info(
            "champion of %s is v%s (alias changes: %s)",
            result["model_name"],
            result["version"],
            result["alias_changes"] or "none, already champion",
        )
        self.emit_asset_events(context, result)
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The challenger's run -> the model version it promoted (alias ``champion``)."""
        promoted = result if result and result.get("promoted") else None
        return _run_to_version(self, self.decision["source_run_id"], promoted, CHAMPION)


class RollbackChampionOperator(MlopsBaseOperator):
    """Undo a rollout in progress, or else move ``champion`` back to ``previous_champion``; the reason
    is recorded on the model.

    A rollout in progress (:class:`~airflow_mlops_provider.operators.rollout.RolloutModelOperator`)
    is undone first: canary weight 0, ``canary`` alias removed, ``champion`` untouched; the
    rollout's run fails at its next step. Returns ``{"undone_rollout", "from_version",
    "to_version", "reason", "actor", "at", "alias_changes"}`` then.

    ``previous_champion`` then points at the version that one had replaced (or is removed), so a
    second rollback goes one step further back. A retry of the same task instance repeats
    nothing. Run it in the model's pool (``pool=promotion_pool(model_name)``). Returns::

        {"model_name", "request_id", "from_version", "to_version", "reason", "actor", "at",
         "previous_champion_after", "alias_changes", "repeated"}

    :param model_name: registered model.
    :param reason: why (required; e.g. ``"{{ params.reason }}"``).
    :param actor: who asked (default: the user who triggered the run, when known).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model_name", "reason", "actor")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#fde0dc"

    def __init__(
        self,
        *,
        model_name: str,
        reason: str,
        actor: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.reason = reason
        self.actor = actor

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops_provider.core.promotion import rollback_champion
        from airflow_mlops_provider.core.rollout.state import undo

        settings = self.mlflow_settings()
        dag_run = context["dag_run"]
        actor = self.actor or getattr(dag_run, "triggering_user_name", None)
        undone = undo(settings, self.model_name, reason=str(self.reason), actor=actor)
        if undone is not None:  # the champion did not move: no champion asset event
            self.log.info(
                "Undid the rollout of %s v%s; champion stays v%s: %s",
                self.model_name, undone["from_version"], undone["to_version"], undone["reason"],
            )  # fmt: skip
            return undone
        done = rollback_champion(
            settings,
            self.model_name,
            reason=str(self.reason),
            request_id=f"{dag_run.dag_id}/{dag_run.run_id}",
            actor=actor,
        )
        MlflowModelVersionLink.persist(
            context, model_version_url(settings.browser_url, self.model_name, done["to_version"])
        )
        self.log.info(
            "Rolled %s back from v%s to v%s: %s",
            self.model_name,
            done["from_version"],
            done["to_version"],
            done["reason"],
        )
        self.emit_asset_events(context, done)
        return done

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The version rolled back from -> the version ``champion`` points at."""
        from airflow_mlops_provider.core.lineage import Lineage

        if not result:
            return Lineage()
        mlflow = self.lineage_mlflow()
        return Lineage(
            inputs=[mlflow.version(self.model_name, result["from_version"])],
            outputs=[mlflow.version(self.model_name, result["to_version"], aliases=[CHAMPION])],
        )


def _run_to_version(operator: MlopsBaseOperator, run_id: str, result: Any, alias: str) -> Lineage:
    """A training run -> the model version ``result`` (a decision or promotion) pointed ``alias`` at."""
    from airflow_mlops_provider.core.lineage import Lineage

    mlflow = operator.lineage_mlflow()
    inputs = [mlflow.run({"run_id": run_id})]
    if not result:
        return Lineage(inputs=inputs)
    version = mlflow.version(
        result["model_name"],
        result["version"],
        aliases=[alias],
        source_run_id=run_id,
        status=result["status"],
    )
    return Lineage(inputs=inputs, outputs=[version])


__getattr__ = renamed(
    __name__,
    {
        "GateOperator": GateChallengerOperator,
        "PromoteOperator": PromoteModelOperator,
        "RollbackOperator": RollbackChampionOperator,
    },
)
