"""Deprecated module: the glue operators live in ``operators.trigger`` and ``operators.champion``."""

from airflow_mlops_provider.operators.base import renamed
from airflow_mlops_provider.operators.champion import CheckChampionOperator
from airflow_mlops_provider.operators.trigger import RecordTriggerCauseOperator

__getattr__ = renamed(
    __name__,
    {"TriggerCauseOperator": RecordTriggerCauseOperator, "ChampionCheckOperator": CheckChampionOperator},
)
