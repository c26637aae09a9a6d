"""Small glue tasks the generated DAGs need around the operators.

* :class:`TriggerCauseOperator` records why a retraining run started (schedule, new data,
  drift, manual) from the run type and ``triggering_asset_events``, for the decision record.
* :class:`ChampionCheckOperator` looks at the registered model's ``champion`` version and skips
  everything downstream when there is nothing to do: the new snapshot and the training config
  are the ones the champion was trained on (data-version-aware skip), or, for monitoring, no
  champion exists yet. It says why in the log and in its XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.skipmixin import SkipMixin

SNAPSHOT_TAG = "mlops.snapshot_sha256"
CONFIG_TAG = "mlops.training_config_hash"


class TriggerCauseOperator(BaseOperator):
    """Return ``{"cause", "run_type", "run_id", "events"}`` for the run that is executing.

    ``cause`` is ``"schedule"``, ``"manual"``, or the kinds of the assets whose events started
    the run (``"new_data"``, ``"drift"``, both joined with ``+`` when events were folded into
    one run). Every folded event is listed with its asset, time, producer and ``extra``.

    With ``max_active_runs=1`` Airflow creates one queued run for events that arrive while a run
    is active and drops the events that come after it (they create no run). The watched assets
    are therefore also this task's inlets: the events after this run's own latest one, up to the
    first event that created another run of this DAG, are read back and listed with
    ``"recovered": true``, so each event lands in exactly one run's decision record.
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, asset_kinds: dict[str, str], inlets: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__(inlets=list(inlets), **kwargs)
        self.asset_kinds = asset_kinds

    def execute(self, context: Any) -> dict[str, Any]:
        dag_run = context["dag_run"]
        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        triggering = context.get("triggering_asset_events") or {}
        events = {_key(e): self._describe(e, False) for asset in triggering for e in triggering[asset]}
        if events:
            latest = max(e["timestamp"] for e in events.values())
            for event in self._dropped_after(context, dag_run, latest):
                events.setdefault(_key(event), self._describe(event, True))
        listed = sorted(events.values(), key=lambda e: e["timestamp"])
        kinds = sorted({e["kind"] for e in listed})
        if kinds:
            cause = "+".join(kinds)
        elif run_type == "scheduled":
            cause = "schedule"
        else:
            cause = "manual"
        recovered = sum(e["recovered"] for e in listed)
        self.log.info(
            "Run %s started by %s (%d asset event(s), %d recovered from the previous run's window)",
            dag_run.run_id, cause, len(listed), recovered,
        )  # fmt: skip
        for e in listed:
            self.log.info("  %s event from %s at %s", e["kind"], e["source_dag_id"], e["timestamp"])
        return {"cause": cause, "run_type": run_type, "run_id": dag_run.run_id, "events": listed}

    def _dropped_after(self, context: Any, dag_run: Any, after: str) -> list[Any]:
        """Events of the inlets after ``after`` that created no run of this DAG, until one did."""
        inlet_events = context["inlet_events"]
        timeline = sorted(
            (event for asset in self.inlets for event in inlet_events[asset].after(after)),
            key=lambda event: event.timestamp,
        )
        dropped = []
        for event in timeline:
            runs = {ref.run_id for ref in event.created_dagruns if ref.dag_id == dag_run.dag_id}
            if runs - {dag_run.run_id}:
                break  # from here on, events belong to a later run
            if not runs:
                dropped.append(event)
        return dropped

    def _describe(self, event: Any, recovered: bool) -> dict[str, Any]:
        return {
            "asset": event.asset.name,
            "kind": self.asset_kinds.get(event.asset.name, "asset"),
            "timestamp": event.timestamp.isoformat(),
            "source_dag_id": event.source_dag_id,
            "source_run_id": event.source_run_id,
            "extra": dict(event.extra or {}),
            "recovered": recovered,
        }


