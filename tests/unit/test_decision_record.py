"""The decision record renders every fact a reviewer needs, escapes what it shows and stays valid JSON."""

from __future__ import annotations

import json

import pytest

from airflow_mlops_provider.core.decision_record import DecisionRecord, record_dir, record_page_url


def make_record(**overrides) -> DecisionRecord:
    fields = dict(
        model_name="churn",
        version="7",
        source_run_id="abc123",
        pipeline="churn",
        task="classification",
        verdict="pass",
        reasons=["roc_auc 0.91 vs champion 0.88: gain and no-regression checks passed"],
        checks=[
            {
                "check": "min_gain",
                "metric": "roc_auc",
                "passed": True,
                "challenger": 0.91,
                "champion": 0.88,
                "bound": 0.01,
                "slice": None,
                "detail": "gain 0.03",
            }
        ],
        gate={"primary_metric": "roc_auc", "min_gain": 0.01},
        challenger={"run_id": "abc123", "metrics": {"roc_auc": 0.91, "accuracy": 0.85}},
        champion={"version": "6", "run_id": "old", "metrics": {"roc_auc": 0.88, "accuracy": None}},
        champion_version_at_eval="6",
        evaluation_snapshot={
            "uri": "s3://b/p/snapshots/ff",
            "sha256": "f" * 64,
            "split": "test",
            "rows": 900,
        },
        training_snapshot={"sha256": "e" * 64},
        trigger={"cause": "drift", "events": [{"extra": {"share": 0.5}}]},
        validation={"success": True, "evaluated": 12, "failed": []},
        status="promoted",
        approval={
            "required": True,
            "approved": True,
            "by": {"id": "u1", "name": "dana"},
            "at": "2026-01-01T00:00",
        },
        alias_changes=[{"alias": "champion", "before": "6", "after": "7", "at": "t"}],
        previous_champion="6",
    )
    fields.update(overrides)
    return DecisionRecord(**fields)


def test_json_round_trip_keeps_everything():
    record = make_record()
    data = json.loads(record.to_json())
    assert DecisionRecord.from_dict(data) == record
    assert data["schema_version"] == 1 and data["trigger"]["cause"] == "drift"


def test_nan_never_reaches_the_json():
    record = make_record(challenger={"run_id": "abc123", "metrics": {"roc_auc": float("nan")}})
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        record.to_json()


def test_markdown_summary_names_trigger_data_metrics_verdict_approver_and_alias_moves():
    text = make_record().to_markdown()
    assert text.startswith("## churn v7: **PASS** (promoted)")
    for expected in (
        "Trigger: drift",
        "Champion at evaluation: v6",
        "`ffffffffffff` split `test` (900 rows)",
        "Trained on: `eeeeeeeeeeee`",
        "Validation: passed (12 checks, 0 failed)",
        "| roc_auc | 0.91 | 0.88 |",
        "| accuracy | 0.85 | n/a |",
        "approved by dana",
        "`champion`: v6 -> v7",
    ):
        assert expected in text, expected


def test_first_model_and_html_escaping():
    record = make_record(champion=None, champion_version_at_eval=None, reasons=["<script>alert(1)</script>"])
    assert "none (first model)" in record.to_markdown()
    html = record.to_html()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<title>Decision: churn v7</title>" in html and "FAIL" not in html


def test_record_location_is_per_model_and_safe():
    assert record_dir("team/churn model") == "decision_record/team_churn_model"
    url = record_page_url("http://mlflow:5000/", "3", "abc", "churn")
    assert url == "http://mlflow:5000/#/experiments/3/runs/abc/artifacts/decision_record/churn/decision.html"
    assert record_page_url(None, "3", "abc", "churn") is None


