"""Validate a snapshot with Great Expectations 1.x plus builtin checks (issue 3).

The operator resolves storage credentials, calls
:func:`airflow_mlops_provider.core.validation.validate_snapshot`, links the HTML report from
the task (``ReportLink``) and returns the small summary through XCom. In ``fail`` mode a failed
suite fails the task without retry, with every failed expectation listed in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.links.report import ReportLink
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class ValidateSnapshotOperator(MlopsBaseOperator):
    """Check a snapshot against an expectation suite; write a JSON result and an HTML report.

    :param snapshot: the snapshot reference dict (usually the ingest task's ``output``) or URI.
    :param suite: a list of expectations (``{"expectation": "expect_column_values_to_be_between",
        "column": "age", "min_value": 0}`` or GX ``{"type", "kwargs"}``), or the path / URI of a GX
        suite JSON file. Templated.
    :param reference: a snapshot (dict or URI) to infer a suite from: value ranges, category sets,
        schema and null fractions of its training data.
    :param split: the split to validate; None validates all splits together.
    :param mode: ``fail`` (the task fails when any expectation fails) or ``warn`` (log, continue).
    :param builtin_checks: row-count, schema and null-rate checks: True (defaults), False (off) or a
        mapping (``min_rows``, ``max_rows``, ``max_null_fraction``, ``null_tolerance``, ``schema``,
        ``allow_extra_columns``); ``min_rows: 0`` allows empty data.
    :param infer_options: ``range_margin``, ``mostly``, ``max_categories`` for inferred suites.
    :param streaming: ``stream_above_mb`` (validate in record batches when the split's in-memory
        size exceeds it; default 1024, ``0`` always, ``None`` never) and ``batch_rows`` (rows per
        batch, default 500,000); see docs/streaming_validation.md.
    :param artifact_root: the artifact root; the snapshot must lie inside it and reports go under
        ``<artifact_root>/<pipeline>/reports/validation/<sha256>/``. Without it the report goes
        beside the snapshot (under the root and pipeline of its own path), through ``aws_conn_id`` too.
        Templated.
    :param pipeline: pipeline name. Templated.
    :param aws_conn_id: AWS connection for ``s3://`` snapshots and reports. Templated.
    :return: ``{"success", "evaluated", "failed", "failed_count", "report_uri", "result_uri",
        "snapshot_uri", "snapshot_sha256", "split", "mode"}``.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "snapshot",
        "suite",
        "reference",
        "split",
        "mode",
        "builtin_checks",
    )
    template_fields_renderers = {"suite": "json", "snapshot": "json", "reference": "json"}
    operator_extra_links = (ReportLink(),)
    ui_color = "#e8f5e1"

    def __init__(
        self,
        *,
        snapshot: Any,
        suite: str | Sequence[Mapping[str, Any]] | None = None,
        reference: Any = None,
        split: str | None = None,
        mode: str = "fail",
        builtin_checks: bool | Mapping[str, Any] = True,
        infer_options: Mapping[str, Any] | None = None,
        streaming: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(streaming or {}) - {"stream_above_mb", "batch_rows"})
        if unknown:
            raise ValueError(f"streaming: unknown key(s) {unknown}, expected stream_above_mb or batch_rows")
        self.snapshot = snapshot
        self.suite = suite
        self.reference = reference
        self.split = split
        self.mode = mode
        self.builtin_checks = builtin_checks
        self.infer_options = infer_options
        self.streaming = dict(streaming or {})

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.storage import Location
        from airflow_mlops_provider.core.validation import ValidationFailed, validate_snapshot
        from airflow_mlops_provider.core.validation.run import snapshot_home

        # Without an artifact root the report goes beside the snapshot, opened with the same connection.
        root, pipeline = (self.artifact_root, self.pipeline)
        if not root:
            root, pipeline = snapshot_home(self.snapshot)
        try:
            outcome = validate_snapshot(
                self.snapshot,
                suite=self.suite,
                reference=self.reference or None,
                split=self.split or None,
                mode=self.mode,
                builtin_checks=self.builtin_checks,
                infer_options=self.infer_options,
                artifact_root=Location(root, self.storage_options(root)),
                pipeline=pipeline,
                run_info=self.run_info(context),
                **self.streaming,
            )
        except ValidationFailed as err:  # the report explains the failure: link it, then fail
            ReportLink.persist(context, err.outcome["report_uri"])
            raise
        ReportLink.persist(context, outcome["report_uri"])
        return outcome

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The snapshot, with every check of the result as a ``dataQualityAssertions`` facet."""
        import json

        from airflow_mlops_provider.core import lineage
        from airflow_mlops_provider.core.storage import Location

        snapshot = lineage.snapshot(self.snapshot)
        if not result:
            return lineage.Lineage(inputs=[snapshot])
        uri = result["result_uri"]
        checks = json.loads(Location(uri, self.storage_options(uri)).read_bytes())["checks"]
        return lineage.Lineage(inputs=[lineage.with_assertions(snapshot, checks)])


__getattr__ = renamed(__name__, {"ValidateOperator": ValidateSnapshotOperator})
