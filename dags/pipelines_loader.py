"""Every pipeline in ``dags/pipelines/*.yaml`` becomes ``retrain_<name>``, ``monitor_<name>`` and
``rollback_<name>``. A broken config is reported as this file's import error, naming the YAML
file and field; the other pipelines still load."""

from pathlib import Path

from airflow_mlops_provider.factory import load_dags

globals().update(load_dags(Path(__file__).parent / "pipelines"))
