"""Statistics that merge across record batches, for streaming validation.

* :class:`Moments`: count, sum, mean and sample variance (Chan's pairwise merge of M2), min, max.
* :class:`ValueCounts`: exact value counts in bounded memory: each batch's value counts are
  hash-partitioned into spill files on local disk, then merged one partition at a time.
* :func:`order_statistics`: exact k-th smallest values by histogram selection (one histogram pass
  over the column, one pass collecting the values of the buckets that hold the ranks; more passes
  only when one bucket holds more than ``collect_cap`` values, i.e. heavy ties).

"Missing" follows pandas (what Great Expectations sees in memory): null, and NaN in float columns.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

BUCKETS = 1 << 16
COLLECT_CAP = 1 << 20


def present(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The non-missing values: nulls dropped, and NaN too in a float column."""
    values = pc.drop_null(column)
    if pa.types.is_floating(values.type):
        values = pc.filter(values, pc.invert(pc.is_nan(values)))
    return values


class Moments:
    """Count, sum, mean, sample standard deviation, min and max of a numeric column."""

    def __init__(self) -> None:
        self.count = 0
        self.total: float | int = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low: Any = None
        self.high: Any = None

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Merge a batch of non-missing values (see :func:`present`)."""
        if not len(values):
            return
        if pa.types.is_decimal(values.type):
            values = values.cast(pa.float64())
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        array = np.asarray(values.to_numpy())
        count, batch_sum = len(array), array.sum()
        self.total += batch_sum.item()
        batch_mean = float(array.astype(np.float64).mean())
        batch_m2 = float(((array.astype(np.float64) - batch_mean) ** 2).sum())
        delta, merged = batch_mean - self.mean, self.count + count
        self.m2 += batch_m2 + delta * delta * self.count * count / merged
        self.mean += delta * count / merged
        self.count = merged

    def metrics(self) -> dict[str, Any]:
        """Great Expectations' metric names (pandas semantics: ddof=1, None without values)."""
        if not self.count:
            return {"column.mean": None, "column.standard_deviation": None, "column.sum": 0}
        std = math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None
        return {
            "column.mean": self.total / self.count,
            "column.standard_deviation": std,
            "column.sum": self.total,
        }


class ValueCounts:
    """Exact value counts of one column, spilled to ``partitions`` files by value hash."""

    def __init__(self, dtype: pa.DataType, partitions: int, workdir: Path) -> None:
        self.dtype = dtype.value_type if pa.types.is_dictionary(dtype) else dtype
        self.partitions = max(1, partitions)
        self.schema = pa.schema([("values", self.dtype), ("counts", pa.int64())])
        self.dir = Path(tempfile.mkdtemp(prefix="counts-", dir=workdir))
        self._writers: dict[int, ipc.RecordBatchStreamWriter] = {}

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Count a batch of non-missing values and append the counts to their partitions."""
        if not len(values):
            return
        if pa.types.is_dictionary(values.type):
            values = values.cast(self.dtype)
        counted = pc.value_counts(values)
        batch = pa.record_batch([counted.field("values"), counted.field("counts")], schema=self.schema)
        if self.partitions == 1:
            self._write(0, batch)
            return
        keys = pd.util.hash_array(np.asarray(batch.column(0).to_numpy(zero_copy_only=False)))
        parts = (keys % np.uint64(self.partitions)).astype(np.int64)
        for part in np.unique(parts):
            self._write(int(part), batch.filter(pa.array(parts == part)))

    def _write(self, part: int, batch: pa.RecordBatch) -> None:
        if part not in self._writers:
            self._writers[part] = ipc.new_stream(str(self.dir / f"{part}.arrow"), self.schema)
        self._writers[part].write_batch(batch)

    def summary(self, *, values: bool, modes: bool, max_duplicated: int) -> CountSummary:
        """Distinct count and repeated rows; the values repeated (up to ``max_duplicated``), and
        only when asked every distinct value and the modes (those can be as many as the rows)."""
        out = CountSummary()
        for table in self.merged():
            counts = table.column("counts")
            out.distinct += len(counts)
            repeated = pc.greater(counts, 1)
            out.repeated_rows += int(pc.sum(pc.filter(counts, repeated)).as_py() or 0)
            if len(out.duplicated) < max_duplicated:
                out.duplicated += pc.filter(table.column("values"), repeated).to_pylist()
                del out.duplicated[max_duplicated:]
            if values:
                out.values += table.column("values").to_pylist()
            if modes and len(counts):
                out.add_modes(table)
        return out

    def merged(self) -> Iterator[pa.Table]:
        """Per partition: a table of distinct ``values`` and their total ``counts``."""
        for writer in self._writers.values():
            writer.close()
        for part in sorted(self._writers):
            with ipc.open_stream(str(self.dir / f"{part}.arrow")) as reader:
                table = reader.read_all()
            yield table.group_by("values").aggregate([("counts", "sum")]).rename_columns(["values", "counts"])


@dataclass
class CountSummary:
    """What the uniqueness and distinct-value checks read from :class:`ValueCounts`."""

    distinct: int = 0
    repeated_rows: int = 0
    duplicated: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    modes: list[Any] = field(default_factory=list)
    top: int = 0

    def add_modes(self, table: pa.Table) -> None:
        counts = table.column("counts")
        top = int(pc.max(counts).as_py())
        if top < self.top:
            return
        found = pc.filter(table.column("values"), pc.equal(counts, top)).to_pylist()
        self.modes = found if top > self.top else self.modes + found
        self.top = top


def order_statistics(
    read: Callable[[], Iterable[np.ndarray]],
    ranks: Sequence[int],
    low: float,
    high: float,
    collect_cap: int = COLLECT_CAP,
) -> dict[int, Any]:
    """The values at 0-based ``ranks`` of the sorted non-missing values, exactly.

    ``read`` streams the column's non-missing values as NumPy arrays (called once per pass);
    ``low`` and ``high`` are its min and max.
    """
    found: dict[int, Any] = {}
    pending = [(sorted(set(ranks)), low, high)]
    while pending:
        wanted, lo, hi = pending.pop()
        if lo == hi:
            found.update(dict.fromkeys(wanted, lo))
            continue
        counts, under = _histogram(read, lo, hi)
        cumulative = np.cumsum(counts)
        targets: dict[int, list[int]] = {}
        for rank in wanted:
            bucket = int(np.searchsorted(cumulative, rank - under, side="right"))
            targets.setdefault(bucket, []).append(rank)
        small = {b: r for b, r in targets.items() if counts[b] <= collect_cap}
        collected, bounds = _collect(read, lo, hi, set(small), set(targets) - set(small))
        for bucket, bucket_ranks in small.items():
            values = np.sort(collected[bucket])
            start = under + (int(cumulative[bucket - 1]) if bucket else 0)
            found.update({rank: values[rank - start].item() for rank in bucket_ranks})
        for bucket, (bucket_low, bucket_high) in bounds.items():
            pending.append((targets[bucket], bucket_low, bucket_high))
    return found


def _buckets(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask of values in [lo, hi], their bucket numbers), computed identically in every pass."""
    inside = (values >= lo) & (values <= hi)
    scaled = (values[inside].astype(np.float64) - float(lo)) * (BUCKETS / (float(hi) - float(lo)))
    return inside, np.minimum(scaled.astype(np.int64), BUCKETS - 1)


