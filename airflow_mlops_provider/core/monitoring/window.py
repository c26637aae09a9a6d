"""Which part of a source one monitoring run reads: the objects or rows of its window.

A :class:`WindowFilter` is built from the operator's rendered ``window`` argument
(``{"by": "mtime" | "partition" | "column", "column": ..., "start": ..., "end": ...}``) and
applied by the ingestion: ``mtime`` keeps the listed objects modified in ``[start, end)``;
``partition`` keeps every object (the source is already the window's partition path);
``column`` keeps the rows whose ``column`` time is in ``[start, end)``. Counts of what was left
out travel with the filter (:class:`WindowCounts`) into the snapshot manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.monitoring.types import Window, parse_time

log = logging.getLogger(__name__)

WindowBy = Literal["mtime", "partition", "column"]
_KEYS = {
    "by",
    "column",
    "start",
    "end",
    "partition",
    "length",
}  # partition, length: the config's, unused here


class WindowError(PermanentError, ValueError):
    """A window that cannot be applied: a bad field, or a column that is missing or not a time."""


@dataclass
class WindowCounts:
    """What one ingest left out of its window (and what it kept without knowing its time)."""

    objects_listed: int = 0
    objects_skipped: int = 0
    objects_undated: int = 0
    rows_read: int = 0
    rows_outside: int = 0
    rows_null: int = 0

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.rows_outside - self.rows_null


@dataclass(frozen=True)
class WindowFilter:
    """The objects (by modification time) or rows (by a time column) of one half-open window."""

    by: WindowBy
    window: Window
    column: str | None = None
    counts: WindowCounts = field(default_factory=WindowCounts, init=False, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowFilter:
        """Validate a rendered ``window`` argument; times are datetimes or ISO strings (naive = UTC)."""
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise WindowError(f"window: unknown field(s) {unknown} (known: {sorted(_KEYS)})")
        by = data.get("by") or "mtime"
        if by not in get_args(WindowBy):
            raise WindowError(f"window.by must be one of {list(get_args(WindowBy))}, got {by!r}")
        column = data.get("column") or None
        if by == "column" and not column:
            raise WindowError("window.column is required for a column window (the timestamp column)")
        return cls(cast(WindowBy, by), _window(data), str(column) if column else None)

    def fresh(self) -> WindowFilter:
        """The same window with its counts at zero: one per ingest."""
        return WindowFilter(self.by, self.window, self.column)

    @property
    def interval(self) -> str:
        """``[start, end)`` in ISO form (UTC), for messages."""
        bounds = self.window.to_dict()
        return f"[{bounds['start']}, {bounds['end']})"

    def keeps_object(self, last_modified: str | None) -> bool:
        """Whether a listed object belongs to the window (always, unless ``by`` is ``mtime``).

        An object whose modification time is unknown (or unreadable) is kept, counted and warned about.
        """
        self.counts.objects_listed += 1
        if self.by != "mtime":
            return True
        moment = _moment(last_modified)
        if moment is None:
            self.counts.objects_undated += 1
            log.warning(
                "Object has no usable modification time (%r): kept in window %s", last_modified, self.interval
            )
            return True
        if self.window.contains(moment):
            return True
        self.counts.objects_skipped += 1
        return False

    def filter_rows(self, table: pa.Table) -> pa.Table:
        """The rows whose ``column`` time is in the window (``by: column``; otherwise ``table`` itself).

        Timestamps of any unit and time zone (naive = UTC), dates (midnight UTC) and ISO strings are
        understood; rows with a null time are dropped and counted.
        """
        self.counts.rows_read += table.num_rows
        if self.by != "column":
            return table
        times = _as_utc(table, cast(str, self.column))
        nulls = times.null_count
        start, end = (pa.scalar(bound, times.type) for bound in (self.window.start, self.window.end))
        inside = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
        kept = table.filter(inside)  # a null time gives a null mask entry: dropped
        self.counts.rows_null += nulls
        self.counts.rows_outside += table.num_rows - kept.num_rows - nulls
        return kept

    def describe(self) -> dict[str, Any]:
        """The manifest's ``window`` entry."""
        return {
            "by": self.by,
            **self.window.to_dict(),
            "column": self.column,
            "objects_listed": self.counts.objects_listed,
            "objects_skipped": self.counts.objects_skipped,
            "objects_undated": self.counts.objects_undated,
            "rows_outside": self.counts.rows_outside,
            "rows_null": self.counts.rows_null,
        }


def _window(data: Mapping[str, Any]) -> Window:
    for name in ("start", "end"):
        if data.get(name) in (None, ""):
            raise WindowError(f"window.{name} is required (a datetime or an ISO-8601 string)")
    try:
        return Window(parse_time(data["start"]), parse_time(data["end"]))
    except ValueError as err:
        raise WindowError(f"window: {err} (start {data['start']!r}, end {data['end']!r})") from err


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _as_utc(table: pa.Table, column: str) -> pa.ChunkedArray:
    """``column`` as a UTC timestamp array (``us``; ``ns`` for a nanosecond column)."""
    if column not in table.column_names:
        raise WindowError(f"Window column {column!r} is not in the data (columns: {table.column_names})")
    values = table.column(column)
    kind = values.type
    if pa.types.is_timestamp(kind):
        return values.cast(pa.timestamp("ns" if kind.unit == "ns" else "us", "UTC"))
    if pa.types.is_date(kind):
        return values.cast(pa.timestamp("us", "UTC"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_strings(values, column)
    raise WindowError(
        f"Window column {column!r} is {kind}, not a time: use a timestamp, date or ISO-8601 string column"
    )


def _parse_strings(values: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
    """ISO-8601 strings as UTC timestamps: vectorised when every value carries an offset, else one by one."""
    target = pa.timestamp("us", "UTC")
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed = []
    for value in values.to_pylist():
        try:
            parsed.append(None if value is None else parse_time(value).astimezone(UTC))
        except ValueError as err:
            raise WindowError(f"Window column {column!r} holds {value!r}, not an ISO-8601 time") from err
    return pa.chunked_array([pa.array(parsed, target)], target)
