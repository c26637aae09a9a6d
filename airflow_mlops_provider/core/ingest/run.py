"""The ingestion pipeline: list source objects, stream them through the readers, split, and
write one content-addressed snapshot.

Memory stays bounded: the readers hand over blocks of ``block_bytes`` of input, and each split
buffers at most ``chunk_rows`` rows before a Parquet row group is written. Every split's row
groups hold exactly ``chunk_rows`` rows (the last one fewer; a large split is then regrouped into
a multiple of 8 equal row groups for training ranks, see
:func:`~airflow_mlops_provider.core.snapshot.balanced_row_groups`), so the snapshot hash depends on
the rows and ``chunk_rows`` only, not on object boundaries, compression or read block sizes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_mlops_provider.core.ingest.errors import EmptyWindowError, IngestError, NothingListedError
from airflow_mlops_provider.core.ingest.formats import (
    DEFAULT_BLOCK_BYTES,
    ReadSpec,
    check_csv_options,
    read_object,
)
from airflow_mlops_provider.core.ingest.sources import RetryPolicy, Source, SourceObject, open_source
from airflow_mlops_provider.core.monitoring.window import WindowError, WindowFilter
from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS
from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.snapshot import SnapshotError, SnapshotRef, SnapshotWriter
from airflow_mlops_provider.core.split import SplitError, SplitSpec, parse_split
from airflow_mlops_provider.core.storage import Location

log = logging.getLogger(__name__)


def ingest_snapshot(
    source: Any,
    artifact_root: Location,
    pipeline: str,
    *,
    format: str | None = None,
    compression: str | None = None,
    schema: Mapping[str, str] | None = None,
    csv_options: Mapping[str, Any] | None = None,
    split: Mapping[str, Any] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    s3_client: Any | None = None,
    source_options: Mapping[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    progress_every_s: float = 10.0,
    window: WindowFilter | None = None,
) -> SnapshotRef:
    """Read ``source`` (an object, prefix or glob; or a list of them) into a snapshot; return its reference.

    A source is a URI string or a path object with its own filesystem (``ObjectStoragePath``).
    ``schema`` (column -> Arrow type name) fixes column types and the expected column set;
    without it the first object's schema is the target and later objects must match it.
    ``s3_client`` (from ``S3Hook.get_conn()``) reads ``s3://`` sources; other URIs use fsspec
    with ``source_options``. Raises :class:`IngestError` for bad input,
    :class:`~airflow_mlops_provider.core.paths.UnsafeNameError` for a pipeline or split name that
    would escape the artifact root, and :class:`SourceUnreachableError` when storage cannot be
    reached; nothing is published then.

    ``window`` reads one monitoring window only: listed objects are kept by modification time
    (``by: mtime``), rows by their time column before splitting (``by: column``); the manifest
    records it under ``window``. Nothing in the window (no object listed or left, or no row left)
    raises :class:`EmptyWindowError`.
    """
    safe_component(pipeline, "pipeline")
    if chunk_rows < 1 or block_bytes < 1024:
        raise IngestError(f"chunk_rows must be >= 1 and block_bytes >= 1024, got {chunk_rows}, {block_bytes}")
    items = list(source) if isinstance(source, list | tuple) else [source]
    if not items:
        raise IngestError("No source given")
    check_csv_options(csv_options)
    with _stage_errors_as_ingest_errors():
        splitter = parse_split(split)
    target = _parse_schema(schema)
    spec = ReadSpec(format, compression, block_bytes, chunk_rows, csv_options)
    sources = [
        open_source(item, s3_client=s3_client, storage_options=source_options, retry=retry) for item in items
    ]
    uris = [src.uri for src in sources]
    window = window.fresh() if window else None  # counts of this ingest only
    listed = _list(sources, window)
    progress = _Progress(len(listed), sum(obj.size for _, obj in listed), progress_every_s)
    log.info("Ingesting %d object(s), %s, from %s", len(listed), _size(progress.total_bytes), ", ".join(uris))

    with (
        _stage_errors_as_ingest_errors(),
        tempfile.TemporaryDirectory(prefix="ingest-") as scratch,
        SnapshotWriter(artifact_root, pipeline, row_group_rows=chunk_rows) as writer,
    ):
        reader = _Reader(listed, spec, target, progress)
        tables: Iterable[pa.Table] = (
            reader.tables() if window is None else _in_window(reader.tables(), window)
        )
        if splitter is not None and splitter.needs_first_pass:
            splitter, tables = _resolve_time_split(splitter, tables, scratch)
        splits = _SplitWriter(writer, chunk_rows)
        splits.write(tables, splitter)
        if progress.rows == 0 or reader.schema is None:  # no rows read: no schema either
            raise IngestError(f"No rows in {', '.join(uris)}: every object is empty (header only?)")
        if window is not None and window.counts.rows_kept == 0:
            raise EmptyWindowError(_no_rows_message(window, uris))
        splits.finish(splitter.names if splitter else [], reader.schema)
        try:
            extra = {**dict(manifest_extra or {}), **({"window": window.describe()} if window else {})}
            ref = writer.commit(_manifest(uris, listed, spec, splitter, extra))
        except SnapshotError as err:
            raise IngestError(str(err)) from err
    log.info(
        "Snapshot %s: %d rows %s from %d object(s) (%s) in %.1fs",
        ref.uri,
        ref.rows,
        ref.splits,
        len(listed),
        _size(progress.bytes),
        time.monotonic() - progress.started,
    )
    return ref


@contextmanager
def _stage_errors_as_ingest_errors() -> Iterator[None]:
    """A split or window that cannot apply to the data is bad input: raise it as :class:`IngestError`."""
    try:
        yield
    except (SplitError, WindowError) as err:
        raise IngestError(str(err)) from err


def _list(sources: list[Source], window: WindowFilter | None) -> list[tuple[Source, SourceObject]]:
    """Every source's objects; with a window only those in it, or :class:`EmptyWindowError` if none is."""
    if window is None:
        return [(src, obj) for src in sources for obj in src.objects()]
    listed = [(src, obj) for src in sources for obj in _objects_or_none(src)]
    kept = [(src, obj) for src, obj in listed if window.keeps_object(obj.last_modified)]
    if not kept:
        raise EmptyWindowError(_no_objects_message(window, [src.uri for src in sources]))
    return kept


