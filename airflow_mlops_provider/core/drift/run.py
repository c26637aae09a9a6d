"""One drift check on snapshots: reference statistics (stored and reused), comparison, reports.

:func:`run_drift_check` is what the drift operator calls. It resolves the reference (by
default the champion's training snapshot, from the registry's ``mlops.snapshot_uri`` version
tag, compared on the champion's feature columns), loads or fits and stores the reference
statistics beside that snapshot, streams the current window column by column from Parquet,
compares, optionally compares the champion's predictions on both windows, writes
``drift.json`` and ``report.html`` under
``<artifact_root>/<pipeline>/reports/drift/<current>-<reference>-<config>/`` and, when MLflow
settings and a model are given, logs the metrics to an MLflow run tied to the model version.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_mlops_provider.core.drift.columns import ParquetSource
from airflow_mlops_provider.core.drift.config import DriftConfig, parse_config
from airflow_mlops_provider.core.drift.engine import DriftResult, compare
from airflow_mlops_provider.core.drift.reference import (
    DriftError,
    ReferenceStats,
    fingerprint,
    load_reference,
    reference_from_source,
    store_location,
)
from airflow_mlops_provider.core.drift.report import render_html
from airflow_mlops_provider.core.names import (
    CHAMPION,
    TAG_CURRENT_SHA,
    TAG_DRIFT_REPORT_URI,
    TAG_LAST_DRIFT,
    TAG_LAST_DRIFT_RUN,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_PIPELINE,
    TAG_REFERENCE_SHA,
    TAG_SNAPSHOT_URI,
)
from airflow_mlops_provider.core.paths import check_model_name, ensure_within, safe_component
from airflow_mlops_provider.core.snapshot import Snapshot, SnapshotLike, open_snapshot
from airflow_mlops_provider.core.storage import Location

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings

log = logging.getLogger(__name__)

REPORT_JSON = "drift.json"
REPORT_HTML = "report.html"


@dataclass
class DriftCheck:
    """The outcome of :func:`run_drift_check`."""

    result: DriftResult
    report_uri: str
    json_uri: str
    current_sha256: str
    reference_sha256: str
    reference_reused: bool
    model_version: str | None = None
    mlflow_run_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The small dict for XCom and the drift asset event's ``extra``."""
        out = {
            "drift": self.result.drift,
            "drifted_columns": self.result.drifted_columns,
            "share": round(self.result.share, 6),
            "unknown_columns": self.result.unknown_columns,
            "report_uri": self.report_uri,
            "json_uri": self.json_uri,
            "current_sha256": self.current_sha256,
            "reference_sha256": self.reference_sha256,
            "model_version": self.model_version,
        }
        if self.result.prediction is not None:
            out["prediction_drift"] = self.result.prediction.drift
            out["prediction_drifted_columns"] = self.result.prediction.drifted_columns
        return out


@dataclass(frozen=True)
class Champion:
    """The registered model version a monitoring run compares against."""

    model_name: str
    version: str
    run_id: str | None
    snapshot_uri: str | None
    model_uri: str


def resolve_champion(settings: TrackingSettings, model_name: str, alias: str = CHAMPION) -> Champion:
    """The version behind ``model_name@alias`` and its training snapshot tag."""
    from mlflow.exceptions import MlflowException

    client = settings.client()
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        raise DriftError(
            f"Model {model_name!r} has no {alias!r} alias in the registry at {settings.display_uri}: "
            f"train and promote a model first, or pass reference= explicitly"
        ) from err
    return Champion(
        model_name=model_name,
        version=str(mv.version),
        run_id=mv.run_id,
        snapshot_uri=(mv.tags or {}).get(TAG_SNAPSHOT_URI),
        model_uri=f"models:/{model_name}/{mv.version}",
    )


