"""Expectation suites: from the pipeline config, from a GX suite JSON file, or inferred from a
reference snapshot (GX 1.x removed its profilers, so inference is ours).

A suite here is a plain list of ``{"type": "expect_...", "kwargs": {...}, "meta": {...}}``
dicts, checked against Great Expectations' registry before anything runs, so a typo fails
with the expectation's position and name instead of being silently dropped (GX's own
``ExpectationSuite`` only logs invalid entries).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import great_expectations  # noqa: F401  (importing it fills the expectation registry)
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.arrow_types import is_categorical_type, is_numeric_type
from airflow_mlops_provider.core.snapshot import Snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.validation.errors import ValidationConfigError

INFER_DEFAULTS = {"range_margin": 0.1, "mostly": 1.0, "max_categories": 50}


def normalise_suite(entries: object, origin: str = "suite") -> list[dict[str, Any]]:
    """Accept a list of ``{"type", "kwargs"}`` (GX JSON) or flat ``{"expectation": ..., "column": ...}``
    entries; anything else (user input, so any value) is a :class:`ValidationConfigError`."""
    if isinstance(entries, Mapping) or not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ValidationConfigError(
            f"{origin}: expected a list of expectations, got {type(entries).__name__}"
        )
    out = []
    for number, entry in enumerate(entries):
        where = f"{origin}[{number}]"
        if not isinstance(entry, Mapping):
            raise ValidationConfigError(f"{where}: expected a mapping, got {entry!r}")
        entry = dict(entry)
        name = (
            entry.pop("type", None) or entry.pop("expectation", None) or entry.pop("expectation_type", None)
        )
        if not name:
            raise ValidationConfigError(f"{where}: missing 'expectation' (the expectation's name)")
        kwargs = dict(entry.pop("kwargs", {}) or {})
        meta = dict(entry.pop("meta", {}) or {})
        kwargs.update(entry)
        out.append({"type": _expectation_name(str(name), where), "kwargs": kwargs, "meta": meta})
    for number, item in enumerate(out):
        check_expectation(item, f"{origin}[{number}]")
    return out


def load_suite_file(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Read a GX suite JSON (``{"name", "expectations": [...]}``) or a bare list of expectations."""
    location = Location(uri if "://" in uri else f"file://{uri}", dict(storage_options or {}))
    try:
        data = json.loads(location.read_bytes())
    except FileNotFoundError as err:
        raise ValidationConfigError(f"Suite file {uri} does not exist") from err
    except json.JSONDecodeError as err:
        raise ValidationConfigError(f"Suite file {uri} is not valid JSON: {err}") from err
    entries = data.get("expectations") if isinstance(data, Mapping) else data
    if entries is None:
        raise ValidationConfigError(f"Suite file {uri} has no 'expectations' list")
    return normalise_suite(entries, origin=uri)


def check_expectation(item: Mapping[str, Any], where: str) -> None:
    """Build the GX expectation once, so bad arguments fail here with their position."""
    from great_expectations.expectations.registry import get_expectation_impl

    impl = get_expectation_impl(item["type"])
    try:
        impl(**item["kwargs"], meta=item.get("meta") or None)
    except Exception as err:  # pydantic ValidationError and GX configuration errors
        detail = " ".join(str(err).split())
        raise ValidationConfigError(f"{where}: {item['type']} has bad arguments: {detail[:400]}") from err


def infer_suite(reference: Snapshot, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Profile a reference snapshot, streaming row groups: ranges, category sets, null fractions, schema.

    Returns ``{"expectations": [...], "reference": {"schema", "null_fraction", "rows", "sha256"}}``;
    the reference part feeds the builtin schema and null-rate checks.
    """
    opts = {**INFER_DEFAULTS, **dict(options or {})}
    unknown = sorted(set(opts) - set(INFER_DEFAULTS))
    if unknown:
        raise ValidationConfigError(
            f"infer options: unknown key(s) {unknown}, expected {sorted(INFER_DEFAULTS)}"
        )
    split = "train" if "train" in reference.manifest["splits"] else None
    parquet = reference.parquet_file(split)
    schema = parquet.schema_arrow
    stats = {
        name: _ColumnStats(schema.field(name).type, int(opts["max_categories"])) for name in schema.names
    }
    rows = 0
    for index in range(parquet.num_row_groups):
        group = parquet.read_row_group(index)
        rows += group.num_rows
        for name in schema.names:
            stats[name].add(group.column(name))
    expectations = []
    for name, column in stats.items():
        expectations += column.expectations(name, opts)
    return {
        "expectations": normalise_suite(expectations, origin=f"suite inferred from {reference.location.uri}"),
        "reference": {
            "uri": reference.location.uri,
            "sha256": reference.manifest["sha256"],
            "split": split,
            "rows": rows,
            "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
            "null_fraction": {n: (s.nulls / rows if rows else 0.0) for n, s in stats.items()},
        },
    }


class _ColumnStats:
    def __init__(self, dtype: pa.DataType, max_categories: int) -> None:
        self.dtype, self.max_categories = dtype, max_categories
        self.nulls = 0
        self.low: Any = None
        self.high: Any = None
        self.values: set[Any] | None = set() if is_categorical_type(dtype) else None

    def add(self, column: pa.ChunkedArray) -> None:
        self.nulls += column.null_count
        if is_numeric_type(self.dtype):
            values = pc.drop_null(column)
            if pa.types.is_floating(self.dtype):
                values = pc.filter(values, pc.is_finite(values))
            if len(values):
                bounds = pc.min_max(values)
                low, high = bounds["min"].as_py(), bounds["max"].as_py()
                self.low = low if self.low is None else min(self.low, low)
                self.high = high if self.high is None else max(self.high, high)
        elif self.values is not None:
            self.values |= set(pc.unique(pc.drop_null(column)).to_pylist())
            if len(self.values) > self.max_categories:
                self.values = None

    def expectations(self, name: str, opts: Mapping[str, Any]) -> list[dict[str, Any]]:
        mostly = float(opts["mostly"])
        extra = {"mostly": mostly} if mostly < 1 else {}
        meta = {"inferred": True}
        if is_numeric_type(self.dtype) and self.low is not None:
            if pa.types.is_decimal(self.dtype):
                self.low, self.high = float(self.low), float(self.high)
            margin = (self.high - self.low) * float(opts["range_margin"])
            low, high = self.low - margin, self.high + margin
            if pa.types.is_integer(self.dtype):
                low, high = math.floor(low), math.ceil(high)
            return [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": name, "min_value": low, "max_value": high, **extra},
                    "meta": meta,
                }
            ]
        if self.values:
            return [
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": name, "value_set": sorted(self.values, key=str), **extra},
                    "meta": meta,
                }
            ]
        return []


def _expectation_name(name: str, where: str) -> str:
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    known = set(list_registered_expectation_implementations())
    candidates = [name, f"expect_{name}"]
    for candidate in candidates:
        if candidate in known:
            return candidate
    close = difflib.get_close_matches(name if name.startswith("expect_") else f"expect_{name}", known, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ValidationConfigError(f"{where}: unknown expectation {name!r}{hint}")
