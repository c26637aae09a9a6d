"""Rollout settings: how a challenger that passed the gate reaches traffic before it becomes champion.

One schema, used by the pipeline config (``rollout:``) and by the rollout operator.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["direct", "canary", "shadow"]


class GuardrailSettings(BaseModel):
    """Bounds the canary must stay within at every step, read from the prediction service's metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Largest share of the canary's requests that may fail"
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, description="Largest p99 latency of the canary (ms); None: not bounded"
    )
    max_p99_ratio: float | None = Field(
        default=2.0, gt=0, description="Largest canary p99 / champion p99; None: not compared"
    )
    max_prediction_distance: float = Field(
        default=0.2,
        ge=0,
        description=(
            "Largest distance of the canary's predictions from the champion's: total variation of the "
            "class shares (classifiers), relative difference of the mean (regressors)"
        ),
    )


class RolloutConfig(BaseModel):
    """``direct`` moves ``champion`` at once; ``canary`` sends growing shares of traffic to the
    challenger (``steps``), ``shadow`` lets it score copies of the champion's requests; both hold each
    step for ``hold`` and until the challenger saw ``min_requests``, judge the guardrails, and either
    go on (and finally move ``champion``) or roll back (canary weight 0, ``champion`` untouched)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Field(
        default="direct",
        description="direct: move champion at once; canary: weight steps; shadow: compare on copies",
    )
    service_urls: list[str] = Field(
        default_factory=list,
        description="Base URLs of the prediction service replicas whose /metrics the guardrails read",
    )
    service_pipeline: str | None = Field(
        default=None, description="The pipeline's name in the service (--pipeline NAME=...); None: this one"
    )
    steps: list[float] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0, 100.0],
        min_length=1,
        description="Canary: percent of requests the challenger answers at each step, increasing",
    )
    hold: float = Field(default=300.0, ge=0, description="Seconds each step lasts at least")
    min_requests: int = Field(
        default=100,
        ge=1,
        description=(
            "Requests the challenger must answer (canary) or score (shadow) in a step before it is judged"
        ),
    )
    max_step_wait: float = Field(
        default=3600.0,
        gt=0,
        description="A step that has not seen min_requests after this many seconds rolls back",
    )
    poll: float = Field(default=15.0, gt=0, description="Seconds between two reads of the service's metrics")
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)

    @model_validator(mode="after")
    def _consistent(self) -> RolloutConfig:
        if self.strategy != "direct" and not self.service_urls:
            raise ValueError(
                f"rollout strategy {self.strategy!r} needs service_urls (the service's /metrics)"
            )
        weights = self.steps
        if any(not 0 < w <= 100 for w in weights) or any(a >= b for a, b in pairwise(weights)):
            raise ValueError(f"rollout steps must increase within (0, 100], got {weights}")
        if self.max_step_wait < self.hold:
            raise ValueError(f"max_step_wait ({self.max_step_wait}s) is shorter than hold ({self.hold}s)")
        return self

    @property
    def weights(self) -> list[float]:
        """The canary weight of each step (a shadow rollout has one step at weight 0)."""
        return list(self.steps) if self.strategy == "canary" else [0.0]

    @property
    def longest_s(self) -> float:
        """How long the whole rollout may take (every step waiting its longest)."""
        return len(self.weights) * (self.max_step_wait + self.poll)


def parse_rollout(value: RolloutConfig | dict[str, Any] | None) -> RolloutConfig:
    """The settings from a config section (None: direct)."""
    if isinstance(value, RolloutConfig):
        return value
    return RolloutConfig.model_validate(value or {})
