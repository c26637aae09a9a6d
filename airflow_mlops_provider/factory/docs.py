"""``doc_md`` for generated DAGs and tasks, so the Airflow UI explains each pipeline."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops_provider.factory.plan import PipelinePlan

TASKS: dict[str, str] = {
    "record_trigger_cause": "Records why this run started (schedule, new data, drift, performance or "
    "manual) and "
    "the asset events behind it. The gate copies it into the decision record.",
    "ingest": "Reads the pipeline's data source into an immutable, content-addressed snapshot "
    "(Parquet + manifest under the artifact root), split into train/validation/test. "
    "XCom carries only the reference `{uri, sha256, rows, splits}`.",
    "check_unchanged": "Data-version-aware skip: when the snapshot hash and the training config hash "
    "equal the champion's `mlops.snapshot_sha256` / `mlops.training_config_hash` tags, "
    "training and promotion are skipped and the log says why.",
    "validate": "Validates the snapshot (built-in checks plus the pipeline's suite); the summary "
    "goes to the decision record and a report link appears on this task.",
    "train": "Trains with `torchrun` in its own process group (one task per grid point when a grid "
    "is configured). Rank 0 logs the run and the model to MLflow; see the MLflow run link.",
    "select_best": "Picks the best grid point by the primary validation metric.",
    "evaluate": "Scores the challenger and the current champion on the same held-out split.",
    "gate": "Applies the promotion gate (thresholds, minimum gain, no regression), registers the "
    "challenger version idempotently and stores the decision record with it.",
    "approve": "Human approval of the decision record before the champion alias moves.",
    "promote": "Moves the `champion` alias to the approved version (the old one becomes "
    "`previous_champion`) when the gate passed.",
    "require_champion": "Skips the monitoring run while the model has no champion yet.",
    "ingest_live": "Reads the live rows of this run's window (its data interval) into a snapshot; "
    "an empty window skips the run's scoring and drift with the reason.",
    "score": "Scores the live window with the champion (predictions snapshot).",
    "ingest_labels": "Reads the delayed labels that arrived in this run's interval into a snapshot.",
    "measure_performance": "Joins labels to the predictions of the windows they belong to, measures "
    "realized performance with bootstrap intervals, estimates it where labels are missing, and "
    "judges it against the champion's decision record; when the champion degraded it emits the "
    "pipeline's performance asset. The trend report is linked on the task.",
    "detect_drift": "Compares the live window with the champion's training snapshot; on drift it emits "
    "the pipeline's drift asset, which triggers `retrain_<name>`.",
    "rollout": "Rolls the approved version out before it becomes champion: canary steps (a growing "
    "share of the prediction service's requests) or a shadow (scoring copies), each held while the "
    "guardrails (error rate, p99 latency, prediction distance) are read from the service; a breach "
    "rolls back (canary weight 0, champion untouched) and fails the run with the reason.",
    "rollback": "Undoes a rollout in progress (canary weight 0, champion untouched); otherwise restores "
    "the `previous_champion` version as `champion`. The reason is recorded.",
}


def _rollout_text(rollout: dict[str, Any]) -> str:
    strategy = rollout["strategy"]
    if strategy == "direct":
        return "direct (the champion alias moves when the gate passes)"
    steps = ", ".join(f"{w:g}%" for w in rollout["steps"]) if strategy == "canary" else "shadow copies"
    return (
        f"{strategy} ({steps}; each step at least {rollout['hold']:g} s and {rollout['min_requests']} "
        f"requests) guarded by the metrics of {', '.join(rollout['service_urls'])}"
    )


def _header(config: PipelinePlan, title: str, source: str | None) -> list[str]:
    lines = [f"# {title}", ""]
    if config.description:
        lines += [config.description, ""]
    lines += [
        f"* **pipeline**: `{config.name}` (owner {config.owner}; fingerprint `{config.fingerprint}`)",
        f"* **config file**: `{source}`" if source else "* **config**: built from Python",
        f"* **registered model**: `{config.registered_model_name}`; experiment `{config.experiment_name}`",
        f"* **artifact root**: `{config.artifact_root}`",
    ]
    return lines


def retrain_dag(config: PipelinePlan, source: str | None) -> str:
    t = config.triggers
    causes = []
    if t.schedule:
        causes.append(f"cron `{t.schedule}` (UTC)")
    if t.new_data.enabled:
        via = " (S3 events via SQS)" if t.new_data.sqs else ""
        causes.append(
            f"new data at `{config.data.source.base_uri}`{via}: asset `mlops.{config.name}.new_data`"
        )
    if t.drift:
        causes.append(f"drift found by `monitor_{config.name}`: asset `mlops.{config.name}.drift`")
    if t.performance:
        causes.append(
            f"degraded performance found by `monitor_{config.name}`: asset `mlops.{config.name}.performance`"
        )
    training = config.training
    job = training.job
    points = len(training.grid_points)
    lines = _header(config, f"Retrain {config.registered_model_name}", source)
    lines += [
        f"* **starts on**: {' OR '.join(causes) if causes else 'manual trigger only'}; one run at a time",
        f"* **data**: `{config.data.source.resolved}`, split by {config.data.split.by} into "
        f"{', '.join(config.data.split.names)}",
        f"* **training**: {job['task']} on `{job['target']}` with `{job['entry_point']}`, "
        f"{points} config(s), {job['nproc_per_node']} worker(s) x {job['nnodes']} node(s), "
        f"timeout {int(training.timeout)} s",
        f"* **gate**: `{json.dumps(config.gate, sort_keys=True)}`; approval "
        f"{'required' if config.approval.enabled else 'off'}",
        f"* **rollout**: {_rollout_text(config.rollout)}",
        "",
        "Runs skip training and promotion when the data snapshot and the training config are the "
        "ones the champion was trained on. Rollback: trigger "
        f"`rollback_{config.name}`.",
        "",
        f"Promotions and rollbacks of one model run in the one-slot pool `{_pool(config)}`, which the "
        "provider's scheduler plugin creates when a run starts and it is missing.",
    ]
    return "\n".join(lines)


def monitor_dag(config: PipelinePlan, source: str | None) -> str:
    m = config.monitoring
    assert m is not None
    lines = _header(config, f"Monitor {config.registered_model_name}", source)
    lines += [
        f"* **schedule**: `{m.schedule}` (UTC)" if m.schedule else "* **schedule**: manual",
        f"* **live data**: `{m.windowed_source}`, window by {m.window.by} "
        f"({int(m.window.length)} s per run's data interval)",
        f"* **drift settings**: `{json.dumps(m.drift, sort_keys=True) if m.drift else 'defaults'}`",
        f"* **on drift**: emits `mlops.{config.name}.drift`"
        + (f", which triggers `retrain_{config.name}`" if config.triggers.drift else ""),
    ]
    if m.labels is not None:
        lines.append(
            f"* **labels**: `{m.labels.windowed_source}` joined on `{m.labels.id_column}` "
            f"(target `{m.labels.target}`, up to {int(m.labels.max_delay)} s late)"
        )
    if m.performance is not None:
        lines.append(
            f"* **performance rule**: `{json.dumps(m.performance, sort_keys=True)}`; on degradation emits "
            f"`mlops.{config.name}.performance`"
            + (f", which triggers `retrain_{config.name}`" if config.triggers.performance else "")
        )
    return "\n".join(lines)


def _pool(config: PipelinePlan) -> str:
    from airflow_mlops_provider.operators.promote import promotion_pool

    return promotion_pool(config.registered_model_name)


def rollback_dag(config: PipelinePlan, source: str | None) -> str:
    lines = _header(config, f"Roll back {config.registered_model_name}", source)
    lines += [
        "",
        "Manual: moves `champion` back to `previous_champion`. Give a reason when triggering.",
        f"Runs in the one-slot pool `{_pool(config)}` (created when missing).",
    ]
    return "\n".join(lines)
