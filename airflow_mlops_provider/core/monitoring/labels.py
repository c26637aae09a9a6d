"""Delayed labels: joined to the predictions of their window; label drift; concept drift.

Labels arrive later than predictions, in batches ("arrivals"): tables with the id column and the
target column. :func:`join_labels` gives a window's predictions the latest label of their id;
:func:`label_drift` compares the labelled target with the champion's training target through the
drift engine; :func:`concept_drift` reads a degraded verdict next to the input-drift summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.monitoring.types import Verdict

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class LabelError(PermanentError, ValueError):
    """A predictions or label table lacks the id or target column."""


@dataclass(frozen=True)
class JoinedLabels:
    """The labelled rows of one window, and what happened to the labels on the way.

    ``y_true`` and ``y_pred`` are strings for a classifier (its class names, as in the
    ``proba_<class>`` columns, whatever the target's type) and floats for a regressor.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list[str] | None
    labelled: int  # predictions with a label
    pending: int  # predictions still waiting for one
    corrected: int  # ids whose label a later arrival changed
    null_labels: int  # label rows of this window with a null target (not counted as labels)
    duplicates: int  # label rows replaced by a later row of the same arrival and id
    other_windows: int  # label rows whose id is not in this window (ignored here)

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"

    def counts(self) -> dict[str, int]:
        return {
            "labelled": self.labelled,
            "pending": self.pending,
            "corrected": self.corrected,
            "null_labels": self.null_labels,
            "duplicates": self.duplicates,
            "other_windows": self.other_windows,
        }


def join_labels(
    predictions: pa.Table, arrivals: Sequence[pa.Table], *, id_column: str, target: str
) -> JoinedLabels:
    """Each prediction with the latest non-null label of its id (later arrivals win; in one, the last row).

    Ids are compared as strings, so an integer id in one table matches its decimal text in another.
    """
    _require(predictions, "predictions", [id_column, PREDICTION])
    for number, arrival in enumerate(arrivals, start=1):
        _require(arrival, f"label arrival {number}", [id_column, target])
    classes = [
        name.removeprefix(PROBA_PREFIX) for name in predictions.column_names if name.startswith(PROBA_PREFIX)
    ]
    convert = _as_labels if classes else _as_floats
    window_ids = _ids(predictions.column(id_column))
    known = pc.unique(window_ids)
    labels = _Labels(known, convert)
    for arrival in arrivals:
        labels.add(_ids(arrival.column(id_column)), arrival.column(target))
    final, has_label, corrected, duplicates = labels.resolve()
    position = _positions(window_ids, known)
    rows = np.flatnonzero((position >= 0) & has_label[np.maximum(position, 0)])
    proba = None
    if classes:
        matrix = [predictions.column(f"{PROBA_PREFIX}{c}").to_numpy(zero_copy_only=False) for c in classes]
        proba = np.column_stack(matrix).astype(float)[rows]
    return JoinedLabels(
        y_true=final[position[rows]],
        y_pred=convert(predictions.column(PREDICTION).take(pa.array(rows))),
        proba=proba,
        classes=classes or None,
        labelled=int(rows.size),
        pending=predictions.num_rows - int(rows.size),
        corrected=corrected,
        null_labels=labels.nulls,
        duplicates=duplicates,
        other_windows=labels.foreign,
    )


class _Labels:
    """Label rows of one window, gathered arrival by arrival, as positions in the window's unique ids."""

    def __init__(self, known: pa.Array, convert: Any) -> None:
        self.known, self.convert = known, convert
        self.codes: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.batch: list[np.ndarray] = []
        self.nulls = self.foreign = 0

    def add(self, ids: pa.ChunkedArray | pa.Array, target: pa.ChunkedArray) -> None:
        code = _positions(ids, self.known)
        here = code >= 0
        valid = here & _present(target)
        self.foreign += int(code.size - np.count_nonzero(here))
        self.nulls += int(np.count_nonzero(here) - np.count_nonzero(valid))
        codes = code[valid]
        self.codes.append(codes)
        self.values.append(self.convert(pc.filter(target, pa.array(valid))))
        self.batch.append(np.full(codes.size, len(self.batch), dtype=np.int64))

    def resolve(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Final label per known id, whether it has one, ids corrected, rows duplicated in an arrival."""
        size = len(self.known)
        if not self.codes or not sum(c.size for c in self.codes):
            return self.convert(pa.array([], pa.string())), np.zeros(size, dtype=bool), 0, 0
        codes, values, batch = (np.concatenate(parts) for parts in (self.codes, self.values, self.batch))
        order = np.argsort(codes, kind="stable")  # by id, then arrival, then row: the order they came in
        codes, values, batch = codes[order], values[order], batch[order]
        last_of_batch = np.r_[(codes[1:] != codes[:-1]) | (batch[1:] != batch[:-1]), True]
        duplicates = int(codes.size - np.count_nonzero(last_of_batch))
        codes, values = codes[last_of_batch], values[last_of_batch]
        last = np.r_[codes[1:] != codes[:-1], True]
        replaced = np.r_[False, codes[1:] == codes[:-1]] & last  # the final label replaced an earlier one
        changed = replaced & (values != np.r_[values[:1], values[:-1]])
        final = np.empty(size, dtype=values.dtype)
        final[codes[last]] = values[last]
        has_label = np.zeros(size, dtype=bool)
        has_label[codes[last]] = True
        return final, has_label, int(np.count_nonzero(changed)), duplicates


def check_labels(schema_names: list[str], where: str, *, id_column: str, target: str) -> None:
    """Fail before anything is stored when a label arrival lacks the id or the target column."""
    _require(pa.table({name: [] for name in schema_names}), where, [id_column, target])


def _require(table: pa.Table, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise LabelError(f"{name} has no column {missing[0]!r} (columns: {table.column_names})")


def _ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as strings, so ``7`` and ``"7"`` are one id."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _positions(ids: pa.ChunkedArray | pa.Array, known: pa.Array) -> np.ndarray:
    """Where each id is in ``known`` (the window's unique ids), -1 when it is not there or null."""
    found = pc.fill_null(pc.index_in(ids, value_set=known), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _present(target: pa.ChunkedArray) -> np.ndarray:
    """Rows whose target is a value (not null, not NaN)."""
    valid = pc.is_valid(target)
    if pa.types.is_floating(target.type):
        valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(target), True)))
    return np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)


