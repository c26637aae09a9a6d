"""What an operator of Airflow sees from the CLI: the provider, its connection type, a live test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AIRFLOW = Path(sys.executable).parent / "airflow"


def _airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_providers_list_shows_the_provider():
    listed = json.loads(_airflow("providers", "list", "-o", "json").stdout)
    assert {"package_name": "airflow-mlops-provider", "version": "0.1.0"}.items() <= next(
        p for p in listed if p["package_name"] == "airflow-mlops-provider"
    ).items()


def test_the_mlflow_connection_type_has_its_ui_behaviour():
    hooks = json.loads(_airflow("providers", "hooks", "-o", "json").stdout)
    assert any(h["connection_type"] == "mlflow" and h["class"].endswith("MlflowHook") for h in hooks)
    behaviours = json.loads(_airflow("providers", "behaviours", "-o", "json").stdout)
    assert {"field_behaviours": "mlflow"} in behaviours


@pytest.mark.integration
@pytest.mark.parametrize("reachable", [True, False])
def test_connections_test_asks_the_mlflow_server(airflow_db, mlflow_server, reachable):
    host = mlflow_server if reachable else "http://127.0.0.1:9"
    conn_id = f"mlflow_cli_{reachable}".lower()
    extra = json.dumps({"max_retries": 0, "request_timeout_s": 5})
    added = _airflow(
        "connections", "add", conn_id, "--conn-type", "mlflow", "--conn-host", host, "--conn-extra", extra
    )
    assert added.returncode == 0, added.stderr
    try:
        tested = _airflow("connections", "test", conn_id, env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
        if reachable:
            assert "Connection success!" in tested.stdout, tested.stdout + tested.stderr
        else:
            assert "Connection failed!" in tested.stdout + tested.stderr
            assert "Cannot reach MLflow at http://127.0.0.1:9" in tested.stdout + tested.stderr
    finally:
        _airflow("connections", "delete", conn_id)
