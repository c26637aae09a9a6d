"""One rollout step's verdict (held, breach, starved) and the rollout's settings.

The counters come from a real :class:`ServingMetrics` registry's exposition, as the trigger
reads them from the service.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_mlops_provider.core.decision_record import DecisionRecord
from airflow_mlops_provider.core.rollout.config import RolloutConfig, parse_rollout
from airflow_mlops_provider.core.rollout.run import describe
from airflow_mlops_provider.core.rollout.signals import Guardrails, TrafficSnapshot
from airflow_mlops_provider.core.rollout.watch import BREACH, HELD, STARVED, StepWatch
from airflow_mlops_provider.serving.metrics import ServingMetrics
from tests.unit.test_rollout_signals import CANARY, CHAMPION, scrape, serve


def watch(
    baseline: TrafficSnapshot, *, hold_s: float = 0.0, wait_s: float = 60.0, **bounds: Any
) -> StepWatch:
    now = datetime.now(UTC)
    return StepWatch(
        urls=["http://127.0.0.1:1"], pipeline="churn", canary=CANARY, champion=CHAMPION,
        baseline=baseline, guardrails=Guardrails(**bounds), min_requests=10,
        hold_until=now + timedelta(seconds=hold_s), deadline=now + timedelta(seconds=wait_s),
    )  # fmt: skip


@pytest.fixture
def metrics() -> ServingMetrics:
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.01] * 50, predicted=["a", "b"] * 25)
    return metrics


def test_a_step_is_held_only_with_enough_requests_and_after_its_hold(metrics: ServingMetrics) -> None:
    before = scrape(metrics)
    serve(metrics, CANARY, seconds=[0.01] * 9, predicted=["a", "b", "a"] * 3)
    assert watch(before).judge(scrape(metrics)) is None  # 9 of 10 requests
    serve(metrics, CANARY, seconds=[0.01], predicted=["b"])
    assert watch(before, hold_s=3600).judge(scrape(metrics)) is None  # enough, but still holding
    event = watch(before).judge(scrape(metrics))
    assert event is not None and event["status"] == HELD and event["why"] is None
    assert event["reading"]["canary"]["scored"] == 10
    assert TrafficSnapshot.from_dict(event["snapshot"]) == scrape(metrics)  # the next step's baseline


def test_errors_count_as_requests_and_breach_before_the_hold_ends(metrics: ServingMetrics) -> None:
    before = scrape(metrics)
    serve(metrics, CANARY, errors=12)  # every request routed to the canary was refused
    event = watch(before, hold_s=3600).judge(scrape(metrics))
    assert event is not None and event["status"] == BREACH
    assert event["why"] == "error rate 1.000 > 0.010 (12 of 12 requests)"


def test_traffic_before_the_step_is_not_counted(metrics: ServingMetrics) -> None:
    serve(metrics, CANARY, errors=30)  # an earlier step's errors
    before = scrape(metrics)
    serve(metrics, CANARY, seconds=[0.01] * 10, predicted=["a", "b"] * 5)
    event = watch(before).judge(scrape(metrics))
    assert event is not None and event["status"] == HELD


def test_a_starved_step_says_how_much_traffic_it_saw(metrics: ServingMetrics) -> None:
    before = scrape(metrics)
    serve(metrics, CANARY, seconds=[0.01] * 3, predicted=["a"] * 3)
    event = watch(before, wait_s=-1).judge(scrape(metrics))
    assert event is not None and event["status"] == STARVED
    assert event["why"] == "the challenger saw 3 of the 10 requests a step needs"


def test_an_unreadable_service_waits_then_starves_with_the_reason(metrics: ServingMetrics) -> None:
    before = scrape(metrics)
    assert watch(before).judge(None, "connection refused") is None
    event = watch(before, wait_s=-1).judge(None, "connection refused")
    assert event is not None and event["status"] == STARVED and event["reading"] is None
    assert event["why"] == "connection refused; gave up at the step's deadline"


def test_polling_a_service_that_is_down_is_not_an_error(metrics: ServingMetrics) -> None:
    assert asyncio.run(watch(scrape(metrics)).poll()) is None  # nothing listens on port 1


def test_describe_puts_a_reading_in_words(metrics: ServingMetrics) -> None:
    before = scrape(metrics)
    serve(metrics, CANARY, seconds=[0.01] * 10, predicted=["a"] * 10, errors=1)
    event = watch(before, max_error_rate=1.0).judge(scrape(metrics))
    assert event is not None
    text = describe(event["reading"])
    assert text.startswith("canary 10 answered, 1 errors (rate 0.091), p99 ")
    assert "champion 0 answered" in text and "prediction distance n/a (none)" in text
    assert describe(None) == "no metrics could be read"


def test_rollout_settings_are_checked() -> None:
    direct = parse_rollout(None)
    assert direct.strategy == "direct" and direct.steps == [5, 25, 50, 100]
    canary = parse_rollout({"strategy": "canary", "service_urls": ["http://predict:8080"]})
    assert canary.weights == [5, 25, 50, 100]
    shadow = parse_rollout({"strategy": "shadow", "service_urls": ["http://predict:8080"]})
    assert shadow.weights == [0.0] and shadow.longest_s == 3615
    with pytest.raises(ValidationError, match="needs service_urls"):
        RolloutConfig(strategy="canary")
    with pytest.raises(ValidationError, match="must increase within"):
        RolloutConfig(strategy="canary", service_urls=["http://x"], steps=[50, 25])
    with pytest.raises(ValidationError, match="must increase within"):
        RolloutConfig(steps=[5, 150])
    with pytest.raises(ValidationError, match="shorter than hold"):
        RolloutConfig(hold=600, max_step_wait=300)


def test_the_decision_record_lists_the_rollout_escaped() -> None:
    record = DecisionRecord(
        model_name="m", version="2", source_run_id="r", pipeline="p", task="classification",
        verdict="pass", reasons=[], checks=[], gate={}, challenger={}, champion=None,
        champion_version_at_eval="1", evaluation_snapshot={},
        rollout=[{"at": "t1", "event": "step", "text": "step 1/2: v2 gets 5% of requests"},
                 {"at": "t2", "event": "rolled_back", "text": "rolled back: <b>[x](http://evil)</b>"}],
    )  # fmt: skip
    markdown = record.to_markdown()
    assert "**Rollout**" in markdown and "- t1: step 1\\/2\\: v2 gets 5\\% of requests" in markdown
    assert "](http" not in markdown and "<b>" not in markdown  # no link, no HTML
    page = record.to_html()
    assert "<h2>Rollout</h2>" in page and "&lt;b&gt;" in page and "<b>[x]" not in page
    assert DecisionRecord.from_dict(record.to_dict()).rollout == record.rollout