def _objects_or_none(src: Source) -> list[SourceObject]:
    """The source's objects; none when it names no object (in a window: an empty window, not bad input)."""
    try:
        return src.objects()
    except NothingListedError as err:
        log.warning("Nothing in this window from %s: %s", src.uri, err)
        return []


def _in_window(tables: Iterable[pa.Table], window: WindowFilter) -> Iterator[pa.Table]:
    """The tables' rows inside the window; tables left empty are dropped."""
    for table in tables:
        kept = window.filter_rows(table)
        if kept.num_rows:
            yield kept


def _no_objects_message(window: WindowFilter, uris: list[str]) -> str:
    counts = window.counts
    found = (
        f"{counts.objects_listed} object(s) listed, all {counts.objects_skipped} modified outside it"
        if counts.objects_listed
        else "no object there"
    )
    return f"Empty window {window.interval} (by {window.by}) for {', '.join(uris)}: {found}"


def _no_rows_message(window: WindowFilter, uris: list[str]) -> str:
    counts = window.counts
    return (
        f"Empty window {window.interval} (by column {window.column!r}) for {', '.join(uris)}: none of the "
        f"{counts.rows_read} row(s) read from {counts.objects_listed - counts.objects_skipped} object(s) is "
        f"in it ({counts.rows_outside} outside, {counts.rows_null} with a null {window.column!r})"
    )


def _resolve_time_split(
    splitter: SplitSpec, tables: Iterable[pa.Table], scratch: str
) -> tuple[SplitSpec, Iterator[pa.Table]]:
    """First pass of a time split by fractions: park the rows in ``scratch``, place the boundaries
    from the split column, and return the resolved split with the parked rows to read again."""
    staging = _Staging(scratch)
    for table in tables:
        staging.write(table)
    times = staging.column(splitter.column)
    if times is not None:
        splitter = splitter.resolve(times)
        log.info("Time split boundaries on %r: %s", splitter.column, splitter.describe()["boundaries"])
    return splitter, staging.tables()


def _parse_schema(schema: Mapping[str, str] | None) -> pa.Schema | None:
    if not schema:
        return None
    fields = []
    for name, type_name in schema.items():
        try:
            fields.append(pa.field(str(name), pa.type_for_alias(str(type_name))))
        except (ValueError, KeyError) as err:
            raise IngestError(f"schema: column {name!r} has unknown type {type_name!r}") from err
    return pa.schema(fields)


def _manifest(
    uris: list[str],
    listed: list[tuple[Source, SourceObject]],
    spec: ReadSpec,
    splitter: SplitSpec | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "source": {"uris": uris, "format": spec.format, "compression": spec.compression},
        "source_objects": [obj.manifest_entry() for _, obj in listed],
        "source_bytes": sum(obj.size for _, obj in listed),
        "split_config": splitter.describe() if splitter else None,
        "chunk_rows": spec.chunk_rows,
        **dict(extra or {}),
    }


