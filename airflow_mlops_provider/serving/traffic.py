"""Who answers a request of one pipeline: the primary alias, a canary by weight, a shadow copy.

The rollout policy lives in the registry, as tags of the registered model, so whatever drives a
rollout (the retrain DAG, a person in the MLflow UI) changes traffic without touching the service:

- ``mlops.canary_weight``: percent of requests (0 to 100) answered by the ``canary`` alias;
- ``mlops.shadow``: ``canary`` to score a copy of every request with the canary while the
  primary answers (the copy's output is logged and measured, never returned).

The background follower refreshes both slots and the policy; a request reads the router once
(an immutable :class:`~.routing.Router`), so a policy change is one reference swap. While the
canary alias has no loaded model, all traffic goes to the primary whatever the weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_mlops_provider.core.names import CANARY, TAG_CANARY_WEIGHT, TAG_SHADOW
from airflow_mlops_provider.serving.routing import Router
from airflow_mlops_provider.serving.slot import ModelSlot, Served

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """The slot that answers a request with the model it holds now (None: nothing loaded yet), and
    the slot that scores a shadow copy (if any)."""

    answer: ModelSlot
    served: Served | None
    shadow: ModelSlot | None


class PipelineTraffic:
    """The slots of one pipeline (primary and canary) and its current routing policy."""

    def __init__(self, model_name: str, alias: str) -> None:
        self.primary = ModelSlot(model_name, alias)
        # a pipeline that serves the canary alias itself has no canary of its own
        self.canary = ModelSlot(model_name, CANARY, keeps=False) if alias != CANARY else None
        self.router = Router({alias: 100.0})
        self.canary_weight = 0.0

    @property
    def slots(self) -> list[ModelSlot]:
        return [self.primary] if self.canary is None else [self.primary, self.canary]

    def refresh(self, settings: TrackingSettings) -> None:
        """Follow both aliases, then the rollout policy in the registered model's tags."""
        for slot in self.slots:
            slot.refresh(settings)
        if self.canary is None:
            return
        try:
            tags = settings.client().get_registered_model(self.primary.model_name).tags or {}
        except Exception as err:  # the registry is down: keep routing as before
            log.warning("Reading the rollout policy of %s failed: %s", self.primary.model_name, err)
            return
        self.set_policy(_weight(tags.get(TAG_CANARY_WEIGHT)), tags.get(TAG_SHADOW) == CANARY)

    def set_policy(self, canary_weight: float, shadow: bool) -> None:
        """Send ``canary_weight`` percent to the canary (none while it has no model), shadow or not."""
        ready = self.canary is not None and self.canary.current() is not None
        weight = canary_weight if ready else 0.0
        weights = {self.primary.alias: 100.0 - weight, CANARY: weight}
        self.router = Router(weights, shadow=CANARY if shadow and ready else None)
        self.canary_weight = weight

    def route(self, caller_key: str | None) -> Route:
        """The slot for this caller (sticky per key) and the shadow slot, if one scores a copy.

        A caller routed to a canary that no longer holds a model (its alias went while the policy
        still gave it traffic) is answered by the primary.
        """
        router = self.router  # read once: a policy swap mid-request changes nothing here
        alias = router.choose(caller_key)
        shadow = self.canary if router.shadow_for(alias) == CANARY else None
        canary = self.canary.current() if alias == CANARY and self.canary is not None else None
        if self.canary is not None and canary is not None:
            return Route(self.canary, canary, shadow)
        return Route(self.primary, self.primary.current(), shadow)


def _weight(value: str | None) -> float:
    """The tag's percentage, clamped to [0, 100]; a missing or unreadable tag means 0."""
    try:
        weight = float(value) if value not in (None, "") else 0.0
    except ValueError:
        log.warning("Ignoring %s=%r: not a number", TAG_CANARY_WEIGHT, value)
        return 0.0
    return min(max(weight, 0.0), 100.0) if weight == weight else 0.0
