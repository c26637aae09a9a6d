"""Every prediction the service makes, batched to object storage as Parquet partitioned by hour.

One row per predicted row, under ``<root>/<pipeline>/serving/requests/dt=YYYY-MM-DD/hour=HH/``:
``request_id``, ``time`` (UTC), ``pipeline``, ``alias``, ``model_version``, the input columns as
columns, ``prediction``, ``proba_<class>`` (classifiers) and ``latency_ms``. These partitions are
the monitoring DAG's live windows (``monitoring.window: {by: partition}``) and the join key for
delayed labels is ``request_id``, so a multi-row request gives each row its own id.

Shadow scorings (``shadow: True``) go under ``serving/shadow/`` instead, with the same layout, so
the live window holds each request once; join them to ``requests/`` on ``request_id``.

Records whose input columns or classes differ are written to separate files (never unified with
nulls): a partition mixing column sets fails to ingest, as data that changed schema should.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.storage import Location

log = logging.getLogger(__name__)

META_COLUMNS = ("request_id", "time", "pipeline", "alias", "model_version", "prediction", "latency_ms")
PROBA_PREFIX = "proba_"
REQUIRED = ("request_id", "time", "alias", "model_version", "inputs", "prediction", "latency_ms")


class RequestLogError(PermanentError, ValueError):
    """A record that cannot be logged, or a batch that could not be written (its rows stay buffered)."""


@dataclass(frozen=True)
class _Group:
    """Rows that share one file: same folder, partition and columns."""

    kind: str  # requests or shadow
    day: str
    hour: str
    inputs: tuple[str, ...]
    classes: tuple[str, ...]


class RequestLog:
    """Buffer prediction records in memory (thread-safe) and flush them as Parquet files.

    A background thread flushes every ``flush_s`` seconds, and as soon as ``flush_rows`` rows wait;
    :meth:`close` stops it and flushes what is left. A failed write keeps its rows for the next flush.
    """

    def __init__(
        self, root: Location, pipeline: str, *, flush_rows: int = 1000, flush_s: float = 10.0
    ) -> None:
        if flush_rows < 1 or not flush_s > 0:
            raise RequestLogError(f"flush_rows must be >= 1 and flush_s > 0, got {flush_rows}, {flush_s}")
        self.pipeline = safe_component(pipeline, "pipeline")
        self.folder = root.join(self.pipeline, "serving")
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._lock = threading.Lock()  # guards the buffer
        self._write_lock = threading.Lock()  # one flush at a time
        self._buffer: list[tuple[_Group, dict[str, Any]]] = []
        self._wake, self._closed = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"request-log-{pipeline}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        with self._lock:
            return len(self._buffer)

    def append(self, record: Mapping[str, Any]) -> None:
        """Buffer one predicted row; :class:`RequestLogError` names what is wrong with a bad record."""
        group, row = self._row(record)
        with self._lock:
            if self._closed.is_set():
                raise RequestLogError("The request log is closed")
            self._buffer.append((group, row))
            full = len(self._buffer) >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> list[str]:
        """Write every buffered row now; return the URIs written.

        Rows that cannot be encoded (one column holding numbers and text, say) are dropped; rows whose
        write fails stay buffered for the next flush. Either raises :class:`RequestLogError` after the
        other files were written.
        """
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            groups: dict[_Group, list[dict[str, Any]]] = {}
            for group, row in batch:
                groups.setdefault(group, []).append(row)
            written: list[str] = []
            failures = [self._flush_group(group, rows, written) for group, rows in groups.items()]
            problems = [failure for failure in failures if failure]
            if problems:
                raise RequestLogError("; ".join(problems))
            return written

    def _flush_group(self, group: _Group, rows: list[dict[str, Any]], written: list[str]) -> str | None:
        """Write one file (its URI goes to ``written``); return what went wrong, if anything."""
        import pyarrow as pa

        where = f"{self.folder.uri}/{group.kind}/dt={group.day}/hour={group.hour}"
        try:
            data = _parquet(group, rows)
        except (pa.ArrowException, TypeError, ValueError) as err:
            return f"Dropped {len(rows)} request row(s) for {where} that do not fit one table: {err}"
        target = self.folder.join(group.kind, f"dt={group.day}", f"hour={group.hour}", _file_name(rows))
        try:
            target.write_bytes_atomic(data)
        except Exception as err:  # any storage backend's failure: keep the rows for the next flush
            with self._lock:
                self._buffer[:0] = [(group, row) for row in rows]
            return f"Could not write {len(rows)} request row(s) under {where}: {err}; they stay buffered"
        written.append(target.uri)
        return None

    def close(self) -> None:
        """Stop the background flusher and write what is left (raises if that write fails)."""
        with self._lock:  # no append lands after the last flush
            self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if self._closed.is_set():
                return  # close() flushes in the caller's thread, so its failure reaches the caller
            try:
                self.flush()
            except RequestLogError as err:
                log.error("%s", err)

    def _row(self, record: Mapping[str, Any]) -> tuple[_Group, dict[str, Any]]:
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            raise RequestLogError(f"Request record lacks {missing} (needs {list(REQUIRED)})")
        if record.get("pipeline", self.pipeline) != self.pipeline:
            raise RequestLogError(
                f"Record of pipeline {record['pipeline']!r} sent to {self.pipeline!r}'s log"
            )
        time = _utc(record["time"])
        inputs = _inputs(record["inputs"])
        probabilities = _probabilities(record.get("probabilities"))
        row = {key: record[key] for key in META_COLUMNS if key not in ("time", "pipeline")}
        row.update(time=time, pipeline=self.pipeline, **inputs)
        row.update({f"{PROBA_PREFIX}{label}": value for label, value in probabilities.items()})
        kind = "shadow" if record.get("shadow") else "requests"
        group = _Group(
            kind, f"{time:%Y-%m-%d}", f"{time:%H}", tuple(sorted(inputs)), tuple(sorted(probabilities))
        )
        return group, row


def _file_name(rows: list[dict[str, Any]]) -> str:
    first = min(row["time"] for row in rows)
    return f"{first:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"


def _parquet(group: _Group, rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [*META_COLUMNS, *group.inputs, *(f"{PROBA_PREFIX}{label}" for label in group.classes)]
    types = {"time": pa.timestamp("us", tz="UTC"), "latency_ms": pa.float64()}
    table = pa.table({c: pa.array([row[c] for row in rows], type=types.get(c)) for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise RequestLogError(f"Record 'time' must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _inputs(inputs: Any) -> dict[str, Any]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise RequestLogError(
            f"Record 'inputs' must be a non-empty mapping of column to value, got {inputs!r}"
        )
    clashes = [c for c in inputs if c in META_COLUMNS or str(c).startswith(PROBA_PREFIX)]
    if clashes:
        raise RequestLogError(
            f"Input column(s) {clashes} clash with the log's own columns "
            f"{list(META_COLUMNS)} or {PROBA_PREFIX}*"
        )
    return {str(column): value for column, value in inputs.items()}


def _probabilities(probabilities: Any) -> dict[str, Any]:
    if probabilities is None:
        return {}
    if not isinstance(probabilities, Mapping):
        raise RequestLogError(f"Record 'probabilities' must map class to probability, got {probabilities!r}")
    return {str(label): value for label, value in probabilities.items()}
