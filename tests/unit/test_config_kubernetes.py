"""training.backend and training.kubernetes, and GPUs mapped to the executor, from YAML to the DAG."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_mlops_provider.factory.builder import build_pipeline
from airflow_mlops_provider.factory.loader import ConfigError, parse_pipeline
from tests.unit.test_config import _errors, _with

CLUSTER = {"image": "registry.local/mlops:1", "namespace": "ml", "secret": "mlops-credentials"}


def _train(data: dict):
    return build_pipeline(parse_pipeline(data))["retrain_churn"].get_task("train")


def test_backend_defaults_local_for_one_node_and_nodes_for_more():
    assert parse_pipeline(_with()).plan().training.engine == "local"
    plan = parse_pipeline(_with(training__nodes=2)).plan()
    assert plan.training.engine == "nodes" and plan.training.kubernetes is None
    assert "engine" not in plan.training.job and plan.training.job["backend"] is None  # gloo/nccl only


def test_local_with_several_nodes_says_what_to_set(tmp_path: Path):
    error = _errors(_with(training__nodes=2, training__backend="local"), tmp_path)
    assert "training: backend 'local' trains on one node, but nodes is 2" in str(error)
    assert "set backend: nodes" in str(error) and "backend: kubernetes" in str(error)


def test_kubernetes_needs_its_section_and_an_image(tmp_path: Path):
    assert "needs a 'kubernetes' section" in str(_errors(_with(training__backend="kubernetes"), tmp_path))
    missing = _errors(
        _with(training__backend="kubernetes", training__kubernetes={"namespace": "ml"}), tmp_path
    )
    assert "training.kubernetes.image" in str(missing)
    stray = _errors(_with(training__kubernetes=CLUSTER), tmp_path)
    assert "only that backend takes one" in str(stray)
    kind = _errors(
        _with(training__backend="kubernetes", training__kubernetes={**CLUSTER, "kind": "TFJob"}), tmp_path
    )
    assert "training.kubernetes.kind" in str(kind)


@pytest.mark.parametrize("module", ["airflow.providers.cncf.kubernetes", "kubernetes_asyncio"])
def test_kubernetes_without_the_extra_fails_with_the_install_command(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    error = _errors(_with(training__backend="kubernetes", training__kubernetes=CLUSTER), tmp_path)
    assert f"({module} is not installed): pip install 'airflow-mlops-provider[kubernetes]'" in str(error)


def test_the_dag_trains_on_kubernetes_with_the_whole_job_in_one_task_per_grid_point():
    from airflow_mlops_provider.operators.train_kubernetes import TrainOnKubernetesOperator

    data = _with(
        training__backend="kubernetes",
        training__kubernetes={**CLUSTER, "kind": "PyTorchJob", "poll_interval": "1m"},
        training__nodes=2,
        training__workers=2,
        training__resources={"gpus": 1, "cpus": 4},
    )
    train = _train(data)
    assert isinstance(train, TrainOnKubernetesOperator)
    assert (train.nnodes, train.nproc_per_node, train.gpus, train.threads_per_proc) == (2, 2, 1, 4)
    assert train.kubernetes["kind"] == "PyTorchJob" and train.kubernetes["poll_interval"] == 60
    assert train.backend == "nccl"
    assert train.queue == "default" and train.executor_config == {}  # the pods take the GPUs, not the task
    grid = _with(
        training__backend="kubernetes", training__kubernetes=CLUSTER, training__nodes=2,
        training__grid={"lr": [0.1, 0.01]},
    )  # fmt: skip
    dag = build_pipeline(parse_pipeline(grid))["retrain_churn"]
    mapped = dag.get_task("train")
    assert mapped.operator_class is TrainOnKubernetesOperator
    assert len(mapped.expand_input.value) == 2  # two grid points, no node tasks: the cluster starts the nodes
    assert dag.get_task("select_best").upstream_task_ids == {"train"}
    assert dag.get_task("evaluate").upstream_task_ids >= {"select_best"}


def test_gpus_go_to_a_gpu_queue_and_a_pod_override():
    from kubernetes.client import models as k8s

    train = _train(_with(training__workers=2, training__resources={"gpus": 1}))
    assert train.queue == "gpu"
    pod = train.executor_config["pod_override"]
    assert isinstance(pod, k8s.V1Pod)
    (container,) = pod.spec.containers
    assert container.name == "base" and container.resources.limits == {"nvidia.com/gpu": 2}
    assert train.backend == "nccl"
    named = _train(_with(training__resources={"gpus": 1, "queue": "a100"}))
    assert named.queue == "a100"
    cpu = _train(_with())
    assert cpu.queue == "default" and cpu.executor_config == {} and cpu.backend is None


def test_gpus_without_the_kubernetes_client_keep_the_queue(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    train = _train(_with(training__resources={"gpus": 1}))
    assert train.queue == "gpu" and train.executor_config == {}


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match="backend"):
        parse_pipeline(_with(training__backend="slurm"))
