"""What a training function receives: :class:`TrainingContext` and its :class:`MetricsLogger`.

A training entry point is ``"package.module:function"``; the function is called once per
worker process as ``function(ctx)`` and returns the trained model (a
:class:`~airflow_mlops_provider.core.tabular_model.TabularModel`, or a ``torch.nn.Module``).
Rank 0 alone talks to MLflow: on other ranks the metrics logger only keeps values.
``ctx.shard(split)`` streams this rank's shard of a split (data larger than memory);
``ctx.read_split(split)`` reads the whole split into pandas.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import METRIC_MISSING_TARGET
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.checkpoints import load_latest_checkpoint, save_checkpoint

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from mlflow import MlflowClient

    from airflow_mlops_provider.core.training.shards import ShardReader

T = TypeVar("T")


class NonFiniteLossError(PermanentError, FloatingPointError):
    """The loss (or another ``*loss*`` metric) became NaN or infinite: training cannot continue."""


class MissingTargetError(PermanentError, ValueError):
    """Rows without a label reached training with ``missing_target="fail"``."""


class MetricsLogger:
    """Per-epoch (or per-step) metrics: printed and sent to MLflow from rank 0, kept on every rank."""

    def __init__(self, rank: int, run_id: str | None, client: MlflowClient | None) -> None:
        self.rank = rank
        self.run_id = run_id
        self._client = client if rank == 0 else None
        self.last: dict[str, float] = {}
        self.history: list[tuple[int, dict[str, float]]] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Record ``metrics`` at ``step``; a non-finite ``*loss*`` raises :class:`NonFiniteLossError`."""
        values = {name: float(value) for name, value in metrics.items()}
        bad = {name: value for name, value in values.items() if "loss" in name and not math.isfinite(value)}
        if bad:
            raise NonFiniteLossError(
                f"Non-finite loss at step {step} on rank {self.rank}: {bad}. Training stopped; "
                "check the data for extreme values or lower the learning rate."
            )
        self.last = values
        self.history.append((step, values))
        if self.rank == 0:
            shown = " ".join(f"{k}={v:.6g}" for k, v in values.items())
            print(f"[metrics] step={step} {shown}", flush=True)
            if self._client is not None and self.run_id:
                from mlflow.entities import Metric

                now = _now_ms()
                batch = [Metric(k, v, now, step) for k, v in values.items()]
                self._client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_fact(self, name: str, value: float) -> None:
        """A one-off figure about the run (not a training curve): printed and sent from rank 0."""
        if self.rank != 0:
            return
        print(f"[data] {name}={value:g}", flush=True)
        if self._client is not None and self.run_id:
            self._client.log_metric(self.run_id, name, float(value), step=0)


