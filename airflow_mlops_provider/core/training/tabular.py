"""The built-in trainer: :class:`TabularModel` with DDP over sharded, streamed reads, and checkpoints.

Entry point ``airflow_mlops_provider.core.training.tabular:train``. Hyperparameters: see
:class:`~airflow_mlops_provider.core.training.hyperparameters.TabularHyperparameters` (the
pipeline config checks them at parse time, and the worker reads them through it).

No rank holds a split in memory: each reads its shard (``ctx.shard``,
:mod:`~airflow_mlops_provider.core.training.shards`). The preprocessing is fitted in one streamed
pass, each rank over its share of the training split's row groups, the statistics merged over
ranks (the same model on every rank, equal to a fit on the whole frame); gradients are averaged by
DDP over the same number of batches per rank. Validation metrics (``val_*``, logged per epoch with
``train_loss``) cover the whole validation split: each rank streams its share and the sums are
all-reduced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from airflow_mlops_provider.core.tabular_fit import TabularFit, merged
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.training.context import NonFiniteLossError, TrainingContext
from airflow_mlops_provider.core.training.hyperparameters import TabularHyperparameters
from airflow_mlops_provider.core.training.shards import ShardReader

EVAL_BATCH_ROWS = 8192


def _default_features(ctx: TrainingContext, columns: Iterable[str]) -> list[str]:
    """Every column but the target and the hash-split key: a row id only teaches the model its range."""
    excluded = {ctx.target, ctx.split_key()}
    return [column for column in columns if column not in excluded]


def fit_preprocessing(
    ctx: TrainingContext, shard: ShardReader, params: TabularHyperparameters
) -> TabularModel:
    """The untrained model, its preprocessing fitted in one streamed pass: each rank its share of the
    row groups, the statistics merged over ranks (the same model on every rank)."""
    fit = TabularFit.start(
        shard.columns,
        ctx.target,
        ctx.task,
        feature_columns=params.feature_columns or _default_features(ctx, shard.columns),
        categorical_columns=params.categorical_columns,
        max_categories=params.max_categories,
    )
    for frame in shard.static_frames(fit.features.feature_columns):
        fit.add(frame)
    return merged(ctx.all_gather(fit)).model(params.hidden, params.dropout)


def train(ctx: TrainingContext) -> TabularModel:
    """Train the tabular MLP on ``ctx``'s snapshot and return it (identical on every rank)."""
    params = TabularHyperparameters.model_validate(ctx.hyperparameters)
    train_shard = ctx.shard("train")
    val_shard = ctx.shard("validation" if "validation" in ctx.splits else "train")
    model = fit_preprocessing(ctx, train_shard, params)
    model.network.to(ctx.device)

    epochs = params.epochs
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = DistributedDataParallel(model.network, device_ids=device_ids)
    optimiser = torch.optim.AdamW(ddp.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if ctx.task == "classification" else nn.MSELoss()

    start = 0
    resumed = ctx.load_checkpoint()
    if resumed is not None:
        epoch, state = resumed
        model.network.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = epoch + 1

    for epoch in range(start, epochs):
        ddp.train()  # type: ignore[no-untyped-call]  # torch leaves DistributedDataParallel.train unannotated
        total = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        for step, frame in enumerate(train_shard.iter_batches(params.batch_size, epoch)):
            xb, yb = model.encode_features(frame).to(ctx.device), model.encode_target(frame).to(ctx.device)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(xb), yb)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"Loss became {loss.item()} at epoch {epoch}, step {step} on rank {ctx.rank}. Training "
                    "stopped; check the data for extreme values or lower the learning rate (lr)."
                )
            loss.backward()
            optimiser.step()
            total[0] += loss.detach().double() * len(xb)
            total[1] += len(xb)
        dist.all_reduce(total)
        metrics = {"train_loss": (total[0] / total[1]).item(), **evaluate(model, val_shard, ctx)}
        ctx.metrics.log(metrics, step=epoch)
        if ctx.should_checkpoint(epoch, epochs - 1):
            ctx.save_checkpoint(
                epoch,
                {"model": model.network.state_dict(), "optimizer": optimiser.state_dict(),
                 "rng": torch.get_rng_state(), "epoch": epoch},
            )  # fmt: skip
    model.network.to("cpu").eval()
    return model


