"""The torchrun launcher end to end: real torchrun, real gloo workers, a real ``mlflow server``.

Every failure mode of issue 4 is provoked here (the operator tests add the Airflow side):
worker killed (resume / clear failure), user function raising, bad entry point, NaN loss,
MLflow unreachable, and stopping or SIGKILLing the supervising process (process table check).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from airflow_mlops_provider.core.model_io import load_model
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from airflow_mlops_provider.core.training.checkpoints import list_checkpoints
from airflow_mlops_provider.core.training.entrypoint import EntryPointError
from airflow_mlops_provider.core.training.errors import TrainingError
from airflow_mlops_provider.core.training.launcher import TorchrunLauncher, TrainingJob
from tests.support.training_retry import ENTRY as RETRY_ENTRY
from tests.unit.test_training_fns import ENTRY, wine_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAST = {"epochs": 2, "lr": 0.01, "batch_size": 32, "hidden": [16]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return tmp_path_factory.mktemp("training").as_uri()


@pytest.fixture(scope="module")
def snapshot(root) -> dict:
    return wine_snapshot(root)


@pytest.fixture
def settings(mlflow_server) -> TrackingSettings:
    return TrackingSettings(tracking_uri=mlflow_server, max_retries=0, request_timeout_s=10)


def _job(snapshot: dict, root: str, request, **overrides) -> TrainingJob:
    fields = {"snapshot": snapshot, "target": "target", "artifact_root": root, "pipeline": "wine",
              "hyperparameters": FAST, "experiment_name": f"launcher-{request.node.name[:40]}",
              "threads_per_proc": 1}  # fmt: skip
    return TrainingJob(**{**fields, **overrides})


class Lines(list):
    """Collects the streamed log lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


def _alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture(scope="module")
def clean_run(snapshot, root, mlflow_server) -> tuple[dict, Lines]:
    """One uninterrupted two-worker run, shared by the tests that inspect or compare against it."""
    settings = TrackingSettings(tracking_uri=mlflow_server)
    job = TrainingJob(snapshot=snapshot, target="target", artifact_root=root, pipeline="wine",
                      hyperparameters=FAST, experiment_name="launcher-clean", threads_per_proc=1,
                      nproc_per_node=2)  # fmt: skip
    lines = Lines()
    return TorchrunLauncher(job, settings, log=lines).run(), lines


def test_two_workers_train_and_log_a_complete_run_from_rank_0(clean_run, snapshot, settings):
    result, lines = clean_run
    assert "world_size=2 backend=gloo device=cpu threads=1" in lines.text
    assert set(result) >= {"run_id", "experiment_id", "model_uri", "metrics", "params", "snapshot_sha256",
                           "training_config_hash"}  # fmt: skip
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    assert set(result["metrics"]) == {"val_accuracy", "val_log_loss", "val_f1_macro"}
    client = settings.client()
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlops.pipeline"] == "wine"
    assert run.data.tags["mlops.snapshot_sha256"] == snapshot["sha256"] == result["snapshot_sha256"]
    assert run.data.tags["mlops.snapshot_uri"] == snapshot["uri"]
    assert run.data.tags["mlops.training_config_hash"] == result["training_config_hash"]
    assert run.data.params["lr"] == "0.01" and run.data.params["world_size"] == "2"
    history = client.get_metric_history(result["run_id"], "val_accuracy")
    assert sorted(m.step for m in history) == [0, 1]  # one value per epoch, rank 0 only
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"wine/train", "wine/validation"}
    assert {d.dataset.digest for d in run.inputs.dataset_inputs} == {snapshot["sha256"][:36]}
    model = load_model(result["model_uri"], settings)
    assert model.classes == ["barbera", "barolo", "grignolino"]
    assert "alcohol_band" in model.feature_columns
    assert [e for e, _ in list_checkpoints(Location(result["checkpoint_dir"]))] == [0, 1]


