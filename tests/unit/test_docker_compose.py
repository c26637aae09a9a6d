"""docker-compose.yaml is valid against the Compose spec and in step with the code and constraints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert match, f"{package} is not pinned in constraints.txt"
    return match.group(1)


def test_compose_file_validates_against_the_compose_spec():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", COMPOSE], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_airflow_component_and_its_backing_services(compose):
    services = set(compose["services"])
    airflow = {"airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor"}
    assert airflow | {"airflow-triggerer", "postgres", "mlflow", "minio", "minio-init"} <= services
    for name in services:
        for dependency in compose["services"][name].get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_images_match_the_pinned_versions():
    airflow_dockerfile = (REPO / "docker/airflow.Dockerfile").read_text()
    mlflow_dockerfile = (REPO / "docker/mlflow.Dockerfile").read_text()
    assert f"apache/airflow:{_pinned('apache-airflow')}-python3.11" in airflow_dockerfile
    assert f"torch=={_pinned('torch')}" in airflow_dockerfile
    assert f"ghcr.io/mlflow/mlflow:v{_pinned('mlflow')}" in mlflow_dockerfile
    assert f"psycopg2-binary=={_pinned('psycopg2-binary')}" in mlflow_dockerfile
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", airflow_dockerfile, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"


def test_connections_point_at_services_of_the_stack(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    mlflow_conn = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    aws_conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert mlflow_conn["conn_type"] == "mlflow" and mlflow_conn["host"] == "http://mlflow:5000"
    assert aws_conn["extra"]["endpoint_url"] == "http://minio:9000"
    assert "--port 5000" in compose["services"]["mlflow"]["command"]
    assert "9000:9000" in compose["services"]["minio"]["ports"]
    api_url = env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert api_url.startswith("http://airflow-api-server:8080/")
    assert "8080:8080" in compose["services"]["airflow-api-server"]["ports"]
    bucket = env["MLOPS_ARTIFACT_ROOT"].split("/")[2]
    assert f"local/{bucket}" in compose["services"]["minio-init"]["entrypoint"]


def test_mlflow_database_is_created_for_the_backend_store(compose):
    init_sql = (REPO / "docker/postgres-init.sql").read_text()
    assert "CREATE DATABASE mlflow" in init_sql
    assert "@postgres/mlflow" in compose["services"]["mlflow"]["command"]


def test_every_boto3_client_in_the_stack_sends_checksums_only_when_required(compose):
    for name in ("airflow-scheduler", "airflow-api-server", "mlflow"):
        env = compose["services"][name]["environment"]
        assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required", name
        assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required", name


def test_the_init_job_creates_the_promotion_pools(compose):
    command = " ".join(compose["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in command
    assert "python -m airflow_mlops_provider.factory.pools /opt/airflow/dags/pipelines" in command
    assert "airflow pools import" in command
