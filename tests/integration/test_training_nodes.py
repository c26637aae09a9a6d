"""Multi-node jobs as separate launches that find each other (what the node tasks run).

Two launches of one job on loopback ("nodes" 0 and 1, one worker each), started at different
times, meet through the rendezvous record on the artifact store, train one model in one MLflow
run, and both return its result (so does a follower retried after the job's end, without training).
A job whose second node never starts fails on node 0 within its
join timeout, saying how many joined; a node that starts after node 0 gave up fails at once;
no process is left behind.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import pytest

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from airflow_mlops_provider.core.training.errors import TrainingError
from airflow_mlops_provider.core.training.launcher import TorchrunLauncher, TrainingJob
from airflow_mlops_provider.core.training.rendezvous import ADDRESS_ENV, NodeRendezvous, RendezvousFailed
from tests.unit.test_training_fns import wine_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
FAST = {"epochs": 2, "lr": 0.01, "batch_size": 32, "hidden": [16]}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tmp_path_factory.mktemp("nodes").as_uri()


@pytest.fixture(scope="module")
def snapshot(root: str) -> dict[str, Any]:
    return wine_snapshot(root)


@pytest.fixture(autouse=True)
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1")


def _job(snapshot: dict[str, Any], root: str, rdzv_id: str, rank: int, **extra: Any) -> TrainingJob:
    return TrainingJob(
        snapshot=snapshot, target="target", artifact_root=root, pipeline="wine", hyperparameters=FAST,
        experiment_name="nodes", threads_per_proc=1, nnodes=2, rdzv_id=rdzv_id, node_rank=rank, **extra,
    )  # fmt: skip


class Node(threading.Thread):
    """One node's launch in a thread of its own (the parent-death signal follows the thread)."""

    def __init__(self, job: TrainingJob, settings: TrackingSettings) -> None:
        super().__init__(daemon=True)
        self.lines: list[str] = []
        self.launcher = TorchrunLauncher(job, settings, log=self.lines.append)
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = dict(self.launcher.run())
        except BaseException as err:  # reported by the test
            self.error = err


def _left_behind(*nodes: Node) -> list[int]:
    """Processes still running any of the nodes' torchrun job files (torchrun or its workers)."""
    files = {word for n in nodes for line in n.lines if "Starting torchrun" in line for word in line.split()}
    files = {f for f in files if f.endswith("job.json")}
    assert files or not any("Starting torchrun" in line for n in nodes for line in n.lines)
    left = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and files & set(proc.info["cmdline"] or []):
            left.append(proc.info["pid"])
    return left


def test_two_node_launches_started_apart_meet_and_train_one_run(snapshot, root, mlflow_server):
    settings = TrackingSettings(mlflow_server)
    first = Node(_job(snapshot, root, "job-a", 1), settings)  # the follower starts first and waits
    first.start()
    time.sleep(2)
    leader = Node(_job(snapshot, root, "job-a", 0), settings)
    leader.start()
    for node in (first, leader):
        node.join(300)
    assert leader.error is None and first.error is None, (leader.error, first.error)
    assert leader.result is not None and first.result is not None
    assert first.result["run_id"] == leader.result["run_id"]
    assert first.result["model_uri"] == leader.result["model_uri"]
    client = settings.client()
    run = client.get_run(leader.result["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    assert run.data.params["nnodes"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")) == [0, 1]
    rendezvous = NodeRendezvous(Location(root), "wine", "job-a", 2)
    assert rendezvous.joined() == [0, 1] and (rendezvous.read() or {})["finished"] == "succeeded"
    assert _left_behind(first, leader) == []

    # node 1's machine was lost after the job's end: its retry reports the job's result, trains nothing
    retried = Node(_job(snapshot, root, "job-a", 1, join_timeout=5), settings)
    retried.start()
    retried.join(60)
    assert retried.error is None and retried.result == first.result
    assert not any("Starting torchrun" in line for line in retried.lines)
    assert any("the job already succeeded" in line for line in retried.lines)


def test_a_node_that_never_starts_fails_node_0_with_how_many_joined(snapshot, root, mlflow_server):
    settings = TrackingSettings(mlflow_server)
    leader = Node(_job(snapshot, root, "job-b", 0, join_timeout=5), settings)
    leader.start()
    leader.join(300)
    assert isinstance(leader.error, TrainingError)
    message = str(leader.error)
    assert "only 1 of 2 nodes joined job job-b within 5s (node ranks [0])" in message
    assert "at least `nodes` slots" in message
    run_id = NodeRendezvous(Location(root), "wine", "job-b", 2).read()["run_id"]  # type: ignore[index]
    assert settings.client().get_run(run_id).info.status == "FAILED"
    assert _left_behind(leader) == []

    late = Node(_job(snapshot, root, "job-b", 1, join_timeout=5), settings)
    late.start()
    late.join(60)
    assert isinstance(late.error, RendezvousFailed)
    assert "the job job-b ended (failed) before this node joined" in str(late.error)


def test_a_follower_whose_node_0_never_comes_fails_naming_it(snapshot, root, mlflow_server):
    lone = Node(_job(snapshot, root, "job-c", 1, join_timeout=2), TrackingSettings(mlflow_server))
    lone.start()
    lone.join(60)
    assert isinstance(lone.error, RendezvousFailed)
    assert "node 0 of job job-c did not publish its rendezvous within 2s" in str(lone.error)
