"""Helpers for fault-injection tests on a live stack: a restartable moto server, the process table,
task logs on disk, and checks that nothing was left half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.support.services import background_process, free_port

TRAINING_MARKERS = ("torch.distributed.run", "airflow_mlops_provider.core.training.worker")


class RestartableMoto:
    """A moto server whose port survives restarts (its data does not: moto keeps it in memory)."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.args = [Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._running: Any = None
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._running = background_process(self.args, self.port, self.work_dir / "moto-faulty.log")
        self.proc = self._running.__enter__()

    def stop(self) -> None:
        """Kill the server at once (a crash), and wait until its port is free again."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._running.__exit__(None, None, None)
        self.proc = self._running = None


@contextmanager
def restartable_moto(work_dir: Path) -> Iterator[RestartableMoto]:
    server = RestartableMoto(work_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def training_processes(airflow_home: Path, dag_id: str | None = None) -> list[psutil.Process]:
    """torchrun agents and training workers started by tasks of the deployment at ``airflow_home``.

    A process belongs to the deployment when its environment carries that ``AIRFLOW_HOME`` (so
    other users of the machine are never touched); with ``dag_id``, only processes whose job file
    names that DAG (or whose job file is gone already: orphans of a finished task) are returned.
    """
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        text = " ".join(cmdline)
        if not any(marker in text for marker in TRAINING_MARKERS):
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("AIRFLOW_HOME") != str(airflow_home):
                continue
            if dag_id is not None and _job_dag(cmdline) not in (dag_id, None):
                continue
            found.append(proc)
    return found


def _job_dag(cmdline: list[str]) -> str | None:
    for arg in cmdline:
        if arg.endswith("job.json"):
            with contextlib.suppress(OSError, ValueError):
                return json.loads(Path(arg).read_text())["tags"]["airflow.dag_id"]
    return None


def workers(airflow_home: Path, dag_id: str) -> list[psutil.Process]:
    """Training worker processes (not the torchrun agents) of ``dag_id``."""
    return [
        p
        for p in training_processes(airflow_home, dag_id)
        if "airflow_mlops_provider.core.training.worker" in " ".join(p.cmdline())
        and "torch.distributed.run" not in " ".join(p.cmdline())
    ]


def wait_until_gone(airflow_home: Path, dag_id: str, timeout_s: float) -> list[psutil.Process]:
    """Wait until no training process of ``dag_id`` is left; returns what is left after the timeout."""
    deadline = time.monotonic() + timeout_s
    left = training_processes(airflow_home, dag_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = training_processes(airflow_home, dag_id)
    return left


def alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` (the very process seen before, not a reuse of its pid) still runs."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
    return out


def task_log(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> str:
    """Every attempt's log of one task instance, from the deployment's log folder."""
    folder = airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("**/attempt=*.log")))


def half_written_snapshots(artifact_root: Path, pipeline: str) -> list[str]:
    """Snapshot folders of ``pipeline`` holding data files but no ``manifest.json``."""
    root = artifact_root / pipeline / "snapshots"
    if not root.exists():
        return []
    return [str(d) for d in root.iterdir() if d.is_dir() and not (d / "manifest.json").exists()]


def aliases_without_artifacts(tracking_uri: str, model_name: str) -> dict[str, str]:
    """Aliases of ``model_name`` whose version cannot be loaded from its artifacts: ``{alias: problem}``."""
    from mlflow.exceptions import MlflowException

    from airflow_mlops_provider.core.model_io import load_model
    from airflow_mlops_provider.core.tracking import TrackingSettings

    settings = TrackingSettings(tracking_uri=tracking_uri)
    try:
        model = settings.client().get_registered_model(model_name)
    except MlflowException:
        return {}
    broken = {}
    for alias, version in (model.aliases or {}).items():
        try:
            load_model(f"models:/{model_name}/{version}", settings)
        except Exception as err:  # any failure to load is what this check looks for
            broken[alias] = f"version {version}: {type(err).__name__}: {err}"
    return broken


def task_errors(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """``"ExcType: message"`` of every exception a task instance failed with, oldest attempt first."""
    errors = []
    for line in task_log(airflow_home, dag_id, run_id, task_id).splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            detail = (entry.get("error_detail") or [None])[0]
            if detail:  # the exception itself; its causes follow it in the list
                errors.append(f"{detail['exc_type']}: {detail['exc_value']}")
    return errors
