"""Prometheus metrics of the prediction service, in a registry of their own (one per app)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from airflow_mlops_provider.serving.traffic import PipelineTraffic

LABELS = ("pipeline", "model_version", "alias")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests, errors, latency and the predictions' distribution per pipeline, version and alias."""

    def __init__(self, pipelines: dict[str, PipelineTraffic]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlops_serving_requests", "Prediction requests answered", LABELS, registry=self.registry
        )
        self.errors = Counter(
            "mlops_serving_errors", "Prediction requests refused or failed", (*LABELS, "status"),
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "mlops_serving_latency_seconds", "Time to answer a prediction request", LABELS,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.classes = Counter(
            "mlops_serving_predicted_class", "Predicted classes (classifiers)", (*LABELS, "class"),
            registry=self.registry,
        )  # fmt: skip
        self.shadow = Counter(
            "mlops_serving_shadow_requests", "Requests a shadow version scored a copy of", LABELS,
            registry=self.registry,
        )  # fmt: skip
        self.values = Histogram(
            "mlops_serving_predicted_value", "Predicted values (regressors)", LABELS, registry=self.registry
        )
        self.registry.register(_SlotCollector(pipelines))

    def predictions(self, labels: Sequence[str], task: str, predicted: Sequence[object]) -> None:
        """Count the predicted classes, or observe the predicted values."""
        if task == "classification":
            for label in predicted:
                self.classes.labels(*labels, str(label)).inc()
        else:
            histogram = self.values.labels(*labels)
            for value in predicted:
                histogram.observe(float(value))  # type: ignore[arg-type]


class _SlotCollector(Collector):
    """The version each slot serves, how often loading a new one failed, and the canary's weight."""

    def __init__(self, pipelines: dict[str, PipelineTraffic]) -> None:
        self.pipelines = pipelines

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(
            "mlops_serving_model_loaded", "1 for the version each pipeline serves", labels=LABELS
        )
        failures = CounterMetricFamily(
            "mlops_serving_model_load_failures",
            "Failed attempts to follow the alias",
            labels=("pipeline", "alias"),
        )
        weight = GaugeMetricFamily(
            "mlops_serving_canary_weight", "Percent of requests the canary answers", labels=("pipeline",)
        )
        for pipeline, traffic in self.pipelines.items():
            for slot in traffic.slots:
                served = slot.current()
                if served is not None:
                    loaded.add_metric([pipeline, served.version, slot.alias], 1)
                failures.add_metric([pipeline, slot.alias], slot.load_failures)
            weight.add_metric([pipeline], traffic.canary_weight)
        yield loaded
        yield failures
        yield weight
