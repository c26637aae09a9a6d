"""Each training rank reads only its shard of a snapshot split, streamed in record batches.

:class:`ShardReader` (``ctx.shard(split)`` on the training context) never holds a split in memory:

* **Labels.** One pass over the target column alone counts, per row group, the rows that have a
  label (the others are dropped; the count over the whole split is the same on every rank).
* **Assignment.** For an epoch, the row groups are put in an order shuffled with ``(seed, epoch)``
  (the same on every rank, whatever the world size); their labelled rows, in that order, are cut
  into ``world_size`` contiguous ranges, one per rank. A rank reads only the row groups its range
  touches; on a snapshot written with balanced row groups (see
  :class:`~airflow_mlops_provider.core.snapshot.SnapshotWriter`) and 2, 4 or 8 ranks, whole ones.
* **Equal steps.** DDP needs every rank to run the same number of steps, so every rank takes
  ``labelled_rows // world_size`` rows an epoch: the tail is dropped (at most one row per rank,
  a different one each epoch), never padded with repeats. Every rank computes the same figure
  from the same counts, without talking to the others, so an uneven split cannot hang a rank.
* **Shuffle.** Rows are shuffled within a buffer of ``buffer_rows`` rows (seeded with
  ``(seed, epoch, rank)``) before they are cut into batches; memory is one row group plus the
  buffer.

Batches are pandas frames converted as the whole split would be (:func:`frame_of`: an integer
column with a null anywhere in the split is float64 in every batch, a boolean one object), so
code written for ``ctx.read_split`` reads them alike. ``epoch=None`` reads the rank's share in
file order without dropping anything: every labelled row exactly once over all ranks
(evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_BUFFER_ROWS = 65_536
_READ_ROWS = 65_536  # record batch size of the Parquet reads


@dataclass(frozen=True)
class Piece:
    """Labelled rows ``[start, stop)`` (positions among the group's labelled rows) of row group ``group``."""

    group: int
    start: int
    stop: int


def frame_of(batch: pa.RecordBatch | pa.Table, nullable: Iterable[str] = ()) -> pd.DataFrame:
    """``batch`` as pandas, typed as the whole split's conversion types it.

    ``nullable``: the split's columns with a null somewhere; pandas holds integers with nulls as
    float64 and booleans with nulls as objects, in every batch alike.
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    objects = []
    for name in set(nullable) & set(table.column_names):
        index = table.schema.get_field_index(name)
        kind = table.schema.field(index).type
        if pa.types.is_integer(kind):
            table = table.set_column(index, name, table.column(index).cast(pa.float64(), safe=False))
        elif pa.types.is_boolean(kind):
            objects.append(name)
    frame = table.to_pandas()
    for name in objects:
        frame[name] = frame[name].astype(object)
    return frame


class ShardReader:
    """One split of a snapshot as this rank's shard (see the module docstring)."""

    def __init__(
        self, parquet: pq.ParquetFile, target: str, *, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        self._file, self.target = parquet, target
        self.rank, self.world_size, self.seed = rank, world_size, seed
        meta = parquet.metadata
        self.group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.columns: list[str] = list(parquet.schema_arrow.names)

    @cached_property
    def nullable(self) -> frozenset[str]:
        """Integer and boolean columns with a null in some row group (from the Parquet statistics)."""
        schema, meta = self._file.schema_arrow, self._file.metadata
        wanted = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)]
        found: set[str] = set()
        for name in wanted:
            index = schema.get_field_index(name)
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(index).statistics
                if stats is None or not stats.has_null_count or stats.null_count:
                    found.add(name)  # without statistics, assume nulls: values stay exact as floats
                    break
        return frozenset(found)

    @cached_property
    def labelled(self) -> list[int]:
        """Rows with a label in each row group (one pass over the target column)."""
        if self.target not in self.columns:
            return list(self.group_rows)
        counts = []
        for group in range(len(self.group_rows)):
            batches = self._file.iter_batches(
                batch_size=_READ_ROWS, row_groups=[group], columns=[self.target]
            )
            counts.append(sum(int(self._frame(b)[self.target].notna().sum()) for b in batches))
        return counts

    @property
    def rows(self) -> int:
        return sum(self.group_rows)

    @property
    def unlabelled(self) -> int:
        return self.rows - sum(self.labelled)

    def rows_per_rank(self, epoch: int | None) -> int:
        """Rows every rank reads in a training epoch; with ``epoch=None``, this rank's share."""
        total = sum(self.labelled)
        if epoch is not None:
            return total // self.world_size
        return (self.rank + 1) * total // self.world_size - self.rank * total // self.world_size

    def steps(self, batch_size: int, epoch: int) -> int:
        """Batches per epoch, the same on every rank."""
        return -(-self.rows_per_rank(epoch) // batch_size)

    def plan(self, epoch: int | None) -> list[Piece]:
        """This rank's pieces of row groups for ``epoch`` (``None``: file order, nothing dropped)."""
        order = np.arange(len(self.group_rows))
        if epoch is not None:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        begin = self.rank * sum(self.labelled) // self.world_size
        end = begin + self.rows_per_rank(epoch)
        pieces, offset = [], 0
        for group in order.tolist():
            count = self.labelled[group]
            start, stop = max(begin - offset, 0), min(end - offset, count)
            if start < stop:
                pieces.append(Piece(group, start, stop))
            offset += count
        return pieces

    def frames(self, pieces: Iterable[Piece], columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The labelled rows of ``pieces``, a record batch at a time (``columns``: and the target)."""
        if columns is not None and self.target in self.columns:
            columns = list(dict.fromkeys([*columns, self.target]))
        for piece in pieces:
            seen = 0
            for batch in self._file.iter_batches(
                batch_size=_READ_ROWS, row_groups=[piece.group], columns=columns
            ):
                frame = self._labelled(self._frame(batch))
                lo, hi = max(piece.start - seen, 0), min(piece.stop - seen, len(frame))
                seen += len(frame)
                if lo < hi:
                    yield frame.iloc[lo:hi]
                if seen >= piece.stop:
                    break

    def static_frames(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """This rank's share in file order (``plan(None)``): every labelled row once over all ranks."""
        return self.frames(self.plan(None), columns)

    def iter_batches(
        self, batch_size: int, epoch: int | None, *, buffer_rows: int = DEFAULT_BUFFER_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Batches of ``batch_size`` labelled rows (the last one may be shorter) for ``epoch``:
        :meth:`steps` of them on every rank, shuffled (``epoch=None``: in file order)."""
        rng = None if epoch is None else np.random.default_rng([self.seed, epoch, self.rank])
        pending: list[pd.DataFrame] = []
        count = 0
        for frame in self.frames(self.plan(epoch)):
            pending.append(frame)
            count += len(frame)
            if count >= buffer_rows:
                buffer = _shuffled(pending, rng)
                full = len(buffer) // batch_size * batch_size
                yield from _cut(buffer.iloc[:full], batch_size)
                pending, count = [buffer.iloc[full:]], len(buffer) - full
        if count:
            yield from _cut(_shuffled(pending, rng), batch_size)

    def head(self, rows: int, columns: list[str] | None = None) -> pd.DataFrame:
        """The first ``rows`` labelled rows of the split (file order), reading no further."""
        taken: list[pd.DataFrame] = []
        pieces = (Piece(g, 0, n) for g, n in enumerate(self.labelled) if n)
        for frame in self.frames(pieces, columns):
            taken.append(frame.head(rows - sum(map(len, taken))))
            if sum(map(len, taken)) >= rows:
                break
        return (
            pd.concat(taken, ignore_index=True)
            if taken
            else self._frame(self._file.schema_arrow.empty_table())
        )

    def _frame(self, batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
        return frame_of(batch, self.nullable)

    def _labelled(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.target not in frame.columns:
            return frame
        return frame[frame[self.target].notna().to_numpy()]


def _shuffled(frames: list[pd.DataFrame], rng: np.random.Generator | None) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return frame if rng is None else frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _cut(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def open_shard(
    snapshot: Any,
    split: str,
    target: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> ShardReader:
    """A :class:`ShardReader` on ``split`` of a published snapshot."""
    from airflow_mlops_provider.core.snapshot import open_snapshot

    parquet = open_snapshot(snapshot, storage_options).parquet_file(split, memory_map=False)
    return ShardReader(parquet, target, rank=rank, world_size=world_size, seed=seed)