class _Reader:
    """The listed objects' tables, in order; without a given schema, the first table's is the
    target the later objects must match."""

    def __init__(
        self,
        listed: list[tuple[Source, SourceObject]],
        spec: ReadSpec,
        schema: pa.Schema | None,
        progress: _Progress,
    ) -> None:
        self._listed, self._spec, self._progress = listed, spec, progress
        self.schema = schema

    def tables(self) -> Iterator[pa.Table]:
        for number, (src, obj) in enumerate(self._listed, start=1):
            self._progress.start(number, obj)
            for table in read_object(src, obj, self._spec, self.schema, self._progress.add_bytes):
                self.schema = self.schema or table.schema
                self._progress.add_rows(table.num_rows)
                yield table
            self._progress.done(obj)


class _SplitWriter:
    """Tables routed to their splits, each split regrouped into row groups of ``chunk_rows`` rows."""

    def __init__(self, writer: SnapshotWriter, chunk_rows: int) -> None:
        self._writer, self._chunk_rows = writer, chunk_rows
        self._buffers: dict[str, _Rebatcher] = {}

    def write(self, tables: Iterable[pa.Table], splitter: SplitSpec | None) -> None:
        """Route each table's rows (all to ``data`` without a split)."""
        offset = 0
        for table in tables:
            if splitter is None:
                self._emit("data", table)
            else:
                for name, part in splitter.assign(table, offset).items():
                    self._emit(name, part)
            offset += table.num_rows

    def finish(self, names: Iterable[str], schema: pa.Schema) -> None:
        """Flush every split; those of ``names`` that got no row are written empty."""
        for rebatcher in self._buffers.values():
            rebatcher.flush()
        for name in names:
            if name not in self._buffers:
                self._writer.write(schema.empty_table(), name)

    def _emit(self, name: str, table: pa.Table) -> None:
        if name not in self._buffers:
            self._buffers[name] = _Rebatcher(self._chunk_rows, partial(self._writer.write, split=name))
        self._buffers[name].add(table)


class _Rebatcher:
    """Regroup tables of any size into tables of exactly ``rows`` rows (the last one shorter)."""

    def __init__(self, rows: int, sink: Callable[[pa.Table], None]) -> None:
        self._rows, self._sink = rows, sink
        self._pending: list[pa.Table] = []
        self._count = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._count += table.num_rows
        if self._count < self._rows:
            return
        combined = pa.concat_tables(self._pending)
        offset = 0
        while self._count - offset >= self._rows:
            self._sink(combined.slice(offset, self._rows).combine_chunks())
            offset += self._rows
        rest = combined.slice(offset)
        self._pending, self._count = [rest], rest.num_rows

    def flush(self) -> None:
        if self._count:
            self._sink(pa.concat_tables(self._pending).combine_chunks())
        self._pending, self._count = [], 0


class _Staging:
    """Rows parked in a local Parquet file between the two passes of a time split by fractions."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "staging.parquet")
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="lz4")
        self._writer.write_table(table)

    def column(self, name: str | None) -> pa.ChunkedArray | None:
        if self._writer is None:
            return None
        self._writer.close()
        schema = pq.read_schema(self.path)
        if name not in schema.names:
            raise IngestError(f"Split column {name!r} is not in the data (columns: {schema.names})")
        return pq.read_table(self.path, columns=[name]).column(name)

    def tables(self) -> Iterator[pa.Table]:
        if self._writer is None:
            return
        for batch in pq.ParquetFile(self.path).iter_batches():
            yield pa.Table.from_batches([batch])
        os.remove(self.path)


class _Progress:
    """Progress log lines (objects, bytes, rows) at most every ``every_s`` seconds and per object."""

    def __init__(self, objects: int, total_bytes: int, every_s: float) -> None:
        self.objects, self.total_bytes, self.every_s = objects, total_bytes, every_s
        self.bytes = self.rows = self.number = 0
        self.started = self._last = time.monotonic()

    def start(self, number: int, obj: SourceObject) -> None:
        self.number = number
        log.info("Reading object %d/%d: %s (%s)", number, self.objects, obj.uri, _size(obj.size))

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        self._maybe_log()

    def add_rows(self, count: int) -> None:
        self.rows += count
        self._maybe_log()

    def done(self, obj: SourceObject) -> None:
        self._log()

    def _maybe_log(self) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._log()

    def _log(self) -> None:
        self._last = now = time.monotonic()
        rate = self.bytes / max(now - self.started, 1e-9)
        log.info(
            "Ingest progress: object %d/%d, %s of %s read, %s rows, %s/s",
            self.number,
            self.objects,
            _size(self.bytes),
            _size(self.total_bytes),
            f"{self.rows:,}",
            _size(rate),
        )


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover
