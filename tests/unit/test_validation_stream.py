"""Streaming validation gives the in-memory path's verdicts: every expectation type the repo's suites
use and more, on messy tables (missing values, categoricals, dates), over many small batches."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.validation import ValidationConfigError, ValidationFailed, validate_snapshot
from airflow_mlops_provider.core.validation.stream_plan import MEMORY_NOTE
from tests.unit.ingest_support import zero_page_tail

ROWS = 1500
BATCH = 400  # four batches, the last one short
CITIES = ["berlin", "paris", "rome", "oslo"]


def messy_table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    """Gaps everywhere: ints and bools with nulls, floats with NaN and nulls, categoricals, dates."""
    rng = np.random.default_rng(seed)
    gaps = rng.random(rows) < 0.07
    ids = np.arange(rows)
    duplicated = [i for i in (5, 900, 1400) if i < rows]
    ids[duplicated] = [3, 3, 77][: len(duplicated)]  # duplicated ids
    income = rng.normal(50_000, 8_000, rows)
    income[rng.random(rows) < 0.05] = np.nan
    codes = [
        f"{c}-{n}"
        for c, n in zip(rng.choice(["AB", "CD", "x"], rows), rng.integers(0, 999, rows), strict=True)
    ]
    hours = [datetime.timedelta(hours=int(h)) for h in rng.integers(0, 9000, rows)]
    days = [datetime.timedelta(days=int(d)) for d in rng.integers(0, 900, rows)]
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "age": pa.array(np.where(gaps, None, rng.integers(10, 95, rows)).tolist(), pa.int64()),
            "income": pa.array([None if i % 97 == 0 else v for i, v in enumerate(income)], pa.float64()),
            "score": pa.array(rng.integers(0, 5, rows).astype(np.float64)),  # heavy ties
            "city": pa.array(np.where(gaps, None, rng.choice(CITIES, rows)).tolist(), pa.string()),
            "segment": pa.array(rng.choice(["a", "b", "c"], rows)).dictionary_encode(),
            "code": pa.array(codes),
            "joined": pa.array([datetime.date(2024, 1, 1) + d for d in days]),
            "seen": pa.array(
                [None if g else datetime.datetime(2024, 1, 1) + h for g, h in zip(gaps, hours, strict=True)],
                pa.timestamp("us"),
            ),
            "flag": pa.array(np.where(gaps[::-1], None, rng.integers(0, 2, rows) == 1).tolist(), pa.bool_()),
            "price": pa.array([decimal.Decimal(int(v)) / 100 for v in rng.integers(100, 99_999, rows)],
                              pa.decimal128(8, 2)),
            "low": pa.array(rng.normal(0, 1, rows)),
            "high": pa.array(rng.normal(3, 1, rows)),
        }
    )  # fmt: skip


def e(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"expectation": name, **kwargs}


SUITE = [
    # row-wise, our Arrow evaluator
    e("expect_column_values_to_not_be_null", column="age"),
    e("expect_column_values_to_not_be_null", column="income", mostly=0.9),
    e("expect_column_values_to_not_be_null", column="city", mostly=0.95),
    e("expect_column_values_to_be_null", column="flag"),
    e("expect_column_values_to_be_between", column="age", min_value=18, max_value=90),
    e("expect_column_values_to_be_between", column="age", min_value=10, mostly=0.5),
    e("expect_column_values_to_be_between", column="income", min_value=30_000.5, max_value=70_000,
      mostly=0.99),
    e("expect_column_values_to_be_between", column="score", min_value=0, max_value=4, strict_max=True),
    e("expect_column_values_to_be_in_set", column="city", value_set=["berlin", "paris", "rome"]),
    e("expect_column_values_to_be_in_set", column="city", value_set=CITIES),
    e("expect_column_values_to_be_in_set", column="segment", value_set=["a", "b"], mostly=0.5),
    e("expect_column_values_to_be_in_set", column="score", value_set=[0, 1.0, 2, 3, 4]),
    e("expect_column_values_to_not_be_in_set", column="age", value_set=[11, 12]),
    # row-wise, Great Expectations per batch
    e("expect_column_values_to_match_regex", column="code", regex=r"^[A-Z]{2}-\d+$", mostly=0.5),
    e("expect_column_values_to_not_match_regex", column="code", regex=r"^x-"),
    e("expect_column_value_lengths_to_be_between", column="city", min_value=4, max_value=5),
    e("expect_column_values_to_be_between", column="joined", min_value="2024-03-01", max_value="2026-01-01"),
    e("expect_column_values_to_be_in_set", column="flag", value_set=[True]),
    e("expect_column_pair_values_a_to_be_greater_than_b", column_A="high", column_B="low", mostly=0.9),
    # schema
    e("expect_column_to_exist", column="income"),
    e("expect_column_to_exist", column="nope"),
    e("expect_table_columns_to_match_set", column_set=["id", "age"], exact_match=False),
    e("expect_table_columns_to_match_ordered_list", column_list=["id", "age"]),
    e("expect_table_column_count_to_equal", value=13),
    e("expect_column_values_to_be_of_type", column="age", type_="int64"),
    e("expect_column_values_to_be_of_type", column="income", type_="float64"),
    e("expect_column_values_to_be_in_type_list", column="flag", type_list=["bool"]),
    e("expect_column_values_to_not_be_null", column="nope"),
    # metrics from streamed statistics
    e("expect_table_row_count_to_be_between", min_value=1000, max_value=2000),
    e("expect_table_row_count_to_equal", value=ROWS + 1),
    e("expect_column_mean_to_be_between", column="income", min_value=49_000, max_value=51_000),
    e("expect_column_mean_to_be_between", column="age", min_value=60),
    e("expect_column_mean_to_be_between", column="price", min_value=0, max_value=600),
    e("expect_column_stdev_to_be_between", column="income", min_value=7_000, max_value=9_000),
    e("expect_column_stdev_to_be_between", column="score", max_value=1),
    e("expect_column_sum_to_be_between", column="age", min_value=0),
    e("expect_column_median_to_be_between", column="income", min_value=49_000, max_value=51_000),
    e("expect_column_median_to_be_between", column="score", min_value=2, max_value=2),
    e("expect_column_median_to_be_between", column="age", min_value=50, max_value=60),
    e("expect_column_quantile_values_to_be_between", column="income",
      quantile_ranges={"quantiles": [0.05, 0.25, 0.5, 0.95],
                       "value_ranges": [[30_000, 40_000], [40_000, 50_000], [None, None], [60_000, None]]}),
    e("expect_column_quantile_values_to_be_between", column="age", allow_relative_error="linear",
      quantile_ranges={"quantiles": [0.1, 0.9], "value_ranges": [[15, 20], [85, 90]]}),
    e("expect_column_proportion_of_non_null_values_to_be_between", column="city", min_value=0.95),
    e("expect_column_unique_value_count_to_be_between", column="city", min_value=4, max_value=4),
    e("expect_column_proportion_of_unique_values_to_be_between", column="id", min_value=1.0),
    e("expect_column_most_common_value_to_be_in_set", column="segment", value_set=["a"]),
    # reduced frames
    e("expect_column_min_to_be_between", column="age", min_value=10, max_value=12),
    e("expect_column_max_to_be_between", column="income", max_value=70_000),
    e("expect_column_max_to_be_between", column="joined", max_value="2026-01-01"),
    e("expect_column_min_to_be_between", column="seen", min_value="2024-01-02"),
    e("expect_column_distinct_values_to_be_in_set", column="city", value_set=["berlin", "paris", "rome"]),
    e("expect_column_distinct_values_to_contain_set", column="segment", value_set=["a", "z"]),
    e("expect_column_distinct_values_to_equal_set", column="score", value_set=[0, 1, 2, 3, 4]),
    # uniqueness
    e("expect_column_values_to_be_unique", column="id"),
    e("expect_column_values_to_be_unique", column="id", mostly=0.99),
    e("expect_column_values_to_be_unique", column="city"),
    # not streamable: in memory on its column, with a note
    e("expect_column_values_to_be_increasing", column="id"),
]  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


def _snap(root: Path, data: Any) -> dict[str, Any]:
    return write_snapshot(data, Location(root.as_uri()), "demo").to_dict()


def _document(outcome: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(outcome["result_uri"].removeprefix("file://")).read_text())


def both(snap: dict[str, Any], **kwargs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The checks of the in-memory run and of a streaming run in BATCH-row batches."""
    memory = _document(validate_snapshot(snap, mode="warn", stream_above_mb=None, **kwargs))
    stream = _document(validate_snapshot(snap, mode="warn", stream_above_mb=0, batch_rows=BATCH, **kwargs))
    assert (memory["engine"], stream["engine"]) == ("memory", "stream")
    assert memory["rows"] == stream["rows"]
    assert len(memory["checks"]) == len(stream["checks"])
    return memory["checks"], stream["checks"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(b, float) and isinstance(a, int):
        return _same(b, a)
    if isinstance(a, str) and isinstance(b, int):
        return a == str(b)  # NumPy integers reach the in-memory JSON through default=str
    return bool(a == b)


def assert_same_checks(memory: list[dict[str, Any]], stream: list[dict[str, Any]]) -> None:
    fields = ("expectation", "column", "success", "observed", "unexpected_count", "unexpected_percent",
              "element_count", "examples", "exception", "expected")  # fmt: skip
    streamed = {_key(c): c for c in stream}
    assert sorted(streamed) == sorted(_key(c) for c in memory)
    differences = [
        (m["expectation"], m["column"], key, m.get(key), streamed[_key(m)].get(key))
        for m in memory
        for key in fields
        if not _same(m.get(key), streamed[_key(m)].get(key))
    ]
    assert differences == [], "\n".join(map(repr, differences))


def _key(check: dict[str, Any]) -> str:
    """Great Expectations reports in its own order: match checks by what they check."""
    builtin = check["source"] == "builtin"
    return json.dumps([check["expectation"], check["column"], check["expected"], builtin])


def test_messy_table_every_expectation_type_same_verdicts_and_observed_values(root):
    memory, stream = both(_snap(root, messy_table()), suite=SUITE)
    # type checks come from the schema; on an object column (bools with gaps) GX in memory also
    # counts the values it looked at, which a schema cannot say: same verdict, no counts
    typed = [c for c in memory if c["expectation"] == "expect_column_values_to_be_in_type_list"]
    assert typed[0]["element_count"] == ROWS and typed[0]["success"]
    typed[0].update(element_count=0, unexpected_percent=None)
    assert_same_checks(memory, stream)
    verdicts = [c["success"] for c in memory]
    assert True in verdicts and False in verdicts  # the suite exercises both outcomes
    note = [c.get("note") for c in stream if c["expectation"] == "expect_column_values_to_be_increasing"]
    assert note == [MEMORY_NOTE.format(columns="id")]
    assert {c["source"] for c in stream} == {"builtin", "stream", "gx"}


def test_the_repo_suites_give_the_same_verdicts_streamed(root):
    """The bench's example suite, the unit tests' suite and a suite inferred from a reference."""
    from bench.validate import make_table
    from bench.validate import suite as bench_suite
    from tests.unit.test_validation import AGE_SUITE, _table

    assert_same_checks(*both(_snap(root, make_table(3000)), suite=bench_suite(3000)))
    bad_ages = _table().set_column(1, "age", pa.array([5] * 10 + list(range(18, 18 + 1990)), pa.int64()))
    assert_same_checks(*both(_snap(root, bad_ages), suite=AGE_SUITE))
    reference = _snap(root, {"train": _table(), "test": _table(500, 1)})
    shifted = _table(seed=2).set_column(3, "city", pa.array(["tokyo"] * 100 + ["rome"] * 1900))
    memory, stream = both(_snap(root, shifted), reference=reference)
    assert_same_checks(memory, stream)
    assert [c["column"] for c in stream if not c["success"]] == ["city"]


def test_failure_message_and_report_of_a_streamed_run_name_the_engine_and_the_notes(root):
    snap = _snap(root, messy_table())
    suite = [
        e("expect_column_values_to_be_between", column="age", min_value=18, max_value=90),
        e("expect_column_values_to_be_decreasing", column="id"),
    ]
    with pytest.raises(ValidationFailed) as err:
        validate_snapshot(snap, suite=suite, stream_above_mb=0, batch_rows=BATCH)
    message = str(err.value)
    assert "expect_column_values_to_be_between on column 'age' (min_value=18.0, max_value=90.0)" in message
    assert "expect_column_values_to_be_decreasing on column 'id'" in message
    assert MEMORY_NOTE.format(columns="id") in message
    document = _document(err.value.outcome)
    assert document["engine"] == "stream" and document["great_expectations"] is None
    page = Path(err.value.outcome["report_uri"].removeprefix("file://")).read_text()
    assert "Engine</th><td>stream" in page and MEMORY_NOTE.format(columns="id") in page


def test_small_splits_stay_in_memory_and_the_threshold_switches_to_streaming(root):
    snap = _snap(root, messy_table())
    small = _document(validate_snapshot(snap, suite=SUITE[:3], mode="warn"))
    assert small["engine"] == "memory" and 0 < small["in_memory_estimate_mb"] < 1
    assert small["great_expectations"] is not None
    just_below = small["in_memory_estimate_mb"] * 0.99
    streamed = _document(validate_snapshot(snap, suite=SUITE[:3], mode="warn", stream_above_mb=just_below))
    assert streamed["engine"] == "stream"


def test_a_whole_table_expectation_that_cannot_stream_is_refused_before_anything_is_written(root):
    snap = _snap(root, messy_table())
    other = [e("expect_table_row_count_to_equal_other_table", other_table_name="elsewhere")]
    with pytest.raises(
        ValidationConfigError, match=r"Cannot stream expect_table_row_count_to_equal_other_table"
    ):
        validate_snapshot(snap, suite=other, stream_above_mb=0)
    assert not (root / "demo" / "reports").exists()


def test_a_damaged_snapshot_file_fails_streaming_validation_naming_the_file(root):
    snap = _snap(root, messy_table())
    path = root / "demo" / "snapshots" / snap["sha256"] / "data.parquet"
    path.write_bytes(zero_page_tail(path.read_bytes()))
    with pytest.raises(ValidationConfigError, match=rf"Snapshot file {re.escape(path.as_uri())} .*CRC"):
        validate_snapshot(snap, suite=SUITE[:3], stream_above_mb=0, batch_rows=BATCH)
    assert not (root / "demo" / "reports").exists()


def test_all_splits_together_and_an_empty_split_stream_like_in_memory(root):
    snap = _snap(root, {"train": messy_table(), "test": messy_table(300, 1), "validation": messy_table(0)})
    assert_same_checks(*both(snap, suite=SUITE[:13] + SUITE[28:40]))
    memory, stream = both(snap, suite=SUITE[:13] + SUITE[28:40], split="validation", builtin_checks=False)
    assert_same_checks(memory, stream)
