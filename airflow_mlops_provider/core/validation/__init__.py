"""Snapshot validation with Great Expectations 1.x plus builtin row-count, schema and null-rate checks."""

from __future__ import annotations

from airflow_mlops_provider.core.validation.errors import ValidationConfigError, ValidationFailed
from airflow_mlops_provider.core.validation.run import validate_snapshot
from airflow_mlops_provider.core.validation.suite import infer_suite, load_suite_file, normalise_suite

__all__ = [
    "ValidationConfigError",
    "ValidationFailed",
    "infer_suite",
    "load_suite_file",
    "normalise_suite",
    "validate_snapshot",
]
