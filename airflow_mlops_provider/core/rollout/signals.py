"""A canary's guardrails read from the prediction service's Prometheus metrics.

One scrape of ``/metrics`` per replica is parsed into a :class:`TrafficSnapshot` (cumulative
counters per ``(alias, model_version)``), the replicas are summed (:func:`merge`), the snapshot
taken when a rollout step began is subtracted (:func:`difference`), and :func:`read_guardrails`
judges the canary's share of that delta against the champion's: error rate, p99 latency (as
PromQL's ``histogram_quantile``) and the distance between their prediction distributions.
The metric names and labels are those of :mod:`airflow_mlops_provider.serving.metrics`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, str]  # (alias, model_version)

_SCALARS = {  # exposed sample name -> VersionCounts field
    "mlops_serving_requests_total": "requests",
    "mlops_serving_errors_total": "errors",
    "mlops_serving_shadow_requests_total": "shadow",
    "mlops_serving_predicted_value_sum": "value_sum",
    "mlops_serving_predicted_value_count": "value_count",
}
_LATENCY_BUCKET = "mlops_serving_latency_seconds_bucket"
_CLASS = "mlops_serving_predicted_class_total"
_P99 = 0.99


@dataclass(frozen=True)
class VersionCounts:
    """Cumulative counters of one model version serving under one alias, summed over service replicas."""

    requests: float = 0.0
    errors: float = 0.0
    shadow: float = 0.0
    latency: tuple[tuple[float, float], ...] = ()  # cumulative (le, count) buckets, +Inf last
    classes: Mapping[str, float] = field(default_factory=dict)
    value_sum: float = 0.0
    value_count: float = 0.0

    @property
    def scored(self) -> float:
        """Requests this version produced an answer for: answered plus shadow copies."""
        return self.requests + self.shadow

    @property
    def predictions(self) -> float:
        """Predicted rows: class counts for a classifier, observed values for a regressor."""
        return sum(self.classes.values()) + self.value_count

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (no infinities): bucket bounds as Prometheus writes them, ``+Inf`` included."""
        data = asdict(self)
        data["latency"] = [[_format_le(le), count] for le, count in self.latency]
        data["classes"] = dict(sorted(self.classes.items()))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionCounts:
        return cls(
            **{name: float(data.get(name, 0.0)) for name in _SCALARS.values()},
            latency=_buckets({float(le): float(count) for le, count in data.get("latency", [])}),
            classes={str(k): float(v) for k, v in (data.get("classes") or {}).items()},
        )


@dataclass(frozen=True)
class TrafficSnapshot:
    """Cumulative counters per ``(alias, model_version)`` of one pipeline at one moment."""

    versions: Mapping[Key, VersionCounts] = field(default_factory=dict)

    def counts(self, alias: str, version: str) -> VersionCounts:
        """The counters of ``version`` under ``alias``; zeros when it served nothing."""
        return self.versions.get((alias, version), VersionCounts())

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": [
                {"alias": alias, "model_version": version, **counts.to_dict()}
                for (alias, version), counts in sorted(self.versions.items())
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficSnapshot:
        return cls(
            {
                (str(item["alias"]), str(item["model_version"])): VersionCounts.from_dict(item)
                for item in data.get("versions", [])
            }
        )


def parse_service_metrics(text: str, pipeline: str) -> TrafficSnapshot:
    """One scrape of the service's ``/metrics``, reduced to ``pipeline``'s per-version counters.

    Other metrics and pipelines are ignored, and so are errors of requests refused before any
    model answered (empty ``model_version``): they belong to no version.
    """
    parts: list[TrafficSnapshot] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("pipeline") != pipeline or not labels.get("model_version"):
                continue
            part = _sample_counts(sample.name, labels, float(sample.value))
            if part is not None:
                parts.append(TrafficSnapshot({(labels.get("alias", ""), labels["model_version"]): part}))
    return merge(parts)


def _sample_counts(name: str, labels: Mapping[str, str], value: float) -> VersionCounts | None:
    if name in _SCALARS:
        scalar: dict[str, Any] = {_SCALARS[name]: value}
        return VersionCounts(**scalar)
    if name == _LATENCY_BUCKET:
        return VersionCounts(latency=((float(labels["le"]), value),))
    if name == _CLASS:
        return VersionCounts(classes={labels["class"]: value})
    return None


def merge(snapshots: Iterable[TrafficSnapshot]) -> TrafficSnapshot:
    """The sum of several replicas' snapshots (they share the exporter's bucket layout)."""
    total: dict[Key, VersionCounts] = {}
    for snapshot in snapshots:
        for key, counts in snapshot.versions.items():
            total[key] = _combine(total[key], counts, operator.add) if key in total else counts
    return TrafficSnapshot(total)


def difference(now: TrafficSnapshot, before: TrafficSnapshot) -> TrafficSnapshot:
    """What each version served between ``before`` and ``now``.

    A counter that went down means a replica restarted and lost its counts: that key's delta is
    then ``now`` itself (what was served since, as far as it can be known).
    """
    delta: dict[Key, VersionCounts] = {}
    for key, counts in now.versions.items():
        change = _combine(counts, before.counts(*key), operator.sub)
        delta[key] = counts if _any_negative(change) else change
    return TrafficSnapshot(delta)


def _combine(a: VersionCounts, b: VersionCounts, op: Callable[[float, float], float]) -> VersionCounts:
    return VersionCounts(
        **{name: op(getattr(a, name), getattr(b, name)) for name in _SCALARS.values()},
        latency=_buckets(_combine_maps(dict(a.latency), dict(b.latency), op)),
        classes=_combine_maps(a.classes, b.classes, op),
    )


