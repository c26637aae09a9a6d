"""Kubeflow training job manifests for one prepared launch: a ``TrainJob`` or a ``PyTorchJob``.

Pure functions, no I/O. Both kinds run the same container command,
``python -m airflow_mlops_provider.core.training.kubernetes.entry``, which reads the workers' job
spec (what the local launcher writes to its job file) from :data:`SPEC_ENV` and runs torchrun
with the ``PET_*`` variables the Kubeflow controller sets on every node.

- ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``, Kubeflow Trainer v2): ``runtimeRef`` names a
  ClusterTrainingRuntime (``torch-distributed``); ``trainer`` holds image, command, env,
  ``numNodes``, ``numProcPerNode`` and ``resourcesPerNode``. A TrainJob has no restart field of
  its own (node failures follow the runtime's JobSet failure policy), so ``max_restarts`` goes to
  torchrun, which restarts the worker group inside a node.
- ``PyTorchJob`` (``kubeflow.org/v1``, Training Operator v1): a ``Master`` and ``nodes - 1``
  ``Worker`` replicas whose container is named ``pytorch``; ``max_restarts`` is
  ``runPolicy.backoffLimit`` with ``restartPolicy: OnFailure`` (a failed pod restarts and resumes
  from the run's newest checkpoint).

Credentials never enter a manifest: the pods read them from a Kubernetes Secret named in the
config, one ``secretKeyRef`` (optional) per variable of :data:`SECRET_KEYS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops_provider.core.tracking import strip_userinfo
from airflow_mlops_provider.core.training.worker import STORAGE_OPTIONS_ENV

SPEC_ENV = "MLOPS_TRAINING_SPEC"
ENTRY_MODULE = "airflow_mlops_provider.core.training.kubernetes.entry"
KINDS = ("TrainJob", "PyTorchJob")
# Variables a pod may take from the configured Secret (those present in it): S3 and MLflow credentials.
SECRET_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
LABEL_RUN = "mlops.airflow.apache.org/mlflow-run"
LABEL_PIPELINE = "mlops.airflow.apache.org/pipeline"
_API = {
    "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
}
_SECRET_OPTIONS = ("key", "secret", "token", "password", "username")  # fsspec credential options
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ClusterJob:
    """Where and how one training job runs on the cluster (the config's ``training.kubernetes``)."""

    kind: str
    name: str
    namespace: str
    image: str
    nodes: int
    procs_per_node: int
    gpus: int = 0  # per worker process
    cpus: int | None = None  # CPU threads per worker process
    max_restarts: int = 0
    runtime: str = "torch-distributed"  # the TrainJob's ClusterTrainingRuntime
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)  # extra plain variables (they win over ours)
    secret: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def api(kind: str) -> tuple[str, str, str]:
    """``(group, version, plural)`` of a job kind."""
    if kind not in _API:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return _API[kind]


def job_name(pipeline: str, attempt_key: str) -> str:
    """A stable object name for one training task instance (the same for all its tries).

    An RFC 1035 label (what TrainJob's validation demands, stricter than DNS-1123): lowercase
    letters, digits and ``-``, a letter first, at most 63 characters: ``mlops-<pipeline>-<hash>``.
    """
    digest = hashlib.sha256(attempt_key.encode()).hexdigest()[:12]
    stem = _NOT_NAME.sub("-", pipeline.lower()).strip("-")[:42].rstrip("-")
    return f"mlops-{stem}-{digest}" if stem else f"mlops-{digest}"


