"""Provider metadata, read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_mlops_provider import __version__

_INTEGRATION = "MLflow"
_MLOPS = "MLOps retraining loop"


def get_provider_info() -> dict[str, Any]:
    """Return the provider-info dictionary that Airflow validates and shows in ``providers list``."""
    return {
        "package-name": "airflow-mlops-provider",
        "name": "MLOps",
        "description": "Production ML retraining loop: S3 ingestion, Great Expectations validation, "
        "torchrun DDP training, MLflow champion/challenger promotion and drift-triggered retraining.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["software"],
            },
            {
                "integration-name": _MLOPS,
                "external-doc-url": "https://github.com/airflow-mlops-provider/airflow-mlops-provider",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_mlops_provider.hooks.mlflow"]},
        ],
        "operators": [
            {"integration-name": _MLOPS, "python-modules": _operator_modules()},
        ],
        "triggers": [
            {
                "integration-name": _MLOPS,
                "python-modules": [
                    "airflow_mlops_provider.triggers.rollout",
                    "airflow_mlops_provider.triggers.kubeflow",
                ],
            },
        ],
        "extra-links": _extra_links(),
        "notifications": [f"airflow_mlops_provider.notifications.{path}" for path in NOTIFIERS],
        "connection-types": [
            {
                "hook-class-name": "airflow_mlops_provider.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "connection-type": "mlflow",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {
                        "host": "Tracking URI",
                        "login": "Username (basic auth)",
                        "password": "Password or token",
                    },
                    "placeholders": {
                        "host": "http://mlflow:5000",
                        "login": "leave empty to send the password as a bearer token",
                        "password": "basic-auth password, or an MLflow/Databricks token",
                    },
                },
                "conn-fields": {
                    "registry_uri": {
                        "label": "Registry URI",
                        "description": "Model registry URI, when it differs from the tracking URI.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ui_url": {
                        "label": "MLflow UI URL",
                        "description": "Base URL for links from the Airflow UI (default: tracking URI).",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                    "insecure_tls": {
                        "label": "Skip TLS verification",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "request_timeout_s": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 30},
                    },
                    "max_retries": {
                        "label": "HTTP retries",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                },
            }
        ],
    }


def _operator_modules() -> list[str]:
    """Operator modules that exist in this installation (listed statically, checked by a test)."""
    return [f"airflow_mlops_provider.operators.{name}" for name in OPERATOR_MODULES]


def _extra_links() -> list[str]:
    return [f"airflow_mlops_provider.links.{path}" for path in EXTRA_LINKS]


OPERATOR_MODULES: tuple[str, ...] = (
    "base",
    "trigger",
    "ingest",
    "champion",
    "validate",
    "score",
    "drift",
    "performance",
    "train",
    "train_kubernetes",
    "evaluate",
    "promote",
    "rollout",
    "approve",
)
NOTIFIERS: tuple[str, ...] = ("pipeline.PipelineNotifier",)
EXTRA_LINKS: tuple[str, ...] = ("mlflow.MlflowRunLink", "mlflow.MlflowModelVersionLink", "report.ReportLink")
