"""Re-export until the builder imports the new home (``notifications.pipeline``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlops_provider.notifications import pipeline
from airflow_mlops_provider.notifications.pipeline import PipelineNotifier

__all__ = ["PipelineNotifier", "notifier"]


def notifier(pipeline_name: str, event: str, targets: Sequence[Mapping[str, Any]]) -> list[PipelineNotifier]:
    """Until the builder passes ``decision_task_id``: a promotion's decision is the ``gate`` task's."""
    return pipeline.notifier(pipeline_name, event, targets, "gate" if event == "promotion" else None)
