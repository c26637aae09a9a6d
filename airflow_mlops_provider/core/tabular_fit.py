"""Fitting a :class:`~airflow_mlops_provider.core.tabular_model.TabularModel`'s preprocessing from
batches: statistics that merge exactly, so a split streamed in any number of batches (on any
number of ranks) gives the preprocessing the whole frame gives.

* numeric columns and date parts: count, mean and sum of squared deviations of the finite values,
  in float64, merged with Chan's parallel formula (equal to the whole-array mean and standard
  deviation within rounding); a constant column (min == max) gets its value and scale 1;
* categorical columns: value counts of the values' text, summed, then ranked once at the end
  (most frequent first, ties by value, at most ``max_categories``);
* the target: the class set (classification) or the moments of its values (regression).

Batches are pandas frames converted as the whole split would be (see
:func:`~airflow_mlops_provider.core.training.shards.frame_of`): a column's kind (numeric, date,
categorical) comes from its pandas dtype, the same in every batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airflow_mlops_provider.core.dates import date_parts
from airflow_mlops_provider.core.tabular_model import (
    TASKS,
    Preprocessor,
    TabularModel,
    TabularModelError,
    TabularSpec,
    _arrow_dates,
    _is_date,
    _plain,
)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations (Chan et al.) of finite float64 values, with min and max."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if finite.size:
            mean = finite.mean()
            part = Moments(finite.size, float(mean), float(np.square(finite - mean).sum()))
            self.merge(Moments(part.count, part.mean, part.m2, float(finite.min()), float(finite.max())))

    def merge(self, other: Moments) -> None:
        if not other.count:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def result(self, column: str) -> tuple[float, float]:
        """``(mean, std)``; a constant gets ``(value, 1.0)``; no finite value raises."""
        if not self.count:
            raise TabularModelError(f"Column {column!r} has no finite values in training data")
        if self.low == self.high:
            return self.low, 1.0
        std = math.sqrt(self.m2 / self.count)
        return self.mean, std if std > 0 else 1.0


@dataclass
class FeatureStatistics:
    """What :class:`Preprocessor` is fitted from, accumulated batch by batch."""

    feature_columns: list[str]
    categorical_columns: set[str] = field(default_factory=set)
    max_categories: int = 64
    kinds: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, Moments] = field(default_factory=dict)
    dates: dict[str, dict[str, Moments]] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise TabularModelError(f"Feature columns missing from the training data: {missing}")
        for column in self.feature_columns:
            series = frame[column]
            kind = self._kind(column, series)
            if kind == "date":
                parts = self.dates.setdefault(column, {})
                for part, values in date_parts(_arrow_dates(series)).items():
                    parts.setdefault(part, Moments()).add(values)
            elif kind == "numeric":
                self.numeric.setdefault(column, Moments()).add(series.astype("float64").to_numpy())
            elif kind == "categorical":
                counts = series.dropna().astype(str).value_counts()
                self.counts.setdefault(column, Counter()).update(counts.to_dict())

    def _kind(self, column: str, series: pd.Series) -> str | None:
        """The column's kind in this batch (None: an object column with no value here, of no kind yet)."""
        forced = column in self.categorical_columns
        if not forced and _is_date(series):
            kind = "date"
        elif not forced and (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            kind = "numeric"
        elif series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "empty":
            return None
        else:
            kind = "categorical"
        if self.kinds.setdefault(column, kind) != kind:
            raise TabularModelError(f"Column {column!r} reads as {self.kinds[column]} and as {kind}")
        return kind

    def merge(self, other: FeatureStatistics) -> None:
        for column, kind in other.kinds.items():
            if self.kinds.setdefault(column, kind) != kind:
                raise TabularModelError(f"Column {column!r} reads as {self.kinds[column]} and as {kind}")
        for column, moments in other.numeric.items():
            self.numeric.setdefault(column, Moments()).merge(moments)
        for column, parts in other.dates.items():
            for part, moments in parts.items():
                self.dates.setdefault(column, {}).setdefault(part, Moments()).merge(moments)
        for column, counts in other.counts.items():
            self.counts.setdefault(column, Counter()).update(counts)

    def preprocessor(self) -> Preprocessor:
        numeric: dict[str, tuple[float, float]] = {}
        categorical: dict[str, list[str]] = {}
        dates: dict[str, dict[str, tuple[float, float]]] = {}
        for column in self.feature_columns:
            kind = self.kinds.get(column, "categorical")  # an object column without a value anywhere
            if kind == "date":
                dates[column] = {part: m.result(column) for part, m in self.dates[column].items()}
            elif kind == "numeric":
                numeric[column] = self.numeric[column].result(column)
            else:
                ranked = sorted(self.counts.get(column, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))
                categorical[column] = sorted(value for value, _ in ranked[: self.max_categories])
        return Preprocessor(numeric=numeric, categorical=categorical, dates=dates)


@dataclass
class TabularFit:
    """A tabular model's preprocessing and target statistics, accumulated batch by batch.

    ``start`` checks the column names once; ``add`` takes labelled rows; ``merge`` folds in
    another fit (another rank's); ``model`` builds the untrained :class:`TabularModel`.
    """

    target: str
    task: str
    features: FeatureStatistics
    rows: int = 0
    unlabelled: int = 0
    classes: set[Any] = field(default_factory=set)
    target_moments: Moments = field(default_factory=Moments)

    @classmethod
    def start(
        cls,
        columns: Sequence[str],
        target: str,
        task: str = "classification",
        *,
        feature_columns: Sequence[str] | None = None,
        categorical_columns: Iterable[str] | None = None,
        max_categories: int = 64,
    ) -> TabularFit:
        if task not in TASKS:
            raise TabularModelError(f"task must be one of {TASKS}, not {task!r}")
        if target not in columns:
            raise TabularModelError(f"Target column {target!r} is not in the data (columns: {list(columns)})")
        features = list(feature_columns) if feature_columns else [c for c in columns if c != target]
        if target in features:
            raise TabularModelError(f"Target column {target!r} is also listed as a feature")
        if not features:
            raise TabularModelError("No feature columns besides the target")
        stats = FeatureStatistics(features, set(categorical_columns or ()), max_categories)
        return cls(target=target, task=task, features=stats)

    def add(self, frame: pd.DataFrame) -> None:
        self.features.add(frame)
        labels = frame[self.target]
        self.rows += len(frame)
        self.unlabelled += int(labels.isna().sum())
        if self.task == "classification":
            self.classes.update(_plain(v) for v in labels.dropna().unique())
        else:
            self.target_moments.add(pd.to_numeric(labels, errors="raise").astype("float64").to_numpy())

    def merge(self, other: TabularFit) -> None:
        self.features.merge(other.features)
        self.rows += other.rows
        self.unlabelled += other.unlabelled
        self.classes.update(other.classes)
        self.target_moments.merge(other.target_moments)

    def model(self, hidden: Sequence[int] = (64, 32), dropout: float = 0.0) -> TabularModel:
        if self.rows == 0:
            raise TabularModelError("The training data is empty")
        pre = self.features.preprocessor()
        if self.unlabelled:
            raise TabularModelError(f"Target column {self.target!r} has {self.unlabelled} missing values")
        spec = TabularSpec(
            task=self.task,
            target=self.target,
            preprocessor=pre,
            hidden=[int(h) for h in hidden],
            dropout=dropout,
        )
        if self.task == "classification":
            spec.classes = sorted(self.classes)
            if len(spec.classes) < 2:
                raise TabularModelError(f"Target column {self.target!r} has a single class {spec.classes}")
        else:
            spec.target_mean, spec.target_std = self.target_moments.result(self.target)
        return TabularModel(spec)


def merged(fits: Sequence[TabularFit]) -> TabularFit:
    """One fit from several (each rank's), merged in order."""
    first, *rest = fits
    for fit in rest:
        first.merge(fit)
    return first
