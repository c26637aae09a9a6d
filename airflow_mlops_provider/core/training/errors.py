"""Training errors, and which worker failures a torchrun restart cannot fix."""

from __future__ import annotations

from airflow_mlops_provider.core.errors import MlopsError, PermanentError


class TrainingError(MlopsError, RuntimeError):
    """Training failed; the message says why (the workers' tracebacks are in the task log)."""


class EntryPointError(PermanentError, TrainingError):
    """The training entry point is malformed, cannot be imported or is not callable."""


_FATAL_TYPES = (
    "EntryPointError",
    "NonFiniteLossError",
    "TabularModelError",
    "SnapshotError",
    "CheckpointError",
)


def is_fatal(err: BaseException) -> bool:
    """Deterministic failures (bad entry point, NaN loss, bad data): restarting would fail the same way."""
    return any(cls.__name__ in _FATAL_TYPES for cls in type(err).__mro__)
