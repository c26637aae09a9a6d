"""Request rows checked against a real tabular model's schema, and the ``mlops-serve`` arguments."""

from __future__ import annotations

import argparse
import re

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.scoring import predict_table
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.serving.__main__ import parse_args, parse_pipeline
from airflow_mlops_provider.serving.app import PipelineTarget
from airflow_mlops_provider.serving.schema import MAX_ROWS, InputError, request_rows, rows_to_table
from tests.support.drift_models import frame


@pytest.fixture(scope="module")
def model() -> TabularModel:
    return TabularModel.fit_preprocessing(frame(200, seed=3), "y", hidden=(4,))


def test_rows_score_like_the_batch_table(model: TabularModel) -> None:
    data = frame(20, seed=4).drop(columns=["y"])
    rows = data.to_dict(orient="records")
    rows[0]["x1"] = None  # a missing value, as in a snapshot
    rows[1]["x2"] = 3  # an int in a float column
    rows[2]["extra"] = "ignored"
    data.loc[0, "x1"] = None
    data.loc[1, "x2"] = 3.0
    batch = predict_table(model, pa.Table.from_pandas(data, preserve_index=False))
    assert predict_table(model, rows_to_table(model, rows)).equals(batch)


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"rows": [{"x1": 1.0, "region": "eu"}]}, "x2", "'x2' is missing from row(s) [0]"),
        ({"rows": [{"x1": "abc", "x2": 1.0, "region": "eu"}]}, "x1", "'x1' is numeric; row 0 holds 'abc'"),
        ({"rows": [{"x1": 1, "x2": 1, "region": ["eu"]}]}, "region", "'region' takes a single value"),
    ],
)
def test_rows_that_do_not_fit_name_the_field(
    model: TabularModel, payload: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InputError, match=re.escape(words)) as err:
        rows_to_table(model, request_rows(payload))
    assert err.value.field == field


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ([1, 2], "body", "must be a JSON object"),
        ({"inputs": []}, "body", "exactly one of ['rows', 'dataframe_records']"),
        ({"rows": [], "dataframe_records": []}, "body", "exactly one of"),
        ({"dataframe_records": []}, "dataframe_records", "non-empty list"),
        ({"rows": [1]}, "rows[0]", "Row 0 is not a JSON object"),
        ({"rows": [{}] * (MAX_ROWS + 1)}, "rows", f"at most {MAX_ROWS}"),
    ],
)
def test_malformed_bodies_are_refused(payload: object, field: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        request_rows(payload)
    assert err.value.field == field
    assert words in str(err.value)


def test_pipeline_arguments() -> None:
    assert parse_pipeline("cancer=cancer_diagnosis@canary") == (
        "cancer",
        PipelineTarget("cancer_diagnosis", "canary"),
    )
    assert parse_pipeline("c=m") == ("c", PipelineTarget("m", "champion"))
    with pytest.raises(argparse.ArgumentTypeError, match="is not NAME=MODEL"):
        parse_pipeline("cancer")
    args = parse_args(["--pipeline", "a=m", "--tracking-uri", "http://x", "--port", "9000", "--poll", "0.5"])
    assert (args.port, args.poll, args.host) == (9000, 0.5, "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--pipeline", "a=m", "--pipeline", "a=n", "--tracking-uri", "http://x"])
