"""The small dicts that travel between tasks through XCom: training result, evaluation, decision.

They are :class:`~typing.TypedDict` s, plain dicts at runtime, so XCom serialisation is
unchanged; the types say which keys a producer writes and a consumer may read. Standard library
only, so operators may import it at parse time.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

Metrics = dict[str, float | None]
Slices = dict[str, dict[str, dict[str, Any]]]  # column -> value -> {metric: value, "rows": n}


class TrainingResult(TypedDict):
    """What a training run returns (:meth:`.training.launcher.TorchrunLauncher.run`)."""

    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float]  # the validation metrics (``val_*``) of the last epoch
    params: dict[str, Any]
    snapshot_sha256: str
    training_config_hash: str
    checkpoint_dir: str
    run_url: NotRequired[str | None]  # added by the train operator: the run's page in the MLflow UI


class ChallengerScores(TypedDict):
    run_id: str
    model_uri: str
    metrics: Metrics
    slices: Slices


class ChampionScores(TypedDict):
    version: str
    run_id: str | None
    metrics: Metrics
    slices: Slices


class EvaluatedSnapshot(TypedDict):
    uri: str
    sha256: str
    split: str | None
    rows: int
    missing_target_dropped: int


class Evaluation(TypedDict):
    """Challenger and champion scored on one snapshot split
    (:func:`~airflow_mlops_provider.core.evaluation.evaluate_challenger_and_champion`)."""

    model_name: str
    task: str
    challenger: ChallengerScores
    champion: ChampionScores | None
    champion_version_at_eval: str | None
    snapshot_sha256: str
    snapshot: EvaluatedSnapshot
    metrics_requested: list[str] | None
    slices_requested: list[dict[str, Any]]


class ChallengerRef(TypedDict):
    run_id: str
    model_uri: str


class Reevaluation(TypedDict):
    """What promotion needs to score the challenger again when the champion moved."""

    challenger: ChallengerRef
    snapshot: str | None
    split: str | None
    metrics: list[str] | None
    slices: list[dict[str, Any]]


class Decision(TypedDict):
    """The gate's decision on a registered challenger (:func:`.promotion.summary`)."""

    verdict: str
    status: str
    model_name: str
    version: str
    source_run_id: str
    reasons: list[str]
    record_uri: str
    run_artifact_uri: str
    champion_version_at_eval: str | None
    require_approval: bool
    gate: dict[str, Any]
    challenger_metrics: Metrics
    champion_metrics: Metrics | None
    reevaluate: Reevaluation
    markdown: str


class PromotionResult(TypedDict):
    """What a promotion did (:func:`~airflow_mlops_provider.core.promotion.promote`)."""

    promoted: bool
    status: str
    model_name: str
    version: str
    champion: str | None
    previous_champion: str | None
    alias_changes: list[dict[str, Any]]
    reasons: list[str]
    record_uri: str
    approval: dict[str, Any] | None
