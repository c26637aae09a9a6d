"""Why a retraining run started: schedule, manual, or the asset events behind it (with their numbers).

Pure logic over asset events as Airflow hands them to a task (objects with ``asset.name``,
``timestamp``, ``source_dag_id``, ``source_run_id``, ``extra`` and, for inlet events,
``created_dagruns``); no Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def event_key(event: Any) -> tuple[str, str]:
    """Identity of an asset event across the triggering-events and inlet-events views."""
    return event.asset.name, event.timestamp.isoformat()


def describe_event(event: Any, kinds: Mapping[str, str], recovered: bool) -> dict[str, Any]:
    """The event as JSON: asset, kind (``kinds[asset name]``, default ``"asset"``), time, producer, extra."""
    return {
        "asset": event.asset.name,
        "kind": kinds.get(event.asset.name, "asset"),
        "timestamp": event.timestamp.isoformat(),
        "source_dag_id": event.source_dag_id,
        "source_run_id": event.source_run_id,
        "extra": dict(event.extra or {}),
        "recovered": recovered,
    }


def dropped_events(timeline: Iterable[Any], dag_id: str, run_id: str) -> list[Any]:
    """Events that created no run of ``dag_id``, up to the first that created a run other than ``run_id``.

    With ``max_active_runs=1`` Airflow folds the events that arrive during a run into one queued run
    and creates no run for the ones after it; those belong to ``run_id``. ``timeline`` is sorted by time.
    """
    dropped = []
    for event in timeline:
        runs = {ref.run_id for ref in event.created_dagruns if ref.dag_id == dag_id}
        if runs - {run_id}:
            break  # from here on, events belong to a later run
        if not runs:
            dropped.append(event)
    return dropped


def trigger_cause(events: Sequence[Mapping[str, Any]], run_type: str) -> str:
    """The ``+``-joined kinds of the events (``"new_data+drift"``), else ``schedule`` or ``manual``."""
    kinds = sorted({e["kind"] for e in events})
    if kinds:
        return "+".join(kinds)
    return "schedule" if run_type == "scheduled" else "manual"


def trigger_record(events: Iterable[Mapping[str, Any]], run_type: str, run_id: str) -> dict[str, Any]:
    """``{"cause", "run_type", "run_id", "events"}`` with the events sorted by time."""
    listed = sorted((dict(e) for e in events), key=lambda e: e["timestamp"])
    return {
        "cause": trigger_cause(listed, run_type),
        "run_type": run_type,
        "run_id": run_id,
        "events": listed,
    }
