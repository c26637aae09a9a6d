"""Errors of the validation step."""

from __future__ import annotations

from typing import Any

from airflow_mlops_provider.core.errors import PermanentError


class ValidationConfigError(PermanentError, ValueError):
    """The suite or validation settings are wrong (unknown expectation, bad argument, unsafe path)."""


class ValidationFailed(PermanentError, RuntimeError):
    """The data failed its suite; the message lists each failed expectation."""

    def __init__(self, message: str, outcome: dict[str, Any]) -> None:
        super().__init__(message)
        self.outcome = outcome