def test_a_killed_worker_is_restarted_and_resumes_from_the_checkpoint(
    clean_run, snapshot, root, settings, request
):
    """Rank 1 is SIGKILLed after epoch 0's checkpoint; the restarted group trains epoch 1 only.

    The resumed run ends with exactly the metrics of the uninterrupted run: resume is exact and
    training is deterministic for the same data and parameters.
    """
    lines = Lines()
    job = _job(snapshot, root, request, nproc_per_node=2, max_restarts=1,
               entry_point=f"{ENTRY}:kill_rank1_once")  # fmt: skip
    resumed = TorchrunLauncher(job, settings, log=lines).run()
    assert "exitcode: -9" in lines.text and "local_rank: 1" in lines.text
    assert "resuming after epoch 0 (restart 1)" in lines.text
    assert lines.text.count("[metrics] step=0 ") == 1  # epoch 0 was not trained again
    assert lines.text.count("[metrics] step=1 ") == 1
    assert resumed["metrics"] == clean_run[0]["metrics"]
    assert resumed["training_config_hash"] != clean_run[0]["training_config_hash"]  # other entry point
    assert settings.client().get_run(resumed["run_id"]).info.status == "FINISHED"


def test_a_killed_worker_without_restarts_fails_clearly_and_marks_the_run_failed(
    snapshot, root, settings, request
):
    job = _job(snapshot, root, request, nproc_per_node=2, entry_point=f"{ENTRY}:kill_rank1_once")
    launcher = TorchrunLauncher(job, settings, log=Lines())
    with pytest.raises(TrainingError, match=r"worker rank 1 was killed by SIGKILL .*max_restarts=0"):
        launcher.run()
    client = settings.client()
    (run,) = client.search_runs([client.get_experiment_by_name(job.experiment_name).experiment_id])
    assert run.info.status == "FAILED"
    assert not client.list_artifacts(run.info.run_id)  # no model was logged


def test_a_raising_user_function_puts_its_traceback_in_the_log(snapshot, root, settings, request):
    lines = Lines()
    job = _job(snapshot, root, request, entry_point=f"{ENTRY}:raises")
    with pytest.raises(TrainingError, match="rank 0: KeyError: 'label_column_that_does_not_exist'"):
        TorchrunLauncher(job, settings, log=lines).run()
    assert "Traceback (most recent call last)" in lines.text
    assert 'test_training_fns.py", line' in lines.text and "in raises" in lines.text


def test_nan_loss_stops_at_once_without_wasting_restarts(snapshot, root, settings, request):
    lines = Lines()
    job = _job(snapshot, root, request, max_restarts=2, entry_point=f"{ENTRY}:nan_loss")
    with pytest.raises(TrainingError, match=r"NonFiniteLossError: .*(Loss became nan|Non-finite loss)"):
        TorchrunLauncher(job, settings, log=lines).run()
    assert "restart=1" not in lines.text


@pytest.mark.parametrize("entry_point", ["not an entry point", "tests.unit.test_training_fns:missing"])
def test_a_bad_entry_point_fails_before_any_run_is_created(snapshot, root, settings, request, entry_point):
    job = _job(snapshot, root, request, entry_point=entry_point)
    with pytest.raises(EntryPointError):
        TorchrunLauncher(job, settings, log=Lines()).run()
    assert settings.client().get_experiment_by_name(job.experiment_name) is None


def test_unreachable_mlflow_fails_before_training(snapshot, root, request):
    lines = Lines()
    down = TrackingSettings(tracking_uri="http://127.0.0.1:9", max_retries=0, request_timeout_s=2)
    with pytest.raises(ConnectionError, match=r"Cannot reach MLflow at http://127\.0\.0\.1:9"):
        TorchrunLauncher(_job(snapshot, root, request), down, log=lines).run()
    assert not any("Starting torchrun" in line for line in lines)


