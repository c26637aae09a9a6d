"""Detect drift between the champion's training data and a live window; emit the drift asset (issue 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops_provider.core import names
from airflow_mlops_provider.links.report import ReportLink
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class DetectDriftOperator(MlopsBaseOperator):
    """Compare a current snapshot with a reference snapshot, column by column.

    Writes ``drift.json`` and ``report.html`` (per-column plots, statistic, p-value, threshold,
    verdict), logs the drift metrics to MLflow against the champion version when
    ``model_name`` is given, and emits StatsD gauges ``mlops.drift.share`` /
    ``mlops.drift.detected`` / ``mlops.drift.columns`` through Airflow's stats client.

    Only when drift is found does the task succeed, so its outlet assets (the pipeline's drift
    asset) get an event with the summary as ``extra``. Without drift the task ends *skipped*:
    no asset event, and tasks downstream of it are skipped too. The summary is pushed to XCom
    (``return_value``) either way.

    :param current: snapshot reference dict of the live window (e.g. the ingest result). Templated.
    :param reference: snapshot reference dict; None: the champion's training snapshot, from the
        ``mlops.snapshot_uri`` tag of ``model_name@champion``. Templated.
    :param predictions: the :class:`ScoreBatchOperator` result, for prediction drift. Templated.
    :param model_name: registered model whose champion gives the reference and receives the
        metrics. Templated.
    :param config: :class:`airflow_mlops_provider.core.drift.DriftConfig` fields (tests,
        thresholds, correction, ``drift_share``, per-column overrides). Templated.
    :param current_split / reference_split: splits to compare (default ``data`` / ``train``).
    :return: ``{"drift", "drifted_columns", "share", "unknown_columns", "report_uri", "json_uri",
        "current_sha256", "reference_sha256", "model_version", ...}``.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "current",
        "reference",
        "predictions",
        "model_name",
        "config",
    )
    template_fields_renderers = {
        "current": "json",
        "reference": "json",
        "predictions": "json",
        "config": "json",
    }
    operator_extra_links = (ReportLink(),)
    ui_color = "#fdebd0"
    pipeline: str  # a required argument here

    def __init__(
        self,
        *,
        current: Any,
        artifact_root: str,
        pipeline: str,
        reference: Any = None,
        predictions: Any = None,
        model_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        current_split: str | None = None,
        reference_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(artifact_root=artifact_root, pipeline=pipeline, **kwargs)
        self.current = current
        self.reference = reference
        self.predictions = predictions
        self.model_name = model_name
        self.config = dict(config or {})
        self.current_split = current_split
        self.reference_split = reference_split

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.drift import run_drift_check

        check = run_drift_check(
            self.current,
            self.reference,
            artifact_root=self.artifact_location(),
            pipeline=self.pipeline,
            config=self.config,
            current_split=self.current_split,
            reference_split=self.reference_split,
            predictions=self.predictions,
            model_name=self.model_name,
            settings=self.mlflow_settings() if self.model_name else None,
        )
        summary = check.summary()
        _log_columns(self, check)
        _emit_stats(self.pipeline, check)
        ReportLink.persist(context, check.report_uri)
        if not check.result.drift:
            context["ti"].xcom_push(key="return_value", value=summary)
            raise AirflowSkipException(
                f"No drift ({summary['share']:.1%} of columns drifted): no drift asset event; "
                f"report {check.report_uri}"
            )
        self.emit_asset_events(context, summary)
        self.log.warning("Drift in %s: report %s", ", ".join(check.result.drifted_columns), check.report_uri)
        return summary

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The live window, the reference (when given), the predictions and the champion version whose
        training data is the default reference -> the drift report with its verdict."""
        from airflow_mlops_provider.core import lineage

        scored = self.predictions.get("predictions") if isinstance(self.predictions, Mapping) else None
        inputs = [lineage.snapshot(s) for s in (self.current, self.reference, scored) if s]
        if not result:
            return lineage.Lineage(inputs=inputs)
        if self.model_name and result.get("model_version"):
            inputs.append(self.lineage_mlflow().version(self.model_name, result["model_version"]))
        verdict = "drift" if result["drift"] else "no_drift"
        numbers = {key: result[key] for key in ("share", "drifted_columns", "unknown_columns")}
        report = lineage.report(result["json_uri"], "drift", verdict, result["report_uri"], numbers)
        return lineage.Lineage(inputs=inputs, outputs=[report])


def _log_columns(operator: BaseOperator, check: Any) -> None:
    for col in check.result.columns:
        operator.log.info(
            "%-24s %-9s %s p_adj=%s effect=%s/%s%s",
            col.name,
            col.verdict,
            col.test,
            "-" if col.p_adjusted is None else f"{col.p_adjusted:.3g}",
            "-" if col.effect_size is None else f"{col.effect_size:.4g}",
            "-" if col.threshold is None else f"{col.threshold:.4g}",
            f" ({col.reason})" if col.reason else "",
        )
    if check.result.unknown_columns:
        operator.log.warning("Drift unknown for %s", ", ".join(check.result.unknown_columns))


def _emit_stats(pipeline: str, check: Any) -> None:
    from airflow.sdk.observability import stats

    tags = {"pipeline": pipeline}
    stats.gauge(names.STAT_DRIFT_SHARE, check.result.share, tags=tags)
    stats.gauge(names.STAT_DRIFT_DETECTED, int(check.result.drift), tags=tags)
    stats.gauge(names.STAT_DRIFT_COLUMNS, len(check.result.drifted_columns), tags=tags)
    stats.gauge(names.STAT_DRIFT_UNKNOWN, len(check.result.unknown_columns), tags=tags)
    stats.timing(names.STAT_DRIFT_DURATION, check.timings.get("features_s", 0.0) * 1000.0, tags=tags)


__getattr__ = renamed(__name__, {"DriftOperator": DetectDriftOperator})
