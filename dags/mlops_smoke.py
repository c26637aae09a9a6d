"""Smoke DAG: the provider's MLflow hook logs one run to the configured tracking server."""

from __future__ import annotations

from airflow.sdk import DAG, task

with DAG(
    "mlops_smoke",
    schedule=None,
    tags=["mlops", "demo"],
    doc_md="Checks that the provider is installed and the `mlflow_default` connection reaches MLflow.",
) as dag:

    @task
    def log_smoke_run() -> str:
        import mlflow

        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        client = MlflowHook().get_conn()
        mlflow.set_experiment("mlops-smoke")
        with mlflow.start_run() as run:
            mlflow.log_param("provider", "airflow-mlops-provider")
        print(f"Logged MLflow run {run.info.run_id} to {MlflowHook().settings.display_uri}")
        return client.get_run(run.info.run_id).info.run_id

    log_smoke_run()
