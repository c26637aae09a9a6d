"""One rollout step's verdict from the service's counters since the step began (what the trigger polls)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_mlops_provider.core.rollout.scrape import ServiceUnreachable, scrape_async
from airflow_mlops_provider.core.rollout.signals import (
    Guardrails,
    Key,
    TrafficSnapshot,
    difference,
    read_guardrails,
)

HELD, BREACH, STARVED = "held", "breach", "starved"


@dataclass(frozen=True)
class StepWatch:
    """What a step waits for: ``min_requests`` to the canary and ``hold_until``, within the guardrails,
    before ``deadline``."""

    urls: list[str]
    pipeline: str
    canary: Key
    champion: Key
    baseline: TrafficSnapshot
    guardrails: Guardrails
    min_requests: int
    hold_until: datetime
    deadline: datetime

    @classmethod
    def from_trigger(cls, kwargs: Mapping[str, Any]) -> StepWatch:
        return cls(
            urls=list(kwargs["urls"]),
            pipeline=kwargs["pipeline"],
            canary=(kwargs["canary"][0], kwargs["canary"][1]),
            champion=(kwargs["champion"][0], kwargs["champion"][1]),
            baseline=TrafficSnapshot.from_dict(kwargs["baseline"]),
            guardrails=Guardrails.from_dict(kwargs["guardrails"]),
            min_requests=int(kwargs["min_requests"]),
            hold_until=datetime.fromisoformat(kwargs["hold_until"]),
            deadline=datetime.fromisoformat(kwargs["deadline"]),
        )

    async def poll(self) -> dict[str, Any] | None:
        """The step's event once it is decided, else None (read again later)."""
        try:
            snapshot = await scrape_async(self.urls, self.pipeline)
        except ServiceUnreachable as err:
            return self.judge(None, str(err))
        return self.judge(snapshot)

    def judge(self, snapshot: TrafficSnapshot | None, error: str | None = None) -> dict[str, Any] | None:
        """The event for the counters ``snapshot`` (None: unreadable, ``error`` says why)."""
        now = datetime.now(UTC)
        late = now >= self.deadline
        if snapshot is None:
            return _event(STARVED, None, None, f"{error}; gave up at the step's deadline") if late else None
        delta = difference(snapshot, self.baseline)
        reading = read_guardrails(
            delta, canary=self.canary, champion=self.champion, guardrails=self.guardrails
        )
        counts = delta.counts(*self.canary)
        seen = counts.scored + counts.errors
        if seen >= self.min_requests and reading.breached:
            return _event(BREACH, snapshot, reading.to_dict(), "; ".join(reading.breaches))
        if seen >= self.min_requests and now >= self.hold_until:
            return _event(HELD, snapshot, reading.to_dict(), None)
        if late:
            why = f"the challenger saw {seen:g} of the {self.min_requests} requests a step needs"
            return _event(STARVED, snapshot, reading.to_dict(), why)
        return None


def _event(
    status: str, snapshot: TrafficSnapshot | None, reading: dict[str, Any] | None, why: str | None
) -> dict[str, Any]:
    return {
        "status": status,
        "reading": reading,
        "snapshot": snapshot.to_dict() if snapshot is not None else None,
        "why": why,
        "at": datetime.now(UTC).isoformat(),
    }