@torch.no_grad()
def evaluate(model: TabularModel, shard: ShardReader, ctx: TrainingContext) -> dict[str, float]:
    """Validation metrics over the whole split: each rank streams its share, the sums are all-reduced
    (the same figures on every rank; every rank must call it)."""
    model.network.eval()
    classes = len(model.classes or ()) if ctx.task == "classification" else 0
    sums = torch.zeros(3 + 3 * classes if classes else 5, dtype=torch.float64)
    for frame in shard.iter_batches(EVAL_BATCH_ROWS, None):
        out = model.network(model.encode_features(frame).to(ctx.device)).double().cpu()
        y = model.encode_target(frame)
        sums += (
            classification_sums(out, y, classes) if classes else regression_sums(out.squeeze(1), y.squeeze(1))
        )
    model.network.train()
    if dist.is_available() and dist.is_initialized():
        sums = sums.to(ctx.device)  # NCCL reduces device tensors only
        dist.all_reduce(sums)
        sums = sums.cpu()
    if classes:
        return classification_metrics(sums, classes)
    return regression_metrics(sums, model.spec.target_std)


def classification_sums(logits: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """Rows, correct predictions, summed negative log-likelihood, then per class true positives,
    false positives and false negatives."""
    predicted = logits.argmax(dim=1)
    nll = -torch.log_softmax(logits, dim=1)[torch.arange(len(y)), y].sum()
    hit = torch.nn.functional.one_hot(predicted, classes).double()
    truth = torch.nn.functional.one_hot(y, classes).double()
    head = torch.stack(
        [torch.tensor(float(len(y)), dtype=torch.float64), (predicted == y).double().sum(), nll]
    )
    return torch.cat([head, (hit * truth).sum(0), (hit * (1 - truth)).sum(0), ((1 - hit) * truth).sum(0)])


def regression_sums(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Rows, summed squared and absolute errors, and the sum and sum of squares of the actual values
    (standardised values: the scale is applied once at the end)."""
    error = predicted.double() - actual.double()
    actual = actual.double()
    return torch.stack(
        [torch.tensor(float(len(actual)), dtype=torch.float64), (error**2).sum(), error.abs().sum(),
         actual.sum(), (actual**2).sum()]
    )  # fmt: skip


def classification_metrics(sums: torch.Tensor, classes: int) -> dict[str, float]:
    """Accuracy, log loss and macro F1 (over classes seen or predicted) from :func:`classification_sums`."""
    rows, correct, nll = (float(v) for v in sums[:3])
    tp, fp, fn = sums[3:].view(3, classes)
    seen = (tp + fp + fn) > 0
    f1s = (2 * tp / (2 * tp + fp + fn))[seen]
    return {
        "val_accuracy": correct / rows if rows else math.nan,
        "val_log_loss": nll / rows if rows else math.nan,
        "val_f1_macro": float(f1s.mean()) if len(f1s) else math.nan,
    }


def regression_metrics(sums: torch.Tensor, scale: float) -> dict[str, float]:
    """RMSE, MAE (in the target's units) and R² from :func:`regression_sums` of standardised values."""
    rows, squared, absolute, total, total_squares = (float(v) for v in sums)
    if not rows:
        return {"val_rmse": math.nan, "val_mae": math.nan, "val_r2": math.nan}
    variance = total_squares - total * total / rows
    return {
        "val_rmse": scale * math.sqrt(squared / rows),
        "val_mae": scale * absolute / rows,
        "val_r2": 1.0 - squared / variance if variance > 0 else math.nan,
    }


def input_example(ctx: TrainingContext, model: TabularModel, rows: int = 5) -> pd.DataFrame:
    """A few validation rows (feature columns only) for the logged model's input example."""
    split = "validation" if "validation" in ctx.splits else "train"
    return ctx.shard(split).head(rows, model.feature_columns)[model.feature_columns]


def describe(model: TabularModel) -> dict[str, Any]:
    return {"task": model.task, "features": len(model.feature_columns), "hidden": model.spec.hidden}
