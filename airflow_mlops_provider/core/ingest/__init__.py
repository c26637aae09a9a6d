"""Ingestion: S3 / object-storage sources streamed into immutable, content-addressed snapshots.

``ingest_snapshot`` is the one entry point operators call; the rest are its parts: source
listing and opening (:mod:`.sources`), format readers (:mod:`.formats`) and the streaming
pipeline itself (:mod:`.run`). Name safety is :mod:`airflow_mlops_provider.core.paths`, shared
by every stage.
"""

from __future__ import annotations

from airflow_mlops_provider.core.ingest.errors import IngestError, SourceUnreachableError
from airflow_mlops_provider.core.ingest.formats import DEFAULT_BLOCK_BYTES
from airflow_mlops_provider.core.ingest.run import ingest_snapshot
from airflow_mlops_provider.core.ingest.sources import SourceObject
from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "DEFAULT_CHUNK_ROWS",
    "IngestError",
    "SourceObject",
    "SourceUnreachableError",
    "ingest_snapshot",
]