@dataclass
class TrainingContext:
    """Everything a training function needs; built by the worker from the launcher's job file."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str
    snapshot: dict[str, Any]
    splits: dict[str, str]  # split name -> Parquet URI (train, validation, ...)
    target: str
    task: str
    hyperparameters: dict[str, Any]
    checkpoint_dir: str
    checkpoint_every: int
    seed: int
    metrics: MetricsLogger
    restart_count: int = 0
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    missing_target: str = "drop"  # rows without a label: "drop" (counted) or "fail"
    dropped_unlabelled: dict[str, int] = field(default_factory=dict)
    _shards: dict[str, ShardReader] = field(default_factory=dict, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def train_uri(self) -> str:
        return self.splits["train"]

    @property
    def validation_uri(self) -> str | None:
        return self.splits.get("validation")

    def split_key(self) -> str | None:
        """The column the snapshot was hash-split on (a row id, not a feature), if any."""
        from airflow_mlops_provider.core.snapshot import open_snapshot

        manifest = open_snapshot(self.snapshot, self.storage_options).manifest
        split = manifest.get("split_config") or {}
        return split.get("column") if split.get("by") == "hash" else None

    def read_split(self, split: str) -> pd.DataFrame:
        """One split of the training snapshot as a DataFrame, holding only rows that have a label.

        The whole split, on every rank: for data larger than memory use :meth:`shard`.
        Rows whose target is missing are dropped and counted (task log, MLflow metric
        ``missing_target_dropped_<split>``), or raise :class:`MissingTargetError` when
        ``missing_target`` is ``"fail"``.
        """
        from airflow_mlops_provider.core.snapshot import open_snapshot

        frame = open_snapshot(self.snapshot, self.storage_options).read(split).to_pandas()
        if self.target not in frame.columns:
            return frame
        unlabelled = frame[self.target].isna()
        count = int(unlabelled.sum())
        self._account_unlabelled(split, count, len(frame))
        return frame[~unlabelled].reset_index(drop=True) if count else frame

    def shard(self, split: str) -> ShardReader:
        """This rank's shard of ``split``, streamed (:mod:`~airflow_mlops_provider.core.training.shards`).

        For custom entry points as for the built-in trainer::

            train = ctx.shard("train")
            for epoch in range(epochs):
                for batch in train.iter_batches(batch_size, epoch):  # pandas, labelled rows only
                    ...  # the same number of batches on every rank

        Unlabelled rows are dropped and counted over the whole split as :meth:`read_split` does
        (or raise :class:`MissingTargetError`). Memory: one row group plus the shuffle buffer.
        """
        reader = self._shards.get(split)
        if reader is None:
            from airflow_mlops_provider.core.training.shards import open_shard

            reader = open_shard(
                self.snapshot, split, self.target, self.storage_options,
                rank=self.rank, world_size=self.world_size, seed=self.seed,
            )  # fmt: skip
            self._account_unlabelled(split, reader.unlabelled, reader.rows)
            self._shards[split] = reader
        return reader

    def iter_batches(self, split: str, batch_size: int, epoch: int | None) -> Iterator[pd.DataFrame]:
        """Shortcut for ``ctx.shard(split).iter_batches(batch_size, epoch)``."""
        return self.shard(split).iter_batches(batch_size, epoch)

    def all_gather(self, value: T) -> list[T]:
        """``value`` from every rank, in rank order (a collective: every rank must call it)."""
        import torch.distributed as dist

        if self.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def _account_unlabelled(self, split: str, count: int, rows: int) -> None:
        """Fail (``missing_target="fail"``) or count and log, once per split, the rows without a label."""
        if count and self.missing_target == "fail":
            raise MissingTargetError(
                f"Target column {self.target!r} has {count} missing values in split {split!r} "
                f"({count / rows:.2%} of {rows} rows) and training.missing_target is 'fail'"
            )
        if split not in self.dropped_unlabelled:
            self.dropped_unlabelled[split] = count
            self.metrics.log_fact(f"{METRIC_MISSING_TARGET}{split}", count)
            if count and self.is_main:
                log(f"Dropped {count} of {rows} rows of split {split!r}: no {self.target!r} label")

    def hp(self, name: str, default: Any) -> Any:
        """A hyperparameter, or ``default`` when not given."""
        return self.hyperparameters.get(name, default)

    # --- checkpoints --------------------------------------------------------------------------
    def should_checkpoint(self, epoch: int, last_epoch: int) -> bool:
        return self.checkpoint_every > 0 and ((epoch + 1) % self.checkpoint_every == 0 or epoch == last_epoch)

    def save_checkpoint(self, epoch: int, state: Mapping[str, Any]) -> None:
        """Rank 0 writes the checkpoint for ``epoch`` (atomically); every rank waits for it."""
        if self.is_main:
            location = save_checkpoint(Location(self.checkpoint_dir, self.storage_options), epoch, state)
            print(f"[checkpoint] epoch {epoch} saved to {location.uri}", flush=True)
        self.barrier()

    def load_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(epoch, state)`` of the latest complete checkpoint (``torch.load(weights_only=True)``)."""
        found = load_latest_checkpoint(Location(self.checkpoint_dir, self.storage_options))
        if found is not None and self.is_main:
            print(f"[checkpoint] resuming after epoch {found[0]} (restart {self.restart_count})", flush=True)
        return found

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def log(message: str) -> None:
    """Print a line from rank-aware training code (it reaches the Airflow task log)."""
    print(message, file=sys.stdout, flush=True)