def _histogram(read: Callable[[], Iterable[np.ndarray]], lo: float, hi: float) -> tuple[np.ndarray, int]:
    counts, under = np.zeros(BUCKETS, np.int64), 0
    for values in read():
        under += int((values < lo).sum())
        _, buckets = _buckets(values, lo, hi)
        counts += np.bincount(buckets, minlength=BUCKETS)
    return counts, under


def _collect(
    read: Callable[[], Iterable[np.ndarray]], lo: float, hi: float, keep: set[int], bound: set[int]
) -> tuple[dict[int, np.ndarray], dict[int, tuple[Any, Any]]]:
    """The values of the ``keep`` buckets, and the (min, max) of the ``bound`` buckets."""
    parts: dict[int, list[np.ndarray]] = {b: [] for b in keep}
    bounds: dict[int, tuple[Any, Any]] = {}
    for values in read():
        inside, buckets = _buckets(values, lo, hi)
        selected = values[inside]
        for bucket in keep:
            parts[bucket].append(selected[buckets == bucket])
        for bucket in bound:
            chunk = selected[buckets == bucket]
            if len(chunk):
                old = bounds.get(bucket, (chunk.min(), chunk.max()))
                bounds[bucket] = (min(old[0], chunk.min()), max(old[1], chunk.max()))
    return {b: np.concatenate(p) for b, p in parts.items()}, bounds


def quantile_value(pick: Callable[[int], Any], count: int, q: float, method: str) -> Any:
    """NumPy's ``quantile(method=...)`` of ``count`` sorted values, ``pick(rank)`` giving one of them."""
    virtual = (count - 1) * q
    below = math.floor(virtual)
    gamma = virtual - below
    a, b = pick(below), pick(min(below + 1, count - 1))
    if method == "lower" or gamma == 0:
        return a
    if method == "higher":
        return b
    if method == "midpoint":
        return (a + b) / 2
    if method == "nearest":
        return b if gamma > 0.5 or (gamma == 0.5 and below % 2) else a
    return b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma


def quantile_ranks(count: int, q: float) -> list[int]:
    """The ranks :func:`quantile_value` picks for ``q``."""
    below = math.floor((count - 1) * q)
    return [below, min(below + 1, count - 1)]
