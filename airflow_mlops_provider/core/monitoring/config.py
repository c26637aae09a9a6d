"""Performance monitoring settings: which metric, the degradation rule, bootstrap and estimation.

One schema, used by the pipeline config (``monitoring.performance``) and by the operator.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PerformanceConfig(BaseModel):
    """How a window's performance is measured, estimated and judged against the champion's reference.

    The rule compares ``metric`` on a window with the champion's value for it in its decision
    record (measured on the held-out split when it was promoted):

    - ``significant`` (default): degraded when the whole bootstrap interval at ``confidence``
      lies on the worse side of the reference by more than ``tolerance`` (so a drop must be
      larger the smaller the window);
    - ``relative_drop``: degraded when the value is worse than the reference by more than
      ``max_relative_drop`` of it;
    - ``floor``: degraded when the value is worse than ``floor``.

    A window with fewer than ``min_labels`` labelled rows gets "not enough labels", never a verdict.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str | None = Field(
        default=None, description="Metric the rule judges; None: the pipeline's primary metric"
    )
    metrics: list[str] | None = Field(
        default=None, description="Metrics measured and reported per window; None: the evaluation metrics"
    )
    rule: Literal["significant", "relative_drop", "floor"] = Field(
        default="significant",
        description=(
            "significant: the interval lies wholly below the reference (minus tolerance); "
            "relative_drop: worse by more than max_relative_drop; floor: worse than floor"
        ),
    )
    floor: float | None = Field(default=None, description="Rule floor: the worst acceptable value")
    max_relative_drop: float = Field(
        default=0.05, gt=0, lt=1, description="Rule relative_drop: the largest acceptable loss, as a share"
    )
    tolerance: float = Field(
        default=0.0, ge=0, description="Rule significant: an absolute margin a drop must exceed"
    )
    min_labels: int = Field(
        default=100, ge=1, description="Labelled rows a window needs before the rule gives a verdict"
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Level of the confidence intervals")
    resamples: int = Field(default=200, ge=20, le=5000, description="Bootstrap resamples per window")
    seed: int = Field(default=0, description="Seed of the bootstrap")
    estimate: bool = Field(
        default=True,
        description="Estimate performance before labels arrive (CBPE for classifiers, DLE for regressors)",
    )
    trigger_on_estimate: bool = Field(
        default=False,
        description=(
            "Let an estimated degradation fire the performance trigger when a window has too few labels"
        ),
    )

    @model_validator(mode="after")
    def _rule_needs(self) -> PerformanceConfig:
        if self.rule == "floor" and self.floor is None:
            raise ValueError("rule 'floor' needs 'floor' (the worst acceptable value of the metric)")
        return self


def parse_performance(config: PerformanceConfig | dict[str, Any] | None) -> PerformanceConfig:
    """The settings from a model, a dict (XCom, YAML) or None (all defaults)."""
    if isinstance(config, PerformanceConfig):
        return config
    return PerformanceConfig.model_validate(config or {})