def _as_labels(values: Any) -> np.ndarray:
    """Class labels as the strings ``proba_<class>`` columns use (``str`` of each value)."""
    kind = getattr(values, "type", None)
    if kind is not None and (pa.types.is_integer(kind) or pa.types.is_string(kind)):
        return np.asarray(pc.cast(values, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    array = values.to_numpy(zero_copy_only=False) if hasattr(values, "to_numpy") else np.asarray(values)
    return np.asarray(array).astype(str).astype(object)


def _as_floats(values: Any) -> np.ndarray:
    array = values.to_numpy(zero_copy_only=False) if hasattr(values, "to_numpy") else np.asarray(values)
    return np.asarray(array, dtype=float)


def label_drift(reference_target: Any, window_target: Any, task: str) -> dict[str, Any]:
    """The labelled target's distribution in the window against the champion's training target.

    Tested by the drift engine (:func:`~airflow_mlops_provider.core.drift.compare`) on the one
    column: chi-square on the class counts (a classifier; labels compared as strings), KS for a
    regressor; ``drift`` needs a significant test AND an effect at the engine's default
    threshold (Jensen-Shannon 0.1; Wasserstein 0.1 reference standard deviations). Nulls are left
    out of both sides. Too few values for the engine (its ``min_rows``) give ``drift: False``
    with the ``reason``.
    """
    from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
    from airflow_mlops_provider.core.drift.columns import TableSource
    from airflow_mlops_provider.core.drift.config import ColumnConfig

    convert = _as_floats if task == "regression" else _as_labels
    reference, window = (_non_null(values, convert) for values in (reference_target, window_target))
    out: dict[str, Any] = {
        "drift": False,
        "test": None,
        "statistic": None,
        "p_value": None,
        "reference_rows": int(reference.size),
        "window_rows": int(window.size),
        "reference_distribution": _distribution(reference, task),
        "window_distribution": _distribution(window, task),
        "reason": None,
    }
    if reference.size == 0 or window.size == 0:
        out["reason"] = f"no labels in the {'reference' if reference.size == 0 else 'window'}"
        return out
    column = (
        ColumnConfig(kind="numeric", test="ks") if task == "regression" else ColumnConfig(kind="categorical")
    )
    config = DriftConfig(columns={"target": column}, prediction_drift=False, correction="none", workers=1)
    stats = reference_from_source(TableSource(_target_table(reference, task)), config)
    result = compare(stats, TableSource(_target_table(window, task)), config).column("target")
    out.update(
        drift=result.verdict == "drift",
        test=result.test,
        statistic=result.statistic,
        p_value=result.p_value,
        reason=result.reason,
        effect=result.effect,
        effect_size=result.effect_size,
        threshold=result.threshold,
    )
    return out


def _target_table(values: np.ndarray, task: str) -> pa.Table:
    kind = pa.float64() if task == "regression" else pa.string()
    return pa.table({"target": pa.array(values, kind)})


def _non_null(values: Any, convert: Any) -> np.ndarray:
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(np.asarray(values))
    if array.null_count:
        array = pc.drop_null(array)
    result = np.asarray(convert(array))
    if result.dtype.kind == "f":
        result = result[~np.isnan(result)]
    return result


def _distribution(values: np.ndarray, task: str) -> dict[str, float]:
    """Class shares (a classifier) or quantiles (a regressor), rounded to four decimals."""
    if values.size == 0:
        return {}
    if task == "regression":
        return {
            f"q{round(q * 100):02d}": round(float(v), 4)
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        }
    classes, counts = np.unique(values.astype(str), return_counts=True)
    return {str(c): round(int(n) / values.size, 4) for c, n in zip(classes, counts, strict=True)}


def concept_drift(verdict: Verdict | None, input_drift: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Whether the inputs' relation to the target changed: degraded performance on inputs that did not drift.

    ``input_drift`` is the drift check's summary (``drift``, and optionally ``share`` with its
    ``drift_share`` threshold). None when there is nothing to say: no realized verdict (too few
    labels, no reference) or no drift summary.
    """
    if verdict is None or input_drift is None or verdict.status not in ("degraded", "ok"):
        return None
    drifted = _inputs_drifted(input_drift)
    if drifted is None:
        return None
    inputs = "the inputs drifted" if drifted else "the inputs did not drift"
    if not verdict.degraded:
        reason = (
            f"{verdict.metric} holds up ({inputs}): no sign that the target's relation to the inputs changed"
        )
        return {"suspected": False, "reason": reason}
    if drifted:
        reason = (
            f"{verdict.metric} degraded and {inputs}: the shift of the inputs may explain it "
            "(covariate drift), so a change of the relation itself is not singled out"
        )
        return {"suspected": False, "reason": reason}
    reason = (
        f"{verdict.metric} degraded while {inputs}: the relation between inputs and target has likely "
        "changed (concept drift); retraining on recent labelled data is the remedy"
    )
    return {"suspected": True, "reason": reason}


def _inputs_drifted(summary: Mapping[str, Any]) -> bool | None:
    """Whether the inputs drifted: the summary's ``drift`` flag, unless ``share`` is below its threshold."""
    flag = summary.get("drift")
    share, threshold = summary.get("share"), summary.get("drift_share", summary.get("threshold"))
    below = share is not None and threshold is not None and float(share) < float(threshold)
    if flag is None:
        return None if share is None or threshold is None else not below
    return bool(flag) and not below
