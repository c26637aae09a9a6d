"""Probe DAGs for the live deployment: one uses the MLflow connection, one consumes an asset."""

from __future__ import annotations

from airflow.sdk import DAG, Asset, task

new_data = Asset("mlops-live-probe://new-data")

with DAG("live_probe_mlflow", schedule=None, tags=["test"]) as mlflow_probe:

    @task
    def log_run() -> str:
        from airflow_mlops_provider.core.tracking import ensure_experiment
        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        client = MlflowHook().client
        return client.create_run(ensure_experiment(client, "live-probe")).info.run_id

    log_run()

with DAG("live_probe_consumer", schedule=[new_data], tags=["test"]) as consumer:

    @task
    def read_events(*, triggering_asset_events=None) -> list:
        return [event.extra for event in triggering_asset_events[new_data]]

    read_events()
