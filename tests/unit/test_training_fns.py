"""Shared helpers for the training tests: a bundled scikit-learn dataset as a snapshot, and entry points.

No tests live here. The entry points are imported by torchrun workers as
``tests.unit.test_training_fns:<name>`` (workers start in the repository root).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.hyperparameters import TabularHyperparameters

ENTRY = "tests.unit.test_training_fns"


def wine_snapshot(artifact_root: str, pipeline: str = "wine", rows: int | None = None) -> dict[str, Any]:
    """scikit-learn's wine data (178 rows, 3 classes) plus a categorical column, split 70/30."""
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True).frame
    if rows:
        data = data.sample(n=rows, replace=rows > len(data), random_state=0).reset_index(drop=True)
    data["alcohol_band"] = np.where(data["alcohol"] > 13.0, "high", "low")
    data["target"] = data["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    order = np.random.default_rng(0).permutation(len(data))
    cut = int(len(data) * 0.7)
    splits = {
        "train": pa.Table.from_pandas(data.iloc[order[:cut]], preserve_index=False),
        "validation": pa.Table.from_pandas(data.iloc[order[cut:]], preserve_index=False),
    }
    return write_snapshot(splits, Location(artifact_root), pipeline).to_dict()


def diabetes_snapshot(artifact_root: str, pipeline: str = "diabetes") -> dict[str, Any]:
    """scikit-learn's diabetes regression data, split 70/30, as a snapshot."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True).frame
    cut = int(len(data) * 0.7)
    splits = {
        "train": pa.Table.from_pandas(data.iloc[:cut], preserve_index=False),
        "validation": pa.Table.from_pandas(data.iloc[cut:], preserve_index=False),
    }
    return write_snapshot(splits, Location(artifact_root), pipeline).to_dict()


# --- entry points used by failure-mode tests ---------------------------------------------------------
def raises(ctx: Any) -> Any:
    """A user function with a bug."""
    columns = {"a": 1}
    return columns["label_column_that_does_not_exist"]


def nan_loss(ctx: Any) -> Any:
    """Train the built-in model with a learning rate that makes the loss explode."""
    from airflow_mlops_provider.core.training.tabular import train

    ctx.hyperparameters = {**ctx.hyperparameters, "lr": 1e30, "epochs": 3}
    return train(ctx)


class SlowParams(TabularHyperparameters):
    """``slow_tabular``'s hyperparameters: the built-in trainer's plus the pause per epoch."""

    pause_s: float = 0.5


def slow_tabular(ctx: Any) -> Any:
    """The built-in trainer, paced so that tests can act between checkpoints (sleep per epoch)."""
    from airflow_mlops_provider.core.training import tabular

    pause = float(ctx.hp("pause_s", 0.5))
    ctx.hyperparameters = {k: v for k, v in ctx.hyperparameters.items() if k != "pause_s"}  # ours, not its
    original = ctx.metrics.log

    def log(metrics: dict[str, float], step: int) -> None:
        original(metrics, step)
        time.sleep(pause)

    ctx.metrics.log = log
    return tabular.train(ctx)


def kill_rank1_once(ctx: Any) -> Any:
    """The built-in trainer; rank 1 SIGKILLs itself after checkpoint 0, in the first attempt only."""
    from airflow_mlops_provider.core.training import tabular

    original = ctx.save_checkpoint

    def save(epoch: int, state: dict[str, Any]) -> None:
        original(epoch, state)
        if epoch == 0 and ctx.rank == 1 and ctx.restart_count == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    ctx.save_checkpoint = save
    return tabular.train(ctx)


not_callable = 42
