"""One monitoring run's performance check: what the performance operator calls.

For the run's window it stores the window record (its predictions, drift, the performance
estimated before labels), stores the labels that arrived in the run's interval, and re-judges
every window those labels can belong to (windows up to ``max_delay`` old): labels joined by id,
realized metrics with bootstrap intervals, the degradation rule against the champion's
reference metrics, label drift and concept drift. A window whose verdict newly became
*degraded* fires the performance trigger (once: a re-run of the same window does not fire
again), unless the version it judged is no longer the champion (reported, not acted on).
Every judged window lands in the time series (Parquet, MLflow steps) and the trend report is
redrawn from the last 100 windows, so a run costs the same whatever the history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from airflow_mlops_provider.core.monitoring import history
from airflow_mlops_provider.core.monitoring.config import PerformanceConfig, parse_performance
from airflow_mlops_provider.core.monitoring.reference import (
    MonitoringError,
    VersionFacts,
    classes_of,
    proba_matrix,
)
from airflow_mlops_provider.core.monitoring.trend import render_trend, write_trend
from airflow_mlops_provider.core.monitoring.types import MetricInterval, Verdict, Window
from airflow_mlops_provider.core.names import CHAMPION
from airflow_mlops_provider.core.paths import check_model_name, safe_component
from airflow_mlops_provider.core.registry import alias_number, now_iso
from airflow_mlops_provider.core.snapshot import SnapshotLike, as_snapshot_ref, open_snapshot
from airflow_mlops_provider.core.storage import Location

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings

log = logging.getLogger(__name__)

TREND_WINDOWS = 100
ESTIMABLE = {"classification": ("accuracy", "f1", "roc_auc"), "regression": ("mae", "rmse")}


@dataclass(frozen=True)
class LabelSettings:
    """How delayed labels are matched: the id column, the label column, how late they may come."""

    id_column: str
    target: str
    max_delay: float  # seconds after a window's end


@dataclass
class PerformanceCheck:
    """The outcome of :func:`run_performance_check`."""

    window: Window
    model_version: str | None
    judged: list[dict[str, Any]] = field(default_factory=list)  # the window records (re)computed
    fired: dict[str, Any] | None = None  # the performance event's extra when the champion degraded
    report_uri: str | None = None

    def current(self) -> dict[str, Any] | None:
        return next((r for r in self.judged if r["window"] == self.window.to_dict()), None)

    def summary(self) -> dict[str, Any]:
        """The small dict for XCom (and the StatsD gauges)."""
        current = self.current() or {}
        return {
            "window": self.window.to_dict(),
            "model_version": self.model_version,
            "degraded": self.fired is not None,
            "fired": self.fired,
            "estimated": current.get("estimated") or {},
            "estimated_verdict": current.get("estimated_verdict"),
            "windows": [_brief(r) for r in self.judged],
            "report_uri": self.report_uri,
        }


def run_performance_check(
    window: Window,
    *,
    task: str,
    artifact_root: Location,
    pipeline: str,
    model_name: str,
    settings: TrackingSettings,
    config: PerformanceConfig | Mapping[str, Any] | None = None,
    predictions: Mapping[str, Any] | None = None,
    live: SnapshotLike | None = None,
    drift: Mapping[str, Any] | None = None,
    labels: SnapshotLike | None = None,
    label_settings: LabelSettings | None = None,
) -> PerformanceCheck:
    """Judge the champion's performance on ``window`` and on the windows new labels belong to.

    ``predictions`` is the scoring task's result for the window (None: no live rows in it);
    ``live`` the window's snapshot (features for a regressor's estimate); ``drift`` the drift
    summary; ``labels`` the snapshot of labels that arrived in the run's interval (None: none).
    """
    safe_component(pipeline, "pipeline")
    check_model_name(model_name)
    cfg = parse_performance(dict(config) if isinstance(config, Mapping) else config)
    facts = VersionFacts(settings, model_name, artifact_root, pipeline)
    check = _Check(window, task, cfg, history.WindowStore(artifact_root, pipeline), label_settings, facts)
    result = PerformanceCheck(window, predictions.get("model_version") if predictions else None)
    arrival = None if labels is None else _checked_arrival(labels, label_settings, artifact_root)
    if predictions is not None:
        check.add_current(predictions, live, drift, artifact_root.storage_options)
    if arrival is not None:
        check.store.save_arrival(window, arrival)
    champion = alias_number(settings.client(), model_name, CHAMPION)
    for record in check.windows_to_judge(labels is not None):
        check.judge(record)
        fired = _fired(check.previous[record["window"]["start"]], record, cfg)
        if fired is not None and record["model_version"] != champion:
            log.warning(
                "Window %s: v%s degraded, but v%s is champion now: no performance event (%s)",
                record["window"]["start"], record["model_version"], champion, fired["reason"],
            )  # fmt: skip
            fired = None
        result.fired = result.fired or fired
        check.store.save(record)
        check.store.write_series_row(record)
        history.log_window_to_mlflow(settings, pipeline, model_name, record["model_version"], record)
        result.judged.append(record)
    series = check.store.read_series(last=TREND_WINDOWS)
    version = result.model_version or (result.judged[-1]["model_version"] if result.judged else None)
    reference = (check.facts.reference_metrics(version) or {}).get(_metric(cfg)) if version else None
    html = render_trend(series, title=f"Performance: {pipeline}", metric=_metric(cfg), reference=reference)
    result.report_uri = write_trend(check.store.root, pipeline, html)
    if result.fired is not None:
        result.fired["report_uri"] = result.report_uri
    return result


class _Check:
    """The state of one run: settings, stores, per-version facts and the arrivals read so far."""

    def __init__(
        self,
        window: Window,
        task: str,
        cfg: PerformanceConfig,
        store: history.WindowStore,
        labels: LabelSettings | None,
        facts: VersionFacts,
    ) -> None:
        self.window = window
        self.facts = facts
        self.task = task
        self.cfg = cfg
        self.store = store
        self.labels = labels
        self.previous: dict[str, dict[str, Any]] = {}  # window start -> the record as it was stored
        self._arrivals: dict[str, pa.Table] = {}

    def add_current(
        self,
        predictions: Mapping[str, Any],
        live: SnapshotLike | None,
        drift: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> None:
        """Store the run's own window: its predictions, drift and estimated performance."""
        version = str(predictions["model_version"])
        pred_ref = predictions.get("predictions", predictions)
        table = open_snapshot(pred_ref, options).read()
        old = self.store.load(self.window) or {}
        self.previous[self.window.to_dict()["start"]] = old
        record: dict[str, Any] = {
            "window": self.window.to_dict(),
            "pipeline": self.store.pipeline,
            "model_name": self.facts.model_name,
            "model_version": version,
            "live": None if live is None else as_snapshot_ref(live, options).to_dict(),
            "predictions": as_snapshot_ref(pred_ref, options).to_dict(),
            "rows": table.num_rows,
            "drift": _drift_brief(drift),
            "estimated": {},
            "estimated_verdict": None,
            "realized": {},
            "labels": {"labelled": 0, "pending": table.num_rows, "corrected": 0, "null_labels": 0},
            "verdict": None,
            "label_drift": None,
            "concept_drift": None,
            "updated_at": now_iso(),
        }
        if self.cfg.estimate:
            estimated = self._estimate(version, table, live, options)
            record["estimated"] = {m: v.to_dict() for m, v in estimated.items()}
            reference = (self.facts.reference_metrics(version) or {}).get(_metric(self.cfg))
            metric = _metric(self.cfg)
            if metric in estimated:
                verdict = _judge(metric, estimated[metric], reference, self.cfg, source="estimated")
                record["estimated_verdict"] = verdict.to_dict()
        self.store.save(record)

    def windows_to_judge(self, labels_arrived: bool) -> list[dict[str, Any]]:
        """The run's own window, and with new labels every stored window they can belong to."""
        if labels_arrived and self.labels is not None:
            since = self.window.start - timedelta(seconds=self.labels.max_delay)
            windows = self.store.windows(since, self.window.end)
        else:
            windows = [self.window]
        records = []
        for window in windows:
            record = self.store.load(window)
            if record is not None and record.get("predictions"):
                self.previous.setdefault(record["window"]["start"], dict(record))
                records.append(record)
        return records

    def judge(self, record: dict[str, Any]) -> None:
        """Realized metrics, the rule's verdict, label and concept drift of one window (in place)."""
        from airflow_mlops_provider.core.monitoring.labels import concept_drift, join_labels, label_drift
        from airflow_mlops_provider.core.monitoring.realized import realized_metrics

        record["updated_at"] = now_iso()
        if self.labels is None:
            return
        window = Window.from_dict(record["window"])
        options = self.store.root.storage_options
        predictions = open_snapshot(record["predictions"], options).read()
        joined = join_labels(
            predictions,
            self._arrivals_for(window),
            id_column=self.labels.id_column,
            target=self.labels.target,
        )
        y_true, y_pred, classes = _aligned(self.task, joined.y_true, joined.y_pred, classes_of(predictions))
        realized = realized_metrics(
            self.task, y_true, y_pred, joined.proba, classes, _metrics(self.cfg, self.task),
            confidence=self.cfg.confidence, resamples=self.cfg.resamples, seed=self.cfg.seed,
        )  # fmt: skip
        version = record["model_version"]
        metric = _metric(self.cfg)
        reference = (self.facts.reference_metrics(version) or {}).get(metric)
        verdict = _judge(metric, realized.get(metric), reference, self.cfg)
        record["realized"] = {m: v.to_dict() for m, v in realized.items()}
        record["labels"] = joined.counts()
        record["verdict"] = verdict.to_dict()
        if joined.labelled:
            reference = self.facts.training_target(version, self.labels.target).to_numpy(zero_copy_only=False)
            reference, _, _ = _aligned(self.task, reference, reference, [])  # labels of one type
            record["label_drift"] = label_drift(pa.array(reference), pa.array(y_true), self.task)
        finding = concept_drift(verdict, record.get("drift"))
        record["concept_drift"] = finding

    def _arrivals_for(self, window: Window) -> list[pa.Table]:
        """The label tables that arrived from the window's start until it was final, oldest first."""
        assert self.labels is not None
        until = window.end + timedelta(seconds=self.labels.max_delay)
        tables = []
        for arrival, ref in self.store.arrivals(window.start, until):
            if arrival.key not in self._arrivals:
                self._arrivals[arrival.key] = open_snapshot(ref, self.store.root.storage_options).read()
            tables.append(self._arrivals[arrival.key])
        return tables

    def _estimate(
        self, version: str, table: pa.Table, live: SnapshotLike | None, options: Mapping[str, Any]
    ) -> dict[str, MetricInterval]:
        """Performance estimated from the window's predictions, calibrated on the version's reference."""
        from airflow_mlops_provider.core.monitoring.estimation import ClassifierEstimator, RegressorEstimator

        calibration = self.facts.calibration(version)
        model = self.facts.model(version)
        wanted = [m for m in ESTIMABLE[self.task] if m in _metrics(self.cfg, self.task)]
        if not wanted:
            return {}
        y_true = calibration.column(model.target).to_numpy(zero_copy_only=False)
        if self.task == "classification":
            classes = classes_of(calibration)
            y_ref = _as_str(y_true)
            cbpe = ClassifierEstimator.fit(y_ref, proba_matrix(calibration), classes, seed=self.cfg.seed)
            return cbpe.estimate(proba_matrix(table), metrics=wanted, confidence=self.cfg.confidence)
        if live is None:
            raise MonitoringError(
                "estimating a regressor's error needs the window's features (live snapshot)"
            )
        features = calibration.select(model.feature_columns).to_pandas()
        prediction = calibration.column("prediction").to_numpy(zero_copy_only=False)
        dle = RegressorEstimator.fit(features, y_true, prediction, seed=self.cfg.seed)
        current = open_snapshot(live, options).read(columns=model.feature_columns).to_pandas()
        return dle.estimate(
            current, table.column("prediction").to_numpy(zero_copy_only=False),
            metrics=wanted, confidence=self.cfg.confidence,
        )  # fmt: skip