def _combine_maps(
    a: Mapping[Any, float], b: Mapping[Any, float], op: Callable[[float, float], float]
) -> dict[Any, float]:
    return {key: op(a.get(key, 0.0), b.get(key, 0.0)) for key in a.keys() | b.keys()}


def _any_negative(counts: VersionCounts) -> bool:
    values = [getattr(counts, name) for name in _SCALARS.values()]
    values += [count for _, count in counts.latency] + list(counts.classes.values())
    return any(value < 0 for value in values)


def _buckets(by_le: Mapping[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple(sorted(by_le.items()))


def _format_le(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """PromQL's ``histogram_quantile`` over cumulative ``(le, count)`` buckets; None without observations.

    Linear interpolation inside the bucket that holds rank ``q * count`` (the first bucket starts
    at 0); a rank in the ``+Inf`` bucket gives the highest finite bound.
    """
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]) or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets[:-1]:
        if count >= rank:
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclass(frozen=True)
class Guardrails:
    """Bounds on a canary; a bound set to None is not judged."""

    max_error_rate: float = 0.01  # errors / (scored + errors) of the canary
    max_p99_ms: float | None = None  # absolute bound on the canary's p99 latency
    max_p99_ratio: float | None = 2.0  # canary p99 / champion p99, when both have observations
    max_prediction_distance: float = 0.2  # total variation (classes) or relative mean shift (values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Guardrails:
        return cls(**data)


@dataclass(frozen=True)
class GuardrailReading:
    """What the canary and the champion showed over one delta, and the bounds it broke."""

    canary: dict[str, float | None]  # {"scored", "errors", "error_rate", "p99_ms"}
    champion: dict[str, float | None]
    prediction_distance: float | None
    distance: str  # "total_variation" | "relative_mean" | "none"
    breaches: list[str]

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "breached": self.breached}


def read_guardrails(
    delta: TrafficSnapshot, *, canary: Key, champion: Key, guardrails: Guardrails
) -> GuardrailReading:
    """Judge the canary's traffic in ``delta`` against ``guardrails`` and the champion's traffic.

    A reading that does not exist (no requests, no latency observations, no predictions on one
    side) is not judged; minimum counts are the caller's decision.
    """
    ours, theirs = delta.counts(*canary), delta.counts(*champion)
    kind, distance = prediction_distance(ours, theirs)
    reading = GuardrailReading(_side(ours), _side(theirs), distance, kind, [])
    breaches = [
        _error_breach(reading.canary, guardrails.max_error_rate),
        _p99_breach(reading.canary, guardrails.max_p99_ms, ours),
        _ratio_breach(reading.canary, reading.champion, guardrails.max_p99_ratio),
        _distance_breach(distance, kind, guardrails.max_prediction_distance, ours, theirs),
    ]
    reading.breaches.extend(sentence for sentence in breaches if sentence is not None)
    return reading


def _side(counts: VersionCounts) -> dict[str, float | None]:
    attempts = counts.scored + counts.errors
    p99 = histogram_quantile(_P99, counts.latency)
    return {
        "scored": counts.scored,
        "errors": counts.errors,
        "error_rate": counts.errors / attempts if attempts > 0 else None,
        "p99_ms": p99 * 1000.0 if p99 is not None else None,
    }


def prediction_distance(canary: VersionCounts, champion: VersionCounts) -> tuple[str, float | None]:
    """``(kind, distance)`` between two versions' predictions; ``("none", None)`` when one side has none.

    Classifiers: total variation distance of the predicted-class shares. Regressors: the shift of
    the mean prediction relative to the champion's mean.
    """
    if canary.classes or champion.classes:
        p, q = _shares(canary.classes), _shares(champion.classes)
        if not p or not q:
            return "none", None
        return "total_variation", 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in p.keys() | q.keys())
    if canary.value_count > 0 and champion.value_count > 0:
        ours, theirs = canary.value_sum / canary.value_count, champion.value_sum / champion.value_count
        return "relative_mean", abs(ours - theirs) / max(abs(theirs), 1e-9)
    return "none", None


def _shares(classes: Mapping[str, float]) -> dict[str, float]:
    total = sum(classes.values())
    return {c: n / total for c, n in classes.items()} if total > 0 else {}


def _error_breach(canary: dict[str, float | None], bound: float) -> str | None:
    rate = canary["error_rate"]
    if rate is None or rate <= bound:
        return None
    errors, scored = canary["errors"] or 0.0, canary["scored"] or 0.0
    return f"error rate {rate:.3f} > {bound:.3f} ({errors:g} of {errors + scored:g} requests)"


def _p99_breach(canary: dict[str, float | None], bound: float | None, counts: VersionCounts) -> str | None:
    p99 = canary["p99_ms"]
    if p99 is None or bound is None or p99 <= bound:
        return None
    observed = counts.latency[-1][1]
    return f"canary p99 latency {p99:.1f} ms > {bound:.1f} ms ({observed:g} timed requests)"


def _ratio_breach(
    canary: dict[str, float | None], champion: dict[str, float | None], bound: float | None
) -> str | None:
    ours, theirs = canary["p99_ms"], champion["p99_ms"]
    if ours is None or not theirs or bound is None or ours / theirs <= bound:
        return None
    return (
        f"canary p99 latency {ours:.1f} ms is {ours / theirs:.2f}x the champion's {theirs:.1f} ms"
        f" > {bound:.2f}x ({canary['scored']:g} canary and {champion['scored']:g} champion requests)"
    )


def _distance_breach(
    distance: float | None, kind: str, bound: float, canary: VersionCounts, champion: VersionCounts
) -> str | None:
    if distance is None or distance <= bound:
        return None
    return (
        f"prediction distance {distance:.3f} ({kind.replace('_', ' ')}) > {bound:.3f}"
        f" ({canary.predictions:g} canary and {champion.predictions:g} champion predictions)"
    )
