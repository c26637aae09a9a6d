"""Pipeline config schema: one short YAML file describes a retraining loop.

Validation is strict: unknown keys are errors, and every error names the file, the field
path and what was expected (see :mod:`airflow_mlops_provider.factory.loader`). Strings may
reference environment variables as ``${NAME}`` or ``${NAME:-default}``; they are expanded
when the file is loaded, before validation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from airflow_mlops_provider.core.drift.config import DriftConfig
from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS, DEFAULT_ENTRY_POINT, DEFAULT_FRACTIONS
from airflow_mlops_provider.core.paths import check_model_name
from airflow_mlops_provider.core.rollout.config import RolloutConfig, parse_rollout
from airflow_mlops_provider.core.training.hyperparameters import schema_for
from airflow_mlops_provider.core.training.job import TrainingJob
from airflow_mlops_provider.factory.plan import PipelinePlan

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_GRID_POINTS = 64
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_SCHEMES = ("s3://", "file://", "gs://", "gcs://", "abfs://", "az://", "memory://")


def _seconds(value: Any) -> Any:
    """Accept a duration as seconds (int) or ``"1d2h3m4s"`` (any subset, in that order)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 2h or a number of seconds")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if value.strip() and match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            return ((d * 24 + h) * 60 + m) * 60 + s
    raise ValueError(f"expected a duration such as 30m, 2h or a number of seconds, got {value!r}")


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