def test_asset_event_extra_cannot_plant_markdown_in_the_approval_form():
    """Event ``extra`` comes from REST callers and SQS messages: shown as text, never as links or HTML."""
    from markdown_it import MarkdownIt

    planted = "[approve here](https://evil.example) <img src=x onerror=alert(1)> **urgent** `x`"
    record = make_record(trigger={"cause": "new_data", "events": [{"extra": {"note": planted}}]})
    text = record.to_markdown()
    rendered = MarkdownIt("commonmark").render(text)
    assert "<a " not in rendered and "<img" not in rendered and "<strong>urgent" not in rendered
    assert "[approve here](https://evil.example)" in rendered  # the caller's text survives, inert
    own = MarkdownIt("commonmark").render(make_record().to_markdown())
    assert rendered.count("<strong>") == own.count("<strong>") > 0  # the record's own emphasis renders


# --- the trigger and the gate in words -----------------------------------------------------------
def _event(
    kind: str, extra: dict, asset: str = "churn_events", at: str = "2026-12-01T01:05:00+00:00"
) -> dict:
    return {
        "asset": asset,
        "kind": kind,
        "timestamp": at,
        "source_dag_id": "monitor_churn",
        "source_run_id": "r1",
        "extra": extra,
        "recovered": False,
    }


DRIFT_EXTRA = {
    "drift": True,
    "drifted_columns": ["age", "plan", "region", "tenure"],
    "share": 0.1333,
    "unknown_columns": ["notes"],
    "report_uri": "s3://bucket/churn/reports/drift/abc/report.html",
    "json_uri": "s3://bucket/churn/reports/drift/abc/drift.json",
    "current_sha256": "c" * 64,
    "reference_sha256": "r" * 64,
    "model_version": "6",
    "prediction_drift": True,
}
PERFORMANCE_EXTRA = {
    "window": {"start": "2026-12-01T00:00:00+00:00", "end": "2026-12-01T01:00:00+00:00"},
    "model_version": "6",
    "source": "realized",
    "metric": "accuracy",
    "value": {"value": 0.8123, "low": 0.79, "high": 0.83, "rows": 412, "confidence": 0.95},
    "reference": 0.934,
    "rule": "significant",
    "reason": "accuracy fell significantly below the champion's reference",
    "labelled": 412,
    "pending": 30,
    "estimated": {"accuracy": {"value": 0.82, "low": 0.8, "high": 0.84}},
    "realized": {"accuracy": {"value": 0.8123, "low": 0.79, "high": 0.83}},
    "report_uri": "https://mlflow.example/reports/trend.html",
    "label_drift": None,
    "concept_drift": {"suspected": True, "reason": "inputs stable, labels moved"},
}


def _renderings(trigger: dict, **overrides) -> tuple[str, str, str]:
    """Markdown source, the Markdown as CommonMark renders it, and the HTML record."""
    from markdown_it import MarkdownIt

    record = make_record(trigger=trigger, **overrides)
    text = record.to_markdown()
    return text, MarkdownIt("commonmark").render(text), record.to_html()


def _trigger(*events: dict) -> dict:
    from airflow_mlops_provider.core.trigger import trigger_record

    return trigger_record(events, "asset_triggered", "asset_triggered__1")


def test_a_performance_trigger_shows_the_metric_interval_rows_champion_rule_window_and_report():
    _, rendered, page = _renderings(_trigger(_event("performance", PERFORMANCE_EXTRA)))
    expected = (
        "performance: accuracy 0.812 [0.79, 0.83] on 412 labelled rows vs the champion's 0.934 "
        "(rule significant) in window 2026-12-01 00:00 to 01:00 UTC; champion v6; "
        "concept drift suspected (inputs stable, labels moved); report "
    )
    assert expected.replace("'", "&#x27;") in page and expected in rendered
    link = '<a href="https://mlflow.example/reports/trend.html">https://mlflow.example/reports/trend.html</a>'
    assert link in page and link in rendered  # an http(s) report is a link in both


def test_an_estimated_performance_trigger_says_so_and_a_day_boundary_window_keeps_both_dates():
    extra = dict(PERFORMANCE_EXTRA, source="estimated", concept_drift=None, label_drift={"drift": True})
    extra["window"] = {"start": "2026-12-01T23:00:00", "end": "2026-12-02T00:00:00"}
    _, _, page = _renderings(_trigger(_event("performance", extra)))
    assert "performance: estimated accuracy 0.812 [0.79, 0.83] on 412 rows vs" in page
    assert "in window 2026-12-01 23:00 to 2026-12-02 00:00 UTC" in page
    assert "the labels drifted" in page and "concept drift" not in page


