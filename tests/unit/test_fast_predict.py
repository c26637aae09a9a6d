"""The fast predict path (Arrow table -> matrix -> one forward) gives what the pandas path gives.

The pandas path (``TabularModel.predict(frame)``, as the MLflow pyfunc and training evaluation
call it, and as batch scoring and the service called it before) is the reference: every figure
must be bit-identical on messy data (blanks, ``NA`` text, nulls, unseen categories, later dates,
integers that arrive as floats, other Arrow types).
"""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import torch

from airflow_mlops_provider.core.scoring import predict_table
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.serving.app import _outputs
from airflow_mlops_provider.serving.schema import rows_to_table
from airflow_mlops_provider.serving.slot import Served
from tests.unit.messy_data import messy_csv

FEATURES = {
    "classification": ("plan", ["signup", "city", "income", "spend", "rooms", "vip"]),
    "regression": ("spend", ["signup", "city", "plan", "income", "rooms", "vip"]),
}


def messy_table(rows: int, seed: int, **kwargs: Any) -> pa.Table:
    """The messy export plus ``rooms`` (integers, a categorical) and ``vip`` (booleans, a number)."""
    table = pacsv.read_csv(io.BytesIO(messy_csv(rows, seed, **kwargs)))
    rng = np.random.default_rng(seed)
    table = table.append_column("rooms", pa.array(rng.integers(1, 5, rows)))
    return table.append_column("vip", pa.array(rng.random(rows) < 0.3))


def model_for(task: str) -> TabularModel:
    target, features = FEATURES[task]
    train = messy_table(400, seed=1).to_pandas()
    model = TabularModel.fit_preprocessing(
        train, target, task, feature_columns=features, categorical_columns=["rooms"], hidden=(16,)
    )
    torch.manual_seed(0)  # untrained weights: the paths must agree on any weights
    model.network.eval()
    return model


def scoring_variants() -> dict[str, pa.Table]:
    """Tables to score: later dates, more blanks, unseen and missing values, and other Arrow types."""
    base = messy_table(150, seed=9, blank_city=0.3, start="2023-06-01")
    n = base.num_rows
    rng = np.random.default_rng(3)
    city = [v if rng.random() > 0.1 else "oslo" for v in base.column("city").to_pylist()]  # unseen
    base = base.set_column(base.schema.get_field_index("city"), "city", pa.array(city))
    holes = pa.array(rng.random(n) < 0.15)
    for name in ("rooms", "vip", "spend", "signup"):  # nulls: rooms turn float, as pandas holds them
        i = base.schema.get_field_index(name)
        base = base.set_column(i, name, pc.if_else(holes, pa.nulls(n, base.field(name).type), base[name]))
    retyped = base
    for name, kind in (
        ("signup", pa.timestamp("ms", tz="Europe/Berlin")),
        ("city", pa.large_string()),
        ("income", pa.float32()),
        ("spend", pa.decimal128(12, 2)),
    ):
        i = retyped.schema.get_field_index(name)
        retyped = retyped.set_column(i, name, retyped[name].cast(kind))
    plan = retyped.schema.get_field_index("plan")
    retyped = retyped.set_column(plan, "plan", retyped["plan"].dictionary_encode())
    whole = messy_table(60, seed=4)  # no nulls: rooms stay integers
    return {"as read": base, "other types": retyped, "no nulls": whole}


@pytest.mark.parametrize("task", sorted(FEATURES))
@pytest.mark.parametrize("variant", ["as read", "other types", "no nulls"])
def test_arrow_path_equals_the_pandas_path(task: str, variant: str) -> None:
    model = model_for(task)
    table = scoring_variants()[variant]
    frame = table.to_pandas()
    np.testing.assert_array_equal(
        model.spec.preprocessor.transform_table(table), model.spec.preprocessor.transform(frame)
    )
    scores = model.score_table(table)
    np.testing.assert_array_equal(scores.predictions, model.predict(frame))
    scored = predict_table(model, table)
    assert scored.column("prediction").to_pylist() == model.predict(frame).tolist()
    if task == "classification":
        assert scores.probabilities is not None
        np.testing.assert_array_equal(scores.probabilities, model.predict_proba(frame))
        assert [scored.column(f"proba_{c}").to_pylist() for c in model.classes or []] == (
            model.predict_proba(frame).T.tolist()
        )
    else:
        assert scores.probabilities is None


def request_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The table as a JSON client sends it: ISO dates, and some whole numbers written as floats."""
    rows: list[dict[str, Any]] = json.loads(table.to_pandas().to_json(orient="records", date_format="iso"))
    for i, row in enumerate(rows):
        if i % 7 == 0 and row["rooms"] is not None:
            row["rooms"] = float(row["rooms"])  # a category never seen as text "2.0"
        if i % 5 == 0:
            row["vip"] = int(row["vip"] or 0)  # a number column may take booleans or integers
        if i % 11 == 0:
            row["city"] = 42  # mixed types in a text column
    return rows


@pytest.mark.parametrize("task", sorted(FEATURES))
def test_service_answers_equal_batch_scoring_of_the_rows(task: str) -> None:
    model = model_for(task)
    rows = request_rows(scoring_variants()["as read"])
    rows.append({**rows[0], "signup": "2031-02-03T10:00:00Z", "rooms": None, "city": None})
    table = rows_to_table(model, rows)
    predictions, probabilities = _outputs(Served("1", model), table)
    frame = table.to_pandas()  # what the service scored before the fast path
    assert predictions == model.predict(frame).tolist()
    assert predictions == predict_table(model, table).column("prediction").to_pylist()
    if task == "classification":
        names = [str(c) for c in model.classes or []]
        assert probabilities == [
            dict(zip(names, row, strict=True)) for row in model.predict_proba(frame).tolist()
        ]
    else:
        assert probabilities is None


def test_dates_as_text_date_objects_and_timestamps_encode_alike() -> None:
    model = model_for("regression")
    days = [datetime.date(2021, 3, 4), None, datetime.date(2024, 12, 31)]
    rest = {"city": ["paris", "", "NA"], "plan": ["pro", "basic", "pro"], "income": [1.0, None, 3.0],
            "rooms": [1, 2, 3], "vip": [True, False, True]}  # fmt: skip
    as_dates = pa.table({"signup": pa.array(days), **rest})
    texts = [None if d is None else d.isoformat() for d in days]
    as_text = rows_to_table(model, pa.table({"signup": texts, **rest}).to_pylist())
    expected = model.spec.preprocessor.transform(as_dates.to_pandas())
    np.testing.assert_array_equal(model.spec.preprocessor.transform_table(as_text), expected)
    np.testing.assert_array_equal(model.spec.preprocessor.transform_table(as_dates), expected)
