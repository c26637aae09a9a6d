"""Data whose truth is known, for the tests and benchmarks of performance estimation.

A classification scenario draws four standard-normal features ``x0..x3``; the label follows a
known ``P(y|x)`` (a logistic model in ``x0..x2``: ``x3`` is irrelevant). The champion stand-in
is a strongly regularised ``LogisticRegression`` trained on a reference train part, so its
probabilities are under-confident and calibration has something to fix. The reference (the
champion's validation split) and every window are scored by it.

Windows (:meth:`ClassificationScenario.window`):

- ``none``: drawn like the reference;
- ``boundary``: covariate shift that hurts: the relevant features shrink by ``strength`` towards
  the origin, where the classes meet, so more rows lie near the decision boundary;
- ``away``: covariate shift that helps: the relevant features grow by ``strength``;
- ``irrelevant``: covariate shift along ``x3`` only (moved and widened): no effect on accuracy;
- ``mean``: ``x0`` moves by ``strength`` (a plain covariate shift);
- ``concept``: the inputs are drawn like the reference but ``P(y|x)`` changes (the sign of
  ``x1``'s effect flips): performance drops and no estimator that sees only inputs can tell.

:func:`regression_scenario` is the analogue for regression, with heteroscedastic noise (its
deviation grows with ``|x0|`` and is larger in segment ``"c"``), a string and a date feature.
This is test data: the stand-in models are not code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ("x0", "x1", "x2", "x3")
SHIFTS = ("none", "boundary", "away", "irrelevant", "mean", "concept")
_BINARY_W = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, -1.5, 1.0, 0.0]])
_MULTI_W = np.array([[1.5, 0.0, -1.0, 0.0], [-1.0, 1.5, 0.5, 0.0], [0.0, -1.5, 1.0, 0.0]])
_SEGMENTS = np.array(["a", "b", "c"])


@dataclass(frozen=True)
class Sample:
    """Rows with their true labels and the champion stand-in's outputs."""

    features: pd.DataFrame
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None  # classifiers: one column per class, in ``classes`` order


@dataclass(frozen=True)
class ClassificationScenario:
    """A known ``P(y|x)``, a fitted stand-in model and its scored reference split."""

    weights: np.ndarray  # (classes, features): logits = x @ weights.T
    model: Any
    classes: list[int]
    reference: Sample

    def window(self, shift: str = "none", rows: int = 10_000, seed: int = 1, strength: float = 0.5) -> Sample:
        """A window of ``rows`` rows under ``shift`` (see the module docstring)."""
        if shift not in SHIFTS:
            raise ValueError(f"unknown shift {shift!r}: expected one of {SHIFTS}")
        rng = np.random.default_rng(seed)
        x = _shift_inputs(rng.standard_normal((rows, len(FEATURES))), shift, strength)
        weights = self.weights.copy()
        if shift == "concept":
            weights[:, 1] = -weights[:, 1]
        return _scored(self.model, x, _draw_labels(rng, x, weights))


def _shift_inputs(x: np.ndarray, shift: str, strength: float) -> np.ndarray:
    if shift == "boundary":
        x[:, :3] *= 1.0 - strength
    elif shift == "away":
        x[:, :3] *= 1.0 + strength
    elif shift == "irrelevant":
        x[:, 3] = 2.0 * x[:, 3] + 3.0 * strength
    elif shift == "mean":
        x[:, 0] += strength
    return x


def _draw_labels(rng: np.random.Generator, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    logits = x @ weights.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(len(x))[:, None]
    return np.asarray(np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), weights.shape[0] - 1))


def _scored(model: Any, x: np.ndarray, y: np.ndarray) -> Sample:
    frame = pd.DataFrame(x, columns=list(FEATURES))
    proba = model.predict_proba(x)
    return Sample(frame, y, model.classes_[np.argmax(proba, axis=1)], proba)


def classification_scenario(
    n_classes: int = 2, train_rows: int = 5_000, reference_rows: int = 5_000, seed: int = 0, c: float = 0.002
) -> ClassificationScenario:
    """Train the stand-in (``LogisticRegression(C=c)``) and score a reference of ``reference_rows``."""
    from sklearn.linear_model import LogisticRegression

    weights = {2: _BINARY_W, 3: _MULTI_W}.get(n_classes)
    if weights is None:
        raise ValueError(f"n_classes must be 2 or 3, got {n_classes}")
    rng = np.random.default_rng(seed)
    x_train = rng.standard_normal((train_rows, len(FEATURES)))
    model = LogisticRegression(C=c).fit(x_train, _draw_labels(rng, x_train, weights))
    x_ref = rng.standard_normal((reference_rows, len(FEATURES)))
    reference = _scored(model, x_ref, _draw_labels(rng, x_ref, weights))
    return ClassificationScenario(weights, model, [int(k) for k in model.classes_], reference)


@dataclass(frozen=True)
class RegressionScenario:
    """``y = 2 x0 - x1 + 0.5 x2 + noise``, noise deviation ``(0.3 + |x0|) * (1.5 if segment c)``."""

    model: Any
    reference: Sample

    def window(self, shift: str = "none", rows: int = 10_000, seed: int = 1, strength: float = 0.5) -> Sample:
        """``none``; ``spread``: ``x0`` widens by ``1 + strength`` and segment ``c`` triples (noisier);
        ``calm``: ``x0`` narrows by ``1 - strength`` (quieter); ``irrelevant``: the date moves a year."""
        if shift not in ("none", "spread", "calm", "irrelevant"):
            raise ValueError(f"unknown shift {shift!r}: expected none, spread, calm or irrelevant")
        frame, y = _regression_rows(np.random.default_rng(seed), rows, shift, strength)
        return Sample(frame, y, self.model.predict(frame[["x0", "x1", "x2"]].to_numpy()), None)


def _regression_rows(
    rng: np.random.Generator, rows: int, shift: str = "none", strength: float = 0.5
) -> tuple[pd.DataFrame, np.ndarray]:
    x = rng.standard_normal((rows, 3))
    weights = [0.2, 0.4, 0.4]
    if shift == "spread":
        x[:, 0] *= 1.0 + strength
        weights = [0.1, 0.2, 0.7]
    elif shift == "calm":
        x[:, 0] *= 1.0 - strength
    segment = rng.choice(_SEGMENTS, rows, p=weights)
    base = np.datetime64("2026-01-01") + (365 if shift == "irrelevant" else 0)
    day = base + rng.integers(0, 365, rows).astype("timedelta64[D]")
    sd = (0.3 + np.abs(x[:, 0])) * np.where(segment == "c", 1.5, 1.0)
    y = 2.0 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + rng.normal(0.0, 1.0, rows) * sd
    frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "segment": segment, "day": day})
    return frame, y


def regression_scenario(
    train_rows: int = 5_000, reference_rows: int = 5_000, seed: int = 0
) -> RegressionScenario:
    """Train the stand-in (``LinearRegression`` on ``x0..x2``) and score a reference split."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    train, y_train = _regression_rows(rng, train_rows)
    model = LinearRegression().fit(train[["x0", "x1", "x2"]].to_numpy(), y_train)
    ref, y_ref = _regression_rows(rng, reference_rows)
    return RegressionScenario(
        model, Sample(ref, y_ref, model.predict(ref[["x0", "x1", "x2"]].to_numpy()), None)
    )
