"""Checks every suite gets (unless switched off): row count, schema, null rate and labelled rows.

Great Expectations passes per-row expectations on empty data and range checks on all-NaN
columns, so these guard the gaps. They run on Arrow buffers (null counts are metadata, NaN is
counted as missing for floats), cost next to nothing, and report in the same shape as GX
results so the failure message and the report treat them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.validation.errors import ValidationConfigError

BUILTIN_DEFAULTS: dict[str, Any] = {
    "min_rows": 1,
    "max_rows": None,
    "max_null_fraction": None,
    "null_tolerance": 0.05,
    "schema": None,
    "allow_extra_columns": False,
    "target": None,
    "max_target_null_fraction": 0.05,
}


def builtin_options(value: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``True``/``None`` -> defaults, ``False`` -> off, a mapping -> defaults updated (keys checked)."""
    if value is False:
        return None
    if value is True or value is None:
        return dict(BUILTIN_DEFAULTS)
    if not isinstance(value, Mapping):
        raise ValidationConfigError(f"builtin_checks: expected true, false or a mapping, got {value!r}")
    unknown = sorted(set(value) - set(BUILTIN_DEFAULTS))
    if unknown:
        raise ValidationConfigError(
            f"builtin_checks: unknown key(s) {unknown}, expected some of {sorted(BUILTIN_DEFAULTS)}"
        )
    return {**BUILTIN_DEFAULTS, **dict(value)}


@dataclass(frozen=True)
class TableFacts:
    """What the builtin checks read: the row count, the schema and each column's missing count."""

    rows: int
    schema: pa.Schema
    missing: dict[str, int]

    @classmethod
    def of(cls, table: pa.Table) -> TableFacts:
        missing = {name: missing_count(table.column(name)) for name in table.column_names}
        return cls(table.num_rows, table.schema, missing)


def run_builtin(
    facts: TableFacts,
    options: Mapping[str, Any],
    reference: Mapping[str, Any] | None,
    suite_columns: Iterable[str],
) -> list[dict[str, Any]]:
    """Row count, schema (against ``options['schema']`` or the reference's) and null-rate results."""
    results = [_row_count(facts.rows, options)]
    results += _schema(facts.schema, options, reference, suite_columns)
    target = options["target"]
    if target is not None and target not in facts.schema.names:
        results.append(_result("expect_column_to_exist", target, False, "missing", "present", role="target"))
    if facts.rows:
        results += _null_rates(facts, options, reference)
    return results


def _result(
    expectation: str, column: str | None, success: bool, observed: Any, expected: Any, **extra: Any
) -> dict[str, Any]:
    return {
        "expectation": expectation,
        "column": column,
        "success": bool(success),
        "observed": observed,
        "expected": expected,
        "unexpected_count": extra.pop("unexpected_count", None),
        "examples": extra.pop("examples", []),
        "exception": None,
        "source": "builtin",
        **extra,
    }


def _row_count(rows: int, options: Mapping[str, Any]) -> dict[str, Any]:
    low, high = int(options["min_rows"] or 0), options["max_rows"]
    ok = rows >= low and (high is None or rows <= int(high))
    expected = {"min_value": low, "max_value": high}
    return _result("expect_table_row_count_to_be_between", None, ok, rows, expected)


def _schema(
    schema: pa.Schema,
    options: Mapping[str, Any],
    reference: Mapping[str, Any] | None,
    suite_columns: Iterable[str],
) -> list[dict[str, Any]]:
    expected: dict[str, str | None]
    if options["schema"]:
        expected = {str(k): str(v) for k, v in dict(options["schema"]).items()}
    elif reference:
        expected = {c["name"]: c["type"] for c in reference["schema"]}
    else:
        expected = dict.fromkeys(dict.fromkeys(suite_columns))
    actual = {f.name: str(f.type) for f in schema}
    results = []
    for name, dtype in expected.items():
        if name not in actual:
            results.append(_result("expect_column_to_exist", name, False, "missing", "present"))
        elif dtype is not None:
            same = _same_type(actual[name], dtype)
            results.append(_result("expect_column_values_to_be_of_type", name, same, actual[name], dtype))
    if (options["schema"] or reference) and not options["allow_extra_columns"]:
        extra = [n for n in actual if n not in expected]
        results.append(
            _result(
                "expect_table_columns_to_match_set",
                None,
                not extra,
                sorted(actual),
                sorted(expected),
                unexpected_count=len(extra),
                examples=extra[:10],
            )
        )
    return results


def _null_rates(
    facts: TableFacts, options: Mapping[str, Any], reference: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    configured = options["max_null_fraction"]
    reference_fraction = (reference or {}).get("null_fraction", {})
    results = []
    for name, missing in facts.missing.items():
        fraction = missing / facts.rows
        if name == options["target"]:
            label_share = float(options["max_target_null_fraction"])
            results.append(_target_nulls(name, missing, facts.rows, label_share))
            continue
        if isinstance(configured, Mapping) and name in configured:
            allowed = float(configured[name])
        elif isinstance(configured, int | float):
            allowed = float(configured)
        elif name in reference_fraction:
            allowed = min(1.0, float(reference_fraction[name]) + float(options["null_tolerance"]))
        else:
            allowed = None  # only an all-missing column fails
        ok = fraction < 1.0 if allowed is None else fraction <= allowed
        expected = {"max_null_fraction": allowed if allowed is not None else "< 1.0"}
        results.append(
            _result(
                "expect_column_values_to_not_be_null",
                name,
                ok,
                round(fraction, 6),
                expected,
                unexpected_count=int(missing),
            )
        )
    return results


def missing_count(column: pa.ChunkedArray | pa.Array) -> int:
    """Nulls, plus NaN in a floating-point column: the values a model cannot learn from."""
    missing = column.null_count
    if pa.types.is_floating(column.type) and len(column):
        missing += pc.sum(pc.is_nan(pc.drop_null(column))).as_py() or 0
    return int(missing)


def _target_nulls(name: str, missing: int, rows: int, allowed: float) -> dict[str, Any]:
    """Rows without a label: training drops them, up to ``allowed`` of all rows."""
    fraction = missing / rows
    return _result(
        "expect_column_values_to_not_be_null",
        name,
        fraction <= allowed,
        round(fraction, 6),
        {"max_null_fraction": allowed},
        unexpected_count=missing,
        unexpected_percent=100.0 * fraction,
        role="target",
        note=(
            f"target column {name!r}: {missing} of {rows} rows have no label ({fraction:.2%}); "
            f"at most {allowed:.2%} may be dropped (training.missing_target / max_missing_target_share)"
        ),
    )


def _same_type(actual: str, expected: str) -> bool:
    aliases = {
        "float64": "double",
        "float32": "float",
        "str": "string",
        "utf8": "string",
        "large_utf8": "string",
        "large_string": "string",
        "boolean": "bool",
    }
    return aliases.get(actual, actual) == aliases.get(expected, expected)