def _checked_arrival(labels: SnapshotLike, settings: LabelSettings | None, root: Location) -> dict[str, Any]:
    """The labels' snapshot reference, once it is known to hold the id and target columns."""
    from airflow_mlops_provider.core.monitoring.labels import check_labels

    if settings is None:
        raise MonitoringError("labels were given without label settings (id column, target, max delay)")
    snapshot = open_snapshot(labels, root.storage_options)
    names = snapshot.parquet_file(None).schema_arrow.names
    where = f"labels snapshot {snapshot.location.uri}"
    check_labels(names, where, id_column=settings.id_column, target=settings.target)
    return snapshot.ref.to_dict()


def _judge(
    metric: str,
    value: MetricInterval | None,
    reference: float | None,
    cfg: PerformanceConfig,
    *,
    source: Literal["realized", "estimated"] = "realized",
) -> Verdict:
    from airflow_mlops_provider.core.monitoring.rule import judge

    return judge(metric, value, reference, cfg, source=source)


def _fired(old: dict[str, Any], record: dict[str, Any], cfg: PerformanceConfig) -> dict[str, Any] | None:
    """The performance event's extra when ``record`` newly shows a degraded champion (``old``: as before)."""
    verdict = record.get("verdict") or {}
    if verdict.get("status") == "degraded" and (old.get("verdict") or {}).get("status") != "degraded":
        return _event(record, verdict)
    estimated = record.get("estimated_verdict") or {}
    realized_known = verdict.get("status") in ("degraded", "ok")
    newly = (old.get("estimated_verdict") or {}).get("status") != "degraded"
    if cfg.trigger_on_estimate and not realized_known and estimated.get("status") == "degraded" and newly:
        return _event(record, estimated)
    return None


