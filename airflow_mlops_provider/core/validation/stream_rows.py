"""Row-wise expectations over record batches: per-batch counts, exact totals, GX's ``mostly`` rule.

Our Arrow evaluator covers null, range and set checks where Arrow and pandas agree (see
:mod:`stream_plan`); it is about 20 times faster than Great Expectations on each batch. Other
row-wise checks run through GX per batch. Either way each batch yields element, missing and
unexpected counts plus the first unexpected values, and :class:`RowTally` adds them up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.validation.builtin import missing_count
from airflow_mlops_provider.core.validation.gx import MAX_EXAMPLES, gx_kwargs, make_check
from airflow_mlops_provider.core.validation.stream_stats import present

NULL_FAMILY = ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null")


class RowTally:
    """One row-wise expectation's totals over all batches."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.item = item
        self.kwargs = gx_kwargs(item)
        self.element = 0
        self.missing: int | None = None if item["type"] in NULL_FAMILY else 0
        self.unexpected = 0
        self.examples: list[Any] = []
        self.exception: str | None = None

    def add(self, part: Mapping[str, Any]) -> None:
        """Merge one batch's result (a check dict from GX or from :func:`count_rows`)."""
        self.element += int(part.get("element_count") or 0)
        if self.missing is not None:
            self.missing += int(part.get("missing_count") or 0)
        self.unexpected += int(part.get("unexpected_count") or 0)
        self.examples += list(part.get("examples") or [])[: MAX_EXAMPLES - len(self.examples)]
        self.exception = self.exception or part.get("exception")

    def result(self) -> dict[str, Any]:
        """The check over all rows, as Great Expectations would report it in memory."""
        considered = self.element if self.missing is None else self.element - self.missing
        mostly = float(self.kwargs.get("mostly", 1.0))
        success = considered == 0 or (considered - self.unexpected) / considered >= mostly
        result = {
            "element_count": self.element,
            "unexpected_count": self.unexpected,
            "unexpected_percent": 100 * self.unexpected / considered if considered else None,
            "missing_count": self.missing,
            "partial_unexpected_list": self.examples,
        }
        check = make_check(self.item["type"], self.kwargs, success and not self.exception, result, None)
        return {**check, "exception": self.exception, "source": "stream"}


def count_rows(item: Mapping[str, Any], column: pa.Array) -> dict[str, Any]:
    """One batch's counts for a check :func:`stream_plan.method` routes to ``row``."""
    name = item["type"]
    missing = missing_count(column)
    if name == "expect_column_values_to_not_be_null":
        blank = pa.nulls(1, column.type).to_pandas().iloc[0]  # what pandas shows for a gap: NaN, None, NaT
        return _part(len(column), None, missing, [blank] * min(missing, MAX_EXAMPLES))
    values = present(column)
    if name == "expect_column_values_to_be_null":
        return _part(len(column), None, len(values), values.slice(0, MAX_EXAMPLES).to_pylist())
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    bad = _unexpected(name, item["kwargs"], values)
    examples = values.filter(bad).slice(0, MAX_EXAMPLES).to_pylist()
    return _part(len(column), missing, int(pc.sum(bad).as_py() or 0), examples)


def _part(element: int, missing: int | None, unexpected: int, examples: list[Any]) -> dict[str, Any]:
    return {
        "element_count": element,
        "missing_count": missing,
        "unexpected_count": unexpected,
        "examples": examples,
    }


def _unexpected(name: str, kwargs: Mapping[str, Any], values: pa.Array) -> pa.Array:
    if name == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        tests = []
        if low is not None:
            tests.append((pc.less_equal if kwargs.get("strict_min") else pc.less)(values, low))
        if high is not None:
            tests.append((pc.greater_equal if kwargs.get("strict_max") else pc.greater)(values, high))
        return tests[0] if len(tests) == 1 else pc.or_(*tests)
    wanted = [v for v in kwargs.get("value_set") or [] if v is not None]
    if _is_number_type(values.type) and (pa.types.is_floating(values.type) or _has_float(wanted)):
        values, wanted_array = values.cast(pa.float64()), pa.array(wanted, pa.float64())
    else:
        wanted_array = pa.array(wanted, values.type)
    found = pc.is_in(values, value_set=wanted_array)
    return pc.invert(found) if name == "expect_column_values_to_be_in_set" else found


def _is_number_type(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def _has_float(values: list[Any]) -> bool:
    return any(isinstance(v, float) for v in values)
