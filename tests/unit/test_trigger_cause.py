"""The trigger cause of a retraining run from its run type and asset events (pure, no Airflow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from airflow_mlops_provider.core.trigger import (
    describe_event,
    dropped_events,
    event_key,
    trigger_cause,
    trigger_record,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = {"new_data_x": "new_data", "drift_x": "drift"}


def event(asset: str, minutes: int, created: list[tuple[str, str]] = (), **extra) -> SimpleNamespace:
    return SimpleNamespace(
        asset=SimpleNamespace(name=asset),
        timestamp=T0 + timedelta(minutes=minutes),
        source_dag_id="producer",
        source_run_id=f"run_{minutes}",
        extra=extra,
        created_dagruns=[SimpleNamespace(dag_id=d, run_id=r) for d, r in created],
    )


def test_cause_without_events_comes_from_the_run_type():
    assert trigger_cause([], "scheduled") == "schedule"
    assert trigger_cause([], "manual") == "manual"
    assert trigger_cause([], "asset_triggered") == "manual"


def test_cause_joins_the_sorted_kinds_of_the_events():
    events = [{"kind": "new_data"}, {"kind": "drift"}, {"kind": "drift"}]
    assert trigger_cause(events, "asset_triggered") == "drift+new_data"


def test_describe_event_names_kind_time_producer_and_extra():
    described = describe_event(event("drift_x", 5, share=0.4), KINDS, recovered=True)
    assert described == {
        "asset": "drift_x",
        "kind": "drift",
        "timestamp": (T0 + timedelta(minutes=5)).isoformat(),
        "source_dag_id": "producer",
        "source_run_id": "run_5",
        "extra": {"share": 0.4},
        "recovered": True,
    }
    assert describe_event(event("other", 1), KINDS, False)["kind"] == "asset"
    assert event_key(event("drift_x", 5)) == ("drift_x", (T0 + timedelta(minutes=5)).isoformat())


def test_dropped_events_stop_at_the_first_event_of_a_later_run():
    timeline = [
        event("new_data_x", 1),  # created no run: dropped, belongs to this run
        event("new_data_x", 2, created=[("retrain", "this")]),  # this run's own
        event("drift_x", 3, created=[("other_dag", "x")]),  # another DAG's run only: dropped
        event("drift_x", 4, created=[("retrain", "next")]),  # a later run of ours starts here
        event("new_data_x", 5),
    ]
    dropped = dropped_events(timeline, "retrain", "this")
    assert [e.timestamp.minute for e in dropped] == [1, 3]


def test_record_lists_events_by_time():
    events = [
        describe_event(event("drift_x", 9), KINDS, False),
        describe_event(event("new_data_x", 2), KINDS, True),
    ]
    record = trigger_record(events, "asset_triggered", "r1")
    assert record["cause"] == "drift+new_data" and record["run_id"] == "r1"
    assert [e["asset"] for e in record["events"]] == ["new_data_x", "drift_x"]
    assert record["run_type"] == "asset_triggered"
