"""Shared fixtures: an isolated Airflow home, real MLflow and moto servers on 127.0.0.1.

Airflow reads its configuration at import time, so the environment is set here, before any
test module imports Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
_AIRFLOW_HOME = _SESSION_DIR / "airflow"
_DAGS = _AIRFLOW_HOME / "dags"
_DAGS.mkdir(parents=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GIT_PYTHON_REFRESH": "quiet",
    }
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
    os.environ.pop(_name, None)

from tests.support.dags import DagHarness  # noqa: E402
from tests.support.services import mlflow_connection, moto_connection, moto_server  # noqa: E402
from tests.support.services import mlflow_server as mlflow_server_process  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB (SQLite, migrated once per session) for ``dag.test()`` runs."""
    subprocess.run([BIN / "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300)
    return _AIRFLOW_HOME


@pytest.fixture
def dags(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagHarness]:
    """Write DAG files into the DAGs folder and run them with ``dag.test()``."""
    harness = DagHarness(_DAGS, monkeypatch)
    yield harness
    harness.cleanup()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (S3, SQS) on a free loopback port."""
    with moto_server(_SESSION_DIR) as url:
        yield url


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the moto server, reachable through the ``aws_default`` connection."""
    import uuid

    import boto3

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_connection(moto_endpoint))
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    yield bucket


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[str]:
    """An ``mlflow server`` with its backend store in PostgreSQL and local artifacts; yields its URL."""
    with mlflow_server_process(_SESSION_DIR) as url:
        yield url


@pytest.fixture
def mlflow_conn(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``mlflow_default`` Airflow connection pointing at the test server."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection(mlflow_server))
    return "mlflow_default"
