"""TrainModelOperator and SelectBestRunOperator in real DAG runs (``dag.test()``).

Real torchrun with two gloo workers, a real ``mlflow server``, scikit-learn's wine data as a
snapshot. Covers the issue's "Done when" (train the built-in model with 2 workers, complete
MLflow run, resume after an injected worker kill), mapping + best-run selection, a retried task
resuming its MLflow run, and the Airflow side of the failure modes: execution_timeout, a raising
user function, MLflow down.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from airflow_mlops_provider.core.model_io import load_model
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.training_retry import ENTRY as RETRY_ENTRY
from tests.unit.test_training_fns import ENTRY, wine_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train-op")


@pytest.fixture(scope="module")
def snapshot(root) -> dict:
    return wine_snapshot(root.as_uri())


def _dag(dag_id: str, body: str, **values) -> str:
    head = (
        "from datetime import timedelta\n"
        "from airflow.sdk import DAG\n"
        "from airflow_mlops_provider.operators.train import SelectBestRunOperator, TrainModelOperator\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        + f"with DAG({dag_id!r}, schedule=None) as dag:\n"
    )
    return head + "\n".join("    " + line for line in body.strip().splitlines()) + "\n"


def _our_processes() -> list[psutil.Process]:
    """Processes started by a launcher living in this (pytest) process: torchrun and its workers."""
    mine = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("MLOPS_LAUNCHER_PID") == str(os.getpid()) and proc.status() != "zombie":
                mine.append(proc)
        except psutil.Error:
            continue
    return mine


class WorkerKiller(threading.Thread):
    """Waits for the first checkpoint under ``root``, then SIGKILLs the rank-1 worker once."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if any(self.root.glob("wine/checkpoints/*/checkpoint-000000.pt")):
                for proc in _our_processes():
                    try:
                        if (
                            "core.training.worker" in " ".join(proc.cmdline())
                            and proc.environ().get("RANK") == "1"
                        ):
                            proc.send_signal(signal.SIGKILL)
                            self.killed = proc.pid
                            return
                    except psutil.Error:
                        continue
            time.sleep(0.02)


def test_dag_trains_the_builtin_model_with_two_workers_and_resumes_after_a_worker_kill(
    dags, mlflow_conn, mlflow_server, snapshot, root, capfd
):
    source = _dag(
        "train_builtin",
        """
TrainModelOperator(
    task_id="train", snapshot=SNAPSHOT, target="target", artifact_root=ROOT, pipeline="wine",
    experiment_name="op-builtin", nproc_per_node=2, max_restarts=1, threads_per_proc=1,
    hyperparameters={"epochs": 20, "lr": 0.02, "batch_size": 32, "hidden": [16]},
)
""",
        SNAPSHOT=snapshot,
        ROOT=root.as_uri(),
    )
    killer = WorkerKiller(root)
    killer.start()
    try:
        run = dags.run(source, "train_builtin")
    finally:
        killer.stop.set()
    log = capfd.readouterr()
    text = log.out + log.err
    assert killer.killed, "the rank-1 worker was never seen: nothing was killed"
    assert dags.task_states(run) == {"train": "success"}, text[-3000:]
    assert "resuming after epoch" in text and "exitcode: -9" in text

    result = dags.xcom(run, "train")
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    assert result["params"]["nproc_per_node"] == 2 and result["params"]["epochs"] == 20
    settings = TrackingSettings(tracking_uri=mlflow_server)
    client = settings.client()
    mlflow_run = client.get_run(result["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["mlops.snapshot_sha256"] == snapshot["sha256"]
    assert mlflow_run.data.tags["airflow.dag_id"] == "train_builtin"
    steps = {m.step for m in client.get_metric_history(result["run_id"], "val_accuracy")}
    assert steps == set(range(20))  # every epoch logged, none lost to the restart
    assert result["metrics"]["val_accuracy"] > 0.8
    model = load_model(result["model_uri"], settings)
    assert model.task == "classification" and len(model.feature_columns) == 14
    assert dags.xcom(run, "train", "mlflow_run_url") == result["run_url"]
    assert result["run_url"].startswith(mlflow_server)
    assert not _our_processes()


def test_mapped_grid_search_and_select_best_run(dags, mlflow_conn, snapshot, root, capfd):
    source = _dag(
        "train_grid",
        """
train = TrainModelOperator.partial(
    task_id="train", snapshot=SNAPSHOT, target="target", artifact_root=ROOT, pipeline="wine",
    experiment_name="op-grid", threads_per_proc=1,
).expand(hyperparameters=[
    {"epochs": 2, "lr": 0.0001, "hidden": [8]},
    {"epochs": 2, "lr": 0.05, "hidden": [8]},
])
SelectBestRunOperator(task_id="best", results=train.output, metric="val_log_loss", mode="min")
""",
        SNAPSHOT=snapshot,
        ROOT=root.as_uri(),
    )
    run = dags.run(source, "train_grid")
    assert dags.task_states(run) == {"train[0]": "success", "train[1]": "success", "best": "success"}
    # The mapped results are read without asking for one past the end (an error line in the log).
    assert "XCom not found" not in "".join(capfd.readouterr())
    best = dags.xcom(run, "best")
    assert best["params"]["lr"] == 0.05
    assert best["model_uri"] == f"runs:/{best['run_id']}/model"


def test_execution_timeout_stops_torchrun_and_leaves_no_worker(dags, mlflow_conn, snapshot, root, capfd):
    source = _dag(
        "train_timeout",
        f"""
TrainModelOperator(
    task_id="train", snapshot=SNAPSHOT, target="target", artifact_root=ROOT, pipeline="wine",
    experiment_name="op-timeout", nproc_per_node=2, threads_per_proc=1, entry_point="{ENTRY}:slow_tabular",
    hyperparameters={{"epochs": 100, "pause_s": 1.0}}, execution_timeout=timedelta(seconds=20),
)
""",
        SNAPSHOT=snapshot,
        ROOT=root.as_uri(),
    )
    started = time.monotonic()
    run = dags.run(source, "train_timeout")
    elapsed = time.monotonic() - started
    text = "".join(capfd.readouterr())
    assert dags.task_states(run) == {"train": "failed"}
    assert "Timeout" in text or "timed out" in text
    assert elapsed < 60
    assert not _our_processes()


@pytest.mark.parametrize(
    ("entry_point", "conn", "expected"),
    [
        (f"{ENTRY}:raises", None, ["Traceback (most recent call last)", "in raises", "KeyError"]),
        (f"{ENTRY}:nope", None, ["EntryPointError", "has no attribute 'nope'"]),
        ("airflow_mlops_provider.core.training.tabular:train", "http://127.0.0.1:9", ["Cannot reach MLflow"]),
    ],
    ids=["user-function-raises", "missing-entry-point", "mlflow-unreachable"],
)
def test_failures_reach_the_task_log(
    dags, mlflow_conn, snapshot, root, capfd, monkeypatch, entry_point, conn, expected
):
    if conn:
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT",
            json.dumps(
                {"conn_type": "mlflow", "host": conn, "extra": {"max_retries": 0, "request_timeout_s": 2}}
            ),
        )
    source = _dag(
        "train_fails",
        f"""
TrainModelOperator(
    task_id="train", snapshot=SNAPSHOT, target="target", artifact_root=ROOT, pipeline="wine",
    experiment_name="op-fails", threads_per_proc=1, entry_point="{entry_point}",
    hyperparameters={{"epochs": 1}},
)
""",
        SNAPSHOT=snapshot,
        ROOT=root.as_uri(),
    )
    run = dags.run(source, "train_fails")
    text = "".join(capfd.readouterr())
    assert dags.task_states(run) == {"train": "failed"}
    for needle in expected:
        assert needle in text, (needle, text[-3000:])
    if conn or "nope" in entry_point:
        assert "Starting torchrun" not in text  # failed before any training


def test_a_retried_task_continues_the_mlflow_run_of_its_failed_try_from_the_checkpoint(
    dags, mlflow_conn, mlflow_server, snapshot, root, capfd
):
    """Try 1 fails after the checkpoint of epoch 1; try 2 trains epochs 2-3 in the same MLflow run."""
    source = _dag(
        "train_retry",
        f"""
TrainModelOperator(
    task_id="train", snapshot=SNAPSHOT, target="target", artifact_root=ROOT, pipeline="wine",
    experiment_name="op-retry", threads_per_proc=1, entry_point="{RETRY_ENTRY}",
    hyperparameters={{"epochs": 4, "lr": 0.02, "batch_size": 32, "hidden": [16]}},
    retries=1, retry_delay=timedelta(seconds=0),
)
""",
        SNAPSHOT=snapshot,
        ROOT=root.as_uri(),
    )
    run = dags.run(source, "train_retry")
    text = "".join(capfd.readouterr())
    assert dags.task_states(run) == {"train": "success"}, text[-3000:]
    assert "injected failure of the first launch after the checkpoint of epoch 1" in text
    assert "[checkpoint] resuming after epoch 1" in text

    result = dags.xcom(run, "train")
    settings = TrackingSettings(tracking_uri=mlflow_server)
    client = settings.client()
    (only,) = client.search_runs([result["experiment_id"]])  # try 2 made no run of its own
    assert only.info.run_id == result["run_id"] and only.info.status == "FINISHED"
    assert only.data.tags["airflow.try_number"] == "2"
    assert only.data.tags["mlops.resumed_after_epoch"] == "1"
    steps = [m.step for m in client.get_metric_history(result["run_id"], "val_accuracy")]
    assert sorted(steps) == [0, 1, 2, 3]  # every epoch once: try 2 went on where try 1 stopped
    assert load_model(result["model_uri"], settings).task == "classification"
    assert not _our_processes()
