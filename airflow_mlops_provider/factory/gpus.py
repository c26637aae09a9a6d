"""GPUs of the training tasks, mapped to the executor that runs them.

- Celery: the tasks go to ``resources.queue`` (``gpu`` by default when ``gpus > 0``); a GPU
  machine's worker must listen on it: ``airflow celery worker --queues gpu``.
- KubernetesExecutor: ``executor_config={"pod_override": V1Pod(...)}`` asks for
  ``nvidia.com/gpu`` (GPUs per process times processes) on the task's ``base`` container. It is
  built only with GPUs, and only where the Kubernetes client is installed (the executor needs it).

The kubernetes backend's training task only submits and watches a cluster job (its pods ask for
the GPUs), so it gets neither.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from airflow_mlops_provider.factory.plan import TrainingPlan


def executor_arguments(training: TrainingPlan) -> dict[str, Any]:
    """``queue`` and ``executor_config`` of the training tasks (empty when nothing is asked)."""
    if training.engine == "kubernetes":
        return {}
    arguments: dict[str, Any] = {}
    if training.queue:
        arguments["queue"] = training.queue
    if training.gpus and importlib.util.find_spec("kubernetes") is not None:
        arguments["executor_config"] = {
            "pod_override": gpu_pod(training.gpus * int(training.job["nproc_per_node"]))
        }
    return arguments


def gpu_pod(gpus: int) -> Any:
    """A pod override whose task container (``base``) is limited to and requests ``gpus`` GPUs."""
    from kubernetes.client import models as k8s

    resources = k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": gpus}, requests={"nvidia.com/gpu": gpus})
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", resources=resources)]))