def manifest(job: ClusterJob, spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The custom object to submit: ``spec`` is the workers' job spec, ``env`` the plain variables
    (tracking settings, non-secret storage options) the pods need besides it."""
    group, version, _ = api(job.kind)
    metadata = {"name": job.name, "namespace": job.namespace, "labels": dict(job.labels)}
    body = {"apiVersion": f"{group}/{version}", "kind": job.kind, "metadata": metadata}
    if job.kind == "TrainJob":
        return {**body, "spec": _train_job(job, container_env(job, spec, env, torchrun_restarts=True))}
    return {**body, "spec": _pytorch_job(job, container_env(job, spec, env, torchrun_restarts=False))}


def container_env(
    job: ClusterJob, spec: Mapping[str, Any], env: Mapping[str, str], *, torchrun_restarts: bool
) -> list[dict[str, Any]]:
    """The container's variables: the job spec, the plain ones, then the Secret's references."""
    payload = {**spec, "max_restarts": job.max_restarts if torchrun_restarts else 0}
    plain = {**env, "PYTHONUNBUFFERED": "1", **job.env, SPEC_ENV: json.dumps(payload, default=str)}
    items: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in plain.items()]
    if job.secret:
        items += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": job.secret, "key": key, "optional": True}}}
            for key in SECRET_KEYS
            if key not in plain
        ]
    return items


def resources(job: ClusterJob) -> dict[str, Any]:
    """One node's requests and limits: GPUs and CPU threads per process times processes."""
    limits: dict[str, Any] = {}
    if job.gpus:
        limits["nvidia.com/gpu"] = job.gpus * job.procs_per_node
    if job.cpus:
        limits["cpu"] = str(job.cpus * job.procs_per_node)
    return {"requests": dict(limits), "limits": limits} if limits else {}


def plain_env(tracking_env: Mapping[str, str], storage_options: Mapping[str, Any]) -> dict[str, str]:
    """The pods' variables from the task's MLflow settings and storage options, credentials left out
    (they come from the Secret): no token, user or password, and URIs without user info."""
    env = {k: strip_userinfo(v) for k, v in tracking_env.items() if k not in SECRET_KEYS}
    options = {k: v for k, v in storage_options.items() if k not in _SECRET_OPTIONS}
    return {**env, STORAGE_OPTIONS_ENV: json.dumps(options, sort_keys=True, default=str)}


def _command() -> list[str]:
    return ["python", "-m", ENTRY_MODULE]


def _train_job(job: ClusterJob, env: list[dict[str, Any]]) -> dict[str, Any]:
    trainer: dict[str, Any] = {
        "image": job.image,
        "command": _command(),
        "env": env,
        "numNodes": job.nodes,
        "numProcPerNode": job.procs_per_node,
    }
    if resources(job):
        trainer["resourcesPerNode"] = resources(job)
    spec: dict[str, Any] = {"runtimeRef": {"name": job.runtime}, "trainer": trainer}
    pod = _pod_settings(job)
    if pod:  # the runtime's node pods, patched (the torch-distributed runtime names its job "node")
        pod_template = {"spec": {"template": {"spec": pod}}}
        spec["runtimePatches"] = [
            {
                "manager": "airflow-mlops-provider",
                "trainingRuntimeSpec": {
                    "template": {"spec": {"replicatedJobs": [{"name": "node", "template": pod_template}]}}
                },
            }
        ]
    return spec


def _pytorch_job(job: ClusterJob, env: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "pytorch", "image": job.image, "command": _command(), "env": env}
    if resources(job):
        container["resources"] = resources(job)
    template = {
        "metadata": {"labels": dict(job.labels)},
        "spec": {**_pod_settings(job), "containers": [container]},
    }
    policy = "OnFailure" if job.max_restarts else "Never"
    replicas = {"Master": {"replicas": 1, "restartPolicy": policy, "template": template}}
    if job.nodes > 1:
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": policy, "template": template}
    return {
        "nprocPerNode": str(job.procs_per_node),
        "runPolicy": {"backoffLimit": job.max_restarts, "cleanPodPolicy": "None"},
        "pytorchReplicaSpecs": replicas,
    }


def _pod_settings(job: ClusterJob) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    if job.service_account:
        pod["serviceAccountName"] = job.service_account
    if job.node_selector:
        pod["nodeSelector"] = dict(job.node_selector)
    return pod
