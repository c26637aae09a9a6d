"""Errors raised by ingestion; every message names the object, column or field at fault."""

from __future__ import annotations

from airflow_mlops_provider.core.errors import MlopsError, PermanentError, TransientError


class IngestError(PermanentError, ValueError):
    """Bad input (missing object, corrupt file, schema change...): retrying will not help."""


class NothingListedError(IngestError):
    """A source names no object: a missing path, an empty prefix, a glob that matches nothing."""


class SourceUnreachableError(TransientError, ConnectionError):
    """The storage endpoint could not be reached after the configured attempts: retrying later may help."""


class EmptyWindowError(MlopsError):
    """A windowed ingest found nothing in its window (no object, or no row left after the filter).

    Neither permanent nor transient: a monitoring run skips on it, a run that must have data fails.
    """
