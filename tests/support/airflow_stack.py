"""A real Airflow 3 deployment on 127.0.0.1 for integration tests, driven only through its REST API.

api-server, scheduler, dag-processor and triggerer run as separate processes with the
LocalExecutor (or CeleryExecutor) and a PostgreSQL metadata database, exactly as users run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.support.services import background_process, free_port, stop_process_group, wait_for_port

BIN = Path(sys.executable).parent
COMPONENTS = ("scheduler", "dag-processor", "triggerer")
TERMINAL = {"success", "failed"}


@dataclass
class AirflowStack:
    """Handle on a running deployment: REST calls, process control, logs."""

    home: Path
    api_url: str
    env: dict[str, str]
    password: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    _token: str | None = None

    # --- REST -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self._token is None:
            reply = requests.post(
                f"{self.api_url}/auth/token",
                json={"username": "admin", "password": self.password},
                timeout=30,
            )
            reply.raise_for_status()
            self._token = reply.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method, f"{self.api_url}/api/v2{path}", headers=self._headers(), timeout=60, **kwargs
        )
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {reply.status_code}: {reply.text[:2000]}")
        return reply.json() if reply.content else None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; unpause it; return its details."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                dag = self.api("GET", f"/dags/{dag_id}")
            except RuntimeError:
                time.sleep(2)
                continue
            if dag["is_paused"]:
                dag = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            return dag
        errors = self.api("GET", "/importErrors")
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout_s}s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in TERMINAL:
                return run
            time.sleep(2)
        raise TimeoutError(
            f"{dag_id}/{run_id} did not finish within {timeout_s}s: {self.task_states(dag_id, run_id)}"
        )

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "run_after"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def ensure_pool(self, name: str, slots: int = 1, description: str = "") -> None:
        """Create a pool unless it exists (what a deployment step does for the promotion pools)."""
        try:
            self.api("GET", f"/pools/{name}")
        except RuntimeError:
            self.api("POST", "/pools", json={"name": name, "slots": slots, "description": description})

    def asset_id(self, uri_or_name: str) -> int:
        for asset in self.api("GET", "/assets", params={"limit": 1000})["assets"]:
            if uri_or_name in (asset["uri"], asset["name"]):
                return asset["id"]
        raise LookupError(f"No asset {uri_or_name!r}")

    def post_asset_event(self, uri_or_name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.api(
            "POST", "/assets/events", json={"asset_id": self.asset_id(uri_or_name), "extra": extra or {}}
        )

    # --- processes ------------------------------------------------------------------------
    def check_alive(self) -> None:
        """Raise with the log tail of any component that exited."""
        for component, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow {component} exited ({proc.returncode}):\n{self.log(component)[-3000:]}"
                )

    def start(self, component: str, args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """Start ``component`` (``airflow <args>``, by default its name split in words); remembered for
        :meth:`restart`."""
        args, env = self.commands.setdefault(component, (args or component.split(), env or self.env))
        self.processes[component] = _spawn(component, args, self.home, env)

    def kill(self, component: str) -> None:
        """SIGKILL every process of the component's session at once (a machine lost), and reap it.

        The session, not the process group: Airflow's supervisor puts each task process in a group
        of its own, and a task process that outlived its worker would go on heartbeating."""
        proc = self.processes[component]
        for other in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getsid(other.pid) == proc.pid:
                    other.kill()
        proc.wait()

    def restart(self, component: str) -> None:
        stop_process_group(self.processes[component])
        self.start(component)

    def log(self, component: str) -> str:
        return (self.home / f"{component}.log").read_text(errors="replace")

    def celery_worker_that_ran(self, ti: dict[str, Any]) -> str | None:
        """The Celery worker whose log shows it executed the task instance ``ti`` (by its id)."""
        for name in self.processes:
            if name.startswith("celery worker") and ti["id"] in self.log(name):
                return name
        return None

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """Every attempt's log of one task instance, from the deployment's log folder."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("attempt=*.log")))


def _spawn(component: str, args: list[str], home: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(home / f"{component}.log", "ab") as log:
        return subprocess.Popen(
            [BIN / "airflow", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def celery_env(db_url: str, redis_db: int = 7, concurrency: int = 4) -> dict[str, str]:
    """Settings that move task execution to Celery workers (Redis broker, PostgreSQL results)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
    }


def celery_worker_name(index: int) -> str:
    """The stack's name of its ``index``-th Celery worker (``celery worker`` is the first)."""
    return "celery worker" if index == 0 else f"celery worker {index + 1}"


def _start_celery_workers(stack: AirflowStack, count: int) -> None:
    """``count`` Celery workers, each a "machine" of its own: own Celery node name and log server port."""
    for index in range(count):
        args = ["celery", "worker", "--celery-hostname", f"worker{index + 1}@%h"]
        env = {**stack.env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        stack.start(celery_worker_name(index), args, env)


@contextmanager
def airflow_stack(
    home: Path,
    dags_folder: Path,
    db_url: str,
    extra_env: dict[str, str] | None = None,
    celery_workers: int = 1,
) -> Iterator[AirflowStack]:
    """Migrate ``db_url`` and run api-server, scheduler, dag-processor and triggerer until exit.

    With the CeleryExecutor in ``extra_env`` (see :func:`celery_env`) ``celery_workers`` Celery
    workers start too.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = "admin-test-password"
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url.replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "integration-test-jwt-secret-0123456789",
        "AIRFLOW__API__SECRET_KEY": "integration-test-secret-key",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        **(extra_env or {}),
    }
    migrate = subprocess.run([BIN / "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-4000:]}")
    with ExitStack() as stack:
        api = stack.enter_context(
            background_process(
                [BIN / "airflow", "api-server", "--port", str(port)],
                port,
                home / "api-server.log",
                env,
                timeout_s=180,
            )
        )
        stack_handle = AirflowStack(home=home, api_url=f"http://127.0.0.1:{port}", env=env, password=password)
        stack_handle.processes["api-server"] = api
        for component in COMPONENTS:
            stack_handle.start(component)
        if env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor":
            _start_celery_workers(stack_handle, celery_workers)
        stack.callback(lambda: [stop_process_group(p) for p in stack_handle.processes.values()])
        wait_for_port(port)
        yield stack_handle
