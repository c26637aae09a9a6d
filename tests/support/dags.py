"""Run DAG files with ``dag.test()`` from a real DAGs folder (a DAG built inside a test is not serialized)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest


class DagHarness:
    """Writes DAG files into the configured DAGs folder and runs them in-process."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        self._written: list[Path] = []

    def write(self, source: str, name: str | None = None) -> Path:
        path = self.folder / f"{name or 'dag_' + uuid.uuid4().hex[:8]}.py"
        path.write_text(textwrap.dedent(source))
        self._written.append(path)
        return path

    def load(self, path: Path, dag_id: str) -> Any:
        spec = importlib.util.spec_from_file_location(f"test_dag_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if getattr(value, "dag_id", None) == dag_id and hasattr(value, "test"):
                return value
        raise LookupError(f"{path} defines no DAG {dag_id!r}")

    def run(self, source: str, dag_id: str, **test_kwargs: Any) -> Any:
        """Write ``source`` as a DAG file and run ``dag_id`` once; returns the finished DagRun."""
        return self.load(self.write(source), dag_id).test(**test_kwargs)

    def task_states(self, dag_run: Any) -> dict[str, str]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
            return {
                ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
                for ti in tis
            }

    def xcom(self, dag_run: Any, task_id: str, key: str = "return_value") -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
                .first()
            )
            return None if row is None else XComModel.deserialize_value(row)

    def cleanup(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