def test_terminate_stops_torchrun_and_every_worker_within_seconds(snapshot, root, settings, request):
    lines = Lines()
    job = _job(snapshot, root, request, nproc_per_node=2, entry_point=f"{ENTRY}:slow_tabular",
               hyperparameters={**FAST, "epochs": 50, "pause_s": 1.0})  # fmt: skip
    launcher = TorchrunLauncher(job, settings, log=lines)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            launcher.run()
        except BaseException as err:  # the test inspects it
            failure.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 120
    while not any("[metrics] step=0" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    launcher._remember_workers()
    pids = [launcher.proc.pid, *launcher._workers]
    assert len(pids) >= 3  # torchrun and two workers
    started = time.monotonic()
    launcher.terminate("on_kill")
    assert time.monotonic() - started < 4.0
    thread.join(30)
    assert not _alive(pids)
    assert isinstance(failure[0], TrainingError) and "stopped (on_kill)" in str(failure[0])


def test_sigkill_of_the_supervising_process_leaves_no_worker(snapshot, root, mlflow_server, tmp_path):
    """The task process dies without running any handler: parent-death signals take everything down."""
    script = tmp_path / "task.py"
    script.write_text(
        "import json, sys\n"
        "from airflow_mlops_provider.core.tracking import TrackingSettings\n"
        "from airflow_mlops_provider.core.training.launcher import TorchrunLauncher, TrainingJob\n"
        "job = TrainingJob(**json.loads(sys.argv[1]))\n"
        "TorchrunLauncher(job, TrackingSettings(sys.argv[2]), log=lambda l: print(l, flush=True)).run()\n"
    )
    spec = {"snapshot": snapshot, "target": "target", "artifact_root": root, "pipeline": "wine",
            "experiment_name": "launcher-sigkill", "nproc_per_node": 2, "threads_per_proc": 1,
            "entry_point": f"{ENTRY}:slow_tabular",
            "hyperparameters": {**FAST, "epochs": 50, "pause_s": 1.0}}  # fmt: skip
    task = subprocess.Popen(
        [sys.executable, str(script), json.dumps(spec), mlflow_server],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path.cwd(), text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    try:
        for line in task.stdout:
            if "[metrics] step=0" in line:
                break
        pids = [p.pid for p in psutil.Process(task.pid).children(recursive=True)]
        assert len(pids) >= 3  # torchrun (exec'd by the wrapper) and its two workers
        task.send_signal(signal.SIGKILL)
        task.wait(10)
        deadline = time.monotonic() + 10
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pids), [psutil.Process(p).cmdline() for p in _alive(pids)]
    finally:
        if task.poll() is None:
            task.kill()


def test_a_retry_continues_the_failed_launchs_run_from_its_checkpoint_and_reuses_a_finished_one(
    snapshot, root, settings, request
):
    """Launch 1 fails after the checkpoint of epoch 1; launch 2 (same attempt key) resumes the same run
    at epoch 2; launch 3 finds the finished run and returns its model without training."""
    job = _job(snapshot, root, request, entry_point=RETRY_ENTRY, attempt_key='["d", "r1", "train", -1]',
               hyperparameters={**FAST, "epochs": 4})  # fmt: skip
    with pytest.raises(TrainingError, match="injected failure of the first launch"):
        TorchrunLauncher(job, settings, log=Lines()).run()
    client = settings.client()
    (failed,) = client.search_runs([client.get_experiment_by_name(job.experiment_name).experiment_id])
    assert failed.info.status == "FAILED"

    lines = Lines()
    result = TorchrunLauncher(job, settings, log=lines).run()
    assert result["run_id"] == failed.info.run_id
    assert f"Continuing MLflow run {result['run_id']}, left FAILED" in lines.text
    assert "resuming after the checkpoint of epoch 1" in lines.text
    assert "[checkpoint] resuming after epoch 1" in lines.text and "[metrics] step=0 " not in lines.text
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlops.resumed_after_epoch"] == "1"
    steps = [m.step for m in client.get_metric_history(result["run_id"], "val_accuracy")]
    assert sorted(steps) == [0, 1, 2, 3]  # epochs 0-1 from launch 1, 2-3 from launch 2, none twice
    assert load_model(result["model_uri"], settings).classes == ["barbera", "barolo", "grignolino"]

    again = Lines()
    assert TorchrunLauncher(job, settings, log=again).run() == result
    assert "already holds the trained model" in again.text and "Starting torchrun" not in again.text
    assert len(client.search_runs([run.info.experiment_id])) == 1
