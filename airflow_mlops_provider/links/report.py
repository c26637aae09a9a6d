"""Link from a task to the report it wrote (validation report, drift report, decision record)."""

from __future__ import annotations

from airflow_mlops_provider.links.base import XComUrlLink


class ReportLink(XComUrlLink):
    """The HTML report a task wrote next to its data (an ``s3://`` or ``file://`` URI, or an HTTP URL)."""

    name = "Report"
    source_key = "report_url"
