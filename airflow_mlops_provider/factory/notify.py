"""Deprecated module: the notifier lives in ``notifications.pipeline``."""

from airflow_mlops_provider.notifications import pipeline
from airflow_mlops_provider.operators.base import renamed

__getattr__ = renamed(__name__, {"PipelineNotifier": pipeline.PipelineNotifier})