def run_drift_check(
    current: SnapshotLike,
    reference: SnapshotLike | None = None,
    *,
    artifact_root: Location,
    pipeline: str,
    config: DriftConfig | Mapping[str, Any] | None = None,
    current_split: str | None = None,
    reference_split: str | None = None,
    predictions: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    settings: TrackingSettings | None = None,
) -> DriftCheck:
    """Compare ``current`` with ``reference`` (default: the champion's training snapshot, on the
    champion's feature columns unless the config's ``include`` names the columns).

    The champion's snapshot comes from a registry tag, which anyone who can reach MLflow may
    edit; it must lie under ``artifact_root``, since reference statistics are stored beside it.
    The artifact root's storage options open every snapshot.
    Unsafe names and such a reference raise :class:`~airflow_mlops_provider.core.paths.UnsafeNameError`
    before anything is read or written.
    """
    safe_component(pipeline, "pipeline")
    if model_name:
        check_model_name(model_name)
    cfg = parse_config(dict(config) if isinstance(config, Mapping) else config)
    options = dict(artifact_root.storage_options)
    champion = None
    if model_name and settings is not None:
        champion = resolve_champion(settings, model_name)
    if reference is None:
        if champion is None or settings is None:
            raise DriftError("No reference: pass reference= (a snapshot) or model_name= with MLflow settings")
        if not champion.snapshot_uri:
            raise DriftError(
                f"Champion version {champion.version} of {champion.model_name!r} has no "
                f"{TAG_SNAPSHOT_URI!r} tag, so its training data is unknown: pass reference= explicitly"
            )
        reference = ensure_within(
            artifact_root.uri,
            champion.snapshot_uri,
            f"reference snapshot (tag {TAG_SNAPSHOT_URI!r}) of {champion.model_name!r} v{champion.version}",
        )
        cfg = _champion_features(cfg, champion, settings)
    timings: dict[str, float] = {}
    ref_snap = open_snapshot(reference, options)
    cur_snap = open_snapshot(current, options)
    ref_split = reference_split or _default_reference_split(ref_snap)
    start = time.perf_counter()
    stats = reference_statistics(ref_snap, ref_split, cfg)
    cur_source = ParquetSource(cur_snap.parquet_file(current_split))
    result = compare(stats, cur_source, cfg)
    timings["features_s"] = time.perf_counter() - start
    reused = stats.loaded_from_store
    if predictions is not None and cfg.prediction_drift:
        start = time.perf_counter()
        result.prediction = _prediction_drift(predictions, ref_snap, ref_split, cfg, settings, options)
        timings["predictions_s"] = time.perf_counter() - start
        if result.prediction.drift and not result.drift:
            result.drift = True
    result.timings.update(timings)
    cur_sha, ref_sha = cur_snap.manifest["sha256"], ref_snap.manifest["sha256"]
    folder = artifact_root.join(pipeline, "reports", "drift", f"{cur_sha[:16]}-{ref_sha[:16]}-{cfg.digest()}")
    payload = result.to_dict()
    payload.update(
        current={"uri": cur_snap.location.uri, "sha256": cur_sha, "split": current_split},
        reference={
            "uri": ref_snap.location.uri,
            "sha256": ref_sha,
            "split": ref_split,
            "reused_statistics": reused,
        },
        model={"name": model_name, "version": champion.version if champion else None},
    )
    json_loc, html_loc = folder.join(REPORT_JSON), folder.join(REPORT_HTML)
    title = f"Drift: {pipeline} current {cur_sha[:12]} vs reference {ref_sha[:12]}"
    html_loc.write_bytes_atomic(render_html(payload, title).encode())
    json_loc.write_bytes_atomic(json.dumps(payload, indent=1, default=str).encode())
    check = DriftCheck(
        result=result,
        report_uri=html_loc.uri,
        json_uri=json_loc.uri,
        current_sha256=cur_sha,
        reference_sha256=ref_sha,
        reference_reused=reused,
        model_version=champion.version if champion else None,
        timings=timings,
    )
    if champion is not None and settings is not None:
        check.mlflow_run_id = log_to_mlflow(check, champion, settings, pipeline)
    return check


def _champion_features(cfg: DriftConfig, champion: Champion, settings: TrackingSettings) -> DriftConfig:
    """``cfg`` checking the champion's feature columns, unless its ``include`` names the columns.

    The champion's training data also holds the target and ids, which live inputs (the prediction
    service's request log, say) never carry, so every check would call them unknown; and columns the
    model does not read, whose drift cannot move its predictions.
    """
    if cfg.include is not None:
        return cfg
    from airflow_mlops_provider.core.model_io import load_model

    features = load_model(champion.model_uri, settings).feature_columns
    return cfg.model_copy(update={"include": list(features)})


