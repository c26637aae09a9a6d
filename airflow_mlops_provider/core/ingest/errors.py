"""Errors raised by ingestion; every message names the object, column or field at fault."""

from __future__ import annotations


class IngestError(ValueError):
    """Bad input (missing object, corrupt file, schema change...): retrying will not help."""


class SourceUnreachableError(ConnectionError):
    """The storage endpoint could not be reached after the configured attempts: retrying later may help."""
