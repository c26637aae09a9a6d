"""The MLflow hook against a real ``mlflow server`` (PostgreSQL backend) on loopback."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_mlops_provider.hooks.mlflow import MlflowHook

pytestmark = pytest.mark.integration


def test_connection_succeeds_against_a_running_server(mlflow_conn, mlflow_server):
    ok, message = MlflowHook(mlflow_conn).test_connection()
    assert ok, message
    assert mlflow_server in message


def test_client_is_lazy_and_talks_to_the_server(mlflow_conn):
    hook = MlflowHook(mlflow_conn)
    assert "client" not in vars(hook)
    experiment_id = hook.get_conn().create_experiment(f"hook-{id(hook)}")
    assert hook.client.get_experiment(experiment_id).experiment_id == experiment_id


def test_unreachable_server_gives_a_clear_failure(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DOWN",
        json.dumps(
            {
                "conn_type": "mlflow",
                "host": "http://127.0.0.1:9",
                "extra": {"max_retries": 0, "request_timeout_s": 2},
            }
        ),
    )
    ok, message = MlflowHook("mlflow_down").test_connection()
    assert not ok
    assert message.startswith("Cannot reach MLflow at http://127.0.0.1:9")


def test_credentials_never_reach_logs_or_reprs(monkeypatch, caplog, mlflow_server):
    secret = "s3cr3t-token-value"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_AUTH",
        json.dumps({"conn_type": "mlflow", "host": mlflow_server, "password": secret}),
    )
    hook = MlflowHook("mlflow_auth")
    with caplog.at_level(logging.DEBUG):
        hook.client.search_experiments(max_results=1)
    assert hook.settings.token == secret
    assert secret not in repr(hook.settings)
    assert secret not in caplog.text
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.log import mask_secret  # noqa: F401  (the masker the hook registered with)

    assert secret not in str(redact(f"token={secret}"))


def test_password_in_the_tracking_uri_is_masked_in_the_test_result_and_logs(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_URI_AUTH",
        json.dumps(
            {
                "conn_type": "mlflow",
                "host": "http://bob:uri-pass-word@127.0.0.1:9",
                "extra": {"registry_uri": "postgresql://reg:db-pass-word@127.0.0.1:9/r", "max_retries": 0},
            }
        ),
    )
    hook = MlflowHook("mlflow_uri_auth")
    ok, message = hook.test_connection()
    assert not ok and message.startswith("Cannot reach MLflow at http://127.0.0.1:9: ")
    assert "uri-pass-word" not in message and "uri-pass-word" not in repr(hook.settings)
    from airflow.sdk._shared.secrets_masker import redact

    logged = str(redact("torchrun: request to http://bob:uri-pass-word@h failed; registry db-pass-word"))
    assert "uri-pass-word" not in logged and "db-pass-word" not in logged


def test_basic_auth_and_bare_host_build_the_uri(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_BASIC",
        json.dumps(
            {
                "conn_type": "mlflow",
                "host": "mlflow.internal",
                "port": 5000,
                "login": "alice",
                "password": "pw",
                "extra": {"scheme": "https", "registry_uri": "sqlite:///r.db"},
            }
        ),
    )
    settings = MlflowHook("mlflow_basic").settings
    assert settings.tracking_uri == "https://mlflow.internal:5000"
    assert settings.env()["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert settings.env()["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"  # no stderr bar in task logs
    assert settings.registry_uri == "sqlite:///r.db"
    assert "MLFLOW_TRACKING_TOKEN" not in settings.env()


def test_missing_host_is_named():
    import os

    os.environ["AIRFLOW_CONN_MLFLOW_EMPTY"] = json.dumps({"conn_type": "mlflow"})
    with pytest.raises(ValueError, match="'mlflow_empty' has no host"):
        _ = MlflowHook("mlflow_empty").settings