def _event(record: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    return {
        "window": record["window"],
        "model_version": record["model_version"],
        "source": verdict.get("source", "realized"),
        "metric": verdict["metric"],
        "value": verdict.get("value"),
        "reference": verdict.get("reference"),
        "rule": verdict["rule"],
        "reason": verdict["reason"],
        "labelled": record["labels"]["labelled"],
        "pending": record["labels"]["pending"],
        "realized": record.get("realized") or {},
        "estimated": record.get("estimated") or {},
        "label_drift": record.get("label_drift"),
        "concept_drift": record.get("concept_drift"),
    }


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    verdict = record.get("verdict") or record.get("estimated_verdict") or {}
    return {
        "window": record["window"],
        "model_version": record["model_version"],
        "status": verdict.get("status"),
        "reason": verdict.get("reason"),
        "labels": record.get("labels"),
        "realized": record.get("realized") or {},
    }


def _drift_brief(drift: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not drift:
        return None
    return {
        "drift": bool(drift.get("drift")),
        "share": drift.get("share"),
        "report_uri": drift.get("report_uri"),
    }


def _metric(cfg: PerformanceConfig) -> str:
    if cfg.metric is None:
        raise MonitoringError(
            "performance settings name no metric to judge (set monitoring.performance.metric)"
        )
    return cfg.metric


def _metrics(cfg: PerformanceConfig, task: str) -> list[str]:
    from airflow_mlops_provider.core.gate import TASK_METRICS

    wanted = list(cfg.metrics or TASK_METRICS[task])
    return wanted if _metric(cfg) in wanted else [*wanted, _metric(cfg)]


def _as_str(values: Sequence[Any] | Any) -> Any:
    """Labels as strings, as the class names in ``proba_<class>`` columns are, whatever the target's type."""
    import numpy as np

    return np.array([str(v) for v in values], dtype=object)


def _aligned(task: str, y_true: Any, y_pred: Any, classes: list[str]) -> tuple[Any, Any, list[str] | None]:
    """Labels and predictions of one type (strings for a classifier, floats for a regressor)."""
    import numpy as np

    if task == "classification":
        return _as_str(y_true), _as_str(y_pred), classes
    return np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float), None
