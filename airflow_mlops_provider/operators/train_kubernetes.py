"""Train on Kubernetes: the same training job as :class:`TrainModelOperator`, run as a Kubeflow job.

Parse time stays light: the Kubernetes clients, mlflow and the launcher are imported inside
``execute()``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.operators.train import TrainModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops_provider.core.payloads import TrainingResult
    from airflow_mlops_provider.core.training.job import TrainingJob
    from airflow_mlops_provider.core.training.kubernetes.manifests import ClusterJob
    from airflow_mlops_provider.core.training.launch import Launch

# What a multi-node job on the cluster rendezvous at: the controller's PET_MASTER_ADDR:PET_MASTER_PORT.
CLUSTER_RENDEZVOUS = "PET_MASTER_ADDR:PET_MASTER_PORT"
DEFAULTS: dict[str, Any] = {
    "namespace": "default",
    "kind": "TrainJob",
    "runtime": "torch-distributed",
    "kubernetes_conn_id": "kubernetes_default",
    "poll_interval": 15.0,
    "service_account": None,
    "node_selector": {},
    "env": {},
    "secret": None,
}


class TrainOnKubernetesOperator(TrainModelOperator):
    """Train like :class:`TrainModelOperator`, on a Kubernetes cluster through Kubeflow (deferrable).

    The task checks the entry point, the snapshot and MLflow, and creates (or, on a retry, reopens)
    the MLflow run, as the local launcher does. It then submits a Kubeflow Trainer ``TrainJob``
    (or a ``PyTorchJob``) running the same job: ``nnodes`` nodes of ``nproc_per_node`` processes,
    ``gpus`` GPUs per process (``nvidia.com/gpu``), ``threads_per_proc`` CPUs per process. It
    defers while :class:`~airflow_mlops_provider.triggers.kubeflow.KubeflowJobTrigger` watches the
    job and copies the rank-0 pod's log into the task log. Complete: the task returns the result
    rank 0 wrote (the same dict as the local operator) and the run is FINISHED. Failed, deleted
    from outside, or past ``execution_timeout``: the run is FAILED and the task fails with the
    condition's reason and message. A killed task deletes the job.

    The job's name is derived from the task instance (the same for all its tries). A retry that
    finds the job of an earlier try still running for the same MLflow run re-attaches to it;
    a finished, failed or other run's job of that name is deleted and submitted anew (the new pods
    resume from the run's newest checkpoint).

    :param kubernetes: ``image`` (required), ``namespace``, ``kind`` (``TrainJob`` or
        ``PyTorchJob``), ``runtime`` (the TrainJob's ClusterTrainingRuntime), ``kubernetes_conn_id``,
        ``poll_interval`` (s), ``service_account``, ``node_selector``, ``env`` (plain variables),
        ``secret`` (a Secret holding AWS/MLflow credentials, read by the pods).
    :param gpus: GPUs per worker process.
    """

    template_fields: Sequence[str] = (*TrainModelOperator.template_fields, "kubernetes")
    template_fields_renderers = {**TrainModelOperator.template_fields_renderers, "kubernetes": "json"}
    ui_color = "#cfe3fa"

    def __init__(self, *, kubernetes: Mapping[str, Any], gpus: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kubernetes = kubernetes
        self.gpus = gpus
        self._submitted: ClusterJob | None = None

    def execute(self, context: Context) -> TrainingResult:
        from airflow_mlops_provider.core.training.launcher import TorchrunLauncher

        ti = context["ti"]
        job = self.training_job(ti)
        job.validate()
        settings = self.mlflow_settings()
        launcher = TorchrunLauncher(job, settings, self.storage_options(), log=self.log.info)
        launch = launcher.prepare()
        try:
            if launcher.take_over(launch):
                result = launch.result()
                launch.close("FINISHED")
                return self.report(context, settings, result)
            cluster = self.cluster_job(job)
            self._submit(cluster, self._manifest(cluster, launch, settings.env()), launch.run_id)
        except BaseException:
            launch.close("FAILED")
            raise
        self._defer(cluster, launch, ti)

    def training_job(self, ti: Any) -> TrainingJob:
        """The local operator's job; a multi-node one keyed by the job's name and the cluster's rendezvous."""
        from airflow_mlops_provider.core.training.kubernetes.manifests import job_name

        job = super().training_job(ti)
        if job.nnodes == 1:
            return job
        name = job_name(job.pipeline, str(job.attempt_key))
        return dataclasses.replace(job, rdzv_id=name, rdzv_endpoint=CLUSTER_RENDEZVOUS)

    def settings(self) -> dict[str, Any]:
        """The ``kubernetes`` argument with defaults filled in; unknown keys and a missing image fail."""
        given = dict(self.kubernetes)
        unknown = sorted(set(given) - {*DEFAULTS, "image"})
        if unknown or not given.get("image"):
            expected = ["image", *DEFAULTS]
            raise PermanentError(
                f"kubernetes settings: unknown {unknown} or no 'image' (expected {expected})"
            )
        return {**DEFAULTS, **given}

    def cluster_job(self, job: TrainingJob) -> ClusterJob:
        from airflow_mlops_provider.core.training.kubernetes.manifests import (
            LABEL_PIPELINE,
            ClusterJob,
            job_name,
        )

        given = self.settings()
        return ClusterJob(
            kind=given["kind"],
            name=job_name(job.pipeline, str(job.attempt_key)),
            namespace=given["namespace"],
            image=given["image"],
            nodes=job.nnodes,
            procs_per_node=job.nproc_per_node,
            gpus=int(self.gpus),
            cpus=job.threads_per_proc,
            max_restarts=job.max_restarts,
            runtime=given["runtime"],
            service_account=given["service_account"],
            node_selector=dict(given["node_selector"]),
            env={str(k): str(v) for k, v in dict(given["env"]).items()},
            secret=given["secret"],
            labels={LABEL_PIPELINE: job.pipeline},
        )

    def _manifest(self, cluster: ClusterJob, launch: Launch, tracking_env: dict[str, str]) -> dict[str, Any]:
        from airflow_mlops_provider.core.training.kubernetes.manifests import LABEL_RUN, manifest, plain_env

        cluster = dataclasses.replace(cluster, labels={**cluster.labels, LABEL_RUN: launch.run_id})
        # the pods size their threads themselves unless the config fixed them
        spec = {**launch.spec, "threads_per_proc": cluster.cpus}
        return manifest(cluster, spec, plain_env(tracking_env, self.storage_options()))

    def _hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.settings()["kubernetes_conn_id"])

    def _submit(self, cluster: ClusterJob, body: dict[str, Any], run_id: str) -> None:
        """Create the job; an earlier try's job of the same name is re-attached or replaced."""
        from kubernetes.client import ApiException

        from airflow_mlops_provider.core.training.kubernetes.manifests import LABEL_RUN, api
        from airflow_mlops_provider.core.training.kubernetes.status import job_state

        hook, (group, version, plural) = self._hook(), api(cluster.kind)
        where = f"{cluster.kind} {cluster.namespace}/{cluster.name}"
        try:
            hook.create_custom_object(group, version, plural, body, cluster.namespace)
        except ApiException as err:
            if err.status != 409:
                raise
            found = hook.get_custom_object(group, version, plural, cluster.name, cluster.namespace)
            same_run = (found.get("metadata") or {}).get("labels", {}).get(LABEL_RUN) == run_id
            if same_run and not job_state(cluster.kind, found).finished:
                self.log.info("Re-attaching to %s of an earlier try (MLflow run %s)", where, run_id)
                self._submitted = cluster
                return
            self.log.info("Replacing %s left by an earlier try", where)
            self._delete(cluster)
            self._wait_gone(cluster)
            hook.create_custom_object(group, version, plural, body, cluster.namespace)
        self._submitted = cluster
        self.log.info(
            "Submitted %s (%d node(s) x %d process(es))", where, cluster.nodes, cluster.procs_per_node
        )

    def _delete(self, cluster: ClusterJob) -> None:
        from kubernetes.client import ApiException

        from airflow_mlops_provider.core.training.kubernetes.manifests import api

        group, version, plural = api(cluster.kind)
        try:
            self._hook().delete_custom_object(
                group, version, plural, cluster.name, cluster.namespace, propagation_policy="Background"
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def _wait_gone(self, cluster: ClusterJob, timeout_s: float = 120.0) -> None:
        from kubernetes.client import ApiException

        from airflow_mlops_provider.core.training.kubernetes.manifests import api

        group, version, plural = api(cluster.kind)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._hook().get_custom_object(group, version, plural, cluster.name, cluster.namespace)
            except ApiException as err:
                if err.status == 404:
                    return
                raise
            time.sleep(1.0)
        raise TimeoutError(
            f"{cluster.kind} {cluster.name} was still there {timeout_s:.0f} s after its deletion"
        )

    def _defer(self, cluster: ClusterJob, launch: Launch, ti: Any) -> NoReturn:
        from airflow_mlops_provider.triggers.kubeflow import KubeflowJobTrigger

        deadline = None
        if self.execution_timeout is not None:
            started = getattr(ti, "start_date", None) or datetime.now(UTC)
            deadline = (started + self.execution_timeout).isoformat()
        given = self.settings()
        trigger = KubeflowJobTrigger(
            kind=cluster.kind,
            name=cluster.name,
            namespace=cluster.namespace,
            kubernetes_conn_id=given["kubernetes_conn_id"],
            poll_s=float(given["poll_interval"]),
            deadline=deadline,
            carry=launch.to_json(),
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> TrainingResult:
        """Resumed by the trigger's event: the run's result, or the job's failure."""
        from airflow_mlops_provider.core.training.errors import TrainingError
        from airflow_mlops_provider.core.training.launch import Launch

        settings = self.mlflow_settings()
        launch = Launch.from_json(event["carry"], self.storage_options(), settings.client())
        where = f"{event['kind']} {event['namespace']}/{event['name']}"
        status = "FAILED"
        try:
            if event["status"] != "complete":
                raise TrainingError(_failure(where, event))
            self.log.info("%s is complete (%d container restart(s))", where, event["restarts"])
            result = launch.result()
            status = "FINISHED"
        finally:
            launch.close(status)
        return self.report(context, settings, result)

    def on_kill(self) -> None:
        """Delete the submitted job and its pods (the trigger does it when the task is deferred)."""
        if self._submitted is not None:
            self._delete(self._submitted)
            self.log.info("Deleted %s %s", self._submitted.kind, self._submitted.name)


def _failure(where: str, event: Mapping[str, Any]) -> str:
    what = {"failed": "failed", "deleted": "was deleted", "timed_out": "timed out"}.get(event["status"])
    cause = ": ".join(part for part in (event.get("reason"), event.get("message")) if part)
    return (
        f"{where} {what or event['status']}"
        + (f" ({cause})" if cause else "")
        + (f" after {event['restarts']} container restart(s)" if event.get("restarts") else "")
    )
