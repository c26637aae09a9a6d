"""Snapshot validation: suites from config, GX JSON and inference; builtin checks; reports; bad config."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.validation import ValidationConfigError, ValidationFailed, validate_snapshot
from tests.unit.ingest_support import zero_page_tail


def _table(rows: int = 2000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows), pa.int64()),
            "age": pa.array(rng.integers(18, 90, rows), pa.int64()),
            "income": pa.array(rng.normal(50_000, 8_000, rows)),
            "city": pa.array(rng.choice(["berlin", "paris", "rome"], rows)),
        }
    )


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "artifacts"


def _snap(root: Path, data) -> dict:
    return write_snapshot(data, Location(root.as_uri()), "demo").to_dict()


AGE_SUITE = [
    {"expectation": "expect_column_values_to_be_between", "column": "age", "min_value": 18, "max_value": 90},
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "city", "value_set": ["berlin", "paris", "rome"]},
    },
    {"expectation": "column_values_to_be_unique", "column": "id"},
]


def test_config_suite_passes_and_writes_json_and_html_next_to_the_snapshot(root):
    snap = _snap(root, {"train": _table(), "test": _table(500, 1)})
    where = {"artifact_root": Location(root.as_uri()), "pipeline": "demo"}
    outcome = validate_snapshot(snap, suite=AGE_SUITE, split="train", run_info={"run_id": "r1"}, **where)
    assert outcome["success"] and outcome["failed"] == [] and outcome["snapshot_sha256"] == snap["sha256"]
    # 3 suite expectations + row count + 4 null rates
    assert outcome["evaluated"] == 8
    report_dir = root / "demo" / "reports" / "validation" / snap["sha256"]
    assert outcome["report_uri"].startswith(report_dir.as_uri() + "/train-")
    document = json.loads(Path(outcome["result_uri"].removeprefix("file://")).read_text())
    assert document["run"] == {"run_id": "r1"} and document["rows"] == 2000
    assert document["great_expectations"]["success"] is True
    assert len(document["great_expectations"]["results"]) == 3
    page = Path(outcome["report_uri"].removeprefix("file://")).read_text()
    assert "Validation passed: 0 of 8 failed" in page and "expect_column_values_to_be_unique" in page


def test_failure_message_lists_each_failed_expectation_with_column_observed_count_and_examples(root):
    bad = _table().set_column(1, "age", pa.array([5] * 10 + list(range(18, 18 + 1990)), pa.int64()))
    snap = _snap(root, bad)
    with pytest.raises(ValidationFailed) as err:
        validate_snapshot(snap, suite=AGE_SUITE)
    message = str(err.value)
    assert "1 of 8 expectations failed" in message
    assert "expect_column_values_to_be_between on column 'age' (min_value=18.0, max_value=90.0)" in message
    assert "1927 unexpected (96.35%)" in message and "e.g. [5, 5, 5, 5, 5]" in message
    assert "expect_column_values_to_be_unique on column 'id'" not in message
    assert err.value.outcome["failed"][0]["column"] == "age"
    assert Path(err.value.outcome["report_uri"].removeprefix("file://")).exists()


def test_gx_suite_json_file(root, tmp_path):
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps({
        "name": "customers",
        "expectations": [
            {"type": "expect_column_mean_to_be_between",
             "kwargs": {"column": "income", "min_value": 1, "max_value": 2}},
            {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 2000}, "meta": {"owner": "data"}},
        ],
    }))  # fmt: skip
    expected = (
        r"expect_column_mean_to_be_between on column 'income' \(min_value=1.0, max_value=2.0\): "
        r"observed 4\d{4}\."
    )
    with pytest.raises(ValidationFailed, match=expected):
        validate_snapshot(_snap(root, _table()), suite=str(suite_file))


def test_inferred_suite_passes_on_its_own_kind_of_data_and_catches_shifted_values(root):
    reference = _snap(root, {"train": _table(), "test": _table(500, 1)})
    outcome = validate_snapshot(reference, reference=reference, split="test")
    assert outcome["success"], outcome
    shifted = _table(seed=2)
    shifted = shifted.set_column(3, "city", pa.array(["tokyo"] * 100 + ["rome"] * 1900))
    shifted = shifted.set_column(2, "income", pa.array(np.full(2000, 1e7)))
    with pytest.raises(ValidationFailed) as err:
        validate_snapshot(_snap(root, shifted), reference=reference)
    failed = {(f["expectation"], f["column"]) for f in err.value.outcome["failed"]}
    assert failed == {
        ("expect_column_values_to_be_in_set", "city"),
        ("expect_column_values_to_be_between", "income"),
    }
    assert '100 unexpected (5.00%), e.g. ["tokyo", "tokyo"' in str(err.value)


def test_empty_data_fails_although_gx_passes_per_row_expectations_unless_allowed(root):
    snap = _snap(root, _table().slice(0, 0))
    assert validate_snapshot(snap, suite=AGE_SUITE, builtin_checks=False)["success"]  # what GX alone says
    with pytest.raises(
        ValidationFailed,
        match=r"expect_table_row_count_to_be_between \(min_value=1\): observed 0 \[builtin\]",
    ):
        validate_snapshot(snap, suite=AGE_SUITE)
    assert validate_snapshot(snap, suite=AGE_SUITE, builtin_checks={"min_rows": 0})["success"]


def test_all_nan_column_fails_although_gx_passes_range_checks_unless_allowed(root):
    snap = _snap(root, _table().set_column(2, "income", pa.array(np.full(2000, np.nan))))
    income = [{"expectation": "expect_column_values_to_be_between", "column": "income", "min_value": 0}]
    assert validate_snapshot(snap, suite=income, builtin_checks=False)["success"]  # what GX alone says
    with pytest.raises(
        ValidationFailed, match=r"not_be_null on column 'income'.*observed 1.0, 2000 unexpected"
    ):
        validate_snapshot(snap, suite=income)
    allowed = validate_snapshot(snap, suite=income, builtin_checks={"max_null_fraction": {"income": 1.0}})
    assert allowed["success"]


@pytest.mark.parametrize(
    ("change", "failures"),
    [
        (lambda t: t.drop_columns(["city"]), {("expect_column_to_exist", "city")}),
        (
            lambda t: t.rename_columns(["id", "age", "income", "town"]),
            {("expect_column_to_exist", "city"), ("expect_table_columns_to_match_set", None)},
        ),
        (
            lambda t: t.set_column(1, "age", t.column("age").cast(pa.float64())),
            {("expect_column_values_to_be_of_type", "age")},
        ),
    ],
    ids=["column-missing", "column-renamed", "dtype-changed"],
)
def test_schema_change_against_the_reference(root, change, failures):
    reference = _snap(root, _table())
    with pytest.raises(ValidationFailed) as err:
        validate_snapshot(_snap(root, change(_table(seed=3))), reference=reference)
    got = {(f["expectation"], f["column"]) for f in err.value.outcome["failed"] if f["source"] == "builtin"}
    assert got == failures
    if ("expect_column_to_exist", "city") in failures:
        assert "expect_column_to_exist on column 'city'" in str(err.value)


def test_warn_mode_logs_and_returns_the_failure(root, caplog):
    caplog.set_level(logging.WARNING, logger="airflow_mlops_provider")
    outcome = validate_snapshot(_snap(root, _table().slice(0, 0)), suite=AGE_SUITE, mode="warn")
    assert outcome["success"] is False and outcome["failed_count"] == 1
    assert any("mode=warn: continuing" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ([{"expectation": "expect_column_values_to_be_betwen", "column": "age"}],
         "suite[0]: unknown expectation 'expect_column_values_to_be_betwen'; did you mean "
         "expect_column_values_to_be_between"),
        ([{"expectation": "expect_column_values_to_be_between", "column": "age", "min_value": "x"}],
         "suite[0]: expect_column_values_to_be_between has bad arguments"),
        ([{"column": "age"}], "suite[0]: missing 'expectation'"),
        ({"expectation": "x"}, "suite: expected a list of expectations"),
        ("/nonexistent/suite.json", "Suite file /nonexistent/suite.json does not exist"),
    ],
)  # fmt: skip
def test_bad_suites_fail_before_anything_runs(root, suite, message):
    snap = _snap(root, _table(10))
    with pytest.raises(ValidationConfigError) as err:
        validate_snapshot(snap, suite=suite)
    assert message in str(err.value)
    assert not (root / "demo" / "reports").exists()


def test_snapshot_or_pipeline_outside_the_artifact_root_is_refused(root, tmp_path):
    outside = write_snapshot(_table(10), Location((tmp_path / "elsewhere").as_uri()), "demo").to_dict()
    with pytest.raises(ValidationConfigError, match=r"snapshot .* lies outside the artifact root"):
        validate_snapshot(outside, suite=AGE_SUITE, artifact_root=Location(root.as_uri()), pipeline="demo")
    sneaky = {**outside, "uri": root.as_uri() + "/demo/../../elsewhere/demo/snapshots/" + outside["sha256"]}
    with pytest.raises(ValidationConfigError, match="lies outside the artifact root"):
        validate_snapshot(sneaky, suite=AGE_SUITE, artifact_root=Location(root.as_uri()), pipeline="demo")
    inside = _snap(root, _table(10))
    with pytest.raises(ValidationConfigError, match=r"pipeline '\.\./x' is not a safe name"):
        validate_snapshot(inside, suite=AGE_SUITE, artifact_root=Location(root.as_uri()), pipeline="../x")
    assert (
        not (root / "demo" / "reports").exists()
        and not (tmp_path / "elsewhere" / "demo" / "reports").exists()
    )


def test_a_column_the_suite_names_but_the_data_lacks_is_reported_by_both_layers(root):
    suite = [{"expectation": "expect_column_values_to_not_be_null", "column": "nope"}]
    with pytest.raises(ValidationFailed) as err:
        validate_snapshot(_snap(root, _table(10)), suite=suite)
    message = str(err.value)
    assert "expect_column_to_exist on column 'nope': observed missing [builtin]" in message
    assert "expect_column_values_to_not_be_null on column 'nope': error: " in message
    assert 'The column "nope" in BatchData does not exist' in message


def test_inference_covers_decimal_boolean_and_leaves_timestamps_alone(root):
    import datetime
    import decimal

    table = pa.table(
        {
            "price": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.25")], pa.decimal128(6, 2)),
            "flag": [True, False],
            "seen": pa.array([datetime.datetime(2024, 1, 1), datetime.datetime(2024, 2, 1)]),
        }
    )
    reference = _snap(root, table)
    outcome = validate_snapshot(reference, reference=reference)
    assert outcome["success"]
    document = json.loads(Path(outcome["result_uri"].removeprefix("file://")).read_text())
    inferred = {(e["type"], e["kwargs"]["column"]) for e in document["expectations"]}
    assert inferred == {
        ("expect_column_values_to_be_between", "price"),
        ("expect_column_values_to_be_in_set", "flag"),
    }


def test_a_damaged_snapshot_file_fails_validation_naming_the_file(root):
    snap = _snap(root, _table())
    path = root / "demo" / "snapshots" / snap["sha256"] / "data.parquet"
    path.write_bytes(zero_page_tail(path.read_bytes()))
    message = rf"Snapshot file {re.escape(path.as_uri())} .*CRC checksum"
    with pytest.raises(ValidationConfigError, match=message):
        validate_snapshot(snap, suite=AGE_SUITE)


def test_snapshot_home_is_the_root_and_pipeline_of_a_snapshot_path():
    from airflow_mlops_provider.core.validation.run import snapshot_home

    assert snapshot_home("s3://bucket/root/cancer/snapshots/ab12/") == ("s3://bucket/root", "cancer")
    assert snapshot_home({"uri": "file:///tmp/a/p/snapshots/ff"}) == ("file:///tmp/a", "p")
    with pytest.raises(ValidationConfigError, match="report for s3://b/x/y: pass artifact_root"):
        snapshot_home("s3://b/x/y")
