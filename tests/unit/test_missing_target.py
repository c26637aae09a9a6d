"""Rows without a label: validation checks their share by name, training drops and counts them (or fails)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from airflow_mlops_provider.core.evaluation import evaluate_frame
from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.context import MetricsLogger, MissingTargetError, TrainingContext
from airflow_mlops_provider.core.validation import ValidationFailed, validate_snapshot

ROWS, UNLABELLED = 200, 5


def _table() -> pa.Table:
    rng = np.random.default_rng(0)
    price = rng.normal(100, 10, ROWS)
    price[[3, 50, 51, 120, 199]] = np.nan
    return pa.table({"id": np.arange(ROWS), "size": rng.normal(50, 5, ROWS), "price": price})


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot({"train": _table()}, Location((tmp_path / "artifacts").as_uri()), "houses")


def _validate(snapshot, tmp_path, share: float):
    return validate_snapshot(
        snapshot,
        artifact_root=Location((tmp_path / "artifacts").as_uri()),
        pipeline="houses",
        builtin_checks={"target": "price", "max_target_null_fraction": share},
    )


def test_target_null_share_within_the_limit_passes_and_is_reported_by_name(snapshot, tmp_path):
    outcome = _validate(snapshot, tmp_path, 0.05)
    assert outcome["success"]
    document = json.loads(Location(outcome["result_uri"]).read_bytes())
    (check,) = [c for c in document["checks"] if c.get("role") == "target"]
    assert (check["column"], check["unexpected_count"], check["observed"]) == ("price", 5, 0.025)


def test_too_many_unlabelled_rows_fail_validation_naming_column_count_and_share(snapshot, tmp_path):
    with pytest.raises(ValidationFailed) as err:
        _validate(snapshot, tmp_path, 0.01)
    message = str(err.value)
    assert "target column 'price': 5 of 200 rows have no label (2.50%)" in message
    assert "at most 1.00% may be dropped" in message


def test_a_missing_target_column_fails_validation(tmp_path):
    ref = write_snapshot(
        {"train": _table().drop(["price"])}, Location((tmp_path / "artifacts").as_uri()), "h"
    )
    with pytest.raises(ValidationFailed, match=r"expect_column_to_exist on column 'price'"):
        _validate(ref, tmp_path, 0.05)


def _context(snapshot, tmp_path, mode: str) -> TrainingContext:
    return TrainingContext(
        rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo",
        snapshot=snapshot.to_dict(), splits={}, target="price", task="regression", hyperparameters={},
        checkpoint_dir=str(tmp_path), checkpoint_every=1, seed=0, metrics=MetricsLogger(0, None, None),
        missing_target=mode,
    )  # fmt: skip


def test_training_drops_unlabelled_rows_and_counts_them_once(snapshot, tmp_path, capsys):
    ctx = _context(snapshot, tmp_path, "drop")
    frame = ctx.read_split("train")
    again = ctx.read_split("train")
    assert len(frame) == len(again) == ROWS - UNLABELLED and not frame["price"].isna().any()
    assert ctx.dropped_unlabelled == {"train": UNLABELLED}
    out = capsys.readouterr().out
    assert out.count("[data] missing_target_dropped_train=5") == 1
    assert "Dropped 5 of 200 rows of split 'train': no 'price' label" in out


def test_training_with_missing_target_fail_names_column_count_and_share(snapshot, tmp_path):
    with pytest.raises(
        MissingTargetError, match=r"'price' has 5 missing values in split 'train' \(2.50% of 200"
    ):
        _context(snapshot, tmp_path, "fail").read_split("train")


class _Mean:
    task, target = "regression", "price"

    def predict(self, frame):
        return np.full(len(frame), 100.0)


def test_evaluation_scores_labelled_rows_only_and_counts_the_rest():
    scored = evaluate_frame(_Mean(), _table().to_pandas())
    assert scored["rows"] == ROWS - UNLABELLED and scored["missing_target_dropped"] == UNLABELLED
    assert np.isfinite(scored["metrics"]["rmse"])
