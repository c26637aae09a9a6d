"""The built-in trainer: :class:`TabularModel` with DDP, a ``DistributedSampler`` and checkpoints.

Entry point ``airflow_mlops_provider.core.training.tabular:train``. Hyperparameters: see
:class:`~airflow_mlops_provider.core.training.hyperparameters.TabularHyperparameters` (the
pipeline config checks them at parse time, and the worker reads them through it). The preprocessing
is fitted on the training split (identically on every rank), gradients are averaged by DDP,
and validation metrics are logged per epoch as ``val_*`` together with ``train_loss``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.training.context import NonFiniteLossError, TrainingContext
from airflow_mlops_provider.core.training.hyperparameters import TabularHyperparameters


def _default_features(ctx: TrainingContext, frame: pd.DataFrame) -> list[str]:
    """Every column but the target and the hash-split key: a row id only teaches the model its range."""
    excluded = {ctx.target, ctx.split_key()}
    return [column for column in frame.columns if column not in excluded]


def train(ctx: TrainingContext) -> TabularModel:
    """Train the tabular MLP on ``ctx``'s snapshot and return it (identical on every rank)."""
    params = TabularHyperparameters.model_validate(ctx.hyperparameters)
    train_df = ctx.read_split("train")
    val_split = "validation" if "validation" in ctx.splits else "train"
    val_df = train_df if val_split == "train" else ctx.read_split(val_split)
    model = TabularModel.fit_preprocessing(
        train_df,
        ctx.target,
        ctx.task,
        feature_columns=params.feature_columns or _default_features(ctx, train_df),
        categorical_columns=params.categorical_columns,
        hidden=params.hidden,
        dropout=params.dropout,
        max_categories=params.max_categories,
    )
    model.network.to(ctx.device)
    x_train, y_train = model.encode_features(train_df), model.encode_target(train_df)
    x_val, y_val = model.encode_features(val_df), model.encode_target(val_df)

    epochs = params.epochs
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        TensorDataset(x_train, y_train),
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=ctx.seed,
    )
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=params.batch_size,
        sampler=sampler,
        num_workers=0,
    )
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
        sampler.set_epoch(epoch)
        ddp.train()  # type: ignore[no-untyped-call]  # torch leaves DistributedDataParallel.train unannotated
        total, count = torch.zeros(2, dtype=torch.float64, device=ctx.device), 0
        for step, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(ctx.device), yb.to(ctx.device)
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
            count += len(xb)
        total[1] = count
        dist.all_reduce(total)
        metrics = {"train_loss": (total[0] / total[1]).item(), **evaluate(model, x_val, y_val, ctx)}
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
def evaluate(model: TabularModel, x: torch.Tensor, y: torch.Tensor, ctx: TrainingContext) -> dict[str, float]:
    """Validation metrics, computed on the full validation split (the same on every rank)."""
    model.network.eval()
    out = model.network(x.to(ctx.device)).double().cpu()
    model.network.train()
    if ctx.task == "classification":
        return classification_metrics(out, y)
    return regression_metrics(
        out.squeeze(1).numpy() * model.spec.target_std + model.spec.target_mean,
        y.squeeze(1).double().numpy() * model.spec.target_std + model.spec.target_mean,
    )


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    log_proba = torch.log_softmax(logits, dim=1)
    predicted = logits.argmax(dim=1)
    f1s = []
    for label in range(logits.shape[1]):
        tp = float(((predicted == label) & (y == label)).sum())
        fp = float(((predicted == label) & (y != label)).sum())
        fn = float(((predicted != label) & (y == label)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "val_accuracy": float((predicted == y).double().mean()),
        "val_log_loss": float(-log_proba[torch.arange(len(y)), y].mean()),
        "val_f1_macro": float(np.mean(f1s)) if f1s else math.nan,
    }


def regression_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = predicted - actual
    variance = float(((actual - actual.mean()) ** 2).sum())
    return {
        "val_rmse": float(np.sqrt(np.mean(error**2))),
        "val_mae": float(np.mean(np.abs(error))),
        "val_r2": 1.0 - float((error**2).sum()) / variance if variance else math.nan,
    }


def input_example(ctx: TrainingContext, model: TabularModel, rows: int = 5) -> pd.DataFrame:
    """A few validation rows (feature columns only) for the logged model's input example."""
    split = "validation" if "validation" in ctx.splits else "train"
    return ctx.read_split(split)[model.feature_columns].head(rows)


def describe(model: TabularModel) -> dict[str, Any]:
    return {"task": model.task, "features": len(model.feature_columns), "hidden": model.spec.hidden}
