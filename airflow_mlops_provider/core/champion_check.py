"""Whether a run has anything to do, given the registered model's champion.

* ``unchanged``: skip retraining when the champion was trained on the same snapshot with the same
  training config (data-version-aware skip).
* ``require_champion``: skip monitoring while no champion exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.names import CHAMPION, TAG_SNAPSHOT_SHA, TAG_TRAINING_CONFIG

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings

MODES = ("unchanged", "require_champion")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: expected 'unchanged' or 'require_champion', got {mode!r}")
    return mode


def config_hashes(snapshot: Mapping[str, Any] | None, trainings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The training config hash of each job (training arguments, one dict per grid point) on ``snapshot``.

    Hashed exactly as the launcher tags the runs it starts; keys that are no ``TrainingJob`` field
    are ignored.
    """
    from airflow_mlops_provider.core.training.job import job_from_dict

    return [job_from_dict({**t, "snapshot": dict(snapshot or {})}).config_hash() for t in trainings]


def decide(
    model_name: str,
    mode: str,
    champion: Mapping[str, Any] | None,
    snapshot_sha: str | None = None,
    hashes: Sequence[str] = (),
) -> dict[str, Any]:
    """``{"model_name", "champion_version", "skip", "reason", ["snapshot_sha256"]}`` for the run.

    ``champion``: ``{"version", "tags"}`` or None; ``hashes``: :func:`config_hashes` of this run.
    """
    base = {"model_name": model_name, "champion_version": champion["version"] if champion else None}
    if check_mode(mode) == "require_champion":
        if champion is None:
            reason = f"No champion for model {model_name!r} yet: nothing to monitor, skipping."
            return {**base, "skip": True, "reason": reason}
        return {**base, "skip": False, "reason": f"Monitoring champion version {champion['version']}."}
    if champion is None:
        return {**base, "skip": False, "reason": f"No champion for {model_name!r} yet: training."}
    tags = champion["tags"]
    same_data = bool(snapshot_sha) and tags.get(TAG_SNAPSHOT_SHA) == snapshot_sha
    same_config = tags.get(TAG_TRAINING_CONFIG) in hashes
    if same_data and same_config:
        reason = (
            f"Skipping training and promotion: snapshot {str(snapshot_sha)[:12]} and training config "
            f"{tags[TAG_TRAINING_CONFIG][:12]} are the ones champion version {champion['version']} "
            "was trained on."
        )
        return {**base, "skip": True, "reason": reason, "snapshot_sha256": snapshot_sha}
    why = []
    if not same_data:
        why.append(f"data changed ({str(tags.get(TAG_SNAPSHOT_SHA))[:12]} -> {str(snapshot_sha)[:12]})")
    if not same_config:
        why.append("training config changed")
    reason = f"Training: {' and '.join(why)} since champion version {champion['version']}."
    return {**base, "skip": False, "reason": reason, "snapshot_sha256": snapshot_sha}


def champion_of(settings: TrackingSettings, model_name: str) -> dict[str, Any] | None:
    """``{"version", "run_id", "tags"}`` of the champion; None without a champion or without the model."""
    from mlflow.exceptions import MlflowException

    try:
        version = settings.client().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return {"version": version.version, "run_id": version.run_id, "tags": dict(version.tags or {})}


def check_champion(
    settings: TrackingSettings,
    model_name: str,
    mode: str,
    snapshot: Mapping[str, Any] | None = None,
    trainings: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """:func:`decide` for the model's current champion."""
    snapshot = dict(snapshot or {})
    hashes = config_hashes(snapshot, trainings) if mode == "unchanged" else []
    return decide(model_name, mode, champion_of(settings, model_name), snapshot.get("sha256"), hashes)
