"""Canary guardrails read from the prediction service's own Prometheus exposition.

Every scrape here is ``generate_latest`` of a real :class:`ServingMetrics` registry, recorded
through its counters as the service records them, so the parser meets the exporter's output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from prometheus_client import generate_latest

from airflow_mlops_provider.core.rollout.signals import (
    GuardrailReading,
    Guardrails,
    TrafficSnapshot,
    VersionCounts,
    difference,
    merge,
    parse_service_metrics,
    read_guardrails,
)
from airflow_mlops_provider.serving.metrics import LATENCY_BUCKETS, ServingMetrics

PIPELINE = "churn"
CHAMPION = ("champion", "3")
CANARY = ("canary", "4")
LENIENT = Guardrails(max_error_rate=1.0, max_p99_ms=None, max_p99_ratio=None, max_prediction_distance=1.0)


def serve(
    metrics: ServingMetrics,
    key: tuple[str, str],
    *,
    seconds: Sequence[float] = (),
    predicted: Sequence[object] = (),
    task: str = "classification",
    errors: int = 0,
    shadow: bool = False,
    pipeline: str = PIPELINE,
) -> None:
    """Record requests (one per latency) and their predictions as the service's predict path does."""
    alias, version = key
    labels = (pipeline, version, alias)
    for s in seconds:
        (metrics.shadow if shadow else metrics.requests).labels(*labels).inc()
        metrics.latency.labels(*labels).observe(s)
    metrics.predictions(labels, task, list(predicted))
    for _ in range(errors):
        metrics.errors.labels(*labels, "500").inc()


def scrape(metrics: ServingMetrics) -> TrafficSnapshot:
    return parse_service_metrics(generate_latest(metrics.registry).decode(), PIPELINE)


def judge(metrics: ServingMetrics, guardrails: Guardrails = LENIENT) -> GuardrailReading:
    return read_guardrails(scrape(metrics), canary=CANARY, champion=CHAMPION, guardrails=guardrails)


def test_the_exporters_output_is_read_per_version_and_only_for_the_pipeline():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.003, 0.004, 0.2], predicted=["yes", "no", "no", 1])
    serve(metrics, CANARY, seconds=[0.007], predicted=["yes"], errors=2)
    metrics.errors.labels(PIPELINE, "", "", "404").inc()  # refused before any model answered
    serve(metrics, CHAMPION, seconds=[0.5] * 4, predicted=["x"] * 4, errors=3, pipeline="other")

    snapshot = scrape(metrics)

    assert set(snapshot.versions) == {CHAMPION, CANARY}
    champion = snapshot.counts(*CHAMPION)
    assert (champion.requests, champion.errors, champion.shadow, champion.scored) == (3, 0, 0, 3)
    assert dict(champion.classes) == {"yes": 1, "no": 2, "1": 1}
    assert [le for le, _ in champion.latency] == [*LATENCY_BUCKETS, float("inf")]
    assert dict(champion.latency)[0.005] == 2 and dict(champion.latency)[0.25] == 3
    canary = snapshot.counts(*CANARY)
    assert (canary.requests, canary.errors, dict(canary.classes)) == (1, 2, {"yes": 1})
    assert snapshot.counts("canary", "99") == VersionCounts()


def test_shadow_copies_and_regression_values_are_read():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.01, 0.01], predicted=[10.0, 20.0], task="regression")
    serve(metrics, CANARY, seconds=[0.02, 0.02], predicted=[18.0, 18.5], task="regression", shadow=True)

    canary = scrape(metrics).counts(*CANARY)

    assert (canary.requests, canary.shadow, canary.scored) == (0, 2, 2)
    assert (canary.value_sum, canary.value_count, dict(canary.classes)) == (36.5, 2, {})
    assert canary.latency[-1] == (float("inf"), 2)


