"""How streaming validation evaluates each expectation type (the list docs/streaming_validation.md shows).

* ``row``: row-wise, counted per batch by our Arrow evaluator (null, range and set checks on
  types where Arrow and pandas agree), totals aggregated exactly, ``mostly`` applied to totals.
* ``row_gx``: row-wise, Great Expectations on each batch as a DataFrame, totals aggregated.
* ``schema``: read from the schema (and whether a column has missing values, which decides its
  pandas dtype): Great Expectations on a zero-row DataFrame of that dtype.
* ``metric``: from streamed statistics, GX's own verdict fed the metric (row count, mean,
  stdev, sum, non-null share, median and quantiles exactly, distinct count, unique share, mode).
* ``reduced``: GX on a small DataFrame that has the same answer: min/max on the column's
  (min, max), distinct-set checks on its distinct values.
* ``unique``: duplicate rows counted exactly from spilled value counts.
* ``memory``: anything else (and any ``row_condition`` outside row checks): GX in memory on the
  columns it names only, with a note on the check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

ROW_OWN = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
    }
)
ROW_GX = frozenset(
    {
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_match_like_pattern",
        "expect_column_values_to_not_match_like_pattern",
        "expect_column_values_to_match_like_pattern_list",
        "expect_column_values_to_not_match_like_pattern_list",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_be_json_parseable",
        "expect_column_values_to_match_json_schema",
        "expect_column_values_to_match_strftime_format",
        "expect_column_values_to_be_dateutil_parseable",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_in_set",
        "expect_select_column_values_to_be_unique_within_record",
        "expect_multicolumn_sum_to_equal",
    }
    | ROW_OWN
)
SCHEMA = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
    }
)
NUMERIC_METRIC = {
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_stdev_to_be_between": "column.standard_deviation",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_median_to_be_between": "column.median",
    "expect_column_quantile_values_to_be_between": "column.quantile_values",
}
COUNT_METRIC = {
    "expect_table_row_count_to_be_between": "table.row_count",
    "expect_table_row_count_to_equal": "table.row_count",
    "expect_column_proportion_of_non_null_values_to_be_between": "column.non_null_proportion",
    "expect_column_unique_value_count_to_be_between": "column.distinct_values.count",
    "expect_column_proportion_of_unique_values_to_be_between": "column.unique_proportion",
    "expect_column_most_common_value_to_be_in_set": "column.most_common_value",
}
REDUCED = frozenset(
    {
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_distinct_values_to_equal_set",
    }
)
DISTINCT_SETS = frozenset(
    {
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_distinct_values_to_equal_set",
    }
)
COUNTED = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_column_unique_value_count_to_be_between",
        "expect_column_proportion_of_unique_values_to_be_between",
        "expect_column_most_common_value_to_be_in_set",
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_distinct_values_to_equal_set",
    }
)
ORDERED = frozenset({"expect_column_median_to_be_between", "expect_column_quantile_values_to_be_between"})
MEMORY_NOTE = (
    "not streamable: evaluated by Great Expectations in memory on the column(s) it names ({columns})"
)


def columns_of(item: Mapping[str, Any]) -> list[str]:
    """The columns an expectation reads."""
    kwargs = item["kwargs"]
    names = [kwargs.get(k) for k in ("column", "column_A", "column_B")]
    names += list(kwargs.get("column_list") or [])
    return [n for n in names if isinstance(n, str)]


def method(item: Mapping[str, Any], schema: pa.Schema) -> str:
    """``row``, ``row_gx``, ``schema``, ``metric``, ``reduced``, ``unique`` or ``memory``."""
    name, kwargs = item["type"], item["kwargs"]
    columns = columns_of(item)
    if name in SCHEMA or any(c not in schema.names for c in columns):
        return "schema"  # GX on the zero-row frame reports a missing column in its own words
    if name in ROW_GX:
        own = name in ROW_OWN and not kwargs.get("row_condition")
        return "row" if own and _arrow_agrees(name, kwargs, schema.field(columns[0]).type) else "row_gx"
    if kwargs.get("row_condition"):
        return "memory"
    dtype = schema.field(columns[0]).type if columns else None
    if name in NUMERIC_METRIC:
        numeric = dtype is not None and (pa.types.is_integer(dtype) or pa.types.is_floating(dtype))
        decimal_ok = dtype is not None and pa.types.is_decimal(dtype) and name not in ORDERED
        return "metric" if numeric or decimal_ok else "memory"
    if name in COUNT_METRIC:
        return "metric"
    if name in REDUCED:
        return "reduced"
    if name == "expect_column_values_to_be_unique":
        return "unique"
    return "memory"


def refused(expectations: Sequence[Mapping[str, Any]], schema: pa.Schema) -> list[str]:
    """Expectations streaming will not run: not streamable and naming no column (whole-table reads)."""
    return [e["type"] for e in expectations if method(e, schema) == "memory" and not columns_of(e)]


def _arrow_agrees(name: str, kwargs: Mapping[str, Any], dtype: pa.DataType) -> bool:
    """Whether our Arrow evaluator gives pandas' (hence GX's) answer for this check on this type."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if name.endswith("_null"):
        return True
    if name == "expect_column_values_to_be_between":
        bounds = [kwargs.get("min_value"), kwargs.get("max_value")]
        return numeric and all(b is None or _is_number(b) for b in bounds)
    values = [v for v in kwargs.get("value_set") or [] if v is not None]
    if numeric:
        return all(_is_number(v) for v in values)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return all(isinstance(v, str) for v in values)
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
