"""One error hierarchy for every stage: a permanent branch and a transient branch.

Operators turn a :class:`PermanentError` into a task failure without retry in one place (the
base operator); a :class:`TransientError` is left to Airflow's retries. Stage errors subclass one
of the two (and a builtin such as ``ValueError`` where callers already catch that).
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base of every error the provider raises on purpose; the message says what and why."""


class PermanentError(MlopsError):
    """Retrying the same task with the same input fails the same way: bad data, config or names."""


class TransientError(MlopsError):
    """An outage or a race: a retry of the same task can complete the work."""
