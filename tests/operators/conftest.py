"""Fixtures of the generated-DAG tests: pipeline configs written to a folder the factory loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_mlops_provider import datasets
from airflow_mlops_provider.testing.local_runs import ensure_pools

LOADER = """
from airflow_mlops_provider.factory import load_dags

globals().update(load_dags({folder!r}))
"""


def pipeline_config(name: str, dataset: str, data: Path, root: Path, **extra: Any) -> dict[str, Any]:
    task = datasets.DATASETS[dataset]["task"]
    config = {
        "name": name,
        "owner": "tests",
        "artifact_root": root.as_uri(),
        "data": {
            "source": {"uri": (data / "train").as_uri() + "/", "glob": "*.csv", "format": "csv"},
            "split": {"by": "hash", "key": "id", "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        },
        "training": {
            "target": datasets.target_of(dataset),
            "task": task,
            "hyperparameters": {
                "epochs": 15,
                "batch_size": 32,
                "lr": 0.01,
                "hidden": [16],
                "feature_columns": datasets.features_of(dataset),
            },
            "timeout": "10m",
            "retries": 0,
        },
        "gate": {"max_regression": {"accuracy" if task == "classification" else "rmse": 1000.0}},
        "monitoring": {
            "source": {"uri": (data / "live").as_uri() + "/", "glob": "*.csv"},
            "drift": {"exclude": ["id"]},
        },
        "triggers": {"new_data": True, "drift": True},
        "defaults": {"retries": 0},
    }
    config.update(extra)
    return config


@pytest.fixture
def factory(dags, mlflow_conn, tmp_path: Path):
    """Write pipeline configs and a loader file; returns (write_config, load_dag)."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    loader = dags.write(LOADER.format(folder=str(folder)))

    def write(config: dict[str, Any]) -> None:
        # keep the author's key order (train, validation, test), which the plan cache's JSON sorts
        (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def load(dag_id: str) -> Any:
        dag = dags.load(loader, dag_id)
        ensure_pools(dag)
        return dag

    return write, load


def champion_version(model: str) -> str | None:
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    aliases = MlflowHook().client.get_registered_model(model).aliases
    return aliases.get("champion")