def _key(event: Any) -> tuple[str, str]:
    """Identity of an asset event across the triggering-events and inlet-events views."""
    return event.asset.name, event.timestamp.isoformat()


class ChampionCheckOperator(BaseOperator, SkipMixin):
    """Skip the rest of the run when the champion makes it pointless, and say why.

    ``mode="unchanged"``: skip when the champion's ``mlops.snapshot_sha256`` tag equals the
    new snapshot's hash and its ``mlops.training_config_hash`` equals the hash of one of the
    training jobs this run would launch (``trainings``: the training operator's arguments, one
    dict per grid point; hashed exactly as the launcher tags the runs it starts).
    ``mode="require_champion"``: skip when the model has no ``champion`` alias yet (monitoring
    before the first promotion).
    """

    template_fields: Sequence[str] = ("snapshot",)
    ui_color = "#fdf6e3"

    def __init__(
        self,
        *,
        model_name: str,
        mode: str = "unchanged",
        snapshot: dict[str, Any] | None = None,
        trainings: Sequence[dict[str, Any]] = (),
        mlflow_conn_id: str = "mlflow_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("unchanged", "require_champion"):
            raise ValueError(f"mode: expected 'unchanged' or 'require_champion', got {mode!r}")
        self.model_name = model_name
        self.mode = mode
        self.snapshot = snapshot
        self.trainings = list(trainings)
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        champion = self._champion()
        result = self._decide(champion)
        self.log.info("%s", result["reason"])
        if result["skip"]:
            context["ti"].xcom_push(key="return_value", value=result)
            self.skip(ti=context["ti"], tasks=self.get_flat_relatives(upstream=False))
        return result

    def _decide(self, champion: dict[str, Any] | None) -> dict[str, Any]:
        base = {"model_name": self.model_name, "champion_version": champion["version"] if champion else None}
        if self.mode == "require_champion":
            if champion is None:
                reason = f"No champion for model {self.model_name!r} yet: nothing to monitor, skipping."
                return {**base, "skip": True, "reason": reason}
            return {**base, "skip": False, "reason": f"Monitoring champion version {champion['version']}."}
        sha = (self.snapshot or {}).get("sha256")
        if champion is None:
            return {**base, "skip": False, "reason": f"No champion for {self.model_name!r} yet: training."}
        tags = champion["tags"]
        same_data = bool(sha) and tags.get(SNAPSHOT_TAG) == sha
        same_config = tags.get(CONFIG_TAG) in self.config_hashes()
        if same_data and same_config:
            reason = (
                f"Skipping training and promotion: snapshot {sha[:12]} and training config "
                f"{tags[CONFIG_TAG][:12]} are the ones champion version {champion['version']} was trained on."
            )
            return {**base, "skip": True, "reason": reason, "snapshot_sha256": sha}
        why = []
        if not same_data:
            why.append(f"data changed ({str(tags.get(SNAPSHOT_TAG))[:12]} -> {str(sha)[:12]})")
        if not same_config:
            why.append("training config changed")
        reason = f"Training: {' and '.join(why)} since champion version {champion['version']}."
        return {**base, "skip": False, "reason": reason, "snapshot_sha256": sha}

    def config_hashes(self) -> list[str]:
        """The training config hash of every job this run would launch, on the new snapshot."""
        import dataclasses

        from airflow_mlops_provider.core.training.launcher import TrainingJob

        names = {f.name for f in dataclasses.fields(TrainingJob)} - {"snapshot"}
        return [
            TrainingJob(
                snapshot=dict(self.snapshot or {}), **{k: v for k, v in t.items() if k in names}
            ).config_hash()
            for t in self.trainings
        ]

    def _champion(self) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException

        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        client = MlflowHook(self.mlflow_conn_id).client
        try:
            version = client.get_model_version_by_alias(self.model_name, "champion")
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return {"version": version.version, "run_id": version.run_id, "tags": dict(version.tags or {})}
