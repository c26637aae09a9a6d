"""Hold one rollout step while the triggerer watches the prediction service's metrics.

The trigger reads the service's ``/metrics`` every ``poll_s`` seconds and fires once:

- ``breach``: the challenger saw at least ``min_requests`` this step and a guardrail breached;
- ``held``: it saw ``min_requests`` and ``hold_until`` passed, within the guardrails;
- ``starved``: ``deadline`` passed first (too little traffic, or the service unreachable).

The event carries the guardrail reading, the latest counters (the next step's baseline) and
``carry``, the operator's own state: the event alone resumes the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class RolloutStepTrigger(BaseTrigger):
    """Wait until a rollout step is held, breached or starved (see the module docstring)."""

    def __init__(
        self,
        *,
        urls: list[str],
        pipeline: str,
        canary: list[str],
        champion: list[str],
        baseline: dict[str, Any],
        guardrails: dict[str, Any],
        min_requests: int,
        hold_until: str,
        deadline: str,
        poll_s: float,
        carry: dict[str, Any],
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is unannotated
        self.urls, self.pipeline = list(urls), pipeline
        self.canary, self.champion = list(canary), list(champion)
        self.baseline, self.guardrails = baseline, guardrails
        self.min_requests, self.poll_s = min_requests, poll_s
        self.hold_until, self.deadline = hold_until, deadline
        self.carry = carry

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "urls": self.urls,
                "pipeline": self.pipeline,
                "canary": self.canary,
                "champion": self.champion,
                "baseline": self.baseline,
                "guardrails": self.guardrails,
                "min_requests": self.min_requests,
                "hold_until": self.hold_until,
                "deadline": self.deadline,
                "poll_s": self.poll_s,
                "carry": self.carry,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops_provider.core.rollout.watch import StepWatch

        watch = StepWatch.from_trigger(self.serialize()[1])
        while True:
            event = await watch.poll()
            if event is not None:
                yield TriggerEvent({**event, "carry": self.carry})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_s)
