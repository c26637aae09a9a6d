"""Registry errors keep their root cause: the innermost exception comes first, before any clipping."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from airflow_mlops_provider.core import registry
from tests.support.services import free_port


def test_a_long_url_does_not_push_the_root_cause_out_of_the_message(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    url = f"http://127.0.0.1:{free_port()}/" + "/".join(["a-rather-long-path-segment"] * 20)
    with pytest.raises(registry.RegistryUnavailable) as err:
        registry.aliases(MlflowClient(url, registry_uri=url), "churn")
    message = str(err.value)
    reason = message.split("failed while reading aliases of 'churn': ", 1)[1]
    assert reason.startswith("ConnectionRefusedError: ") and "Connection refused" in reason[:80]
    assert message.endswith("retrying the task completes it.")


def test_credentials_in_the_url_never_reach_the_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    url = f"http://admin:s3cret-pw@127.0.0.1:{free_port()}"
    with pytest.raises(registry.RegistryUnavailable) as err:
        registry.aliases(MlflowClient(url, registry_uri=url), "churn")
    assert "s3cret-pw" not in str(err.value) and "Connection refused" in str(err.value)
