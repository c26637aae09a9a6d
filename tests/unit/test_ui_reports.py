"""The Models pages' pure parts: report paths, link rewriting, decisions from tags, the SVG chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops_provider.core import names
from airflow_mlops_provider.ui.charts import Series, line_chart
from airflow_mlops_provider.ui.registry_view import ModelView, VersionView
from airflow_mlops_provider.ui.reports import (
    ReportRefused,
    latest_reports,
    relative_report_path,
    report_location,
    rewrite_links,
)

ROOT = "s3://bucket/artifacts"


def test_a_report_path_resolves_below_the_pipelines_reports_folder() -> None:
    location = report_location(ROOT, "churn", "drift/a-b-c/report.html", None)
    assert location.uri == "s3://bucket/artifacts/churn/reports/drift/a-b-c/report.html"
    assert location.storage_options == {}  # no connection: no credentials


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../snapshots/x/manifest.json", "not a path inside"),
        ("drift/../../other/reports/x.html", "not a path inside"),
        ("/etc/passwd.html", "not a path inside"),
        ("drift//x.html", "not a path inside"),
        ("drift/.git/config.html", "not a path inside"),
        ("drift\\..\\x.html", "not a path inside"),
        ("s3://other-bucket/x.html", "not a path inside"),
        ("drift/x.parquet", "not a report"),
        ("", "not a path inside"),
    ],
)
def test_paths_that_leave_the_folder_or_are_no_reports_are_refused(path: str, why: str) -> None:
    with pytest.raises(ReportRefused, match=why):
        report_location(ROOT, "churn", path, None)


def test_only_uris_under_the_reports_folder_become_plugin_links() -> None:
    inside = f"{ROOT}/churn/reports/validation/abc/test.html"
    assert relative_report_path(ROOT, "churn", inside) == "validation/abc/test.html"
    assert relative_report_path(ROOT, "churn", f"{ROOT}/other/reports/validation/abc/test.html") is None
    assert relative_report_path(ROOT, "churn", f"{ROOT}/churn/reports/../snapshots/x.html") is None
    assert relative_report_path(None, "churn", inside) is None


def test_links_into_the_reports_folder_are_rewritten_and_others_kept() -> None:
    html = (
        f'<a href="{ROOT}/churn/reports/drift/x/report.html">r</a>'
        f'<a href="{ROOT}/churn/snapshots/abc/">s</a><a href="https://example.org/">e</a>'
    )
    out = rewrite_links(html, ROOT, "churn", "/mlops/pipelines/churn/files")
    assert '<a href="/mlops/pipelines/churn/files/drift/x/report.html">r</a>' in out
    assert f'href="{ROOT}/churn/snapshots/abc/"' in out and 'href="https://example.org/"' in out


def test_the_latest_reports_are_listed_newest_first(tmp_path: Path) -> None:
    import os

    for n, sha in enumerate(("aaa", "bbb", "ccc")):
        folder = tmp_path / "churn" / "reports" / "validation" / sha
        folder.mkdir(parents=True)
        (folder / "test.html").write_text(sha)
        (folder / "test.json").write_text("{}")
        os.utime(folder / "test.html", (1_000_000 + n, 1_000_000 + n))
    listed = latest_reports(tmp_path.as_uri(), "churn", "validation", None)
    assert listed == ["validation/ccc/test.html", "validation/bbb/test.html", "validation/aaa/test.html"]
    assert latest_reports(tmp_path.as_uri(), "churn", "drift", None) == []


def _version(number: int, aliases: tuple[str, ...] = (), **tags: str) -> VersionView:
    return VersionView(str(number), f"run{number}", 0, aliases, tags)


def test_the_decision_shown_comes_from_the_versions_tags() -> None:
    assert _version(1, **{names.TAG_VERDICT: "pass", names.TAG_STATUS: "promoted"}).decision == "pass"
    assert _version(1, **{names.TAG_VERDICT: "fail", names.TAG_STATUS: "rejected"}).decision == "fail"
    rejected = _version(1, **{names.TAG_VERDICT: "pass", names.TAG_STATUS: "rejected"})
    assert rejected.decision == "rejected"
    rolled = _version(1, **{names.TAG_VERDICT: "pass", names.TAG_ROLLED_BACK: "{}"})
    assert rolled.decision == "rolled back"
    assert _version(1).decision is None
    drift = {"drift": True, "share": 0.5}
    assert _version(1, **{names.TAG_LAST_DRIFT: json.dumps(drift)}).last_drift == drift
    assert _version(1, **{names.TAG_LAST_DRIFT: "{not json"}).last_drift is None
    model = ModelView(
        "m", (_version(3), _version(2, ("champion",), **{names.TAG_VERDICT: "pass"}), _version(1))
    )
    assert model.champion is not None and model.champion.version == "2"
    assert model.last_decision is model.champion


def test_the_chart_draws_each_run_of_values_and_breaks_at_gaps() -> None:
    svg = line_chart("Drift <share>", ["w1", "w2", "w3", "w4"], [Series("share", [0.1, None, 0.4, 0.5])])
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and svg.count("<circle") == 3
    assert "Drift &lt;share&gt;" in svg and "<share>" not in svg
    assert line_chart("empty", ["w1"], [Series("x", [None])]) == ""
