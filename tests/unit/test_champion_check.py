"""The skip decision against the champion and the training config hashes it compares."""

from __future__ import annotations

import pytest

from airflow_mlops_provider.core.champion_check import config_hashes, decide
from airflow_mlops_provider.core.names import TAG_SNAPSHOT_SHA, TAG_TRAINING_CONFIG
from airflow_mlops_provider.core.training.job import TrainingJob

SNAPSHOT = {"uri": "file:///a/snapshots/abc", "sha256": "a" * 64}
TRAINING = {"target": "y", "artifact_root": "file:///a", "pipeline": "p", "hyperparameters": {"epochs": 2}}


def champion(sha: str | None, config: str | None) -> dict:
    return {"version": "3", "run_id": "r", "tags": {TAG_SNAPSHOT_SHA: sha, TAG_TRAINING_CONFIG: config}}


def test_config_hashes_are_the_launchers_on_the_new_snapshot():
    grid = [TRAINING, {**TRAINING, "hyperparameters": {"epochs": 3}, "not_a_field": 1}]
    hashes = config_hashes(SNAPSHOT, grid)
    assert hashes[0] == TrainingJob(snapshot=dict(SNAPSHOT), **TRAINING).config_hash()
    assert len(set(hashes)) == 2
    assert config_hashes({**SNAPSHOT, "sha256": "b" * 64}, [TRAINING]) != hashes[:1]


def test_same_data_and_config_skip():
    hashes = config_hashes(SNAPSHOT, [TRAINING])
    result = decide("m", "unchanged", champion(SNAPSHOT["sha256"], hashes[0]), SNAPSHOT["sha256"], hashes)
    assert result["skip"] and result["champion_version"] == "3"
    assert result["reason"].startswith(f"Skipping training and promotion: snapshot {'a' * 12}")


@pytest.mark.parametrize(
    ("sha", "config", "why"),
    [
        ("b" * 64, "h", f"data changed ({'b' * 12} -> {'a' * 12})"),
        ("a" * 64, "other", "training config changed"),
        ("b" * 64, "other", "data changed (bbbbbbbbbbbb -> aaaaaaaaaaaa) and training config changed"),
    ],
)
def test_changed_data_or_config_trains(sha, config, why):
    result = decide("m", "unchanged", champion(sha, config), SNAPSHOT["sha256"], ["h"])
    assert not result["skip"]
    assert result["reason"] == f"Training: {why} since champion version 3."
    assert result["snapshot_sha256"] == SNAPSHOT["sha256"]


def test_without_a_champion_training_runs_and_monitoring_skips():
    assert not decide("m", "unchanged", None, "a", ["h"])["skip"]
    monitoring = decide("m", "require_champion", None)
    assert monitoring["skip"] and "nothing to monitor" in monitoring["reason"]
    assert not decide("m", "require_champion", champion("a", "h"))["skip"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode: expected"):
        decide("m", "always", None)
