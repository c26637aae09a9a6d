"""Pipeline plans: what the DAG builder needs of a validated config, cached as JSON by content.

The dag-processor re-imports the loader file every few seconds, in a fresh process each time.
Validating a config with pydantic costs tens of milliseconds in such a process, almost all of
it building the schema's classes and validators, and the YAML has usually not changed since
the last parse. So a config is validated once per content: the result, a :class:`PipelinePlan`
(read-only sections holding the values the builder reads, derived ones resolved, see
``PipelineConfig.plan``), is stored as JSON under a key made of the YAML bytes, the
environment variables it may expand (see :mod:`~airflow_mlops_provider.factory.env`), and the
provider's schema code. The next parse of the same file reads that JSON and builds the DAGs
without importing the schema (or pydantic) at all. Broken configs are never cached: they fail
every parse, and neither are plans that expanded a variable whose name looks secret, so such a
value never lands on disk.

Cache folder: ``$MLOPS_PLAN_CACHE``, else ``$AIRFLOW_HOME/.cache/airflow-mlops-provider/plans``
(``MLOPS_PLAN_CACHE=off`` disables it). It is created private (0700) and a folder that is not
owned by this user or is writable by others is not used: a plan decides what code the
DAGs run.
"""

# No ``from __future__ import annotations`` here: the field types stay objects, so a cached plan
# is rebuilt from its JSON by reading the sections' annotations, without evaluating any.

import contextlib
import hashlib
import inspect
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, dataclass_transform, get_args

from airflow_mlops_provider import __version__
from airflow_mlops_provider.factory import env as env_rules

PLAN_VERSION = 7
_ENV_REF = re.compile(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_HERE = Path(__file__).resolve().parent
_CORE = _HERE.parent / "core"
# Code whose change must invalidate cached plans: the schema, its loader, the schemas it borrows.
_SCHEMA_FILES = (
    _HERE / "config.py",
    _HERE / "loader.py",
    _HERE / "plan.py",
    _HERE / "env.py",
    _CORE / "gate.py",
    _CORE / "names.py",
    _CORE / "drift" / "config.py",
    _CORE / "monitoring" / "config.py",
    _CORE / "rollout" / "config.py",
    _CORE / "training" / "hyperparameters.py",
    _CORE / "training" / "job.py",
)


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Section:
    """Base of the plan's sections: immutable records whose fields are their class's annotations.

    Type checkers treat a section as a frozen, keyword-only dataclass. It is not built with
    ``@dataclass``, which compiles each class's methods when the module is imported: about a
    millisecond a class, paid on every parse by the dag-processor (more than reading a plan).
    """

    _fields: ClassVar[tuple[tuple[str, "type[Section] | None"], ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        annotations = inspect.get_annotations(cls)
        cls._fields = tuple((name, _section_type(kind)) for name, kind in annotations.items())

    def __init__(self, **values: Any) -> None:
        names = [name for name, _ in self._fields]
        if set(values) != set(names):
            raise TypeError(f"{type(self).__name__} takes exactly the fields {names}, got {sorted(values)}")
        for name in names:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: a plan is built once from the config")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: a plan is built once from the config")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # equal by value, and values may be lists

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._values().items())
        return f"{type(self).__name__}({fields})"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The section from its JSON object, nested sections included; other keys are ignored."""
        values = {}
        for name, section in cls._fields:
            value = data[name]  # a missing key raises KeyError
            values[name] = value if section is None or value is None else section.from_json(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The section as a JSON object (what :meth:`from_json` reads)."""
        return {
            name: value.to_json() if isinstance(value, Section) else value
            for name, value in self._values().items()
        }

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _ in self._fields}


def _section_type(kind: Any) -> "type[Section] | None":
    """The section class a field holds (maybe optional), or None for a plain JSON value."""
    found = [k for k in (kind, *get_args(kind)) if isinstance(k, type) and issubclass(k, Section)]
    return found[0] if found else None


class SourcePlan(Section):
    """A data source as the ingest task reads it and as its new-data asset stands for it."""

    resolved: str | list[str]  # one URI (maybe a glob) or a list of object URIs
    base_uri: str  # the folder (or object) the source watches
    format: str | None
    aws_conn_id: str | None
    null_values: list[str] | None


class SplitPlan(Section):
    by: str
    names: list[str]  # the splits ingestion produces, in the order of their meaning
    options: dict[str, Any]  # the ingest operator's ``split`` argument


class DataPlan(Section):
    source: SourcePlan
    split: SplitPlan
    chunk_rows: int


class ValidationPlan(Section):
    suite: str | list[dict[str, Any]] | None
    split: str | None
    mode: str
    builtin_checks: dict[str, Any] | bool  # resolved: the target and its allowed share of missing labels
    stream_above_mb: float | None
    batch_rows: int


class TrainingPlan(Section):
    """The training tasks: one ``TrainingJob`` per grid point, with ``job`` as its arguments."""

    job: dict[str, Any]  # TrainingJob arguments the config fixes (all but the per-run ones)
    grid_points: list[dict[str, Any]]  # the hyperparameters of each job
    pool: str | None
    pool_slots: int
    engine: str  # resolved backend: local, nodes or kubernetes (the job's ``backend`` is gloo/nccl)
    kubernetes: dict[str, Any] | None  # KubernetesTraining fields (durations in seconds) of kubernetes
    queue: str | None  # resolved: the executor queue of the training tasks
    gpus: int  # per worker process
    timeout: float
    retries: int
    max_parallel: int | None
    select_metric: str  # resolved: the validation metric that picks the best grid point
    select_mode: str


