"""DAG factory: pipeline configs (YAML or Python) to ``retrain_``, ``monitor_`` and ``rollback_`` DAGs.

In a DAG file::

    from pathlib import Path
    from airflow_mlops_provider.factory import load_dags

    globals().update(load_dags(Path(__file__).parent / "pipelines"))

Names are resolved lazily so that importing the config schema does not import the builder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PIPELINE_GLOB = "*.yaml"
_EXPORTS = {
    "PipelineConfig": "airflow_mlops_provider.factory.config",
    "ConfigError": "airflow_mlops_provider.factory.loader",
    "load_pipeline": "airflow_mlops_provider.factory.loader",
    "parse_pipeline": "airflow_mlops_provider.factory.loader",
    "build_pipeline": "airflow_mlops_provider.factory.builder",
    "load_dags": "airflow_mlops_provider.factory.dagfile",
}

__all__ = sorted([*_EXPORTS, "PIPELINE_GLOB", "pipeline_files"])


def pipeline_files(folder: str | os.PathLike[str], pattern: str = PIPELINE_GLOB) -> list[Path]:
    """The pipeline config files of ``folder``, sorted: what both the DAG loader and the pools script read."""
    return sorted(Path(folder).glob(pattern))


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
