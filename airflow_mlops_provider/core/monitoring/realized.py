"""Realized metrics of a labelled window, with percentile-bootstrap confidence intervals.

The point value is :func:`~airflow_mlops_provider.core.evaluation.compute_metrics` on every
labelled row, exactly as the evaluation stage measures the champion. The interval resamples the
rows with replacement ``resamples`` times (seeded: the same inputs give the same interval) and
takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the metric.

Cost is capped: a block of resamples is a matrix of row counts (how often each row was drawn),
and every metric is computed for the whole block at once as weighted sums over the rows
(accuracy, F1, log loss, RMSE, MAE and R2 as weighted means; ROC-AUC as the weighted
Mann-Whitney statistic over the score levels, ties counting one half, which is the area
sklearn computes). A window of
more than :data:`MAX_BOOTSTRAP_ROWS` rows is bootstrapped on a random subsample of that many
rows, and each percentile's distance from the subsample's own value is scaled by ``sqrt(m / n)``
(a metric's sampling spread shrinks as one over the square root of the rows) before it is put
around the full window's value. Resamples on which a metric is undefined (one class only) are
left out of its percentiles; when none is defined the interval is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from airflow_mlops_provider.core.evaluation import compute_metrics
from airflow_mlops_provider.core.monitoring.types import MetricInterval

MAX_BOOTSTRAP_ROWS = 50_000
_BLOCK_CELLS = 2_000_000  # index-matrix cells per block of resamples (16 MB of int64)


def realized_metrics(
    task: str,
    y_true: np.ndarray | Sequence[Any],
    y_pred: np.ndarray | Sequence[Any],
    proba: np.ndarray | None,
    classes: Iterable[Any] | None,
    metrics: Iterable[str] | None,
    *,
    confidence: float = 0.95,
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, MetricInterval]:
    """Each metric's value on all rows and its bootstrap interval at ``confidence``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = None if classes is None else list(classes)
    if task != "regression" and labels is None:
        labels = sorted(set(y_true.tolist()))  # as compute_metrics infers them
    names = list(metrics) if metrics else None
    points = compute_metrics(task, y_true, y_pred, proba, labels, names)  # validates task and names
    n = len(y_true)
    defined = [name for name, value in points.items() if value is not None]
    if n == 0 or not defined:
        return {name: MetricInterval(value, None, None, n, confidence) for name, value in points.items()}
    rng = np.random.default_rng(seed)
    rows = (
        np.arange(n) if n <= MAX_BOOTSTRAP_ROWS else np.sort(rng.choice(n, MAX_BOOTSTRAP_ROWS, replace=False))
    )
    sub_proba = None if proba is None else np.asarray(proba)[rows]
    sample = _Sample(task, y_true[rows], y_pred[rows], sub_proba, labels)
    draws = _bootstrap(sample, defined, resamples, rng)
    scale = math.sqrt(rows.size / n)
    sub_points = (
        points
        if rows.size == n
        else compute_metrics(task, y_true[rows], y_pred[rows], sub_proba, labels, defined)
    )
    out: dict[str, MetricInterval] = {}
    for name, value in points.items():
        low = high = None
        if value is not None:
            low, high = _interval(draws[name], confidence, value, sub_points[name], scale)
        out[name] = MetricInterval(value, low, high, n, confidence)
    return out


def _interval(
    draws: np.ndarray, confidence: float, value: float, sub_value: float | None, scale: float
) -> tuple[float | None, float | None]:
    """Percentile interval of the finite draws, rescaled around ``value`` when they come from a subsample."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(finite, [tail, 1.0 - tail]))
    if scale >= 1.0:
        return low, high
    centre = value if sub_value is None else sub_value
    return value + (low - centre) * scale, value + (high - centre) * scale


def _bootstrap(
    sample: _Sample, names: list[str], resamples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``resamples`` draws of each metric (NaN where undefined), a block of count rows at a time."""
    n = sample.rows
    block = max(1, _BLOCK_CELLS // n)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        index = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(index.ravel(), minlength=size * n).reshape(size, n).astype(float)
        for name in names:
            parts[name].append(sample.measure(name, weights))
    return {name: np.concatenate(blocks) for name, blocks in parts.items()}


class _Sample:
    """The rows a bootstrap resamples, and each metric as a function of a matrix of row weights."""

    def __init__(
        self, task: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: Any
    ) -> None:
        self.rows = len(y_true)
        self.y_true, self.y_pred, self.proba, self.classes = y_true, y_pred, proba, classes

    def measure(self, name: str, weights: np.ndarray) -> np.ndarray:
        """The metric on each resample; ``weights[b, i]`` is how often resample ``b`` drew row ``i``."""
        return np.asarray(getattr(self, f"_{name}")(weights), dtype=float)

    def _mean(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.asarray(weights @ values.astype(float)) / self.rows

    def _accuracy(self, weights: np.ndarray) -> np.ndarray:
        return self._mean(weights, self.y_true == self.y_pred)

    def _f1(self, weights: np.ndarray) -> np.ndarray:
        labels = self.classes
        positives = [labels[1]] if len(labels) == 2 else labels
        scores = []
        for label in positives:
            truth, said = self.y_true == label, self.y_pred == label
            tp = weights @ (truth & said).astype(float)
            wrong = weights @ (truth != said).astype(float)  # false positives plus false negatives
            with np.errstate(divide="ignore", invalid="ignore"):
                scores.append(np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), 0.0))
        return np.asarray(np.mean(scores, axis=0))

    def _log_loss(self, weights: np.ndarray) -> np.ndarray:
        assert self.proba is not None  # the point value is None without probabilities
        proba = np.asarray(self.proba, dtype=float)
        order = np.argsort(np.asarray(self.classes))
        column = order[np.searchsorted(np.asarray(self.classes), self.y_true, sorter=order)]
        eps = np.finfo(proba.dtype).eps
        loss = -np.log(np.clip(proba[np.arange(self.rows), column], eps, 1 - eps))
        return self._mean(weights, loss)

    def _roc_auc(self, weights: np.ndarray) -> np.ndarray:
        assert self.proba is not None
        labels = self.classes
        if len(labels) == 2:
            return _weighted_auc(weights, self.proba[:, 1], self.y_true == labels[1])
        per_class = [_weighted_auc(weights, self.proba[:, k], self.y_true == c) for k, c in enumerate(labels)]
        return np.asarray(np.mean(per_class, axis=0))

    def _regression(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        truth = self.y_true.astype(float)
        error = self.y_pred.astype(float) - truth
        return self._mean(weights, error**2), self._mean(weights, truth), self._mean(weights, truth**2)

    def _rmse(self, weights: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(self._regression(weights)[0]))

    def _mae(self, weights: np.ndarray) -> np.ndarray:
        return self._mean(weights, np.abs(self.y_pred.astype(float) - self.y_true.astype(float)))

    def _r2(self, weights: np.ndarray) -> np.ndarray:
        squared_error, mean, mean_square = self._regression(weights)
        variance = mean_square - mean**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(
                variance > 1e-12 * np.maximum(mean_square, 1.0), 1.0 - squared_error / variance, np.nan
            )


def _weighted_auc(weights: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each weighted resample: P(score of a positive > score of a negative), ties one half."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    drawn = weights[:, order]
    is_positive = positive[order].astype(float)
    pos = np.add.reduceat(drawn * is_positive, starts, axis=1)
    neg = np.add.reduceat(drawn * (1.0 - is_positive), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)
