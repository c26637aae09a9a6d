"""Column sources: an in-memory Arrow table or a Parquet file read one column at a time.

The engine never holds a whole window: it asks a source for one column, turns it into a
NumPy buffer (numeric) or category counts (categorical), and lets it go before the next.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_mlops_provider.core.arrow_types import is_temporal_type
from airflow_mlops_provider.core.dates import day_numbers, is_date_type


class ColumnSource(Protocol):
    """Something with a schema, a row count and columns that can be read one by one."""

    schema: pa.Schema
    num_rows: int

    def column(self, name: str) -> pa.ChunkedArray: ...


class TableSource:
    """Columns of an Arrow table already in memory."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.schema = table.schema
        self.num_rows = table.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)


class ParquetSource:
    """Columns of a Parquet file, each read on demand (all row groups of that column only).

    Reads are serialised: one ``ParquetFile`` (one open file) is not safe to read from two
    threads at once, and the engine's workers overlap their computing, not their reading.
    """

    def __init__(self, parquet: pq.ParquetFile) -> None:
        self.parquet = parquet
        self.schema = parquet.schema_arrow
        self.num_rows = parquet.metadata.num_rows
        self._lock = threading.Lock()

    def column(self, name: str) -> pa.ChunkedArray:
        with self._lock:
            return self.parquet.read(columns=[name], use_threads=False).column(0)


def sorted_numeric(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Non-missing values as float64, sorted ascending, and the number of missing values (nulls, NaN).

    One float64 buffer is made (nulls become NaN on the way), sorted in place, and cut where
    NaN begins (sorting puts NaN last): no mask, no compacting copy. Dates and timestamps are day
    numbers (:func:`~airflow_mlops_provider.core.dates.day_numbers`), the values the built-in
    trainer learns from, whatever their Arrow unit.
    """
    dtype = column.type
    if is_date_type(dtype):
        column = day_numbers(column)
    elif is_temporal_type(dtype):
        column = pc.cast(column, pa.int64())
    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64())  # safe: an integer beyond 2**53 raises, never rounds
    values = column.to_numpy()  # chunks concatenated, nulls as NaN
    if not values.flags.writeable:  # a zero-copy view of Arrow's immutable buffer
        values = values.copy()
    values.sort()
    present = int(np.searchsorted(values, np.nan))  # NaN sorts (and searches) after every number
    return values[:present], values.size - present


def count_distinct_sorted(ascending: np.ndarray) -> int:
    """How many distinct values an ascending array holds (one pass, no sort)."""
    if ascending.size == 0:
        return 0
    return 1 + int(np.count_nonzero(ascending[1:] != ascending[:-1]))


def category_counts(column: pa.ChunkedArray) -> tuple[dict[str, int], int]:
    """Counts per category (as strings) and the number of missing values (nulls).

    Dictionary-encoded columns are counted on their integer indices (a bincount per chunk),
    never by hashing their values; others by Arrow's hash-based ``value_counts``.
    """
    missing = int(column.null_count)
    if pa.types.is_dictionary(column.type):
        return _dictionary_counts(column), missing
    counts = pc.value_counts(column)
    values = counts.field("values").to_pylist()
    freq = counts.field("counts").to_pylist()
    return {_label(v): int(c) for v, c in zip(values, freq, strict=True) if v is not None}, missing


def _dictionary_counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Counts per dictionary value over every chunk (each chunk may have its own dictionary)."""
    out: dict[str, int] = {}
    for chunk in column.chunks:
        indices = chunk.indices.drop_null().to_numpy()
        freq = np.bincount(indices, minlength=len(chunk.dictionary))
        for value, count in zip(chunk.dictionary.to_pylist(), freq.tolist(), strict=True):
            if count and value is not None:
                label = _label(value)
                out[label] = out.get(label, 0) + count
    return out


def _label(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def names_in(schema: pa.Schema, include: Iterable[str] | None, exclude: Iterable[str]) -> list[str]:
    excluded = set(exclude)
    wanted = list(include) if include is not None else schema.names
    return [name for name in wanted if name not in excluded]
