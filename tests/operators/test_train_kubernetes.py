"""TrainOnKubernetesOperator and KubeflowJobTrigger against a loopback Kubernetes API stand-in.

No cluster runs here and no faithful Kubernetes API server installs from the package registries
(no kwok, envtest or k3s binaries on PyPI), so the stand-in (tests/support/kube_standin.py)
answers the calls the backend makes and records them. Real parts: the cncf.kubernetes hooks and
kubernetes(-asyncio) clients over HTTP, a real MLflow server, and, in the first test, real
training: the stand-in runs the submitted container command (our entry, torchrun, our worker) as
a local process with the controller's PET_* variables. What this does not prove: a Kubeflow
controller's behaviour, scheduling, images, GPUs, multi-node pods.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_mlops_provider.core.tracking import TrackingSettings
from airflow_mlops_provider.core.training.errors import TrainingError
from airflow_mlops_provider.operators.train_kubernetes import TrainOnKubernetesOperator
from airflow_mlops_provider.triggers.kubeflow import KubeflowJobTrigger
from tests.support.kube_standin import KubeStandIn
from tests.unit.test_kubernetes_manifests import _errors as crd_errors
from tests.unit.test_training_fns import wine_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HYPER = {"epochs": 2, "batch_size": 32, "hidden": [8]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train-k8s")


@pytest.fixture(scope="module")
def snapshot(root) -> dict:
    return wine_snapshot(root.as_uri())


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, request) -> KubeStandIn:
    with KubeStandIn(run_pods=getattr(request, "param", False)) as standin:
        extra = {"kube_config": standin.kubeconfig()}
        monkeypatch.setenv(
            "AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": extra})
        )
        yield standin


class FakeTI(SimpleNamespace):
    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _ti(run_id: str) -> FakeTI:
    return FakeTI(
        dag_id="retrain_wine", task_id="train", run_id=run_id, map_index=-1, try_number=1,
        start_date=datetime.now(UTC), pushed={},
    )  # fmt: skip


def _operator(root: Path, snapshot: dict, kind: str = "TrainJob", **extra: Any) -> TrainOnKubernetesOperator:
    return TrainOnKubernetesOperator(
        task_id="train", snapshot=snapshot, target="target", artifact_root=root.as_uri(), pipeline="wine",
        hyperparameters=HYPER, nproc_per_node=2, aws_conn_id=None, mlflow_conn_id="mlflow_default",
        kubernetes={"image": "registry.local/mlops:1", "namespace": "ml", "kind": kind, "poll_interval": 0.2,
                    "secret": "mlops-credentials"},
        **extra,
    )  # fmt: skip


def _defer(op: TrainOnKubernetesOperator, ti: FakeTI) -> KubeflowJobTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, KubeflowJobTrigger) and deferred.value.method_name == "execute_complete"
    return trigger


def _first_event(trigger: KubeflowJobTrigger, timeout_s: float = 300) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout_s))


def _run(mlflow_conn: str, run_id: str) -> Any:
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    settings: TrackingSettings = MlflowHook(mlflow_conn).settings
    return settings.client().get_run(run_id)


@pytest.mark.parametrize("cluster", [True], indirect=True)
def test_a_trainjob_trains_with_our_worker_and_returns_the_local_result(
    cluster, mlflow_conn, root, snapshot, capfd
):
    op, ti = _operator(root, snapshot, execution_timeout=None), _ti("manual__ok")
    trigger = _defer(op, ti)
    ((path, body),) = cluster.calls("POST")
    assert path == "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs"
    assert crd_errors("TrainJob", body) == [] and body["metadata"]["name"] == trigger.name
    event = _first_event(trigger)
    assert (event["status"], event["reason"], event["restarts"]) == ("complete", "JobsCompleted", 0)
    logged = capfd.readouterr().out  # the trigger's log: the task log, in Airflow
    assert f"[{trigger.name}-node-0-0] [worker] world_size=2 backend=gloo" in logged  # the rank-0 pod's log
    result = _operator(root, snapshot).execute_complete({"ti": ti}, event)
    assert result["model_uri"] == f"runs:/{result['run_id']}/model" and result["run_url"]
    assert set(result["metrics"]) >= {"val_accuracy", "val_log_loss"}
    assert result["params"]["nproc_per_node"] == 2
    run = _run(mlflow_conn, result["run_id"])
    assert run.info.status == "FINISHED" and "val_accuracy" in run.data.metrics
    assert ti.pushed  # the MLflow run link
    assert body["metadata"]["labels"]["mlops.airflow.apache.org/mlflow-run"] == result["run_id"]


def test_a_failed_pytorchjob_fails_the_task_with_its_reason_and_the_run(cluster, mlflow_conn, root, snapshot):
    op, ti = _operator(root, snapshot, kind="PyTorchJob"), _ti("manual__failed")
    trigger = _defer(op, ti)
    ((path, body),) = cluster.calls("POST")
    assert path == "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs" and crd_errors("PyTorchJob", body) == []
    cluster.set_conditions(
        trigger.name,
        {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
         "message": "pod master-0 OOMKilled", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    )  # fmt: skip
    event = _first_event(trigger)
    assert event["status"] == "failed"
    with pytest.raises(
        TrainingError,
        match=r"PyTorchJob ml/mlops-wine-\w+ failed \(PyTorchJobFailed: pod master-0 OOMKilled\)",
    ):
        _operator(root, snapshot, kind="PyTorchJob").execute_complete({"ti": ti}, event)
    run_id = body["metadata"]["labels"]["mlops.airflow.apache.org/mlflow-run"]
    assert _run(mlflow_conn, run_id).info.status == "FAILED"


def test_a_job_deleted_from_outside_fails_the_task(cluster, mlflow_conn, root, snapshot):
    op, ti = _operator(root, snapshot), _ti("manual__deleted")
    trigger = _defer(op, ti)
    del cluster.objects[trigger.name]
    event = _first_event(trigger)
    assert event["status"] == "deleted"
    with pytest.raises(TrainingError, match="was deleted"):
        _operator(root, snapshot).execute_complete({"ti": ti}, event)


def test_kill_and_timeout_delete_the_job(cluster, mlflow_conn, root, snapshot):
    op, ti = _operator(root, snapshot), _ti("manual__killed")
    trigger = _defer(op, ti)
    op.on_kill()  # killed before it deferred (the worker still ran it)
    asyncio.run(trigger.on_kill())  # killed while deferred (the triggerer runs it)
    deletes = cluster.calls("DELETE")
    where = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/{trigger.name}"
    assert [urlsplit(path).path for path, _ in deletes] == [where] * 2  # the second finds it gone: fine
    # both take the pods with them: the sync client says so in the query, the async one in the body
    assert (
        "propagationPolicy=Background" in deletes[0][0] and deletes[1][1]["propagationPolicy"] == "Background"
    )
    assert trigger.name not in cluster.objects
    late = _defer(_operator(root, snapshot), _ti("manual__late"))
    late.deadline = datetime.now(UTC).isoformat()  # the task's execution timeout has passed
    event = _first_event(late)
    assert event["status"] == "timed_out" and late.name not in cluster.objects


def test_a_retry_reattaches_to_its_running_job_and_replaces_a_failed_one(
    cluster, mlflow_conn, root, snapshot
):
    ti = _ti("manual__retry")
    first = _defer(_operator(root, snapshot), ti)
    ti.try_number = 2
    again = _defer(_operator(root, snapshot), ti)  # still running: re-attach, nothing deleted
    assert again.name == first.name and again.carry["run_id"] == first.carry["run_id"]
    assert [m for m, _, _ in cluster.requests if m != "GET"] == ["POST", "POST"] and not cluster.calls(
        "DELETE"
    )
    cluster.set_conditions(
        first.name,
        {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "node-0 evicted",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
    )  # fmt: skip
    ti.try_number = 3
    third = _defer(_operator(root, snapshot), ti)  # failed: deleted and submitted anew, same MLflow run
    assert third.carry["run_id"] == first.carry["run_id"]
    assert [m for m, _, _ in cluster.requests if m != "GET"] == ["POST", "POST", "POST", "DELETE", "POST"]
    assert "status" not in cluster.objects[first.name] or not cluster.objects[first.name]["status"]
