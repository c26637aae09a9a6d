"""A registered champion with its training snapshot, and live windows, for scoring and drift tests.

The model is a real :class:`TabularModel` trained in-process (a few Adam steps), logged with
``model_io.log_model`` to the real MLflow server, registered, tagged with ``mlops.snapshot_uri``
(its training snapshot, as the training task tags it) and given the ``champion`` alias.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from airflow_mlops_provider.core import names
from airflow_mlops_provider.core.model_io import log_model
from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Features ``x1``, ``x2``, ``region``; label ``y``. ``shift`` moves ``x1`` by that many sigmas."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "x1": rng.normal(shift, 1.0, rows),
            "x2": rng.normal(0.0, 1.0, rows),
            "region": rng.choice(["eu", "us", "apac"], rows, p=[0.5, 0.3, 0.2]),
        }
    )
    out["y"] = (out["x1"] + 0.5 * out["x2"] > 0).astype(int)
    return out


def live_window(root: Path, pipeline: str, *, shift: float, seed: int, rows: int = 3000) -> dict[str, Any]:
    """An unsplit live snapshot without labels, as the monitoring DAG's ingest writes it."""
    table = pa.Table.from_pandas(frame(rows, seed, shift).drop(columns=["y"]), preserve_index=False)
    return write_snapshot(table, Location(root.as_uri()), pipeline).to_dict()


def register_champion(settings: TrackingSettings, root: Path, pipeline: str) -> dict[str, Any]:
    """Train, log, register and crown a classifier; returns names, version and its training snapshot."""
    import mlflow

    train, test = frame(3000, seed=1), frame(500, seed=2)
    tables = {
        name: pa.Table.from_pandas(df, preserve_index=False)
        for name, df in (("train", train), ("test", test))
    }
    snapshot = write_snapshot(tables, Location(root.as_uri()), pipeline).to_dict()
    model = TabularModel.fit_preprocessing(train, "y", hidden=(8,))
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.network.parameters(), lr=0.05)
    features, target = model.encode_features(train), model.encode_target(train)
    for _ in range(40):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model.network(features), target).backward()
        optimiser.step()
    client = settings.client()
    experiment_id = ensure_experiment(client, f"{pipeline}-training")
    tags = {
        names.TAG_PIPELINE: pipeline,
        names.TAG_SNAPSHOT_URI: snapshot["uri"],
        names.TAG_SNAPSHOT_SHA: snapshot["sha256"],
    }
    run = client.create_run(experiment_id, tags=tags)
    with settings.environment(), mlflow.start_run(run_id=run.info.run_id):
        log_model(model, train.drop(columns=["y"]))
    name = f"{pipeline}-{uuid.uuid4().hex[:8]}"
    with settings.environment():
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name, tags=tags)
    client.set_registered_model_alias(name, "champion", version.version)
    return {
        "name": name,
        "version": str(version.version),
        "snapshot": snapshot,
        "model": model,
        "run_id": run.info.run_id,
    }
