"""Drift detection: reference statistics, per-column tests with multiple-testing control, reports.

Entry points: :func:`run_drift_check` (snapshots in, report and verdicts out),
:func:`compare` (reference statistics vs a column source) and :class:`DriftConfig`.

The names below are loaded on first use (PEP 562), so importing :mod:`.config` (pydantic only),
as the pipeline config does at parse time, does not pull in numpy or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops_provider.core.drift.config import DriftConfig, parse_config
    from airflow_mlops_provider.core.drift.engine import DriftResult, compare
    from airflow_mlops_provider.core.drift.reference import DriftError, ReferenceStats, reference_from_source
    from airflow_mlops_provider.core.drift.run import DriftCheck, run_drift_check

_MODULE_OF = {
    "DriftCheck": "run",
    "DriftConfig": "config",
    "DriftError": "reference",
    "DriftResult": "engine",
    "ReferenceStats": "reference",
    "compare": "engine",
    "parse_config": "config",
    "reference_from_source": "reference",
    "run_drift_check": "run",
}
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


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
