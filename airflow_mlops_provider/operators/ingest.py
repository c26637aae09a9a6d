"""Ingest S3 / object-storage data into an immutable snapshot (issue 3).

The operator resolves credentials (``S3Hook`` for ``s3://`` sources, the AWS connection for an
``s3://`` artifact root), calls :func:`airflow_mlops_provider.core.ingest.ingest_snapshot`, and
turns the snapshot reference into the XCom return value and the outlet asset event's ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class IngestSnapshotOperator(MlopsBaseOperator):
    """Read one object, a prefix or a glob (CSV, Parquet, JSON Lines; gzip too) into a snapshot.

    :param source: ``s3://bucket/key``, ``s3://bucket/prefix/``, ``s3://bucket/day=*/part-*.csv.gz``,
        any fsspec URI (``file:///...``) or an ``ObjectStoragePath``; or a list of them. Templated.
    :param artifact_root: where snapshots live (``s3://...`` or ``file://...``). Templated.
    :param pipeline: pipeline name, the first path component under the artifact root. Templated.
    :param format: ``csv``, ``parquet`` or ``jsonl``; None detects it from each key's suffix.
    :param compression: ``gzip`` or None (``.gz`` keys are detected).
    :param schema: column -> Arrow type name (``{"id": "int64"}``), fixing types and the column set.
    :param csv_options: ``delimiter``, ``quote_char``, ``null_values``, ``column_types``...;
        ``null_values`` (cells read as missing in every column, strings too) defaults to the
        empty cell, ``NA``, ``NULL``, ``NaN`` and the other Arrow/pandas markers.
    :param split: ``{"by": "hash", "key": "id", "seed": 0, "fractions": {...}}`` or
        ``{"by": "time", "column": "ts", "validation_from": ..., "test_from": ...}``;
        None: one ``data`` split.
    :param chunk_rows: rows per Parquet row group and per in-memory chunk (bounds memory).
    :param block_mb: bytes read and parsed at a time from CSV / JSON streams, in MiB.
    :param aws_conn_id: Airflow AWS connection for S3 sources and an S3 artifact root. Templated.
    :param connect_attempts: attempts per storage call when the endpoint cannot be reached.
    :param window: read one monitoring window only: ``{"by": "mtime" | "partition" | "column",
        "column": <time column, for by: column>, "start": ..., "end": ..., "length": <seconds>}``
        with the half-open interval ``[start, end)`` as datetimes or ISO strings (naive = UTC).
        Without ``start`` and ``end`` it is the run's data interval, or for a run without one
        the ``length`` seconds (default 3600) up to when it was due. ``mtime`` keeps the
        objects modified in the interval (an object without a modification time is kept, with a
        warning); ``partition`` reads everything the (templated) ``source`` names, e.g.
        ``.../dt={{ data_interval_start | ds }}/``; ``column`` keeps the rows whose time (timestamp,
        date or ISO string; null dropped) is in the interval. The manifest records it. Templated.
        None: everything the source names.
    :param empty: what a window with nothing in it (no object, no row) does: ``"fail"`` (default;
        the task fails, retries apply since data may still land) or ``"skip"`` (the task ends
        skipped with the reason, and so do the tasks downstream of it).
    :return: the snapshot reference ``{"uri", "sha256", "rows", "splits"}``; every outlet ``Asset``
        gets an event with ``extra={"snapshot": <that dict>}``.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "source",
        "format",
        "schema",
        "split",
        "window",
    )
    template_fields_renderers = {"split": "json", "schema": "json", "window": "json"}
    ui_color = "#d7ecf9"
    pipeline: str  # a required argument here

    def __init__(
        self,
        *,
        source: Any,
        artifact_root: str,
        pipeline: str,
        format: str | None = None,
        compression: str | None = None,
        schema: Mapping[str, str] | None = None,
        csv_options: Mapping[str, Any] | None = None,
        split: Mapping[str, Any] | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        block_mb: float = 8,
        connect_attempts: int = 3,
        window: Mapping[str, Any] | None = None,
        empty: str = "fail",
        **kwargs: Any,
    ) -> None:
        if empty not in ("fail", "skip"):
            raise ValueError(f"empty must be 'fail' or 'skip', got {empty!r}")
        super().__init__(artifact_root=artifact_root, pipeline=pipeline, **kwargs)
        self.source = source
        self.format = format
        self.compression = compression
        self.schema = schema
        self.csv_options = csv_options
        self.split = split
        self.chunk_rows = chunk_rows
        self.block_mb = block_mb
        self.connect_attempts = connect_attempts
        self.window = window
        self.empty = empty

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.ingest import ingest_snapshot
        from airflow_mlops_provider.core.ingest.errors import EmptyWindowError
        from airflow_mlops_provider.core.ingest.sources import RetryPolicy
        from airflow_mlops_provider.core.monitoring.window import WindowFilter

        sources = list(self.source) if isinstance(self.source, list | tuple) else [self.source]
        s3_client = None
        on_s3 = any(isinstance(s, str) and s.startswith(("s3://", "s3a://")) for s in sources)
        if self.aws_conn_id and on_s3:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            s3_client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        window = WindowFilter.from_dict(self._bounded(self.window, context)) if self.window else None
        try:
            ref = ingest_snapshot(
                sources,
                self.artifact_location(),
                self.pipeline,
                format=self.format,
                compression=self.compression,
                schema=self.schema,
                csv_options=self.csv_options,
                split=self.split,
                chunk_rows=self.chunk_rows,
                block_bytes=int(self.block_mb * 2**20),
                s3_client=s3_client,
                retry=RetryPolicy(attempts=self.connect_attempts),
                manifest_extra={"producing_run": self.run_info(context)},
                window=window,
            )
        except EmptyWindowError as err:
            if self.empty == "skip":
                self.log.warning("%s: skipping", err)  # a skip's own message is not logged
                raise AirflowSkipException(str(err)) from err
            raise
        result = ref.to_dict()
        self.emit_asset_events(context, {"snapshot": result})
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The objects read (from the snapshot's manifest, with their ETags) -> the snapshot."""
        from airflow_mlops_provider.core import lineage
        from airflow_mlops_provider.core.snapshot import open_snapshot

        if not result:  # not run yet, or skipped on an empty window
            return lineage.Lineage()
        manifest = open_snapshot(result, self.storage_options()).manifest
        sources = lineage.source_objects(manifest.get("source_objects") or [])
        return lineage.Lineage(inputs=sources, outputs=[lineage.snapshot(result)])

    def _bounded(self, window: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """``window`` with its interval: as given, else the run's (see :meth:`run_window`)."""
        if window.get("start") is not None and window.get("end") is not None:
            return dict(window)
        start, end = self.run_window(context, float(window.get("length") or 3600))
        return {**window, "start": start, "end": end}


__getattr__ = renamed(__name__, {"IngestOperator": IngestSnapshotOperator})
