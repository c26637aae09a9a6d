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