def _cron(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a cron expression such as '0 3 * * *' or '@daily', got {value!r}")
    text = value.strip()
    if text in _CRON_PRESETS:
        return text
    fields = text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(f"expected a 5-field cron expression such as '0 3 * * *' or '@daily', got {value!r}")
    from croniter import croniter  # what Airflow's cron timetables parse with

    if not croniter.is_valid(text):
        raise ValueError(f"expected a valid cron expression (minute hour day month weekday), got {value!r}")
    return text


Cron = Annotated[str, BeforeValidator(_cron)]


def _uri(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(_SCHEMES):
        raise ValueError(f"expected a URI starting with one of {', '.join(_SCHEMES)}, got {value!r}")
    return value


Uri = Annotated[str, BeforeValidator(_uri)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
ModelName = Annotated[str, AfterValidator(check_model_name)]
EntryPoint = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    """Where data comes from: a URI (prefix, file or glob), or a bucket with keys/prefix/glob."""

    uri: Uri | None = Field(
        default=None,
        description="A URI: a prefix (folder), one file or a glob; exactly one of uri and bucket",
    )
    bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$",
        description="An S3 bucket name, read with prefix and keys or glob; exactly one of uri and bucket",
    )
    prefix: str = Field(
        default="", description="Path under the uri or bucket that keys and glob are relative to"
    )
    keys: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Object keys to read (relative to the prefix); at most one of keys and glob",
    )
    glob: str | None = Field(
        default=None,
        description="Glob of object keys to read (relative to the prefix); at most one of keys and glob",
    )
    format: Literal["csv", "parquet", "jsonl"] | None = Field(
        default=None,
        description="File format; None: taken from each file's extension (.csv, .parquet, .jsonl, + .gz)",
    )
    aws_conn_id: str | None = Field(
        default=None, description="Airflow connection for this source; None: the pipeline's aws_conn_id"
    )
    null_values: list[str] | None = Field(
        default=None,
        description=(
            "CSV cells read as missing in every column, strings included. None: the empty cell, "
            "NA, N/A, n/a, NULL, null, NaN, nan, #N/A, #NA and the other Arrow/pandas defaults; "
            "[]: none (an empty cell stays an empty string)."
        ),
    )

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        if (self.uri is None) == (self.bucket is None):
            raise ValueError("expected exactly one of 'uri' or 'bucket'")
        if self.keys and self.glob:
            raise ValueError("expected at most one of 'keys' or 'glob'")
        return self

    @property
    def base_uri(self) -> str:
        """The folder (or object) the source watches: what its new-data asset stands for."""
        if self.uri is not None:
            base = self.uri
            if any(ch in base for ch in "*?["):
                base = base[: min(base.find(ch) for ch in "*?[" if ch in base)]
                base = base[: base.rfind("/") + 1]
            return _join(base, self.prefix) if self.prefix else base
        return _join(f"s3://{self.bucket}", self.prefix)

    @property
    def resolved(self) -> str | list[str]:
        """What the ingest operator reads: one URI (maybe a glob) or a list of object URIs."""
        base = self.uri if self.uri is not None else f"s3://{self.bucket}"
        if self.prefix:
            base = _join(base, self.prefix)
        if self.keys:
            return [_join(base, key) for key in self.keys]
        if self.glob:
            return _join(base, self.glob)
        return base


class Split(Strict):
    """How ingestion splits rows: by a seeded hash of a key column, randomly, or by time."""

    by: Literal["hash", "time", "random"] = Field(
        default="hash",
        description=(
            "hash: a seeded hash of the key column; random: by row position; time: by a timestamp column"
        ),
    )
    key: str | None = Field(
        default=None,
        description=(
            "Column whose seeded hash assigns a row to a split (by: hash); None: hash the whole row"
        ),
    )
    column: str | None = Field(default=None, description="Timestamp column of a time split (by: time)")
    seed: int = Field(
        default=0, description="Seed of the hash or random split; change it to draw other splits"
    )
    fractions: dict[str, float] | None = Field(
        default=None,
        description=(
            "Share of rows per split among train, validation, test (summing to 1); None: 0.8/0.1/0.1"
        ),
    )
    validation_from: str | int | float | None = Field(
        default=None,
        description="Time split: rows at or after this time go to validation (instead of fractions)",
    )
    test_from: str | int | float | None = Field(
        default=None, description="Time split: rows at or after this time go to test (instead of fractions)"
    )

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        unknown = sorted(set(value) - {"train", "validation", "test"})
        if unknown:
            raise ValueError(f"expected split names among train, validation, test, got {unknown}")
        if "train" not in value:
            raise ValueError("expected a 'train' fraction")
        if any(f <= 0 for f in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"expected positive fractions summing to 1, got {value}")
        return value

    @model_validator(mode="after")
    def _columns(self) -> Split:
        bounded = self.validation_from is not None or self.test_from is not None
        if self.by == "time" and not (self.column or self.key):
            raise ValueError("a time split needs 'column' (the timestamp column)")
        if bounded and self.by != "time":
            raise ValueError("validation_from/test_from only apply to a time split (by: time)")
        if bounded and self.fractions is not None:
            raise ValueError("a time split takes either fractions or validation_from/test_from, not both")
        return self

    @property
    def names(self) -> list[str]:
        """The splits ingestion produces, in the order of their meaning (never the YAML's order)."""
        if self.validation_from is not None or self.test_from is not None:
            return ["train", *(n for n in ("validation", "test") if getattr(self, f"{n}_from") is not None)]
        return [name for name in DEFAULT_FRACTIONS if name in (self.fractions or DEFAULT_FRACTIONS)]


class Data(Strict):
    """Training data: the source, its split and the ingestion chunk size."""

    source: Source
    split: Split = Field(default_factory=Split)
    chunk_rows: int = Field(
        default=DEFAULT_CHUNK_ROWS,
        gt=0,
        description="Rows read and written per chunk while ingesting (bounds the task's memory)",
    )


class Validation(Strict):
    """Data validation before training: a suite (file path or list of expectations) and the mode."""

    suite: str | list[dict[str, Any]] | None = Field(
        default=None,
        description="Great Expectations suite: the path or URI of a suite JSON, or a list of expectations",
    )
    builtin_checks: bool = Field(
        default=True,
        description="Run the built-in row-count, schema and null-rate checks (and the target's null share)",
    )
    mode: Literal["fail", "warn"] = Field(
        default="fail",
        description=(
            "fail: a failed check fails the run before training; warn: it is reported and the run goes on"
        ),
    )
    split: str | None = Field(default=None, description="Split to validate; None: all splits together")
    stream_above_mb: float | None = Field(
        default=1024.0,
        ge=0,
        description=(
            "Validate in record batches (bounded memory, the same verdicts) when the split's in-memory "
            "size exceeds this many MiB; 0: always stream; null: never"
        ),
    )
    batch_rows: int = Field(default=500_000, gt=0, description="Rows per record batch when streaming")


class Resources(Strict):
    """What one training task may use: CPU threads and GPUs per worker, and an Airflow pool."""

    cpus: int | None = Field(default=None, gt=0, description="CPU threads per worker process")
    gpus: int = Field(
        default=0, ge=0, description="GPUs per worker process; any GPU switches the process group to NCCL"
    )
    pool: str | None = Field(
        default=None, description="Airflow pool the training tasks run in; None: the default pool"
    )
    pool_slots: int = Field(default=1, gt=0, description="Pool slots one training task takes")
    queue: str | None = Field(
        default=None,
        description=(
            "Executor queue of the training tasks (Celery: a GPU worker runs `airflow celery worker "
            "--queues gpu`); None: 'gpu' when gpus > 0, else the default queue"
        ),
    )

    @property
    def resolved_queue(self) -> str | None:
        return self.queue or ("gpu" if self.gpus else None)


KUBERNETES_EXTRA = "pip install 'airflow-mlops-provider[kubernetes]'"


class KubernetesTraining(Strict):
    """Where ``backend: kubernetes`` runs training: a Kubeflow job on a cluster."""

    image: str = Field(
        min_length=1, description="Container image with this provider installed (and the entry point's code)"
    )
    namespace: str = Field(default="default", description="Namespace of the training jobs")
    kind: Literal["TrainJob", "PyTorchJob"] = Field(
        default="TrainJob",
        description="Kubeflow Trainer v2 TrainJob, or the Training Operator v1 PyTorchJob of older clusters",
    )
    runtime: str = Field(default="torch-distributed", description="ClusterTrainingRuntime a TrainJob runs on")
    kubernetes_conn_id: str = Field(
        default="kubernetes_default", description="Airflow connection of the cluster (cncf.kubernetes)"
    )
    poll_interval: Duration = Field(default=15, description="How often the triggerer reads the job's status")
    service_account: str | None = Field(default=None, description="Service account of the training pods")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the training pods must run on (GPU nodes, say)"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Plain environment variables of the pods (e.g. an in-cluster MLFLOW_TRACKING_URI); "
        "never credentials: use 'secret'",
    )
    secret: str | None = Field(
        default=None,
        description="Kubernetes Secret the pods read AWS_* and MLFLOW_TRACKING_* credentials from",
    )


