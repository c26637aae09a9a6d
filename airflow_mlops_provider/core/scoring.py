"""Batch scoring: load a registered model without unpickling and score a snapshot into a new one.

Predictions are written as a snapshot of kind ``predictions`` (one row per input row, same
order): ``prediction`` plus, for classifiers, ``proba_<class>`` per class. The Parquet schema
metadata names the model version and the scored snapshot, so the content address differs
per (model, input) and a retry reuses the same predictions snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import CHAMPION
from airflow_mlops_provider.core.paths import check_model_name, safe_component
from airflow_mlops_provider.core.snapshot import SnapshotLike, SnapshotWriter, open_snapshot
from airflow_mlops_provider.core.storage import Location

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tabular_model import TabularModel
    from airflow_mlops_provider.core.tracking import TrackingSettings

PREDICTION = "prediction"
PREDICTION_COLUMNS = (PREDICTION,)  # plus proba_<class> for classifiers
BATCH_ROWS = 100_000


class ScoringError(PermanentError, ValueError):
    """The snapshot cannot be scored with the model (missing feature columns, no such alias)."""


@dataclass(frozen=True)
class ScoredModel:
    """The exact model version an alias pointed at when scoring started."""

    model_name: str
    version: str
    model_uri: str


def resolve_alias(settings: TrackingSettings, model_name: str, alias: str) -> ScoredModel:
    from mlflow.exceptions import MlflowException

    try:
        mv = settings.client().get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        raise ScoringError(
            f"Model {model_name!r} has no {alias!r} alias in the registry at {settings.display_uri}"
        ) from err
    return ScoredModel(model_name, str(mv.version), f"models:/{model_name}/{mv.version}")


def predict_table(model: TabularModel, table: pa.Table) -> pa.Table:
    """The model's outputs for each row of ``table`` as an Arrow table."""
    missing = [c for c in model.feature_columns if c not in table.column_names]
    if missing:
        raise ScoringError(f"Feature columns {missing} of the model are missing from the data")
    scores = model.score_table(table)
    columns: dict[str, Any] = {PREDICTION: prediction_array(scores.predictions)}
    if scores.probabilities is not None:
        for i, label in enumerate(model.classes or ()):
            columns[f"proba_{label}"] = pa.array(scores.probabilities[:, i], type=pa.float64())
    return pa.table(columns)


def prediction_array(values: np.ndarray) -> pa.Array:
    """Predictions as an Arrow array (labels of mixed types as text)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([str(v) for v in values], type=pa.string())


def score_snapshot(
    snapshot: SnapshotLike,
    *,
    model_name: str,
    settings: TrackingSettings,
    artifact_root: Location,
    pipeline: str,
    alias: str = CHAMPION,
    split: str | None = None,
    keep_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """Score one split of ``snapshot`` with ``model_name@alias``, batch by batch.

    ``keep_columns`` (such as a row id that delayed labels are joined on) are copied from the
    input into the predictions, after the model's outputs.
    Predictions go under ``artifact_root``, whose storage options open ``snapshot`` too. Returns
    ``{"predictions": <snapshot ref dict>, "model_version", "model_uri"}``. A pipeline or
    model name that would escape the artifact root or that MLflow cannot hold raises
    :class:`~airflow_mlops_provider.core.paths.UnsafeNameError` before anything is read.
    """
    from airflow_mlops_provider.core.model_io import load_model

    safe_component(pipeline, "pipeline")
    check_model_name(model_name)
    source = open_snapshot(snapshot, artifact_root.storage_options)
    chosen = resolve_alias(settings, model_name, alias)
    model = load_model(chosen.model_uri, settings)
    parquet = source.parquet_file(split)
    missing = [c for c in model.feature_columns if c not in parquet.schema_arrow.names]
    if missing:
        raise ScoringError(
            f"Snapshot {source.location.uri} lacks the feature columns {missing} that model "
            f"{model_name} version {chosen.version} needs"
        )
    absent = [c for c in keep_columns if c not in parquet.schema_arrow.names]
    if absent:
        raise ScoringError(
            f"Snapshot {source.location.uri} lacks the column(s) {absent} to keep with the predictions"
        )
    if parquet.metadata.num_rows == 0:
        raise ScoringError(f"Snapshot {source.location.uri} has no rows to score")
    metadata = {
        b"mlops.model_uri": chosen.model_uri.encode(),
        b"mlops.source_sha256": source.manifest["sha256"].encode(),
    }
    extra = {
        "model_uri": chosen.model_uri,
        "model_name": model_name,
        "model_version": chosen.version,
        "source_uri": source.location.uri,
        "source_sha256": source.manifest["sha256"],
        "source_split": split,
    }
    with SnapshotWriter(artifact_root, pipeline, kind="predictions") as writer:
        kept = [c for c in keep_columns if c not in PREDICTION_COLUMNS]
        columns = list(dict.fromkeys([*model.feature_columns, *kept]))
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            table = pa.Table.from_batches([batch])
            scored = predict_table(model, table)
            for name in kept:
                scored = scored.append_column(name, table.column(name))
            writer.write(scored.replace_schema_metadata(metadata))
        ref = writer.commit(extra)
    return {"predictions": ref.to_dict(), "model_version": chosen.version, "model_uri": chosen.model_uri}
