"""Links from Airflow task pages to the MLflow UI."""

from __future__ import annotations

from airflow_mlops_provider.links.base import XComUrlLink


class MlflowRunLink(XComUrlLink):
    """The MLflow run a training task logged to."""

    name = "MLflow run"
    source_key = "mlflow_run_url"


class MlflowModelVersionLink(XComUrlLink):
    """The registered model version a promotion task registered or decided on."""

    name = "MLflow model version"
    source_key = "mlflow_model_version_url"


def run_url(ui_base: str | None, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI address of a run, or ``None`` when there is no UI (file or SQLite store)."""
    if not ui_base:
        return None
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(ui_base: str | None, model_name: str, version: str | int) -> str | None:
    """The MLflow UI address of a registered model version, or ``None`` without a UI."""
    if not ui_base:
        return None
    return f"{ui_base.rstrip('/')}/#/models/{model_name}/versions/{version}"