class Training(Strict):
    """Training: a built-in trainer or an entry point, hyperparameters or a grid fanned out."""

    target: str = Field(description="Label column")
    task: Literal["classification", "regression"] = Field(
        description="What the model predicts; it decides the metrics the evaluation computes"
    )
    trainer: Literal["tabular"] = Field(
        default="tabular", description="built-in trainer (when no entry_point)"
    )
    entry_point: EntryPoint | None = Field(
        default=None, description="'package.module:function' to train with"
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Hyperparameters passed to the entry point, checked against its schema at parse time",
    )
    hyperparameters_schema: EntryPoint | None = Field(
        default=None,
        description="'package.module:Model', a pydantic model that checks a custom entry point's "
        "hyperparameters (the built-in trainer has its own)",
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description=(
            "Hyperparameter name to a list of values; every combination is trained (at most 64 points)"
        ),
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes per node (torchrun's nproc_per_node)"
    )
    nodes: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Nodes of one training job: that many cooperating node tasks per grid point (Airflow "
            "workers), meeting in a c10d rendezvous on node 0; the pool needs that many free slots"
        ),
    )
    rdzv_endpoint: str | None = Field(
        default=None,
        description="host:port of the c10d rendezvous, overriding node 0's own address (multi-node)",
    )
    join_timeout: Duration = Field(
        default=600,
        description="How long the node tasks of a job wait for each other before all of them fail",
    )
    backend: Literal["local", "nodes", "kubernetes"] | None = Field(
        default=None,
        description=(
            "Where training runs: local (torchrun in the task), nodes (one task per node on Airflow's "
            "workers) or kubernetes (a Kubeflow job); None: local for one node, nodes for more"
        ),
    )
    kubernetes: KubernetesTraining | None = Field(
        default=None, description="The cluster settings of backend: kubernetes"
    )
    resources: Resources = Field(default_factory=Resources)
    timeout: Duration = Field(
        default=3600, description="Limit of one training task (duration: seconds or '1d2h3m4s')"
    )
    retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Retries of a failed training task (it resumes from its last checkpoint)",
    )
    max_restarts: int = Field(
        default=0,
        ge=0,
        description="Restarts of the worker group inside one try (torchrun's --max-restarts)",
    )
    checkpoint_every: int = Field(
        default=1, ge=1, description="Epochs between checkpoints (the last epoch is always saved)"
    )
    seed: int = Field(default=0, description="Seed of weight initialisation and batch order")
    missing_target: Literal["drop", "fail"] = Field(
        default="drop", description="rows without a label: drop them (counted) or fail the run"
    )
    max_missing_target_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="validation fails when a larger share of rows has no label (with 'drop')",
    )
    experiment: str | None = Field(
        default=None, description="MLflow experiment of the training runs; None: mlops-<name>"
    )
    max_parallel: int | None = Field(default=None, ge=1, description="grid points trained at once")
    select_metric: str | None = Field(
        default=None,
        description="validation metric that picks the best grid point (val_log_loss, val_rmse...)",
    )

    @property
    def resolved_select_metric(self) -> str:
        return self.select_metric or ("val_log_loss" if self.task == "classification" else "val_rmse")

    @property
    def select_mode(self) -> Literal["max", "min"]:
        lower = ("loss", "rmse", "mae", "mse", "error")
        return "min" if self.resolved_select_metric.endswith(lower) else "max"

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"grid.{key}: expected a non-empty list of values")
        points = 1
        for values in value.values():
            points *= len(values)
        if points > MAX_GRID_POINTS:
            raise ValueError(f"expected at most {MAX_GRID_POINTS} grid points, got {points}")
        return value

    @model_validator(mode="after")
    def _entry(self) -> Training:
        overlap = sorted(set(self.grid) & set(self.hyperparameters))
        if overlap:
            raise ValueError(
                f"keys {overlap} appear in both 'hyperparameters' and 'grid'; expected one place"
            )
        self._check_backend()
        self._check_hyperparameters()
        return self

    @property
    def resolved_backend(self) -> str:
        return self.backend or ("nodes" if self.nodes > 1 else "local")

    def _check_backend(self) -> None:
        """The backend fits the nodes, has its settings, and (kubernetes) its optional extra."""
        backend = self.resolved_backend
        if backend == "local" and self.nodes > 1:
            raise ValueError(
                f"backend 'local' trains on one node, but nodes is {self.nodes}: set backend: nodes "
                "(one task per node on Airflow's workers) or backend: kubernetes, or nodes: 1"
            )
        if (backend == "kubernetes") != (self.kubernetes is not None):
            raise ValueError(
                "backend: kubernetes needs a 'kubernetes' section (with at least image), "
                "and only that backend takes one"
            )
        if backend == "kubernetes":
            import importlib.util

            for module in ("airflow.providers.cncf.kubernetes", "kubernetes", "kubernetes_asyncio"):
                try:
                    found = importlib.util.find_spec(module) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    raise ValueError(
                        f"backend: kubernetes needs the Kubernetes extra ({module} is not installed): "
                        f"{KUBERNETES_EXTRA}"
                    )

    def _check_hyperparameters(self) -> None:
        """Every grid point against the entry point's schema; errors name hyperparameters.x or grid.x."""
        try:
            schema = schema_for(self.resolved_entry_point, self.hyperparameters_schema)
        except ValueError as err:
            raise _nested([(["hyperparameters_schema"], str(err))]) from None
        if schema is None:
            return
        problems: list[tuple[list[str], str]] = []
        for point in self.grid_points():
            for loc, message in _problems(schema, point):
                section = "grid" if loc and loc[0] in self.grid else "hyperparameters"
                if (problem := ([section, *loc], message)) not in problems:
                    problems.append(problem)
        if problems:
            raise _nested(problems)

    @property
    def resolved_entry_point(self) -> str:
        return self.entry_point or DEFAULT_ENTRY_POINT

    def grid_points(self) -> list[dict[str, Any]]:
        """Hyperparameter sets to train: the base set merged with each point of the grid."""
        if not self.grid:
            return [dict(self.hyperparameters)]
        keys = list(self.grid)
        return [
            {**self.hyperparameters, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(self.grid[k] for k in keys))
        ]

    def job_arguments(self) -> dict[str, Any]:
        """The ``TrainingJob`` arguments this section fixes: its fields named like the job's, then
        the ones the YAML names otherwise (hyperparameters come per grid point)."""
        # ``backend`` of a job is its process group (gloo/nccl), not this section's engine
        names = {f.name for f in dataclasses.fields(TrainingJob)} - {"hyperparameters", "backend"}
        same = {name: getattr(self, name) for name in sorted(names & set(type(self).model_fields))}
        return {
            **same,
            "entry_point": self.resolved_entry_point,
            "nproc_per_node": self.workers,
            "nnodes": self.nodes,
            "backend": "nccl" if self.resources.gpus else None,
            "threads_per_proc": self.resources.cpus,
        }


