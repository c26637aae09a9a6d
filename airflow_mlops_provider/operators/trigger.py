"""Record why a retraining run started, for the decision record (schedule, manual, new data, drift)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_mlops_provider.core.trigger import describe_event, dropped_events, event_key, trigger_record


class RecordTriggerCauseOperator(BaseOperator):
    """Return ``{"cause", "run_type", "run_id", "events"}`` for the run that is executing.

    ``cause`` is ``"schedule"``, ``"manual"``, or the kinds of the assets whose events started
    the run (``"new_data"``, ``"drift"``, both joined with ``+`` when events were folded into
    one run). Every folded event is listed with its asset, time, producer and ``extra``.

    With ``max_active_runs=1`` Airflow creates one queued run for events that arrive while a run
    is active and drops the events that come after it (they create no run). The watched assets
    are therefore also this task's inlets: the events after this run's own latest one, up to the
    first event that created another run of this DAG, are read back and listed with
    ``"recovered": true``, so each event lands in exactly one run's decision record.

    :param asset_kinds: asset name -> kind (``"new_data"``, ``"drift"``); other assets are ``"asset"``.
    :param inlets: the watched assets.
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, asset_kinds: Mapping[str, str], inlets: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__(inlets=list(inlets), **kwargs)
        self.asset_kinds = dict(asset_kinds)

    def execute(self, context: Any) -> dict[str, Any]:
        dag_run = context["dag_run"]
        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        triggering = context.get("triggering_asset_events") or {}
        events = {
            event_key(e): describe_event(e, self.asset_kinds, False)
            for asset in triggering
            for e in triggering[asset]
        }
        if events:
            latest = max(e["timestamp"] for e in events.values())
            inlet_events = context["inlet_events"]
            timeline = sorted(
                (event for asset in self.inlets for event in inlet_events[asset].after(latest)),
                key=lambda event: event.timestamp,
            )
            for event in dropped_events(timeline, dag_run.dag_id, dag_run.run_id):
                events.setdefault(event_key(event), describe_event(event, self.asset_kinds, True))
        record = trigger_record(events.values(), run_type, dag_run.run_id)
        listed = record["events"]
        self.log.info(
            "Run %s started by %s (%d asset event(s), %d recovered from the previous run's window)",
            dag_run.run_id, record["cause"], len(listed), sum(e["recovered"] for e in listed),
        )  # fmt: skip
        for e in listed:
            self.log.info("  %s event from %s at %s", e["kind"], e["source_dag_id"], e["timestamp"])
        return record