def test_merge_sums_the_replicas():
    first, second = ServingMetrics({}), ServingMetrics({})
    serve(first, CHAMPION, seconds=[0.003, 0.03], predicted=["a", "b"])
    serve(second, CHAMPION, seconds=[0.003], predicted=["b"], errors=1)
    serve(second, CANARY, seconds=[0.3], predicted=["c"])

    merged = merge([scrape(first), scrape(second)])

    champion = merged.counts(*CHAMPION)
    assert (champion.requests, champion.errors) == (3, 1)
    assert dict(champion.classes) == {"a": 1, "b": 2}
    assert dict(champion.latency)[0.005] == 2 and dict(champion.latency)[float("inf")] == 3
    assert merged.counts(*CANARY) == scrape(second).counts(*CANARY)
    assert merge([]) == TrafficSnapshot({})


def test_difference_is_what_was_served_since_and_survives_a_restart():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.003] * 5, predicted=["a"] * 5)
    before = scrape(metrics)
    serve(metrics, CHAMPION, seconds=[0.03, 0.03], predicted=["b", "b"], errors=1)
    serve(metrics, CANARY, seconds=[0.003], predicted=["a"])

    delta = difference(scrape(metrics), before)

    champion = delta.counts(*CHAMPION)
    assert (champion.requests, champion.errors, dict(champion.classes)) == (2, 1, {"a": 0, "b": 2})
    assert dict(champion.latency)[0.005] == 0 and dict(champion.latency)[0.05] == 2
    assert delta.counts(*CANARY) == scrape(metrics).counts(*CANARY)  # new since: all of it

    restarted = ServingMetrics({})  # the replica came back with fresh counters
    serve(restarted, CHAMPION, seconds=[0.003], predicted=["b"])
    after_restart = difference(scrape(restarted), scrape(metrics))
    assert after_restart.counts(*CHAMPION) == scrape(restarted).counts(*CHAMPION)
    assert CANARY not in after_restart.versions


def test_p99_interpolates_inside_the_bucket_as_histogram_quantile_does():
    metrics = ServingMetrics({})
    # 50 in (0.0025, 0.005], 45 in (0.005, 0.01], 5 in (0.01, 0.025]: rank 99 is the 4th of the last 5
    serve(metrics, CANARY, seconds=[0.003] * 50 + [0.007] * 45 + [0.02] * 5)
    serve(metrics, CHAMPION, seconds=[0.0001] * 3)  # all in the first bucket, which starts at 0
    reading = judge(metrics)
    assert reading.canary["p99_ms"] == pytest.approx(10 + 15 * 4 / 5)
    assert reading.champion["p99_ms"] == pytest.approx(0.5 * 0.99)

    slow = ServingMetrics({})
    serve(slow, CANARY, seconds=[0.003, 5.0, 5.0])  # rank in +Inf: the highest finite bound
    assert judge(slow).canary["p99_ms"] == pytest.approx(2500)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p99_is_within_a_bucket_of_the_observations_quantile(seed: int):
    seconds = np.random.default_rng(seed).lognormal(mean=np.log(0.02), sigma=1.0, size=2000)
    metrics = ServingMetrics({})
    serve(metrics, CANARY, seconds=seconds.tolist())

    ours = judge(metrics).canary["p99_ms"]

    exact = float(np.quantile(seconds, 0.99)) * 1000
    bounds = [0.0, *(b * 1000 for b in LATENCY_BUCKETS)]
    upper = next(i for i, b in enumerate(bounds) if b >= exact)
    assert ours is not None and abs(ours - exact) <= bounds[upper] - bounds[upper - 1]


def test_total_variation_between_the_predicted_class_shares():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.01] * 10, predicted=["a"] * 6 + ["b"] * 4)  # .6 .4
    serve(metrics, CANARY, seconds=[0.01] * 4, predicted=["a", "a", "b", "c"])  # .5 .25 .25

    reading = judge(metrics, Guardrails(max_prediction_distance=0.2))

    assert reading.distance == "total_variation"
    assert reading.prediction_distance == pytest.approx(0.25)
    assert reading.breaches == [
        "prediction distance 0.250 (total variation) > 0.200 (4 canary and 10 champion predictions)"
    ]
    assert not judge(metrics, Guardrails(max_prediction_distance=0.3)).breached


