"""Score the challenger and the current champion on the same held-out snapshot.

Metrics: classification gets accuracy, F1 (binary: the second class in the model's ``classes``
is positive; more classes: macro average), ROC-AUC (one-vs-rest macro for more classes) and log
loss; regression gets RMSE, MAE and R2. A metric that is undefined on the data (ROC-AUC on a
split holding one class, say) is reported as ``None`` rather than NaN, so results stay valid
JSON for XCom; the gate treats ``None`` as "NaN or missing" and rejects on it.

Slices give every metric per value of a column (the most frequent ``max_values`` values).
Models are anything with ``task``, ``target``, ``predict(frame)`` and, for classification,
``predict_proba(frame)`` and ``classes`` (the training helper's ``TabularModel``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.gate import HIGHER_IS_BETTER, TASK_METRICS
from airflow_mlops_provider.core.payloads import ChampionScores, Evaluation

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops_provider.core.snapshot import SnapshotLike
    from airflow_mlops_provider.core.tracking import TrackingSettings


class Model(Protocol):
    """What evaluation needs of a model (:class:`~.tabular_model.TabularModel` has it)."""

    @property
    def task(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def classes(self) -> Sequence[Any] | None: ...  # a classifier's labels, in its output order

    def predict(self, frame: Any) -> np.ndarray: ...

    def predict_proba(self, frame: Any) -> np.ndarray: ...  # classifiers only


class EvaluationError(PermanentError, ValueError):
    """The data or the model cannot be evaluated (missing target column, empty split, ...)."""


@dataclass(frozen=True)
class SliceSpec:
    """Metrics per value of ``column``, for its ``max_values`` most frequent values with ``min_rows`` rows."""

    column: str
    max_values: int = 20
    min_rows: int = 1

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | SliceSpec) -> SliceSpec:
        if isinstance(spec, SliceSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        unknown = set(spec) - {"column", "max_values", "min_rows"}
        if unknown or "column" not in spec:
            raise EvaluationError(
                f"slice spec {dict(spec)!r}: expected keys 'column' (required), 'max_values', 'min_rows'"
            )
        return cls(str(spec["column"]), int(spec.get("max_values", 20)), int(spec.get("min_rows", 1)))


def _none_if_nan(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Iterable[Any] | None = None,
    metrics: Iterable[str] | None = None,
) -> dict[str, float | None]:
    """Task metrics for one set of predictions; undefined values come back as ``None``."""
    from sklearn import metrics as skm

    if task not in TASK_METRICS:
        raise EvaluationError(f"unknown task {task!r}: expected one of {sorted(TASK_METRICS)}")
    wanted = list(metrics) if metrics else list(TASK_METRICS[task])
    wrong = [m for m in wanted if m not in TASK_METRICS[task]]
    if wrong:
        raise EvaluationError(f"metric(s) {wrong} do not apply to {task}; choose from {TASK_METRICS[task]}")
    out: dict[str, float | None] = {}
    table: dict[str, Callable[[], float]]
    if len(y_true) == 0:
        return {name: None for name in wanted}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "regression":
            y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
            table = {
                "rmse": lambda: math.sqrt(skm.mean_squared_error(y_true, y_pred)),
                "mae": lambda: skm.mean_absolute_error(y_true, y_pred),
                "r2": lambda: skm.r2_score(y_true, y_pred) if len(y_true) > 1 else float("nan"),
            }
        else:
            labels = list(classes) if classes is not None else sorted(set(np.asarray(y_true).tolist()))
            binary = len(labels) == 2
            table = {
                "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
                "f1": lambda: (
                    skm.f1_score(y_true, y_pred, pos_label=labels[1], average="binary", zero_division=0)
                    if binary
                    else skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
                ),
                "roc_auc": lambda: _roc_auc(y_true, proba, labels),
                "log_loss": lambda: (
                    float("nan") if proba is None else skm.log_loss(y_true, proba, labels=labels)
                ),
            }
        for name in wanted:
            try:
                out[name] = _none_if_nan(float(table[name]()))
            except ValueError:
                out[name] = None
    return out


def _roc_auc(y_true: np.ndarray, proba: np.ndarray | None, labels: list[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    if proba is None or len(set(np.asarray(y_true).tolist())) < 2:
        return float("nan")
    if len(labels) == 2:
        return float(roc_auc_score(np.asarray(y_true) == labels[1], proba[:, 1]))
    return float(roc_auc_score(y_true, proba, labels=labels, multi_class="ovr", average="macro"))


def evaluate_frame(
    model: Model,
    frame: pd.DataFrame,
    metrics: Iterable[str] | None = None,
    slices: Iterable[str | Mapping[str, Any] | SliceSpec] = (),
) -> dict[str, Any]:
    """Score ``model``: ``{"metrics", "slices": {column: {value: {metric: v, "rows": n}}}, "rows"}``."""
    target = model.target
    if target not in frame.columns:
        raise EvaluationError(
            f"evaluation data has no target column {target!r} (columns: {list(frame.columns)})"
        )
    unlabelled = frame[target].isna()
    dropped = int(unlabelled.sum())
    if dropped:
        frame = frame[~unlabelled].reset_index(drop=True)  # nothing to compare a prediction with
    if len(frame) == 0:
        raise EvaluationError(
            "evaluation data is empty: nothing to score"
            + (f" ({dropped} rows have no {target!r} label)" if dropped else "")
        )
    specs = [SliceSpec.parse(s) for s in slices]
    for spec in specs:
        if spec.column not in frame.columns:
            raise EvaluationError(f"slice column {spec.column!r} is not in the evaluation data")
    y_true = frame[target].to_numpy()
    y_pred = np.asarray(model.predict(frame))
    proba = classes = None
    if model.task == "classification":
        proba = np.asarray(model.predict_proba(frame))
        classes = None if model.classes is None else list(model.classes)
    metric_names = list(metrics) if metrics else None
    result: dict[str, Any] = {
        "metrics": compute_metrics(model.task, y_true, y_pred, proba, classes, metric_names),
        "slices": {},
        "rows": len(frame),
        "missing_target_dropped": dropped,
    }
    for spec in specs:
        column = frame[spec.column]
        counts = column.astype("string").fillna("<null>").value_counts()
        keep = [v for v, n in counts.items() if n >= spec.min_rows][: spec.max_values]
        keys = column.astype("string").fillna("<null>").to_numpy()
        per_value: dict[str, Any] = {}
        for value in sorted(keep):
            mask = keys == value
            sub = compute_metrics(
                model.task, y_true[mask], y_pred[mask], None if proba is None else proba[mask], classes,
                metric_names,
            )  # fmt: skip
            per_value[str(value)] = {**sub, "rows": int(mask.sum())}
        result["slices"][spec.column] = per_value
    return result


def better(metric: str, a: float, b: float) -> bool:
    """Whether value ``a`` of ``metric`` is strictly better than ``b``."""
    return a > b if HIGHER_IS_BETTER[metric] else a < b


def evaluate_challenger_and_champion(
    *,
    challenger: Mapping[str, Any],
    snapshot: SnapshotLike,
    model_name: str,
    settings: TrackingSettings,
    split: str | None = "test",
    metrics: Iterable[str] | None = None,
    slices: Iterable[str | Mapping[str, Any]] = (),
    storage_options: Mapping[str, Any] | None = None,
    champion_version: str | None = None,
    loader: Callable[[str, TrackingSettings], Model] | None = None,
) -> Evaluation:
    """Evaluate the challenger (a training result dict) and the champion on one snapshot split.

    The champion is the version under the ``champion`` alias now (or ``champion_version`` when
    given, used when re-evaluating against a champion that moved); it is loaded by its version
    number, never by alias, so the evaluation names exactly the model it scored.
    """
    from airflow_mlops_provider.core import names, registry
    from airflow_mlops_provider.core.paths import check_model_name
    from airflow_mlops_provider.core.snapshot import open_snapshot
    from airflow_mlops_provider.core.tracking import looks_unreachable

    check_model_name(model_name)
    loader = loader or _default_loader()
    snap = open_snapshot(snapshot, storage_options)
    splits = snap.ref.splits or {}
    if split and split not in splits:
        raise EvaluationError(
            f"snapshot {snap.ref.uri} has no split {split!r} (splits: {sorted(splits)}); "
            "evaluate on a held-out split"
        )
    frame = snap.read(split=split).to_pandas()
    model_uri = challenger.get("model_uri") or f"runs:/{challenger['run_id']}/model"
    challenger_model = loader(model_uri, settings)
    scored = evaluate_frame(challenger_model, frame, metrics, slices)
    client = settings.client()
    if champion_version is None:
        version = registry.alias_version(client, model_name, names.CHAMPION)
        champion_version = None if version is None else str(version.version)
    else:
        version = registry.get_version(client, model_name, champion_version)
    champion: ChampionScores | None = None
    if version is not None:  # None exactly when there is no champion
        try:
            champion_model = loader(f"models:/{model_name}/{champion_version}", settings)
        except Exception as err:  # MlflowException, TabularModelError, OSError: all name the file
            if looks_unreachable(err):
                raise
            raise EvaluationError(
                f"champion {model_name} v{champion_version} cannot be loaded ({err}); restore its "
                "artifacts or roll the champion back before promoting against it"
            ) from err
        if champion_model.task != challenger_model.task or champion_model.target != challenger_model.target:
            raise EvaluationError(
                f"champion {model_name} v{champion_version} predicts {champion_model.target!r} "
                f"({champion_model.task}) but the challenger predicts {challenger_model.target!r} "
                f"({challenger_model.task}): they cannot be compared"
            )
        champion_scored = evaluate_frame(champion_model, frame, metrics, slices)
        champion = ChampionScores(
            version=str(champion_version),
            run_id=version.run_id,
            metrics=champion_scored["metrics"],
            slices=champion_scored["slices"],
        )
    return {
        "model_name": model_name,
        "task": challenger_model.task,
        "challenger": {
            "run_id": challenger["run_id"],
            "model_uri": model_uri,
            "metrics": scored["metrics"],
            "slices": scored["slices"],
        },
        "champion": champion,
        "champion_version_at_eval": None if champion_version is None else str(champion_version),
        "snapshot_sha256": snap.ref.sha256,
        "snapshot": {
            "uri": snap.ref.uri,
            "sha256": snap.ref.sha256,
            "split": split,
            "rows": scored["rows"],
            "missing_target_dropped": scored["missing_target_dropped"],
        },
        "metrics_requested": list(metrics) if metrics else None,
        "slices_requested": [SliceSpec.parse(s).__dict__ for s in slices],
    }


def _default_loader() -> Callable[[str, TrackingSettings], Model]:
    from airflow_mlops_provider.core.model_io import load_model

    return load_model
