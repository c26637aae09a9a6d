"""Start the real stack for the live benchmarks: PostgreSQL databases, an mlflow server, moto S3, Airflow.

The same harness the integration tests use (tests/support), so the figures describe what users run.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parent.parent

from airflow_mlops_provider.operators.promote import promotion_pool  # noqa: E402
from tests.support.airflow_stack import AirflowStack, airflow_stack, celery_env  # noqa: E402
from tests.support.pipelines import cancer_pipeline_yaml  # noqa: E402
from tests.support.services import (  # noqa: E402
    mlflow_connection,
    mlflow_server,
    moto_connection,
    moto_server,
    postgres_database,
)


@dataclass
class LiveStack:
    airflow: AirflowStack
    mlflow_url: str
    s3: Any
    bucket: str
    dags_folder: Path
    artifact_root: str

    def upload_csv(self, key: str, frame: Any) -> None:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue().encode())

    def add_pipeline(self, name: str, model: str, epochs: int = 8) -> None:
        root = self.artifact_root
        text = cancer_pipeline_yaml(name, model=model, bucket=self.bucket, artifact_root=root, epochs=epochs)
        (self.dags_folder / "pipelines" / f"{name}.yaml").write_text(text)
        self.airflow.ensure_pool(promotion_pool(model), 1, f"serialise promotions of {model}")


@contextmanager
def live_stack(parallelism: int = 8, celery_workers: int = 0) -> Iterator[LiveStack]:
    """Everything on 127.0.0.1; torn down (processes and databases) on exit. With ``celery_workers``,
    the CeleryExecutor and that many Celery workers of one slot each (one "machine" each)."""
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    dags = work / "dags"
    (dags / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "pipelines_loader.py", dags)
    with ExitStack() as stack:
        moto_url = stack.enter_context(moto_server(work))
        mlflow_url = stack.enter_context(mlflow_server(work, workers=2))
        artifact_root = (work / "artifacts").as_uri()
        env = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_connection(mlflow_url),
            "AIRFLOW_CONN_AWS_DEFAULT": moto_connection(moto_url),
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        }
        import os

        os.environ.update(
            {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
        )
        airflow_db = stack.enter_context(postgres_database("bench_airflow"))
        if celery_workers:
            env |= celery_env(airflow_db, redis_db=8, concurrency=1)
        airflow = stack.enter_context(
            airflow_stack(work / "airflow", dags, airflow_db, env, celery_workers=max(1, celery_workers))
        )
        s3 = boto3.client("s3", endpoint_url=moto_url)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        yield LiveStack(airflow, mlflow_url, s3, bucket, dags, artifact_root)
    shutil.rmtree(work, ignore_errors=True)
