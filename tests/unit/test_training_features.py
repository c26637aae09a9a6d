"""The built-in trainer's default features: no hash-split key (a row id is not a feature), dates as dates."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import torch

from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.training.context import MetricsLogger, TrainingContext
from airflow_mlops_provider.core.training.tabular import _default_features
from tests.unit.messy_data import messy_csv


def _context(tmp_path, split_config):
    table = pa.table({"id": [1, 2], "x": [0.5, 1.5], "label": ["a", "b"]})
    ref = write_snapshot(
        {"train": table}, Location(tmp_path.as_uri()), "p", manifest_extra={"split_config": split_config}
    )
    return TrainingContext(
        rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo",
        snapshot=ref.to_dict(), splits={}, target="label", task="classification", hyperparameters={},
        checkpoint_dir=str(tmp_path), checkpoint_every=1, seed=0, metrics=None,
    ), table.to_pandas()  # fmt: skip


def test_hash_split_key_is_not_a_feature(tmp_path):
    ctx, frame = _context(tmp_path, {"by": "hash", "column": "id"})
    assert ctx.split_key() == "id"
    assert _default_features(ctx, frame) == ["x"]


def test_other_splits_keep_every_column_but_the_target(tmp_path):
    ctx, frame = _context(tmp_path, {"by": "time", "column": "id"})
    assert ctx.split_key() is None
    assert _default_features(ctx, frame) == ["id", "x"]


def test_a_csv_date_column_is_a_date_feature_not_a_category(tmp_path):
    table = pacsv.read_csv(io.BytesIO(messy_csv(300, seed=2)))
    assert table.schema.field("signup").type == pa.date32()  # what Arrow infers from ISO dates
    ref = write_snapshot({"train": table}, Location(tmp_path.as_uri()), "p")
    ctx = TrainingContext(
        rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo",
        snapshot=ref.to_dict(), splits={}, target="spend", task="regression", hyperparameters={},
        checkpoint_dir=str(tmp_path), checkpoint_every=1, seed=0, metrics=MetricsLogger(0, None, None),
    )  # fmt: skip
    frame = ctx.read_split("train")
    model = TabularModel.fit_preprocessing(
        frame, "spend", "regression", feature_columns=_default_features(ctx, frame)
    )
    pre = model.spec.preprocessor
    assert list(pre.dates) == ["signup"] and "signup" not in pre.categorical
