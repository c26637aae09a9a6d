"""Measure the champion's performance per monitoring window; emit the performance asset when it degraded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops_provider.core import names
from airflow_mlops_provider.links.report import ReportLink
from airflow_mlops_provider.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class MeasurePerformanceOperator(MlopsBaseOperator):
    """Realized performance from delayed labels, estimated performance before them, and the verdict.

    Reads the results of the monitoring run's upstream tasks from XCom (absent when they were
    skipped: an empty window has no predictions, an interval without labels no labels), then
    runs :func:`airflow_mlops_provider.core.monitoring.run.run_performance_check`: the window's
    predictions and estimated performance are stored, labels that arrived are joined by id to
    every window they belong to, realized metrics with bootstrap intervals are judged by the
    degradation rule against the champion's metrics from its decision record, and the trend
    report (linked as *Report*) is redrawn.

    The task succeeds, and so emits its outlet (the pipeline's performance asset) with the
    numbers as ``extra``, only when a window newly shows a degraded champion; otherwise it ends
    *skipped* with the reason. StatsD gauges ``mlops.performance.realized`` /
    ``.estimated`` (tag ``metric``), ``.degraded`` and ``.labelled_rows`` follow every run.

    :param model_name: registered model whose champion is watched. Templated.
    :param task: ``classification`` or ``regression``.
    :param performance: :class:`~airflow_mlops_provider.core.monitoring.config.PerformanceConfig` fields.
    :param window_start / window_end: the run's window. Templated. None: the run's data interval,
        or for a run without one the ``window_length`` seconds up to when it was due.
    :param score_task_id / live_task_id / drift_task_id / labels_task_id: upstream tasks whose
        results are read (None: not in this DAG).
    :param id_column / target / max_delay: how labels join (needed with ``labels_task_id``).
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "model_name",
        "window_start",
        "window_end",
    )
    operator_extra_links = (ReportLink(),)
    ui_color = "#fcf3cf"
    pipeline: str  # a required argument here

    def __init__(
        self,
        *,
        model_name: str,
        task: str,
        artifact_root: str,
        pipeline: str,
        performance: Mapping[str, Any] | None = None,
        window_start: str | None = None,
        window_end: str | None = None,
        window_length: float = 3600.0,
        score_task_id: str | None = "score",
        live_task_id: str | None = "ingest_live",
        drift_task_id: str | None = "detect_drift",
        labels_task_id: str | None = None,
        id_column: str | None = None,
        target: str | None = None,
        max_delay: float = 7 * 24 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(artifact_root=artifact_root, pipeline=pipeline, **kwargs)
        self.model_name = model_name
        self.task = task
        self.performance = dict(performance or {})
        self.window_start = window_start
        self.window_end = window_end
        self.window_length = window_length
        self.score_task_id = score_task_id
        self.live_task_id = live_task_id
        self.drift_task_id = drift_task_id
        self.labels_task_id = labels_task_id
        self.id_column = id_column
        self.target = target
        self.max_delay = max_delay

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.monitoring.reference import MonitoringError
        from airflow_mlops_provider.core.monitoring.run import LabelSettings, run_performance_check
        from airflow_mlops_provider.core.monitoring.types import Window, parse_time

        upstream = {
            key: self._pull(context, task_id)
            for key, task_id in (
                ("predictions", self.score_task_id),
                ("live", self.live_task_id),
                ("drift", self.drift_task_id),
                ("labels", self.labels_task_id),
            )
        }
        if upstream["predictions"] is None and upstream["labels"] is None:
            self._skip("Nothing to judge: no scored live rows and no labels in this interval")
        labels = None
        if self.labels_task_id:
            if not (self.id_column and self.target):
                raise MonitoringError("labels_task_id needs id_column and target (how labels are joined)")
            labels = LabelSettings(self.id_column, self.target, float(self.max_delay))
        if self.window_start and self.window_end:
            start, end = parse_time(self.window_start), parse_time(self.window_end)
        else:
            start, end = self.run_window(context, self.window_length)
        check = run_performance_check(
            Window(parse_time(start), parse_time(end)),
            task=self.task,
            artifact_root=self.artifact_location(),
            pipeline=self.pipeline,
            model_name=self.model_name,
            settings=self.mlflow_settings(),
            config=self.performance,
            label_settings=labels,
            **upstream,
        )
        summary = check.summary()
        self._log(summary)
        _emit_stats(self.pipeline, summary)
        ReportLink.persist(context, check.report_uri)
        if check.fired is None:
            context["ti"].xcom_push(key="return_value", value=summary)
            self._skip(f"No degradation found: no performance asset event; report {check.report_uri}")
        self.emit_asset_events(context, check.fired)
        self.log.warning("Champion degraded: %s; report %s", check.fired["reason"], check.report_uri)
        return summary

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The window's predictions, the labels that arrived and the champion version -> the report."""
        from airflow_mlops_provider.core import lineage

        if not result:
            return lineage.Lineage()
        context = {"ti": task_instance}
        scored = self._pull(context, self.score_task_id) or {}
        given = (scored.get("predictions"), self._pull(context, self.labels_task_id))
        inputs = [lineage.snapshot(s) for s in given if s]
        if result.get("model_version"):
            inputs.append(self.lineage_mlflow().version(self.model_name, result["model_version"]))
        verdict = "degraded" if result["degraded"] else "ok"
        numbers = {"window": result["window"], "estimated_verdict": result.get("estimated_verdict")}
        report = lineage.report(result["report_uri"], "performance", verdict, result["report_uri"], numbers)
        return lineage.Lineage(inputs=inputs, outputs=[report])

    def _skip(self, reason: str) -> NoReturn:
        self.log.info(reason)  # a skip's own message is not logged
        raise AirflowSkipException(reason)

    @staticmethod
    def _pull(context: Any, task_id: str | None) -> Any:
        return context["ti"].xcom_pull(task_ids=task_id) if task_id else None

    def _log(self, summary: Mapping[str, Any]) -> None:
        for metric, value in (summary.get("estimated") or {}).items():
            self.log.info("estimated %s %s", metric, _interval(value))
        for window in summary["windows"]:
            labels = window.get("labels") or {}
            self.log.info(
                "window %s..%s v%s: %s (%s labelled, %s pending) %s",
                window["window"]["start"], window["window"]["end"], window["model_version"],
                window.get("status") or "no verdict", labels.get("labelled"), labels.get("pending"),
                window.get("reason") or "",
            )  # fmt: skip


def _interval(value: Mapping[str, Any]) -> str:
    if value.get("value") is None:
        return "n/a"
    low, high = (float("nan") if value.get(k) is None else value[k] for k in ("low", "high"))
    return f"{value['value']:.4g} [{low:.4g}, {high:.4g}]"


def _emit_stats(pipeline: str, summary: Mapping[str, Any]) -> None:
    from airflow.sdk.observability import stats

    tags = {"pipeline": pipeline}
    stats.gauge(names.STAT_PERF_DEGRADED, int(bool(summary["degraded"])), tags=tags)
    for name, value in (summary.get("estimated") or {}).items():
        if value.get("value") is not None:
            stats.gauge(names.STAT_PERF_ESTIMATED, value["value"], tags={**tags, "metric": name})
    latest = next((w for w in reversed(summary["windows"]) if w.get("realized")), None)
    if latest is None:
        return
    stats.gauge(names.STAT_PERF_LABELLED, (latest.get("labels") or {}).get("labelled") or 0, tags=tags)
    for name, value in latest["realized"].items():
        if value.get("value") is not None:
            stats.gauge(names.STAT_PERF_REALIZED, value["value"], tags={**tags, "metric": name})