def reference_statistics(
    snapshot: Snapshot, split: str, config: DriftConfig, *, extra: str = ""
) -> ReferenceStats:
    """Stored statistics of one reference split, or fresh ones that are stored while they are fitted."""
    location = store_location(snapshot.location, split, fingerprint(config, extra))
    stored = load_reference(location, config)
    if stored is not None:
        return stored
    source = ParquetSource(snapshot.parquet_file(split))
    return reference_from_source(source, config, store=location, extra=extra)


def _default_reference_split(snapshot: Snapshot) -> str:
    splits = snapshot.manifest["splits"]
    for name in ("train", "data"):
        if name in splits:
            return name
    raise DriftError(f"Reference snapshot {snapshot.location.uri} has no 'train' or 'data' split: name one")


def _prediction_drift(
    predictions: Mapping[str, Any],
    ref_snap: Snapshot,
    ref_split: str,
    cfg: DriftConfig,
    settings: TrackingSettings | None,
    options: dict[str, Any],
) -> DriftResult:
    """Compare the champion's predictions on the current window with its predictions on the reference.

    The reference predictions are computed once per (reference snapshot, model version) and
    their statistics stored beside the reference like the feature statistics.
    """
    from airflow_mlops_provider.core.drift.columns import TableSource
    from airflow_mlops_provider.core.scoring import predict_table

    pred_ref = predictions.get("predictions", predictions)
    pred_snap = open_snapshot(pred_ref, options)
    model_uri = predictions.get("model_uri") or pred_snap.manifest.get("model_uri")
    if not model_uri:
        raise DriftError(
            "The predictions carry no model_uri: cannot score the reference for prediction drift"
        )
    pcfg = cfg.model_copy(update={"include": None, "exclude": [], "columns": {}})
    extra = f"predictions:{model_uri}"
    location = store_location(ref_snap.location, ref_split, fingerprint(pcfg, extra))
    stats = load_reference(location, pcfg)
    if stats is None:
        if settings is None:
            raise DriftError("Prediction drift needs MLflow settings to score the reference with the model")
        from airflow_mlops_provider.core.model_io import load_model

        model = load_model(model_uri, settings)
        scored = predict_table(model, ref_snap.read(ref_split, columns=model.feature_columns))
        stats = reference_from_source(TableSource(scored), pcfg, store=location, extra=extra)
    return compare(stats, ParquetSource(pred_snap.parquet_file(None)), pcfg)


_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def log_to_mlflow(check: DriftCheck, champion: Champion, settings: TrackingSettings, pipeline: str) -> str:
    """Log the drift metrics to a run in ``<pipeline>-monitoring`` tagged with the model version.

    Also tags the model version with the latest drift verdict and report, so the registry
    page of the champion shows how it is doing on live data.
    """
    from airflow_mlops_provider.core.tracking import ensure_experiment

    client = settings.client()
    experiment_id = ensure_experiment(client, f"{pipeline}-monitoring")
    tags = {
        TAG_PIPELINE: pipeline,
        TAG_MODEL_NAME: champion.model_name,
        TAG_MODEL_VERSION: champion.version,
        TAG_CURRENT_SHA: check.current_sha256,
        TAG_REFERENCE_SHA: check.reference_sha256,
        TAG_DRIFT_REPORT_URI: check.report_uri,
    }
    run = client.create_run(experiment_id, tags=tags, run_name=f"drift-{check.current_sha256[:12]}")
    metrics = {"drift": float(check.result.drift), "drift_share": check.result.share}
    for col in check.result.columns:
        key = _METRIC_NAME.sub("_", col.name)
        if col.effect_size is not None:
            metrics[f"effect.{key}"] = float(col.effect_size)
        if col.p_adjusted is not None:
            metrics[f"p_adjusted.{key}"] = float(col.p_adjusted)
        metrics[f"drifted.{key}"] = float(col.verdict == "drift")
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in metrics.items() if v == v]
    for i in range(0, len(batch), 500):
        client.log_batch(run.info.run_id, metrics=batch[i : i + 500])
    client.set_terminated(run.info.run_id)
    client.set_model_version_tag(champion.model_name, champion.version, TAG_LAST_DRIFT_RUN, run.info.run_id)
    client.set_model_version_tag(
        champion.model_name, champion.version, TAG_LAST_DRIFT, json.dumps(check.summary())[:4000]
    )
    return cast(str, run.info.run_id)