class Evaluation(Strict):
    """Evaluation of the challenger against the champion on the same held-out split."""

    split: str = Field(
        default="test", description="Held-out split the challenger and the champion are both scored on"
    )
    metrics: list[str] | None = Field(
        default=None, description="Metrics to compute; None: every metric of the training task"
    )
    primary_metric: str | None = Field(
        default=None,
        description=(
            "Metric that ranks grid points and that the gate's gain applies to; "
            "None: the gate's, else roc_auc (classification) or rmse (regression)"
        ),
    )
    slices: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="Columns to compute metrics per value of: a name or {column, max_values, min_rows}",
    )


def _gate(value: Any) -> Any:
    """Validate the gate with the gate's own schema (one source of truth), naming sub-fields."""
    from airflow_mlops_provider.core.gate import GateConfig

    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of gate settings, got {value!r}")
    _check_with(GateConfig, {k: v for k, v in value.items() if k != "on_fail"})
    if value.get("on_fail", "skip") not in ("fail", "skip"):
        raise ValueError(f"on_fail: expected 'fail' or 'skip', got {value['on_fail']!r}")
    return value


def _drift(value: Any) -> Any:
    """Validate drift settings with the drift check's own schema, naming sub-fields."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of drift settings, got {value!r}")
    _check_with(DriftConfig, value)
    return value


def _check_with(model: type[BaseModel], value: dict[str, Any]) -> None:
    """Validate ``value`` with ``model``; errors keep their sub-path (``gate.thresholds.rmse: ...``)."""
    problems = _problems(model, value)
    if problems:
        raise _nested(problems)


def _problems(model: type[BaseModel], value: dict[str, Any]) -> list[tuple[list[str], str]]:
    """``(sub-path, message)`` for each error of ``value`` against ``model``; unknown keys get a hint."""
    import difflib

    from pydantic import ValidationError

    try:
        model.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                message = f"unknown key (expected one of: {', '.join(model.model_fields)}{hint})"
            else:
                message = err["msg"].removeprefix("Value error, ")
                if " got " not in message:
                    message += f", got {err.get('input')!r}"[:80]
            problems.append((loc, message))
        return problems
    return []


def _nested(problems: list[tuple[list[str], str]]) -> Exception:
    """An error the loader reports as one line per sub-path (see ``loader._describe``)."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("nested_config", "{summary}", {"summary": str(problems), "problems": problems})


