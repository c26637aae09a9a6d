"""The attempt key: one per training task instance, the same for all its tries, outside the config hash."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_mlops_provider.core.champion_check import config_hashes
from airflow_mlops_provider.operators.train import TrainModelOperator

SNAPSHOT = {"uri": "file:///a/wine/snapshots/abc", "sha256": "a" * 64, "rows": 9, "splits": {"train": 9}}
TRAINING = {"target": "y", "artifact_root": "file:///a", "pipeline": "wine", "hyperparameters": {"epochs": 2}}


def _ti(run_id: str = "manual__1", try_number: int = 1, map_index: int = -1) -> SimpleNamespace:
    """The attributes of Airflow's running task instance that the operator reads."""
    return SimpleNamespace(
        dag_id="retrain", run_id=run_id, task_id="train", map_index=map_index, try_number=try_number
    )


def _job(ti: SimpleNamespace):
    return TrainModelOperator(task_id="train", snapshot=SNAPSHOT, **TRAINING).training_job(ti)


def test_every_try_of_a_task_instance_shares_its_key_and_a_new_dag_run_or_map_index_gets_another():
    first, retry = _job(_ti(try_number=1)), _job(_ti(try_number=2))
    assert first.attempt_key == retry.attempt_key
    assert (first.run_tags["airflow.try_number"], retry.run_tags["airflow.try_number"]) == ("1", "2")
    others = {_job(_ti(run_id="manual__2")).attempt_key, _job(_ti(map_index=0)).attempt_key}
    assert first.attempt_key not in others and len(others) == 2


def test_the_attempt_key_leaves_the_training_config_hash_unchanged():
    first, other_run = _job(_ti()), _job(_ti(run_id="scheduled__2", try_number=3))
    assert first.attempt_key != other_run.attempt_key
    assert first.config_hash() == other_run.config_hash()
    # the skip-unchanged check hashes the plain training arguments: the same value
    assert config_hashes(SNAPSHOT, [TRAINING, {**TRAINING, "attempt_key": "x"}]) == [first.config_hash()] * 2
