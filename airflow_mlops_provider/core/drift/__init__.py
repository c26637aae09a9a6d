"""Drift detection: reference statistics, per-column tests with multiple-testing control, reports.

Entry points: :func:`run_drift_check` (snapshots in, report and verdicts out),
:func:`compare` (reference statistics vs a column source) and :class:`DriftConfig`.
"""

from airflow_mlops_provider.core.drift.config import DriftConfig, parse_config
from airflow_mlops_provider.core.drift.engine import DriftResult, compare
from airflow_mlops_provider.core.drift.reference import DriftError, ReferenceStats, reference_from_source
from airflow_mlops_provider.core.drift.run import DriftCheck, run_drift_check

__all__ = [
    "DriftCheck",
    "DriftConfig",
    "DriftError",
    "DriftResult",
    "ReferenceStats",
    "compare",
    "parse_config",
    "reference_from_source",
    "run_drift_check",
]
