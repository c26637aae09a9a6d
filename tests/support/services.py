"""Real services on 127.0.0.1 for tests and benchmarks: processes, ports, databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

POSTGRES_DSN = os.environ.get("MLOPS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Process {proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"Nothing listened on 127.0.0.1:{port} within {timeout_s}s")


@contextmanager
def background_process(
    args: Sequence[str], port: int, log_path: Path, env: dict[str, str] | None = None, timeout_s: float = 90
) -> Iterator[subprocess.Popen]:
    """Start a server in its own process group, wait for its port, stop the whole group afterwards."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, timeout_s, proc)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{err}\n--- {log_path} ---\n{log_path.read_text()[-4000:]}") from err
        yield proc
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards; yields its URL."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES_DSN}/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES_DSN}/{name}"
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@contextmanager
def moto_server(work_dir: Path) -> Iterator[str]:
    """A moto server (S3, SQS, ...) on a free loopback port; yields its URL."""
    import sys

    port = free_port()
    args = [Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    with background_process(args, port, work_dir / "moto.log"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def mlflow_server(work_dir: Path, workers: int = 1) -> Iterator[str]:
    """An ``mlflow server`` with a fresh PostgreSQL backend store and local artifacts; yields its URL."""
    import sys

    port = free_port()
    with postgres_database("mlflow") as db_url:
        args = [
            Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers),
            "--backend-store-uri", db_url.replace("postgresql://", "postgresql+psycopg2://"),
            "--artifacts-destination", (work_dir / "mlflow-artifacts").as_uri(),
        ]  # fmt: skip
        with background_process(args, port, work_dir / "mlflow.log", timeout_s=180):
            yield f"http://127.0.0.1:{port}"


def mlflow_connection(url: str) -> str:
    """``AIRFLOW_CONN_*`` value of an ``mlflow`` connection to the server at ``url``."""
    import json

    return json.dumps({"conn_type": "mlflow", "host": url})


def moto_connection(endpoint: str) -> str:
    """``AIRFLOW_CONN_*`` value of an ``aws`` connection to the moto server at ``endpoint``."""
    import json

    return json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})