def test_a_drift_trigger_lists_its_columns_and_links_its_reports():
    text, rendered, page = _renderings(_trigger(_event("drift", DRIFT_EXTRA)))
    summary = "drift: 4 columns drifted (share 13%): age, plan, region, tenure; 1 unknown"
    assert summary in page and summary in rendered
    assert "the champion&#x27;s predictions drifted; champion v6" in page
    uri = DRIFT_EXTRA["report_uri"]
    assert f'report <a href="{uri}">{uri}</a>' in page  # an s3 URI is a link in HTML ...
    assert f"report ` {uri} `" in text and f"<code>{uri}</code>" in rendered  # ... code text in Markdown
    assert "drift.json" in page and "drift.json" in text


def test_new_data_triggers_name_their_files_snapshot_or_message():
    files = [f"s3://bucket/in/part-{i}.csv" for i in range(10)]
    snapshot = {"uri": "s3://bucket/churn/snapshots/ab12", "sha256": "ab" * 32, "rows": 1200, "splits": {}}
    trigger = _trigger(
        _event("new_data", {"files": files[:2]}, at="2026-12-01T00:00:00+00:00"),
        _event("new_data", {"files": files}, at="2026-12-01T00:01:00+00:00"),
        _event("new_data", {"snapshot": snapshot}, at="2026-12-01T00:02:00+00:00"),
        _event("new_data", {"payload": {"bucket": "b", "key": "in/x.csv"}}, at="2026-12-01T00:03:00+00:00"),
    )
    text, rendered, page = _renderings(trigger)
    assert "<th>Trigger</th><td>new data<ul>" in page and "- Trigger: new data\n" in text
    for expected in (
        "new data: 2 files: s3://bucket/in/part-0.csv, s3://bucket/in/part-1.csv</li>",
        "new data: 10 files: s3://bucket/in/part-0.csv, ",
        "s3://bucket/in/part-7.csv and 2 more</li>",
        'new data: snapshot abababababab (1,200 rows); <a href="s3://bucket/churn/snapshots/ab12">',
        "new data: message bucket=b, key=in/x.csv</li>",
    ):
        assert expected in page, expected
    assert page.count("<li>new data") == 4 and rendered.count("<li>new data") == 4  # one line per event


def test_folded_events_of_several_kinds_render_one_line_each():
    trigger = _trigger(
        _event("new_data", {"files": ["a.csv"]}, at="2026-12-01T00:00:00+00:00"),
        _event("drift", DRIFT_EXTRA, at="2026-12-01T00:10:00+00:00"),
        _event("performance", PERFORMANCE_EXTRA, at="2026-12-01T00:20:00+00:00"),
    )
    text, rendered, page = _renderings(trigger)
    assert "- Trigger: drift \\+ new data \\+ performance\n" in text
    assert "<td>drift + new data + performance<ul><li>new data: 1 file: a.csv</li><li>drift: " in page
    items = [line for line in text.splitlines() if line.startswith("  - ")]
    assert [line.split("\\:")[0] for line in items] == ["  - new data", "  - drift", "  - performance"]
    assert all(f"<li>{kind}: " in rendered for kind in ("new data", "drift", "performance"))


@pytest.mark.parametrize("run_type,cause", [("scheduled", "schedule"), ("manual", "manual")])
def test_scheduled_and_manual_runs_say_so_in_one_word(run_type, cause):
    from airflow_mlops_provider.core.trigger import trigger_record

    text, _, page = _renderings(trigger_record([], run_type, "r"))
    assert f"- Trigger: {cause}\n" in text
    assert f"<tr><th>Trigger</th><td>{cause}</td></tr>" in page


HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) ![img](https://evil.example/x.png) **bold**"


@pytest.mark.parametrize(
    "kind,extra",
    [
        ("new_data", {"files": [HOSTILE]}),
        ("new_data", {"payload": HOSTILE}),
        ("new_data", {"payload": {"note": HOSTILE}}),
        ("new_data", {"snapshot": {"uri": HOSTILE, "sha256": HOSTILE, "rows": HOSTILE}}),
        (
            "drift",
            dict(DRIFT_EXTRA, drifted_columns=[HOSTILE], report_uri="javascript:alert(1)", json_uri=None),
        ),
        (
            "drift",
            dict(DRIFT_EXTRA, report_uri='https://e.example/"><script>alert(1)</script>', json_uri=HOSTILE),
        ),
        ("performance", dict(PERFORMANCE_EXTRA, metric=HOSTILE, report_uri=HOSTILE, rule=HOSTILE)),
        (
            "performance",
            dict(PERFORMANCE_EXTRA, concept_drift={"suspected": True, "reason": HOSTILE}, report_uri=None),
        ),
        ("anything", {"note": HOSTILE, HOSTILE: 1}),
    ],
)
def test_hostile_event_extra_is_inert_in_markdown_and_html(kind, extra):
    _, rendered, page = _renderings(_trigger(_event(kind, extra, asset=HOSTILE)))
    for output in (rendered, page):
        assert "<script" not in output and "<img" not in output
        assert 'href="javascript' not in output and "<strong>bold" not in output
        assert "&lt;script&gt;" in output  # the caller's text survives, escaped
    assert "<a " not in rendered  # no link at all: none of these is a plain http(s) report URI
    assert "<a " not in page.replace("<a href='#", "")


def test_unknown_kinds_and_misshapen_extra_fall_back_to_a_short_escaped_summary():
    long_text = "y" * 500
    trigger = _trigger(
        _event("retrain_request", {"requested_by": "ops", "ticket": 42, "context": {"a": 1, "b": 2}}),
        _event("drift", {"drifted_columns": 5, "share": "most"}, asset="churn_drift"),
        _event("performance", {"metric": "accuracy", "value": 0.8}, asset="churn_perf"),
        _event("asset", {"note": long_text, "items": [1, 2, 3]}, asset="raw"),
    )
    text, _, page = _renderings(trigger)
    for expected in (
        "<li>retrain request event on churn_events: requested_by=ops, ticket=42, context=(2 fields)</li>",
        "<li>drift event on churn_drift: drifted_columns=5, share=most</li>",
        "<li>performance event on churn_perf: metric=accuracy, value=0.8</li>",
        f"<li>asset event on raw: note={'y' * 119}…, items=(3 items)</li>",
    ):
        assert expected in page, expected
    assert long_text not in page and long_text not in text


def test_no_json_in_either_rendering():
    trigger = _trigger(
        _event("drift", DRIFT_EXTRA),
        _event("performance", PERFORMANCE_EXTRA),
        _event("other", {"nested": {"deep": [1, 2]}}),
    )
    gate = {
        "primary_metric": "roc_auc",
        "thresholds": {"accuracy": 0.8, "log_loss": 0.5},
        "min_gain": 0.01,
        "min_gain_relative": 0.02,
        "max_regression": {"f1": 0.02},
        "slice_max_regression": {"recall": 0.05},
        "require_approval": True,
    }
    text, _, page = _renderings(trigger, gate=gate, validation={"rows": 10, "note": "custom"})
    for output in (text, page):
        assert '{"' not in output and "{'" not in output and '": ' not in output
    readable = (
        "primary metric roc_auc; thresholds accuracy ≥ 0.8, log_loss ≤ 0.5; min gain 0.01; "
        "min relative gain 2.00%; max regression f1 0.02; max regression per slice recall 0.05; "
        "approval required"
    )
    assert f"<tr><th>Gate</th><td>{readable}</td></tr>" in page
    assert "- Gate: primary metric roc\\_auc\\; thresholds accuracy ≥ 0\\.8" in text
    assert "<tr><th>Validation</th><td>rows=10, note=custom</td></tr>" in page


def test_a_default_gate_reads_as_words():
    _, _, page = _renderings(_trigger(), gate={"min_gain": 0.0, "thresholds": {}, "custom_rule": "x"})
    assert "<td>primary metric the task default; no approval needed; custom_rule=x</td>" in page
