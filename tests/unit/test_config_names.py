"""``model_name`` follows MLflow's registry rules at parse time, so a bad name never starts a run."""

from __future__ import annotations

import pytest

from airflow_mlops_provider.factory.loader import ConfigError, parse_pipeline

MINIMAL = {
    "name": "churn",
    "artifact_root": "s3://ml-artifacts",
    "data": {"source": {"bucket": "raw-data", "prefix": "churn/", "glob": "*.parquet", "format": "parquet"}},
    "training": {"target": "churned", "task": "classification"},
}


@pytest.mark.parametrize("name", ["../../escape", "team:churn", "50%", "", 'it\'s "both"'])
def test_a_model_name_mlflow_refuses_fails_parsing_with_the_field(name):
    with pytest.raises(ConfigError) as err:
        parse_pipeline({**MINIMAL, "model_name": name}, "churn.yaml")
    text = str(err.value)
    assert "model_name" in text and "not valid in the MLflow registry" in text


@pytest.mark.parametrize("name", ["Churn Model", "o'brien", "churn-v2.1"])
def test_names_mlflow_accepts_parse(name):
    assert parse_pipeline({**MINIMAL, "model_name": name}).registered_model_name == name
