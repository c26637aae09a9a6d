"""Provider registration: the metadata Airflow reads matches Airflow's own schemas and the code."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_mlops_provider.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent


@pytest.mark.parametrize("schema_file", ["provider_info.schema.json"])
def test_provider_info_validates_against_airflows_schema(schema_file):
    schema = json.loads((AIRFLOW_DIR / schema_file).read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_is_registered_under_the_distribution_name():
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.dist.name == "airflow-mlops-provider"
    ]
    assert ep.load()()["package-name"] == ep.dist.name


def test_every_listed_module_and_class_exists():
    info = get_provider_info()
    modules = [m for group in info["hooks"] + info["operators"] for m in group["python-modules"]]
    classes = (
        info["extra-links"] + info["notifications"] + [c["hook-class-name"] for c in info["connection-types"]]
    )
    for module in modules:
        importlib.import_module(module)
    for dotted in classes:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def test_airflow_providers_manager_lists_the_provider_with_its_hook():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-mlops-provider" in manager.providers
    assert manager.hooks["mlflow"].hook_class_name == "airflow_mlops_provider.hooks.mlflow.MlflowHook"
    assert "airflow_mlops_provider.links.mlflow.MlflowModelVersionLink" in manager.extra_links_class_names
    assert "airflow_mlops_provider.notifications.pipeline.PipelineNotifier" in manager.notification


def test_every_operator_module_is_listed():
    """A new operator module must be registered; ``operators/`` holds nothing else."""
    package = Path(importlib.import_module("airflow_mlops_provider.operators").__path__[0])
    on_disk = {p.stem for p in package.glob("*.py")} - {"__init__"}
    (group,) = get_provider_info()["operators"]
    assert {m.rpartition(".")[2] for m in group["python-modules"]} == on_disk
