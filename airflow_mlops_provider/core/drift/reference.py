"""Reference statistics: computed once from the reference snapshot, stored beside it, reused.

For each numeric column: the sorted non-missing values (exact KS and Wasserstein need them;
one float64 per row, stored as ``.npy``), mean and standard deviation, PSI quantile-bin edges
and the reference's counts in those bins. For each categorical column: counts per category.
Both: rows and missing values. They live under
``<snapshot>/drift-reference/<split>/<fingerprint>/`` (the snapshot's hash covers only its
Parquet files, so adding them does not change its identity) with ``stats.json`` written last:
a reader that finds ``stats.json`` finds every file it names. Arrays are loaded with
``allow_pickle=False``, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import numpy as np
import pyarrow as pa

from airflow_mlops_provider.core.arrow_types import is_categorical_type, is_numeric_type, is_temporal_type
from airflow_mlops_provider.core.drift.columns import (
    ColumnSource,
    category_counts,
    count_distinct_sorted,
    names_in,
    sorted_numeric,
)
from airflow_mlops_provider.core.drift.config import DriftConfig
from airflow_mlops_provider.core.drift.numeric import bin_counts, mean_std, psi_edges
from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.storage import Location, is_local

STATS_FILE = "stats.json"
FORMAT_VERSION = 2  # 2: dates and timestamps as day numbers (1 kept their Arrow units)


class DriftError(PermanentError, ValueError):
    """A drift check cannot run on its input (empty window, no comparable columns, bad reference)."""


@dataclass
class ColumnReference:
    """What the drift engine keeps about one reference column."""

    name: str
    kind: str  # "numeric" | "categorical" | "unsupported"
    rows: int
    missing: int
    dtype: str
    reason: str | None = None
    mean: float | None = None
    std: float | None = None
    edges: list[float] | None = None
    bin_counts: list[int] | None = None
    counts: dict[str, int] | None = None
    sorted_file: str | None = None
    _sorted: np.ndarray | None = field(default=None, repr=False)

    @property
    def values(self) -> int:
        return self.rows - self.missing

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnReference:
        return cls(**data)


class ReferenceStats:
    """Reference columns, fitted on demand from a source or loaded from the store.

    Cold (no stored statistics): each column is fitted the first time the engine asks for it
    and, when a store location is set, its sorted buffer is written there at once and dropped
    from memory after the comparison; :meth:`commit` then writes ``stats.json``. Warm: the
    metadata comes from ``stats.json`` and each sorted buffer is read when its column is
    compared. Either way one column's buffers are in memory per worker.
    """

    def __init__(
        self,
        *,
        rows: int,
        names: list[str],
        fingerprint: str,
        config: DriftConfig,
        source: ColumnSource | None = None,
        store: Location | None = None,
        columns: dict[str, ColumnReference] | None = None,
    ) -> None:
        self.rows = rows
        self.names = names
        self.fingerprint = fingerprint
        self.config = config
        self.source = source
        self.store = store
        self.columns: dict[str, ColumnReference] = dict(columns or {})
        self.loaded_from_store = columns is not None and source is None
        self._lock = threading.Lock()

    def column(self, name: str) -> ColumnReference:
        col = self.columns.get(name)
        if col is None:
            if self.source is None:
                raise DriftError(f"Reference statistics have no column {name!r}")
            col = fit_column(self.source, name, self.config)
            if self.store is not None and col.kind == "numeric" and col._sorted is not None:
                col.sorted_file = f"{self.names.index(name):05d}.npy"
                buffer = io.BytesIO()
                np.save(buffer, col._sorted, allow_pickle=False)
                self.store.join(col.sorted_file).write_bytes_atomic(buffer.getvalue())
            with self._lock:
                self.columns[name] = col
        return col

    def sorted_values(self, name: str) -> np.ndarray:
        col = self.column(name)
        if col._sorted is not None:
            return col._sorted
        if self.store is not None and col.sorted_file is not None:
            return _load_sorted(self.store.join(col.sorted_file), col.values)
        if self.source is not None:  # released after an earlier comparison: fit it again
            refit = fit_column(self.source, name, self.config)._sorted
            if refit is not None:
                return refit
        raise DriftError(f"Reference column {name!r} has no stored values")

    def release(self, name: str) -> None:
        """Drop a column's sorted buffer once compared (it is read back or refitted if needed again)."""
        col = self.columns.get(name)
        if col is not None and (col.sorted_file is not None or self.source is not None):
            col._sorted = None

    def fit_all(self) -> ReferenceStats:
        """Fit every column now (the engine fits lazily; this is for precomputing a reference)."""
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            for name in pool.map(lambda n: self.column(n).name, self.names):
                self.release(name)
        return self

    def commit(self) -> None:
        """Write ``stats.json`` (last) once every column is fitted; a no-op without a store."""
        if self.store is None or self.loaded_from_store or set(self.columns) != set(self.names):
            return
        payload = {
            "format": FORMAT_VERSION,
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "names": self.names,
            "columns": [self.columns[n].to_json() for n in self.names],
        }
        self.store.join(STATS_FILE).write_bytes_atomic(json.dumps(payload).encode())


