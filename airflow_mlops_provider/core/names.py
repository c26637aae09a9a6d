"""The provider's vocabulary in MLflow and object storage: aliases, tags, metric prefixes, defaults.

Standard library only, so operators and the factory may import it at parse time
(DESIGN.md rule 1). Every other module takes these names from here.
"""

from __future__ import annotations

# Registered-model aliases.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
CANARY = "canary"  # the version a rollout tries on part of the traffic

# Run and model-version tags.
TAG_PIPELINE = "mlops.pipeline"
TAG_MODEL_NAME = "mlops.model_name"
TAG_MODEL_VERSION = "mlops.model_version"
TAG_SNAPSHOT_URI = "mlops.snapshot_uri"
TAG_SNAPSHOT_SHA = "mlops.snapshot_sha256"
TAG_TRAINING_CONFIG = "mlops.training_config_hash"
TAG_RDZV_ID = "mlops.rdzv_id"
TAG_ATTEMPT_KEY = "mlops.attempt_key"  # the training task instance, the same for all its tries
TAG_RESUMED = "mlops.resumed_after_epoch"  # checkpoint a later try of the run resumed from
TAG_BACKEND = "mlops.backend"
TAG_SOURCE_RUN = "mlops.source_run_id"
TAG_TRIGGER = "mlops.trigger_cause"
TAG_RECORD_URI = "mlops.decision_record_uri"
TAG_VERDICT = "mlops.verdict"
TAG_REASONS = "mlops.gate_reasons"
TAG_STATUS = "mlops.decision_status"
TAG_EVAL_SNAPSHOT = "mlops.eval_snapshot_sha256"
TAG_PREVIOUS = "mlops.previous_champion_version"
TAG_ROLLED_BACK = "mlops.rolled_back"
TAG_LAST_ROLLBACK = "mlops.last_rollback"
TAG_CURRENT_SHA = "mlops.current_sha256"
TAG_REFERENCE_SHA = "mlops.reference_sha256"
TAG_DRIFT_REPORT_URI = "mlops.drift_report_uri"
TAG_LAST_DRIFT = "mlops.last_drift"
TAG_LAST_DRIFT_RUN = "mlops.last_drift_run_id"
TAG_LAST_PERFORMANCE = "mlops.last_performance"
TAG_MONITORING_KIND = "mlops.monitoring_kind"  # drift or performance, on monitoring runs
# Rollout policy, as registered-model tags the prediction service follows.
TAG_CANARY_WEIGHT = "mlops.canary_weight"  # percent of requests the canary answers
TAG_SHADOW = "mlops.shadow"  # "canary": the canary scores a copy of every request
TAG_ROLLOUT = "mlops.rollout"  # the rollout in progress (JSON), on the registered model

# Metric prefix (+ split) of the rows a training run dropped for lack of a label.
METRIC_MISSING_TARGET = "missing_target_dropped_"

# StatsD metric names of a drift check.
STAT_DRIFT_SHARE = "mlops.drift.share"
STAT_DRIFT_DETECTED = "mlops.drift.detected"
STAT_DRIFT_COLUMNS = "mlops.drift.columns"
STAT_DRIFT_UNKNOWN = "mlops.drift.unknown_columns"
STAT_DRIFT_DURATION = "mlops.drift.duration"

# StatsD metric names of a performance check (tagged with pipeline and metric).
STAT_PERF_REALIZED = "mlops.performance.realized"
STAT_PERF_ESTIMATED = "mlops.performance.estimated"
STAT_PERF_DEGRADED = "mlops.performance.degraded"
STAT_PERF_LABELLED = "mlops.performance.labelled_rows"

# Defaults shared by the config schema, the operators and core.
DEFAULT_ENTRY_POINT = "airflow_mlops_provider.core.training.tabular:train"
DEFAULT_CHUNK_ROWS = 100_000
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}  # split fractions, in split order
