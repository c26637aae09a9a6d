"""Streaming validation: the split read in Arrow record batches, never whole (issue 18).

One pass over the batches feeds every accumulator (row counts, missing counts, row-wise tallies,
moments, spilled value counts); median and quantiles take two more passes over their column
only (exact histogram selection), and duplicate examples one more. :mod:`stream_plan` says how
each expectation type is evaluated; results have the shape of the in-memory path's checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.validation.builtin import TableFacts, missing_count
from airflow_mlops_provider.core.validation.gx import GxSuite, verdict_from_metrics
from airflow_mlops_provider.core.validation.stream_plan import (
    COUNT_METRIC,
    COUNTED,
    DISTINCT_SETS,
    MEMORY_NOTE,
    NUMERIC_METRIC,
    columns_of,
    method,
)
from airflow_mlops_provider.core.validation.stream_rows import RowTally, count_rows
from airflow_mlops_provider.core.validation.stream_stats import (
    CountSummary,
    Moments,
    ValueCounts,
    order_statistics,
    present,
    quantile_ranks,
    quantile_value,
)

Batches = Callable[[list[str] | None], Iterator[pa.RecordBatch]]
MAX_DUPLICATE_EXAMPLE_VALUES = 1_000_000


@dataclass
class _State:
    """Everything the single pass accumulates."""

    schema: pa.Schema
    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    tallies: dict[int, RowTally] = field(default_factory=dict)
    moments: dict[str, Moments] = field(default_factory=dict)
    bounds: dict[str, list[Any]] = field(default_factory=dict)
    counts: dict[str, ValueCounts] = field(default_factory=dict)


def validate_batches(
    batches: Batches,
    schema: pa.Schema,
    expectations: Sequence[dict[str, Any]],
    *,
    all_columns: bool,
    workdir: Path,
    partition_rows: int,
    rows_hint: int,
) -> tuple[list[dict[str, Any]], TableFacts]:
    """Evaluate ``expectations`` over ``batches(columns)``; return (checks in suite order, table facts).

    ``all_columns`` reads every column (the builtin checks need each one's missing count);
    value counts spill under ``workdir`` in partitions of about ``partition_rows`` values
    (``rows_hint``, the split's row count, sizes them).
    """
    methods = [method(e, schema) for e in expectations]
    state = _State(schema)
    needed = sorted({c for e in expectations for c in columns_of(e) if c in schema.names})
    row_gx = [(i, e) for i, (e, m) in enumerate(zip(expectations, methods, strict=True)) if m == "row_gx"]
    gx_suite = GxSuite([e for _, e in row_gx]) if row_gx else None
    for index, (item, how) in enumerate(zip(expectations, methods, strict=True)):
        _prepare(state, item, how, index, workdir, max(1, math.ceil(rows_hint / partition_rows)))
    read = None if all_columns or not needed else needed
    state.missing = dict.fromkeys(read or schema.names, 0)
    for batch in batches(read):
        _add(state, batch, expectations, methods)
        if gx_suite is not None:
            frame = batch.select(sorted({c for _, e in row_gx for c in columns_of(e) if c in schema.names}))
            for (index, _), part in zip(row_gx, gx_suite.validate(frame.to_pandas())[0], strict=True):
                state.tallies[index].add(part)
    facts = TableFacts(state.rows, schema, state.missing)
    finish = _Finish(state, batches, facts, expectations)
    return [finish.check(e, m, i) for i, (e, m) in enumerate(zip(expectations, methods, strict=True))], facts


def _prepare(state: _State, item: Mapping[str, Any], how: str, index: int, workdir: Path, parts: int) -> None:
    column = next(iter(columns_of(item)), None)
    if how in ("row", "row_gx"):
        state.tallies[index] = RowTally(item)
    if column is None or how not in ("metric", "reduced", "unique"):
        return
    if item["type"] in NUMERIC_METRIC:
        state.moments.setdefault(column, Moments())
    elif item["type"] in COUNTED:
        if column not in state.counts:
            state.counts[column] = ValueCounts(state.schema.field(column).type, parts, workdir)
    elif how == "reduced":
        state.bounds.setdefault(column, [None, None])


def _add(
    state: _State, batch: pa.RecordBatch, expectations: Sequence[dict[str, Any]], methods: list[str]
) -> None:
    state.rows += batch.num_rows
    for name in batch.schema.names:
        state.missing[name] = state.missing.get(name, 0) + missing_count(batch.column(name))
    for index, tally in state.tallies.items():
        if methods[index] == "row":
            tally.add(count_rows(expectations[index], batch.column(columns_of(expectations[index])[0])))
    for name, moments in state.moments.items():
        moments.add(present(batch.column(name)))
    for name, counts in state.counts.items():
        counts.add(present(batch.column(name)))
    for name, bounds in state.bounds.items():
        values = present(batch.column(name))
        if len(values):
            low, high = pc.min_max(values).values()
            bounds[0] = low.as_py() if bounds[0] is None else min(bounds[0], low.as_py())
            bounds[1] = high.as_py() if bounds[1] is None else max(bounds[1], high.as_py())


class _Finish:
    """Turns the accumulated state into one check per expectation (extra passes where needed)."""

    def __init__(
        self, state: _State, batches: Batches, facts: TableFacts, expectations: Sequence[dict[str, Any]]
    ) -> None:
        self.state, self.batches, self.facts, self.expectations = state, batches, facts, expectations
        self._summaries: dict[str, CountSummary] = {}

    def check(self, item: dict[str, Any], how: str, index: int) -> dict[str, Any]:
        if how in ("row", "row_gx"):
            return self.state.tallies[index].result()
        if how == "schema":
            return _streamed(GxSuite([item]).validate(self._typed_empty_frame())[0][0])
        if how == "metric":
            return _streamed(verdict_from_metrics(item, self._metrics(item)))
        if how == "reduced":
            return _streamed(GxSuite([item]).validate(self._reduced_frame(item))[0][0])
        if how == "unique":
            return self._unique(item)
        return self._in_memory(item)

    def _typed_empty_frame(self) -> Any:
        return self._as_whole_split(self.state.schema.empty_table())

    def _as_whole_split(self, table: pa.Table) -> Any:
        """``table`` in pandas with the dtypes the whole split gets (ints and bools with gaps widen)."""
        frame = table.to_pandas()
        for name in frame.columns:
            dtype = self.state.schema.field(name).type
            if self.state.missing.get(name) and pa.types.is_integer(dtype):
                frame[name] = frame[name].astype("float64")
            elif self.state.missing.get(name) and pa.types.is_boolean(dtype):
                frame[name] = frame[name].astype(object)
        return frame

    def _metrics(self, item: Mapping[str, Any]) -> dict[str, Any]:
        from great_expectations.expectations.metrics.column_aggregate_metrics.column_proportion_of_non_null_values import (  # noqa: E501
            nonnull_proportion,
        )
        from great_expectations.expectations.metrics.column_aggregate_metrics.column_proportion_of_unique_values import (  # noqa: E501
            unique_proportion,
        )

        column = next(iter(columns_of(item)), None)
        metrics: dict[str, Any] = {"table.row_count": self.facts.rows}
        if column is None:
            return metrics
        metrics["column_values.nonnull.unexpected_count"] = self.facts.missing[column]
        metrics["column.non_null_count"] = self.facts.rows - self.facts.missing[column]
        if column in self.state.moments:
            metrics.update(self.state.moments[column].metrics())
            metrics.update(self._order_metrics(item, column))
        if column in self.state.counts:
            summary = self._summary(column)
            metrics["column.distinct_values.count"] = summary.distinct
            metrics["column.unique_proportion"] = unique_proportion(metrics)  # type: ignore[no-untyped-call]
            metrics["column.most_common_value"] = sorted(summary.modes)
        if item["type"] in COUNT_METRIC and COUNT_METRIC[item["type"]] == "column.non_null_proportion":
            metrics["column.non_null_proportion"] = nonnull_proportion(metrics)  # type: ignore[no-untyped-call]
        return metrics

    def _order_metrics(self, item: Mapping[str, Any], column: str) -> dict[str, Any]:
        """Median (pandas: mean of the middle two) and quantiles (NumPy's method), exactly."""
        moments = self.state.moments[column]
        name, count = item["type"], moments.count
        if name not in ("expect_column_median_to_be_between", "expect_column_quantile_values_to_be_between"):
            return {}
        if not count:
            return {"column.median": None, "column.quantile_values": [math.nan] * _quantile_count(item)}
        quantiles = list(item["kwargs"]["quantile_ranges"]["quantiles"]) if "quantile" in name else []
        ranks = [(count - 1) // 2, count // 2] + [r for q in quantiles for r in quantile_ranks(count, q)]
        found = order_statistics(lambda: self._present_numpy(column), ranks, moments.low, moments.high)
        interpolation = item["kwargs"].get("allow_relative_error") or "nearest"
        values = [quantile_value(found.__getitem__, count, q, interpolation) for q in quantiles]
        return {
            "column.median": (found[ranks[0]] + found[ranks[1]]) / 2,
            "column.quantile_values": values,
        }

    def _present_numpy(self, column: str) -> Iterator[np.ndarray]:
        for batch in self.batches([column]):
            yield np.asarray(present(batch.column(0)).to_numpy(zero_copy_only=False))

    def _summary(self, column: str) -> CountSummary:
        """The merged value counts, read once; distinct values and modes only where a check needs them."""
        if column not in self._summaries:
            wanted = {e["type"] for e in self.expectations if columns_of(e)[:1] == [column]}
            self._summaries[column] = self.state.counts[column].summary(
                values=bool(wanted & DISTINCT_SETS),
                modes="expect_column_most_common_value_to_be_in_set" in wanted,
                max_duplicated=MAX_DUPLICATE_EXAMPLE_VALUES,
            )
        return self._summaries[column]

    def _reduced_frame(self, item: Mapping[str, Any]) -> Any:
        """A frame with the same answer: the column's (min, max), or its distinct values."""
        column = columns_of(item)[0]
        dtype = self.state.schema.field(column).type
        if column in self.state.bounds:
            values = self.state.bounds[column]
        else:
            values = self._summary(column).values or [None]
        if pa.types.is_dictionary(dtype):
            dtype = dtype.value_type
        return self._as_whole_split(pa.table({column: pa.array(values, dtype)}))

    def _unique(self, item: dict[str, Any]) -> dict[str, Any]:
        """Rows whose value occurs more than once (pandas ``duplicated(keep=False)``), mostly applied."""
        column = columns_of(item)[0]
        summary = self._summary(column)
        tally = RowTally(item)
        tally.add(
            {
                "element_count": self.facts.rows,
                "missing_count": self.facts.missing[column],
                "unexpected_count": summary.repeated_rows,
                "examples": self._duplicate_examples(column, summary.duplicated),
            }
        )
        return tally.result()

    def _duplicate_examples(self, column: str, duplicated: list[Any]) -> list[Any]:
        """The first rows' duplicated values, in row order (one pass over the column)."""
        if not duplicated:
            return []
        wanted = pa.array(duplicated, self.state.counts[column].dtype)
        examples: list[Any] = []
        for batch in self.batches([column]):
            values = present(batch.column(0))
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            examples += values.filter(pc.is_in(values, value_set=wanted)).slice(0, 20).to_pylist()
            if len(examples) >= 20:
                break
        return examples

    def _in_memory(self, item: dict[str, Any]) -> dict[str, Any]:
        columns = [c for c in columns_of(item) if c in self.state.schema.names]
        schema = pa.schema([self.state.schema.field(c) for c in columns])
        frame = pa.Table.from_batches(list(self.batches(columns)), schema)
        check = GxSuite([item]).validate(frame.to_pandas())[0][0]
        return {**check, "note": MEMORY_NOTE.format(columns=", ".join(columns) or "none")}


def _streamed(check: dict[str, Any]) -> dict[str, Any]:
    return {**check, "source": "stream"}


def _quantile_count(item: Mapping[str, Any]) -> int:
    return len(item["kwargs"].get("quantile_ranges", {}).get("quantiles", []))