class EvaluationPlan(Section):
    split: str
    metrics: list[str] | None
    slices: list[str | dict[str, Any]]


class ApprovalPlan(Section):
    enabled: bool
    timeout: float | None


class WindowPlan(Section):
    by: str  # mtime, partition or column
    partition: str | None  # templated path under the source (by: partition)
    column: str | None  # timestamp column (by: column)
    length: float  # resolved: seconds of one window


class LabelsPlan(Section):
    source: SourcePlan
    windowed_source: str | list[str]  # resolved: what a windowed ingest of the labels reads
    id_column: str
    target: str  # resolved: the labels' target column
    window: WindowPlan
    max_delay: float


class MonitoringPlan(Section):
    schedule: str | None
    source: SourcePlan
    windowed_source: str | list[str]  # resolved: what a windowed ingest of the live data reads
    score: bool
    window: WindowPlan
    drift: dict[str, Any]
    labels: LabelsPlan | None
    performance: dict[str, Any] | None  # PerformanceConfig fields (metric resolved); None: not measured
    timeout: float


class SqsPlan(Section):
    queue_url: str
    aws_conn_id: str | None
    waiter_delay: int


class NewDataPlan(Section):
    enabled: bool
    sqs: SqsPlan | None


class TriggersPlan(Section):
    schedule: str | None
    new_data: NewDataPlan
    drift: bool
    performance: bool


class NotificationsPlan(Section):
    on_failure: list[dict[str, Any]]  # Notifier fields, validated again when one fires
    on_promotion: list[dict[str, Any]]


class TaskDefaultsPlan(Section):
    retries: int
    retry_delay: float
    timeout: float


class PipelinePlan(Section):
    """One validated pipeline as the builder reads it: plain values, every derived one resolved."""

    name: str
    description: str
    owner: str
    tags: list[str]
    artifact_root: str
    registered_model_name: str
    experiment_name: str
    aws_conn_id: str | None
    mlflow_conn_id: str
    fingerprint: str  # short hash of the whole config
    env: dict[str, str]  # values expanded from the environment, by variable (see factory.env)
    data: DataPlan
    validation: ValidationPlan
    training: TrainingPlan
    evaluation: EvaluationPlan
    gate: dict[str, Any]  # GateOperator's settings: primary metric filled in, ``on_fail`` removed
    gate_on_fail: str
    approval: ApprovalPlan
    rollout: dict[str, Any]  # resolved: every RolloutConfig field, durations in seconds
    rollout_s: float  # resolved: the longest the rollout may take (every step waiting its longest)
    monitoring: MonitoringPlan | None
    triggers: TriggersPlan
    notifications: NotificationsPlan
    defaults: TaskDefaultsPlan


def cache_dir() -> Path | None:
    """The plan cache folder, created if needed; None when disabled or not safe to use."""
    setting = os.environ.get("MLOPS_PLAN_CACHE")
    if setting and setting.lower() in ("off", "0", "false", "none"):
        return None
    if setting:
        folder = Path(setting)
    else:
        home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
        folder = home / ".cache" / "airflow-mlops-provider" / "plans"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return folder


def plan_key(raw: bytes, environ: Mapping[str, str] | None = None) -> str:
    """Cache key of one config file's content in this environment and provider version."""
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256(raw)
    for name in sorted({m.decode() for m in _ENV_REF.findall(raw)}):
        if not env_rules.allowed(name, environ):  # a config error; its value must not matter
            digest.update(f"\0{name}\2".encode())
            continue
        value = environ.get(name)
        digest.update(f"\0{name}={'' if value is None else value}\1{value is None}".encode())
    digest.update(f"\0{__version__}\0{PLAN_VERSION}\0{_schema_stamp()}".encode())
    return digest.hexdigest()


def load_plan(path: str | os.PathLike[str]) -> PipelinePlan:
    """The plan of one config file: from the cache, or validated now (raises ``ConfigError``)."""
    path = Path(path)
    raw = path.read_bytes()
    folder = cache_dir()
    key = plan_key(raw)
    cached = folder / f"{key}.json" if folder else None
    if cached is not None:
        try:
            return PipelinePlan.from_json(json.loads(cached.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from airflow_mlops_provider.factory.loader import load_pipeline

    plan = load_pipeline(path).plan()
    if cached is not None and not any(map(env_rules.looks_secret, plan.env)):
        _write_atomic(cached, json.dumps(plan.to_json(), sort_keys=True).encode())
    return plan


def _write_atomic(target: Path, data: bytes) -> None:
    """Publish the plan with a rename, so readers see a whole file or none (failures cost only speed)."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".plan-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _schema_stamp() -> str:
    parts = []
    for file in _SCHEMA_FILES:
        try:
            info = file.stat()
            parts.append(f"{file.name}:{info.st_mtime_ns}:{info.st_size}")
        except OSError:
            parts.append(f"{file.name}:missing")
    return ",".join(parts)
