"""Reports served to the browser from the artifact store, never as ``s3://`` links a browser cannot open.

Drift and validation reports live under ``<artifact_root>/<pipeline>/reports/``; a request names a
path below that folder and nothing else can be reached: absolute paths, ``..``, backslashes and
hidden names are refused before any storage is touched, and the joined URI is checked to lie
inside the folder once more. Decision records live among the MLflow artifacts of the challenger's
run, found by the model version's ``mlops.decision_record_uri`` tag (never by a path from the
request). Links inside served HTML that point into the reports folder are rewritten to this app.
"""

from __future__ import annotations

import posixpath
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.paths import UnsafeNameError, ensure_within
from airflow_mlops_provider.core.storage import Location, join_uri

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings
    from airflow_mlops_provider.operators.base import MlopsBaseOperator

REPORTS = "reports"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}
MAX_LISTED = 10


class ReportRefused(PermanentError, ValueError):
    """The requested path is not a report of this pipeline (outside its folder, or not a report type)."""


def reports_base(artifact_root: str, pipeline: str) -> str:
    return join_uri(artifact_root, pipeline, REPORTS)


def report_location(artifact_root: str, pipeline: str, relative: str, aws_conn_id: str | None) -> Location:
    """``<root>/<pipeline>/reports/<relative>`` with its storage options; :class:`ReportRefused` else."""
    parts = relative.split("/")
    if (
        not relative
        or relative.startswith("/")
        or any(c in relative for c in ("\\", "\x00", ":"))
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise ReportRefused(f"{relative!r} is not a path inside the reports folder of {pipeline!r}")
    if posixpath.splitext(relative)[1] not in MEDIA_TYPES:
        raise ReportRefused(f"{relative!r} is not a report (only {', '.join(MEDIA_TYPES)} files are served)")
    base = reports_base(artifact_root, pipeline)
    uri = join_uri(base, relative)
    try:
        ensure_within(base, uri, "report")
    except UnsafeNameError as err:
        raise ReportRefused(str(err)) from err
    return Location(uri, storage_options(uri, aws_conn_id))


def relative_report_path(artifact_root: str | None, pipeline: str, uri: str | None) -> str | None:
    """The path below the pipeline's reports folder of a report URI, or None when it lies elsewhere."""
    if not artifact_root or not uri:
        return None
    prefix = reports_base(artifact_root, pipeline).rstrip("/") + "/"
    if not uri.startswith(prefix):
        return None
    relative = uri[len(prefix) :]
    try:
        report_location(artifact_root, pipeline, relative, None)
    except ReportRefused:
        return None
    return relative


def rewrite_links(html: str, artifact_root: str | None, pipeline: str, files_url: str) -> str:
    """``href``s into the pipeline's reports folder pointed at ``files_url`` (this app's report route)."""
    if not artifact_root:
        return html
    prefix = reports_base(artifact_root, pipeline).rstrip("/") + "/"
    return html.replace(f'href="{prefix}', f'href="{files_url.rstrip("/")}/')


def storage_options(uri: str, aws_conn_id: str | None) -> dict[str, Any]:
    """The fsspec options the provider's operators use for ``uri`` (S3 credentials from the connection)."""
    from airflow_mlops_provider.operators.base import MlopsBaseOperator

    # The operators' own resolution, bound to a stand-in that carries only what it reads.
    holder = cast("MlopsBaseOperator", SimpleNamespace(artifact_root=uri, aws_conn_id=aws_conn_id))
    return MlopsBaseOperator.storage_options(holder, uri)


def latest_reports(artifact_root: str, pipeline: str, kind: str, aws_conn_id: str | None) -> list[str]:
    """The newest HTML reports of ``kind`` (``validation``, ``drift``), as paths below the reports folder."""
    uri = join_uri(reports_base(artifact_root, pipeline), kind)
    base = Location(uri, storage_options(uri, aws_conn_id))
    fs, root = base.fs, base.path.rstrip("/")
    try:
        found = fs.glob(f"{root}/*/*.html", detail=True)
    except FileNotFoundError:
        return []
    newest = sorted(found.items(), key=lambda item: _modified(item[1]), reverse=True)[:MAX_LISTED]
    return [f"{kind}/{name[len(root) + 1 :]}" for name, _ in newest]


def _modified(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def decision_html(settings: TrackingSettings, record_uri: str) -> str:
    """The HTML rendering of the decision record whose JSON is at ``record_uri`` (an MLflow artifact)."""
    if not record_uri.endswith("/decision.json"):
        raise ReportRefused(f"{record_uri!r} is not a decision record")
    from mlflow.artifacts import download_artifacts

    html_uri = record_uri.removesuffix("decision.json") + "decision.html"
    with tempfile.TemporaryDirectory(prefix="decision-") as tmp, settings.environment():
        local = download_artifacts(artifact_uri=html_uri, dst_path=tmp, tracking_uri=settings.tracking_uri)
        return Path(local).read_text()
