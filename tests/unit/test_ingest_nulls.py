"""What a CSV cell means: blanks and NA markers are missing values in every column, strings too."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
from airflow_mlops_provider.core.drift.columns import TableSource
from airflow_mlops_provider.core.ingest import ingest_snapshot
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.validation import ValidationFailed, validate_snapshot
from tests.unit.messy_data import messy_csv


def _root(tmp_path) -> Location:
    return Location((tmp_path / "artifacts").as_uri())


def _blank_cities(data: bytes) -> int:
    return sum(row["city"] in ("", "NA") for row in csv.DictReader(io.StringIO(data.decode())))


def test_blank_and_na_cells_are_nulls_in_string_columns_too_and_validation_counts_them(tmp_path):
    data = messy_csv(2000, seed=0, blank_city=0.2)
    src = tmp_path / "customers.csv"
    src.write_bytes(data)
    ref = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo")
    table = open_snapshot(ref).read()
    assert table.schema.field("city").type == pa.string()
    assert table.column("city").null_count == _blank_cities(data) > 400
    assert not {"", "NA"} & set(table.column("city").to_pylist())
    assert table.column("income").null_count > 50
    with pytest.raises(ValidationFailed, match=r"not_be_null on column 'city'.*observed 0\.2"):
        validate_snapshot(ref.to_dict(), builtin_checks={"max_null_fraction": {"city": 0.05}})


def test_null_markers_are_configurable_and_an_empty_list_keeps_every_cell(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,city\n1,\n2,-\n3,NA\n4,rome\n")

    def cities(**csv_options: object) -> list[str | None]:
        ref = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", csv_options=csv_options or None)
        return open_snapshot(ref).read().column("city").to_pylist()

    assert cities() == [None, "-", None, "rome"]
    assert cities(null_values=["-"]) == ["", None, "NA", "rome"]
    assert cities(null_values=[]) == ["", "-", "NA", "rome"]


def test_drift_sees_more_blank_cells_as_a_rise_in_the_missing_share(tmp_path):
    sources = {}
    for name, blank in (("reference", 0.02), ("current", 0.3)):
        src = tmp_path / f"{name}.csv"
        src.write_bytes(messy_csv(3000, seed=len(name), blank_city=blank))
        sources[name] = TableSource(
            open_snapshot(ingest_snapshot(src.as_uri(), _root(tmp_path), name)).read()
        )
    config = DriftConfig(include=["city"])
    city = compare(reference_from_source(sources["reference"], config), sources["current"], config).column(
        "city"
    )
    assert (city.missing_reference, city.missing_current) == pytest.approx((0.03, 0.31), abs=0.02)
    assert city.verdict == "drift" and city.reason.startswith("missing-value share changed")
    assert city.effect_size < city.threshold  # the cities present are spread as before
