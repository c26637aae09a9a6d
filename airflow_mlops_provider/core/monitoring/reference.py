"""What a monitoring run knows about a champion version: its reference metrics and reference data.

- the metrics it was promoted on: the challenger metrics of its decision record (measured on
  the held-out split when it was gated);
- its calibration data: the validation split of its training snapshot (else test, else train),
  scored once with the model and cached under
  ``<root>/<pipeline>/monitoring/reference/<model>/v<version>/``, from which performance
  estimators are fitted;
- the distribution of the target in its training split (for label drift).
"""

from __future__ import annotations

import functools
import io
import logging
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import TAG_SNAPSHOT_URI
from airflow_mlops_provider.core.paths import ensure_within, safe_component
from airflow_mlops_provider.core.snapshot import Snapshot, open_snapshot
from airflow_mlops_provider.core.storage import Location

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tabular_model import TabularModel
    from airflow_mlops_provider.core.tracking import TrackingSettings

log = logging.getLogger(__name__)

CALIBRATION_SPLITS = ("validation", "test", "train")
SCORED_FILE = "calibration.parquet"


class MonitoringError(PermanentError, ValueError):
    """A performance check cannot run: no training snapshot for the version, a column missing."""


class VersionFacts:
    """Per-run cache of what each champion version brings to the check (read at most once each)."""

    def __init__(self, settings: TrackingSettings, model_name: str, artifact_root: Location, pipeline: str):
        self.settings = settings
        self.model_name = model_name
        self.artifact_root = artifact_root
        self.pipeline = pipeline

    @functools.cache  # noqa: B019 - one instance per run; the cache dies with it
    def reference_metrics(self, version: str) -> dict[str, float] | None:
        """The version's metrics from its decision record; None when it has no record."""
        from airflow_mlops_provider.core.decision_record import load_record

        client = self.settings.client()
        mv = client.get_model_version(self.model_name, version)
        if not mv.run_id:
            return None
        record = load_record(client, client.get_run(mv.run_id).info.artifact_uri, self.model_name)
        if record is None:
            log.warning("%s v%s has no decision record: no reference metrics", self.model_name, version)
            return None
        metrics = record.challenger.get("metrics") or {}
        return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}

    @functools.cache  # noqa: B019
    def training_snapshot(self, version: str) -> Snapshot:
        """The version's training snapshot (tag ``mlops.snapshot_uri``, which must lie under the root)."""
        mv = self.settings.client().get_model_version(self.model_name, version)
        uri = (mv.tags or {}).get(TAG_SNAPSHOT_URI)
        if not uri:
            raise MonitoringError(
                f"{self.model_name} v{version} has no {TAG_SNAPSHOT_URI!r} tag: its reference data is unknown"
            )
        what = f"training snapshot (tag {TAG_SNAPSHOT_URI!r}) of {self.model_name!r} v{version}"
        return open_snapshot(
            ensure_within(self.artifact_root.uri, uri, what), self.artifact_root.storage_options
        )

    @functools.cache  # noqa: B019
    def model(self, version: str) -> TabularModel:
        from airflow_mlops_provider.core.model_io import load_model

        return load_model(f"models:/{self.model_name}/{version}", self.settings)

    @functools.cache  # noqa: B019
    def calibration(self, version: str) -> pa.Table:
        """The calibration split scored by the version: features, target, ``prediction``, ``proba_*``."""
        where = self._cache(version).join(SCORED_FILE)
        if where.exists():
            return pq.read_table(io.BytesIO(where.read_bytes()))
        snapshot = self.training_snapshot(version)
        split = next((s for s in CALIBRATION_SPLITS if s in snapshot.manifest["splits"]), None)
        if split is None:
            raise MonitoringError(f"Snapshot {snapshot.location.uri} has no {CALIBRATION_SPLITS} split")
        model = self.model(version)
        table = snapshot.read(split, columns=[*model.feature_columns, model.target])
        scored = _scored(model, table)
        buffer = io.BytesIO()
        pq.write_table(scored, buffer)
        where.write_bytes_atomic(buffer.getvalue())
        log.info(
            "Scored %d %s rows of %s with v%s for calibration",
            table.num_rows,
            split,
            snapshot.location.uri,
            version,
        )
        return scored

    @functools.cache  # noqa: B019
    def training_target(self, version: str, target: str) -> pa.Array:
        """The target column of the version's training split (what label drift compares against)."""
        snapshot = self.training_snapshot(version)
        split = "train" if "train" in snapshot.manifest["splits"] else next(iter(snapshot.manifest["splits"]))
        column = snapshot.read(split, columns=[target]).column(target)
        return column.combine_chunks()

    def _cache(self, version: str) -> Location:
        model = safe_component(self.model_name.replace("/", "_"), "model name")
        return self.artifact_root.join(self.pipeline, "monitoring", "reference", model, f"v{version}")


def _scored(model: TabularModel, table: pa.Table) -> pa.Table:
    """``table`` with the model's outputs appended (rows without a label dropped first)."""
    from airflow_mlops_provider.core.scoring import predict_table

    labelled = table.filter(table.column(model.target).is_valid())
    outputs = predict_table(model, labelled)
    for name in outputs.column_names:
        labelled = labelled.append_column(name, outputs.column(name))
    return labelled


def classes_of(table: pa.Table) -> list[str]:
    """The class labels of a predictions table, from its ``proba_<class>`` columns, in order."""
    return [name.removeprefix("proba_") for name in table.column_names if name.startswith("proba_")]


def proba_matrix(table: pa.Table) -> Any:
    """The ``proba_*`` columns as an ``(n, classes)`` float matrix (None for a regressor)."""
    import numpy as np

    columns = [name for name in table.column_names if name.startswith("proba_")]
    if not columns:
        return None
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns]).astype(float)