GateSettings = Annotated[dict[str, Any], AfterValidator(_gate)]
DriftSettings = Annotated[dict[str, Any], AfterValidator(_drift)]


class Approval(Strict):
    """Human approval (Airflow HITL) before the champion alias moves."""

    enabled: bool = Field(
        default=False,
        description="Wait for a human (Airflow HITL) to approve before the champion alias moves",
    )
    timeout: Duration | None = Field(
        default=None,
        description=(
            "How long the approval waits for an answer (a timeout keeps the champion); None: no limit"
        ),
    )


def _approval(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class Window(Strict):
    """Which rows of a source belong to one monitoring run: those of its data interval, nothing older."""

    by: Literal["mtime", "partition", "column"] = Field(
        default="mtime",
        description=(
            "mtime: objects modified inside the run's data interval; partition: the objects under "
            "the templated 'partition' path; column: rows whose 'column' timestamp is inside the interval"
        ),
    )
    partition: str | None = Field(
        default=None,
        description=(
            "by: partition: path under the source rendered per run with Airflow templates, such as "
            "'dt={{ data_interval_start | ds }}/' or "
            "'hour={{ data_interval_start.strftime(\"%Y-%m-%dT%H\") }}/'"
        ),
    )
    column: str | None = Field(
        default=None, description="by: column: timestamp column filtered to [interval start, end)"
    )
    length: Duration | None = Field(
        default=None,
        description=(
            "Length of a window (duration); None: the monitoring schedule's period (1h without a "
            "schedule). A manual run covers the length up to the moment it was triggered."
        ),
    )

    @model_validator(mode="after")
    def _needs(self) -> Window:
        if self.by == "partition" and not self.partition:
            raise ValueError("a partition window needs 'partition' (a templated path such as 'dt={{ ds }}/')")
        if self.by == "column" and not self.column:
            raise ValueError("a column window needs 'column' (the timestamp column)")
        return self


class Labels(Strict):
    """Ground truth that arrives after the predictions: joined to them by an id column."""

    source: Source
    id_column: str = Field(
        default="id", description="Column that identifies a row in the live data and in the labels"
    )
    target: str | None = Field(
        default=None, description="Label column in the labels source; None: training.target"
    )
    window: Window = Field(
        default_factory=Window,
        description="Which labels arrived in a run's interval (the rules of monitoring.window)",
    )
    max_delay: Duration = Field(
        default=7 * 24 * 3600,
        description=(
            "How long after its window a label may still arrive and be joined (duration); "
            "windows older than this are final"
        ),
    )


def _performance(value: Any) -> Any:
    """Validate the performance settings with the monitoring check's own schema, naming sub-fields."""
    from airflow_mlops_provider.core.monitoring.config import PerformanceConfig

    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of performance settings, got {value!r}")
    _check_with(PerformanceConfig, value)
    return value


PerformanceSettings = Annotated[dict[str, Any], AfterValidator(_performance)]
_ROLLOUT_DURATIONS = ("hold", "max_step_wait", "poll")


def _rollout(value: Any) -> Any:
    """Validate the rollout settings with the rollout's own schema; durations may be written '5m'."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of rollout settings, got {value!r}")
    value = {k: _seconds(v) if k in _ROLLOUT_DURATIONS else v for k, v in value.items()}
    _check_with(RolloutConfig, value)
    return value


RolloutSettings = Annotated[dict[str, Any], AfterValidator(_rollout)]


class Monitoring(Strict):
    """The monitoring DAG: its schedule, the live-data window, drift and performance."""

    schedule: Cron | None = Field(
        default="@hourly",
        description=(
            "Cron schedule of monitor_<name> (one window per data interval); None: manual runs only"
        ),
    )
    source: Source
    score: bool = Field(
        default=True, description="Score each window with the champion, so prediction drift is checked too"
    )
    window: Window = Field(
        default_factory=Window, description="Which live rows a run reads: those of its data interval"
    )
    drift: DriftSettings = Field(default_factory=dict, description="core.drift.config.DriftConfig fields")
    labels: Labels | None = Field(
        default=None, description="Delayed ground truth, for realized performance per window"
    )
    performance: PerformanceSettings = Field(
        default_factory=dict, description="core.monitoring.config.PerformanceConfig fields"
    )
    timeout: Duration = Field(
        default=1800, description="Limit of each monitoring task (duration: seconds or '1d2h3m4s')"
    )

    @property
    def window_seconds(self) -> float:
        """Length of a window: configured, else the schedule's period, else an hour."""
        if self.window.length:
            return self.window.length
        return cron_period(self.schedule) if self.schedule else 3600.0


class Sqs(Strict):
    """Event-driven ingestion: S3 event notifications delivered to an SQS queue."""

    queue_url: str = Field(
        pattern=r"^https?://",
        description="URL of the SQS queue that receives the source's S3 event notifications",
    )
    aws_conn_id: str | None = Field(
        default=None, description="Airflow connection for SQS; None: the pipeline's aws_conn_id"
    )
    waiter_delay: int = Field(default=30, ge=1, description="Seconds between polls of the queue")


class NewData(Strict):
    """The new-data trigger: the pipeline's new-data asset, optionally watched through SQS."""

    enabled: bool = Field(
        default=True, description="Retrain when the pipeline's new-data asset receives an event"
    )
    sqs: Sqs | None = Field(
        default=None,
        description="Watch the source through SQS so new objects post the new-data event themselves",
    )


def _new_data(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class Triggers(Strict):
    """What starts a retrain: a cron schedule, new data, drift; any combination (OR)."""

    schedule: Cron | None = Field(
        default=None, description="Cron schedule of retrain_<name>; None: no clock trigger"
    )
    new_data: Annotated[NewData, BeforeValidator(_new_data)] = Field(
        default_factory=lambda: NewData(enabled=False)
    )
    drift: bool = Field(
        default=False, description="Retrain when monitoring finds drift (needs a monitoring section)"
    )
    performance: bool = Field(
        default=False,
        description=(
            "Retrain when monitoring finds the champion's performance degraded (needs monitoring.labels, "
            "or monitoring.performance.trigger_on_estimate)"
        ),
    )


class Notifier(Strict):
    """Where a notification goes: the task log, an email, a webhook (JSON POST) or a callable."""

    type: Literal["log", "email", "webhook", "callable"] = Field(
        description=(
            "log: the task log; email: SMTP mail to 'to'; webhook: JSON POST to 'url'; callable: a function"
        )
    )
    to: list[str] | None = Field(default=None, description="Email recipients (type: email)")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Webhook URL that receives a JSON POST (type: webhook)",
    )
    callable: EntryPoint | None = Field(
        default=None, description="'package.module:function' called with the message (type: callable)"
    )
    smtp_conn_id: str = Field(
        default="smtp_default", description="Airflow SMTP connection for email notifiers"
    )

    @model_validator(mode="after")
    def _target(self) -> Notifier:
        needed = {"email": "to", "webhook": "url", "callable": "callable"}.get(self.type)
        if needed and not getattr(self, needed):
            raise ValueError(f"the {self.type} notifier needs '{needed}'")
        return self


class Notifications(Strict):
    on_failure: list[Notifier] = Field(
        default_factory=list, description="Notifiers called when a run of the pipeline's DAGs fails"
    )
    on_promotion: list[Notifier] = Field(
        default_factory=list, description="Notifiers called when a model is promoted to champion"
    )


class TaskDefaults(Strict):
    """Defaults for every generated task (training has its own timeout and retries)."""

    retries: int = Field(default=2, ge=0, le=10, description="Retries of a failed task")
    retry_delay: Duration = Field(
        default=60,
        description="Delay before the first retry (duration; it grows exponentially up to 10 times this)",
    )
    timeout: Duration = Field(
        default=1800, description="Execution timeout of each task (duration: seconds or '1d2h3m4s')"
    )


class PipelineConfig(Strict):
    """One pipeline: produces ``retrain_<name>``, ``monitor_<name>`` and ``rollback_<name>``."""

    name: Name = Field(
        description=(
            "Pipeline name (lowercase letters, digits, _): the DAGs are retrain_, "
            "monitor_ and rollback_<name>"
        )
    )
    description: str = Field(default="", description="Free text shown at the top of the generated DAGs' docs")
    owner: str = Field(default="mlops", description="Owner of the generated DAGs' tasks")
    tags: list[str] = Field(
        default_factory=list,
        description=(
            "Extra tags of the generated DAGs (mlops, the DAG's kind and pipeline:<name> are always set)"
        ),
    )
    artifact_root: Uri = Field(
        description=(
            "Where snapshots, reports and checkpoints live (under <root>/<name>/): s3://, file://..."
        )
    )
    model_name: ModelName | None = Field(
        default=None, description="Registered model name in MLflow; None: the pipeline name"
    )
    aws_conn_id: str | None = Field(
        default="aws_default", description="Airflow AWS connection for S3 (sources and the artifact root)"
    )
    mlflow_conn_id: str = Field(
        default="mlflow_default",
        description="Airflow connection of the MLflow tracking server (connection type mlflow)",
    )
    data: Data
    validation: Validation = Field(default_factory=Validation)
    training: Training
    evaluation: Evaluation = Field(default_factory=Evaluation)
    gate: GateSettings = Field(default_factory=dict, description="core.gate.GateConfig fields + on_fail")
    approval: Annotated[Approval, BeforeValidator(_approval)] = Field(default_factory=Approval)
    rollout: RolloutSettings = Field(
        default_factory=dict,
        description=(
            "How a passing challenger reaches traffic (core.rollout.config.RolloutConfig fields): "
            "direct, or canary/shadow steps guarded by the prediction service's metrics"
        ),
    )
    skip_unchanged: bool = Field(
        default=True,
        description=(
            "Skip training and promotion when the snapshot and training config equal the champion's"
        ),
    )
    monitoring: Monitoring | None = None
    triggers: Triggers = Field(default_factory=Triggers)
    notifications: Notifications = Field(
        default_factory=Notifications, description="Who hears about failures and promotions"
    )
    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    # Values the loader expanded from the environment, by variable (see factory.env).
    _env: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        names = self.data.split.names
        if self.evaluation.split not in names:
            raise ValueError(
                f"evaluation.split {self.evaluation.split!r} is not produced by data.split "
                f"(expected one of {names})"
            )
        from airflow_mlops_provider.core.gate import TASK_METRICS

        allowed = TASK_METRICS[self.training.task]
        named = [*(self.evaluation.metrics or []), self.primary_metric]
        named += [
            m
            for key in ("thresholds", "max_regression", "slice_max_regression")
            for m in self.gate.get(key, {})
        ]
        wrong = sorted({m for m in named if m not in allowed})
        if wrong:
            raise ValueError(
                f"metric(s) {wrong} are not computed for a {self.training.task} task "
                f"(expected among {list(allowed)})"
            )
        if self.triggers.drift and self.monitoring is None:
            raise ValueError("triggers.drift needs a 'monitoring' section (the drift asset comes from it)")
        self._check_performance(allowed)
        return self

    def _check_performance(self, allowed: tuple[str, ...]) -> None:
        monitoring = self.monitoring
        if self.triggers.performance:
            measured = monitoring is not None and (
                monitoring.labels is not None or monitoring.performance.get("trigger_on_estimate")
            )
            if not measured:
                raise ValueError(
                    "triggers.performance needs monitoring.labels (or monitoring.performance."
                    "trigger_on_estimate: true): the performance asset comes from them"
                )
        if monitoring is None:
            return
        named = [monitoring.performance.get("metric"), *(monitoring.performance.get("metrics") or [])]
        wrong = sorted({m for m in named if m is not None and m not in allowed})
        if wrong:
            raise ValueError(
                f"monitoring.performance metric(s) {wrong} are not computed for a {self.training.task} "
                f"task (expected among {list(allowed)})"
            )
        if monitoring.performance and not monitoring.score:
            raise ValueError("monitoring.performance needs monitoring.score: true (it judges predictions)")

    @property
    def registered_model_name(self) -> str:
        return self.model_name or self.name

    @property
    def experiment_name(self) -> str:
        return self.training.experiment or f"mlops-{self.name}"

    @property
    def primary_metric(self) -> str:
        """The metric that ranks grid points and that the gate's gain applies to."""
        from airflow_mlops_provider.core.gate import DEFAULT_PRIMARY

        return (
            self.evaluation.primary_metric
            or self.gate.get("primary_metric")
            or DEFAULT_PRIMARY[self.training.task]
        )

    def gate_settings(self) -> dict[str, Any]:
        """The gate dict handed to GateOperator (primary metric filled in, ``on_fail`` removed)."""
        gate = {k: v for k, v in self.gate.items() if k != "on_fail"}
        gate.setdefault("primary_metric", self.primary_metric)
        gate.setdefault("require_approval", self.approval.enabled)
        return gate

    def builtin_checks(self) -> dict[str, Any] | bool:
        """The validation's builtin checks, with the share of unlabelled rows training may drop."""
        if not self.validation.builtin_checks:
            return False
        training = self.training
        share = 0.0 if training.missing_target == "fail" else training.max_missing_target_share
        return {"target": training.target, "max_target_null_fraction": share}

    def fingerprint(self) -> str:
        """Short hash of the whole config (shown in the DAG docs, changes with any edit)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def plan(self) -> PipelinePlan:
        """What the DAG builder reads of this config, every derived value resolved.

        Built from the config as JSON, as a cached plan is, so both are equal and a cached plan
        builds the DAGs without the schema (see :mod:`airflow_mlops_provider.factory.plan`).
        """
        plan = self.model_dump(mode="json")
        plan.update(
            registered_model_name=self.registered_model_name,
            experiment_name=self.experiment_name,
            gate=self.gate_settings(),
            gate_on_fail=self.gate.get("on_fail", "skip"),
            fingerprint=self.fingerprint(),
            env=dict(self._env),
        )
        _source_plan(plan["data"]["source"], self.data.source)
        rollout = parse_rollout(self.rollout)
        plan.update(rollout=rollout.model_dump(mode="json"), rollout_s=rollout.longest_s)
        split = self.data.split
        plan["data"]["split"].update(
            names=split.names, options=split.model_dump(mode="json", exclude_none=True)
        )
        plan["validation"]["builtin_checks"] = self.builtin_checks()
        if self.monitoring is not None:
            _monitoring_plan(plan["monitoring"], self.monitoring, self)
        training = self.training
        plan["training"].update(
            job={**training.job_arguments(), "experiment_name": self.experiment_name},
            grid_points=training.grid_points(),
            pool=training.resources.pool,
            pool_slots=training.resources.pool_slots,
            engine=training.resolved_backend,
            queue=training.resources.resolved_queue,
            gpus=training.resources.gpus,
            select_metric=training.resolved_select_metric,
            select_mode=training.select_mode,
        )
        return PipelinePlan.from_json(plan)


def _monitoring_plan(plan: dict[str, Any], monitoring: Monitoring, config: PipelineConfig) -> None:
    """Resolve the monitoring section: windowed sources, window length, performance settings."""
    _source_plan(plan["source"], monitoring.source)
    plan["window"]["length"] = monitoring.window_seconds
    plan["windowed_source"] = windowed(monitoring.source, monitoring.window)
    performance = dict(monitoring.performance)
    performance.setdefault("metric", config.primary_metric)
    performance.setdefault("metrics", config.evaluation.metrics)
    measured = monitoring.labels is not None or bool(monitoring.performance)
    plan["performance"] = performance if measured else None
    labels = monitoring.labels
    if labels is not None:
        _source_plan(plan["labels"]["source"], labels.source)
        plan["labels"]["target"] = labels.target or config.training.target
        plan["labels"]["window"]["length"] = monitoring.window_seconds
        plan["labels"]["windowed_source"] = windowed(labels.source, labels.window)


def windowed(source: Source, window: Window) -> str | list[str]:
    """What a windowed ingest reads: the source, or for a partition window the templated path under it
    (with the source's glob applied inside the partition)."""
    if window.by != "partition" or window.partition is None:
        return source.resolved
    base = _join(source.base_uri, window.partition)
    if source.keys:
        return [_join(base, key) for key in source.keys]
    return _join(base, source.glob) if source.glob else base.rstrip("/") + "/"


def cron_period(expression: str) -> float:
    """Seconds between two consecutive fire times of a cron expression (from a fixed base time).

    Irregular schedules (weekdays only) have several periods: set ``monitoring.window.length``.
    """
    from datetime import datetime

    from croniter import croniter

    times = croniter(expression, datetime(2025, 1, 6))  # a Monday, 00:00
    first: datetime = times.get_next(datetime)
    second: datetime = times.get_next(datetime)
    return (second - first).total_seconds()


def _source_plan(plan: dict[str, Any], source: Source) -> None:
    plan["resolved"] = source.resolved
    plan["base_uri"] = source.base_uri


def _join(base: str, part: str) -> str:
    return base.rstrip("/") + "/" + part.lstrip("/")
