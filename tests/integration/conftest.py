"""A live Airflow deployment (PostgreSQL, LocalExecutor) shared by the integration tests of a session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_stack import AirflowStack, airflow_stack, celery_env
from tests.support.services import mlflow_connection, moto_connection, postgres_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def live_dags_folder(session_dir: Path) -> Path:
    """DAGs folder of the live deployment: the project's dags/ plus test-only DAG files."""
    folder = session_dir / "live-dags"
    shutil.copytree(REPO / "dags", folder)
    return folder


def _stack_env(session_dir: Path, mlflow_server: str, moto_endpoint: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_connection(mlflow_server),
        "AIRFLOW_CONN_AWS_DEFAULT": moto_connection(moto_endpoint),
        "MLOPS_ARTIFACT_ROOT": (session_dir / "live-artifacts").as_uri(),
        # every task's OpenLineage events, one JSON line each (tests/integration/test_lineage.py reads them)
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(_lineage_file(session_dir)), "append": True}
        ),
        "PYTHONPATH": str(REPO),  # test entry points (tests.*) import in task and training processes
    }


def _lineage_file(session_dir: Path) -> Path:
    return session_dir / "openlineage.jsonl"


@pytest.fixture(scope="session")
def lineage_file(session_dir: Path) -> Path:
    """Where the live deployments of a session append their OpenLineage events (JSON lines)."""
    return _lineage_file(session_dir)


@pytest.fixture(scope="session")
def live_airflow(
    session_dir: Path, live_dags_folder: Path, mlflow_server: str, moto_endpoint: str
) -> Iterator[AirflowStack]:
    """Airflow with the LocalExecutor."""
    env = _stack_env(session_dir, mlflow_server, moto_endpoint)
    with (
        postgres_database("airflow_live") as db_url,
        airflow_stack(session_dir / "live-airflow", live_dags_folder, db_url, env) as stack,
    ):
        yield stack


@pytest.fixture(scope="module")
def celery_airflow(
    session_dir: Path, live_dags_folder: Path, mlflow_server: str, moto_endpoint: str
) -> Iterator[AirflowStack]:
    """Airflow with the CeleryExecutor and two Celery workers of one slot each (Redis broker): two
    "machines", so the two nodes of a training job run on different workers. A worker that stops
    heartbeating (killed) has its task failed within 45 s, not Airflow's default 5 minutes."""
    env = _stack_env(session_dir, mlflow_server, moto_endpoint)
    env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = "45"
    with postgres_database("airflow_celery") as db_url:
        env |= celery_env(db_url, concurrency=1)
        home = session_dir / "celery-airflow"
        with airflow_stack(home, live_dags_folder, db_url, env, celery_workers=2) as stack:
            yield stack


@pytest.fixture(scope="session")
def probe_dags(live_dags_folder: Path) -> None:
    """Small DAGs that exercise the deployment itself (connections, asset events over REST)."""
    shutil.copy(Path(__file__).parent / "dags" / "live_probe.py", live_dags_folder / "live_probe.py")
