"""What a DAG file calls: build every pipeline config in a folder, isolating broken ones.

A broken config must not take the other pipelines down. Python's import model offers no way
to fail part of a module, so broken configs are collected into one stand-in DAG whose
``validate()`` raises: the DagBag calls ``validate()`` on each DAG of a file before bagging it,
records the raised error as the loader file's import error (shown in the UI and by
``airflow dags list-import-errors``, naming each broken YAML file, field and expectation) and
still bags every other DAG of the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from airflow_mlops_provider.factory import PIPELINE_GLOB, env, pipeline_files
from airflow_mlops_provider.factory.builder import build_pipeline
from airflow_mlops_provider.factory.plan import PipelinePlan, load_plan

BROKEN_DAG_ID = "mlops_invalid_pipeline_configs"
DAG_KINDS = ("retrain", "monitor", "rollback")


class PipelineConfigErrors(ValueError):
    """One or more pipeline configs of a folder could not be turned into DAGs."""


class BrokenPipelines(DAG):
    """Stand-in DAG for the configs that failed; its validation raises their errors."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(dag_id=BROKEN_DAG_ID, schedule=None, tags=["mlops"])
        self.errors = errors

    def validate(self) -> None:
        files = ", ".join(self.errors)
        details = "\n\n".join(self.errors.values())
        raise PipelineConfigErrors(
            f"{len(self.errors)} pipeline config(s) failed and were not loaded ({files}); "
            f"the other pipelines are unaffected.\n\n{details}"
        )


def load_dags(folder: str | os.PathLike[str], pattern: str = PIPELINE_GLOB) -> dict[str, Any]:
    """Build the DAGs of every config in ``folder``; a dict to merge into the DAG file's globals.

    When a worker parses the file to run one task (Airflow's parsing context names the DAG),
    only that DAG's pipeline is built.
    """
    folder = Path(folder)
    wanted = get_parsing_context().dag_id
    dags: dict[str, Any] = {}
    errors: dict[str, str] = {}
    owners: dict[str, Path] = {}
    for path in pipeline_files(folder, pattern):
        label = _label(path, folder)
        try:
            config = load_plan(path)
        except OSError as exc:
            errors[label] = f"{label}: cannot read: {exc}"
            continue
        except ValueError as exc:  # ConfigError: names the file, the field and the expectation
            errors[label] = str(exc).replace(str(path), label, 1)
            continue
        if config.name in owners:
            first = _label(owners[config.name], folder)
            errors[label] = f"{label}: pipeline name {config.name!r} is already used by {first}"
            continue
        owners[config.name] = path
        if wanted and wanted not in dag_ids(config):
            continue
        try:
            dags.update(build_pipeline(config, source=label))
        except Exception as exc:  # a config that validates but an operator rejects
            errors[label] = env.shown(
                f"{label}: cannot build the DAGs: {type(exc).__name__}: {exc}", config.env
            )
    if errors and not wanted:
        dags[BROKEN_DAG_ID] = BrokenPipelines(errors)
    return dags


def dag_ids(config: PipelinePlan) -> list[str]:
    """The DAG ids a config (plan) produces."""
    kinds = DAG_KINDS if config.monitoring is not None else ("retrain", "rollback")
    return [f"{kind}_{config.name}" for kind in kinds]


def _label(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder.parent))
    except ValueError:
        return str(path)