def test_relative_shift_of_the_mean_prediction_for_regressors():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.01] * 2, predicted=[10.0, 20.0], task="regression")
    serve(metrics, CANARY, seconds=[0.01] * 2, predicted=[17.0, 19.0], task="regression")

    reading = judge(metrics, Guardrails(max_prediction_distance=0.1))

    assert (reading.distance, reading.prediction_distance) == ("relative_mean", pytest.approx(0.2))
    assert reading.breaches == [
        "prediction distance 0.200 (relative mean) > 0.100 (2 canary and 2 champion predictions)"
    ]
    assert not judge(metrics, Guardrails(max_prediction_distance=0.25)).breached


def test_error_rate_counts_errors_against_all_the_canarys_requests():
    metrics = ServingMetrics({})
    serve(metrics, CANARY, seconds=[0.01] * 15, errors=5)

    reading = judge(metrics, Guardrails())

    assert reading.canary["error_rate"] == pytest.approx(0.25)
    assert reading.breaches == ["error rate 0.250 > 0.010 (5 of 20 requests)"]
    assert not judge(metrics, Guardrails(max_error_rate=0.25)).breached


def test_p99_bounds_absolute_and_relative_to_the_champion():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.003] * 99 + [0.007])  # rank 99 ends (2.5, 5] ms: p99 5 ms
    serve(metrics, CANARY, seconds=[0.02] * 99 + [0.04])  # rank 99 ends (10, 25] ms: p99 25 ms

    reading = judge(metrics, Guardrails(max_p99_ms=20, max_p99_ratio=2.0))

    assert reading.breaches == [
        "canary p99 latency 25.0 ms > 20.0 ms (100 timed requests)",
        "canary p99 latency 25.0 ms is 5.00x the champion's 5.0 ms > 2.00x"
        " (100 canary and 100 champion requests)",
    ]
    assert not judge(metrics, Guardrails(max_p99_ms=25, max_p99_ratio=5)).breached
    assert not judge(metrics, Guardrails(max_p99_ms=None, max_p99_ratio=None)).breached


def test_no_traffic_is_no_reading_and_no_breach():
    strict = Guardrails(max_error_rate=0.0, max_p99_ms=0.1, max_p99_ratio=1.0, max_prediction_distance=0.0)
    empty = read_guardrails(TrafficSnapshot({}), canary=CANARY, champion=CHAMPION, guardrails=strict)
    assert empty.canary == {"scored": 0, "errors": 0, "error_rate": None, "p99_ms": None}
    assert (empty.prediction_distance, empty.distance, empty.breaches) == (None, "none", [])

    metrics = ServingMetrics({})
    serve(metrics, CANARY, seconds=[0.0001] * 2, predicted=["a", "b"])  # the champion served nothing
    reading = judge(metrics, strict)
    assert (reading.prediction_distance, reading.distance) == (None, "none")
    assert reading.breaches == ["canary p99 latency 0.5 ms > 0.1 ms (2 timed requests)"]

    only_errors = ServingMetrics({})
    serve(only_errors, CANARY, errors=3)
    failing = judge(only_errors, Guardrails())
    assert (failing.canary["error_rate"], failing.canary["p99_ms"]) == (1.0, None)
    assert failing.breaches == ["error rate 1.000 > 0.010 (3 of 3 requests)"]


def test_snapshots_guardrails_and_readings_travel_as_json():
    metrics = ServingMetrics({})
    serve(metrics, CHAMPION, seconds=[0.003, 7.0], predicted=["a", "b"])
    serve(metrics, CANARY, seconds=[0.01], predicted=[1.5], task="regression", errors=1, shadow=True)
    snapshot = scrape(metrics)
    guardrails = Guardrails(max_error_rate=0.05, max_p99_ms=250.0, max_p99_ratio=None)

    def through_json(data: dict) -> dict:
        return json.loads(json.dumps(data, allow_nan=False))

    assert TrafficSnapshot.from_dict(through_json(snapshot.to_dict())) == snapshot
    assert Guardrails.from_dict(through_json(guardrails.to_dict())) == guardrails
    reading = read_guardrails(snapshot, canary=CANARY, champion=CHAMPION, guardrails=guardrails)
    assert through_json(reading.to_dict()) == {
        "canary": reading.canary,
        "champion": reading.champion,
        "prediction_distance": reading.prediction_distance,
        "distance": reading.distance,
        "breaches": reading.breaches,
        "breached": True,
    }
