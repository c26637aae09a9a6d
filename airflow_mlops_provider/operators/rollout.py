"""Roll a challenger out to live traffic step by step before it becomes champion.

``rollout.strategy`` (:class:`~airflow_mlops_provider.core.rollout.config.RolloutConfig`):

* ``direct``: move ``champion`` at once (what :class:`PromoteModelOperator` does);
* ``canary``: point the ``canary`` alias at the challenger and give it ``steps`` percent of the
  prediction service's requests, one step after another;
* ``shadow``: let the challenger score a copy of every request the champion answers.

Each step holds (deferred: the worker slot is free) until ``hold`` passed and the challenger saw
``min_requests``, while a trigger reads the service's ``/metrics``. A guardrail breach (error rate,
p99 latency, prediction distance against the champion), or a step that waits past
``max_step_wait``, rolls back: canary weight 0, ``canary`` alias removed, ``champion`` untouched,
the version tagged rolled back, and the task fails with the reason (no retry). After the last
step ``champion`` moves as a direct promotion would (same checks, same pool). Every step, reading
and decision is appended to the decision record. The ``rollback_<pipeline>`` DAG undoes a rollout
in progress; the rollout then fails at its next step, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops_provider.operators.promote import PromoteModelOperator, persist_links

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops_provider.core.payloads import PromotionResult
    from airflow_mlops_provider.core.rollout.config import RolloutConfig
    from airflow_mlops_provider.core.rollout.signals import TrafficSnapshot
    from airflow_mlops_provider.core.rollout.state import Rollout


class RolloutModelOperator(PromoteModelOperator):
    """Promote through a canary or shadow rollout guarded by the prediction service's metrics.

    Run it in the model's promotion pool, like :class:`PromoteModelOperator` (a deferred step does
    not hold the slot). Returns the promotion's result, with ``"rollout"`` listing the steps.

    :param rollout: ``RolloutConfig`` fields (strategy, service_urls, steps, hold, min_requests,
        max_step_wait, poll, guardrails, service_pipeline).
    """

    template_fields: Sequence[str] = (*PromoteModelOperator.template_fields, "rollout")
    template_fields_renderers = {**PromoteModelOperator.template_fields_renderers, "rollout": "json"}
    ui_color = "#d6ecf5"

    def __init__(self, *, rollout: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout

    def _config(self) -> RolloutConfig:
        from airflow_mlops_provider.core.rollout.config import parse_rollout

        return parse_rollout(dict(self.rollout))

    def execute(self, context: Context) -> PromotionResult:
        from airflow_mlops_provider.core.rollout.run import begin

        config = self._config()
        if config.strategy == "direct":
            return super().execute(context)
        decision = self.decision
        approval = self._find_approval(context) if decision.get("require_approval") else None
        dag_run = context["dag_run"]
        rollout = begin(
            self.mlflow_settings(), decision, config=config, approval=approval,
            request_id=f"{dag_run.dag_id}/{dag_run.run_id}",
        )  # fmt: skip
        if rollout is None:
            self.log.info("No other champion to compare %s v%s with: promoting directly", *_name(decision))
            return super().execute(context)
        self._hold(context, config, rollout, 0, None)

    def _hold(
        self,
        context: Context,
        config: RolloutConfig,
        rollout: Rollout,
        index: int,
        baseline: TrafficSnapshot | None,
    ) -> NoReturn:
        """Set step ``index``'s traffic, note it, and defer until the step is decided (the task's
        links, read when it defers, already point at the version and its decision record)."""
        from airflow_mlops_provider.core.names import CANARY, CHAMPION
        from airflow_mlops_provider.core.rollout import state
        from airflow_mlops_provider.core.rollout.scrape import ServiceUnreachable, scrape
        from airflow_mlops_provider.triggers.rollout import RolloutStepTrigger

        settings = self.mlflow_settings()
        run_id = self.decision.get("source_run_id")
        persist_links(context, settings, rollout.model_name, rollout.version, run_id)
        pipeline = config.service_pipeline or self.pipeline or rollout.model_name
        if baseline is None:
            try:
                baseline = scrape(config.service_urls, pipeline)
            except ServiceUnreachable as err:  # nothing was rolled out yet: leave nothing behind
                state.abandon(settings, rollout, str(err))
                raise
        weight = config.weights[index]
        state.set_step(settings, rollout, weight)
        share = f"{weight:g}% of requests" if config.strategy == "canary" else "a copy of every request"
        text = f"step {index + 1}/{len(config.weights)}: v{rollout.version} gets {share}"
        state.note(settings, rollout, "step", text, step=index + 1, weight=weight)
        self.log.info("%s (champion v%s)", text, rollout.champion)
        started = datetime.now(UTC)
        trigger = RolloutStepTrigger(
            urls=list(config.service_urls),
            pipeline=pipeline,
            canary=[CANARY, rollout.version],
            champion=[CHAMPION, rollout.champion],
            baseline=baseline.to_dict(),
            guardrails=config.guardrails.model_dump(),
            min_requests=config.min_requests,
            hold_until=(started + timedelta(seconds=config.hold)).isoformat(),
            deadline=(started + timedelta(seconds=config.max_step_wait)).isoformat(),
            poll_s=config.poll,
            carry={"rollout": rollout.to_dict(), "index": index},
        )
        self.defer(
            trigger=trigger,
            method_name="resume",
            timeout=timedelta(seconds=config.max_step_wait + 2 * config.poll + 60),
        )

    def resume(self, context: Context, event: dict[str, Any]) -> PromotionResult:
        """A step was decided: roll back, go to the next step, or promote after the last one."""
        from airflow_mlops_provider.core.rollout import state
        from airflow_mlops_provider.core.rollout.run import describe
        from airflow_mlops_provider.core.rollout.signals import TrafficSnapshot
        from airflow_mlops_provider.core.rollout.watch import HELD

        config, settings = self._config(), self.mlflow_settings()
        current = state.Rollout.from_dict(event["carry"]["rollout"])
        index = int(event["carry"]["index"])
        try:
            state.check_ours(settings, current)
        except state.RolloutAborted as err:
            raise AirflowFailException(str(err)) from err
        seen = describe(event.get("reading"))
        step = f"step {index + 1}/{len(config.weights)}"
        if event["status"] != HELD:
            reason = f"{step} {event['status']}: {event.get('why')}"
            state.roll_back(settings, current, reason, reading=event.get("reading"))
            raise AirflowFailException(
                f"Rolled back {current.model_name} v{current.version}: {reason} ({seen}); "
                f"champion stays v{current.champion}"
            )
        reading = event.get("reading")
        state.note(settings, current, "held", f"{step} held: {seen}", step=index + 1, reading=reading)
        self.log.info("%s held: %s", step, seen)
        if index + 1 < len(config.weights):
            self._hold(context, config, current, index + 1, TrafficSnapshot.from_dict(event["snapshot"]))
        return self._finish(context, current)

    def _finish(self, context: Context, rollout: Rollout) -> PromotionResult:
        """Move ``champion`` as a direct promotion does, then end the rollout."""
        from airflow_mlops_provider.core.rollout import state

        settings = self.mlflow_settings()
        try:
            result = super().execute(context)
        except BaseException as err:  # refused or failed: the canary must not keep its traffic
            state.roll_back(settings, rollout, f"promotion after the rollout failed: {err}")
            raise
        state.clear(settings, rollout)
        state.note(settings, rollout, "promoted", f"champion moved to v{rollout.version} after the rollout")
        return result


def _name(decision: Mapping[str, Any]) -> tuple[str, str]:
    return str(decision.get("model_name")), str(decision.get("version"))