def fingerprint(config: DriftConfig, extra: str = "") -> str:
    """Hash of the settings that change reference statistics (not thresholds or tests)."""
    kinds = {name: c.kind for name, c in sorted(config.columns.items()) if c.kind}
    data = {
        "v": FORMAT_VERSION,
        "psi_bins": config.psi_bins,
        "max_unique": config.categorical_max_unique,
        "kinds": kinds,
        "include": config.include,
        "exclude": sorted(config.exclude),
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def reference_from_source(
    source: ColumnSource, config: DriftConfig, *, store: Location | None = None, extra: str = ""
) -> ReferenceStats:
    """Statistics of a reference window, fitted lazily column by column (stored under ``store``)."""
    if source.num_rows == 0:
        raise DriftError("The reference window has no rows: nothing to compare against")
    names = names_in(source.schema, config.include, config.exclude)
    absent = [n for n in names if n not in source.schema.names]
    if absent:
        raise DriftError(f"Columns {absent} named in the drift config 'include' are not in the reference")
    return ReferenceStats(
        rows=source.num_rows,
        names=names,
        fingerprint=fingerprint(config, extra),
        config=config,
        source=source,
        store=store,
    )


def load_reference(location: Location, config: DriftConfig) -> ReferenceStats | None:
    """Stored statistics at ``location``, or ``None`` when there are none (or an older format)."""
    try:
        payload = json.loads(location.join(STATS_FILE).read_bytes())
    except FileNotFoundError:
        return None
    if payload.get("format") != FORMAT_VERSION:
        return None
    columns = {c["name"]: ColumnReference.from_json(c) for c in payload["columns"]}
    return ReferenceStats(
        rows=int(payload["rows"]),
        names=list(payload["names"]),
        fingerprint=payload["fingerprint"],
        config=config,
        store=location,
        columns=columns,
    )


class _Basics(TypedDict):
    """The fields every :class:`ColumnReference` has from its column alone."""

    name: str
    rows: int
    dtype: str


def store_location(snapshot_location: Location, split: str, fp: str) -> Location:
    return snapshot_location.join("drift-reference", split, fp)


def _load_sorted(where: Location, expected: int) -> np.ndarray:
    """Read a stored sorted buffer of ``expected`` values (memory-mapped when local); never unpickles."""
    try:
        if is_local(where.fs):
            values = np.load(where.path, mmap_mode="r", allow_pickle=False)
        else:
            values = np.load(io.BytesIO(where.read_bytes()), allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DriftError(f"Stored reference statistics {where.uri} are unreadable: {err}") from err
    if values.dtype != np.float64 or values.ndim != 1 or values.size != expected:
        raise DriftError(
            f"Stored reference statistics {where.uri} are unreadable: expected {expected} float64 "
            f"values, found {values.shape} {values.dtype}"
        )
    return cast(np.ndarray, values)


def fit_column(source: ColumnSource, name: str, config: DriftConfig) -> ColumnReference:
    """Reference statistics of one column; its kind from the override, else its type and cardinality."""
    column = source.column(name)
    dtype = column.type
    override = config.columns.get(name)
    kind = override.kind if override and override.kind else None
    base: _Basics = {"name": name, "rows": len(column), "dtype": str(dtype)}
    if kind is None:
        if is_categorical_type(dtype):
            kind = "categorical"
        elif is_numeric_type(dtype) or is_temporal_type(dtype):
            kind = "numeric"
        else:
            return ColumnReference(
                kind="unsupported", missing=column.null_count, reason=f"type {dtype}", **base
            )
    if kind == "numeric":
        ordered, n_missing = sorted_numeric(column)
        auto = not (override and override.kind)
        codes = auto and pa.types.is_integer(dtype)
        if codes and count_distinct_sorted(ordered) <= config.categorical_max_unique:
            return _categorical(column, base)
        del column
        return _numeric(ordered, n_missing, config, base)
    return _categorical(column, base)


def _numeric(ordered: np.ndarray, n_missing: int, config: DriftConfig, base: _Basics) -> ColumnReference:
    if ordered.size == 0:
        return ColumnReference(kind="numeric", missing=n_missing, _sorted=ordered, **base)
    edges = psi_edges(ordered, config.psi_bins)
    moments = mean_std(ordered)
    return ColumnReference(
        kind="numeric",
        missing=n_missing,
        mean=moments[0],
        std=moments[1],
        edges=edges.tolist(),
        bin_counts=bin_counts(ordered, edges).tolist(),
        _sorted=ordered,
        **base,
    )


def _categorical(column: Any, base: _Basics) -> ColumnReference:
    counts, n_missing = category_counts(column)
    return ColumnReference(kind="categorical", missing=n_missing, counts=counts, **base)
