"""Distributed training with torchrun, tracked in MLflow, and picking the best of a mapped search.

Parse time stays light: torch, mlflow and the launcher are imported inside ``execute()``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops_provider.links.mlflow import MlflowRunLink, run_url

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_ENTRY_POINT = "airflow_mlops_provider.core.training.tabular:train"


class TorchrunTrainOperator(BaseOperator):
    """Train a model on a snapshot with ``torchrun`` (PyTorch DDP) and log it to MLflow.

    The task launches ``python -m torch.distributed.run`` in a process group of its own and
    streams the workers' output into the task log. ``entry_point`` (``"package.module:fn"``)
    receives a :class:`~airflow_mlops_provider.core.training.context.TrainingContext` and returns
    the model; the default is the built-in tabular MLP trainer. Rank 0 logs per-epoch metrics
    and the model (with signature and input example) to the MLflow run the task created first;
    the run id comes back through XCom::

        {"run_id", "experiment_id", "model_uri": "runs:/<run_id>/model", "metrics": {...},
         "params": {...}, "snapshot_sha256", "training_config_hash", "checkpoint_dir"}

    Mappable: ``TorchrunTrainOperator.partial(...).expand(hyperparameters=[...])`` runs a grid
    search; :class:`SelectBestRunOperator` picks the winner. ``execution_timeout`` and
    ``on_kill`` stop torchrun and every worker (SIGTERM, SIGKILL after 3 s). With
    ``max_restarts > 0`` a failed worker group is restarted and resumes from the latest
    checkpoint (written every ``checkpoint_every`` epochs under
    ``<artifact_root>/<pipeline>/checkpoints/<run_id>/``).

    :param snapshot: training snapshot reference (``{"uri", "sha256", ...}``, usually the ingest
        task's XCom); it must have a ``train`` split, and ``validation`` is used for metrics.
    :param target: target column.
    :param task: ``"classification"`` or ``"regression"``.
    :param hyperparameters: passed to the training function (built-in trainer: ``epochs``,
        ``batch_size``, ``lr``, ``weight_decay``, ``hidden``, ``dropout``, ``feature_columns``,
        ``categorical_columns``, ``max_categories``).
    :param nproc_per_node: worker processes on this machine.
    :param nnodes: machines; more than one needs ``rdzv_endpoint`` and ``rdzv_id``.
    :param max_restarts: torchrun worker-group restarts after a failure.
    :param backend: ``"gloo"`` or ``"nccl"``; default: NCCL when GPUs are visible, else gloo.
    :param threads_per_proc: intra-op threads per worker (default: cores / nproc_per_node).
    :param experiment_name: MLflow experiment (default: ``pipeline``).
    """

    template_fields: Sequence[str] = (
        "snapshot",
        "target",
        "task",
        "entry_point",
        "hyperparameters",
        "experiment_name",
        "artifact_root",
        "pipeline",
        "rdzv_endpoint",
        "rdzv_id",
    )
    template_fields_renderers = {"hyperparameters": "json", "snapshot": "json"}
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#fde2c8"

    def __init__(
        self,
        *,
        snapshot: Any,
        target: str,
        artifact_root: str,
        pipeline: str,
        task: str = "classification",
        entry_point: str = DEFAULT_ENTRY_POINT,
        hyperparameters: Mapping[str, Any] | None = None,
        nproc_per_node: int = 1,
        nnodes: int = 1,
        rdzv_endpoint: str | None = None,
        rdzv_id: str | None = None,
        max_restarts: int = 0,
        backend: str | None = None,
        threads_per_proc: int | None = None,
        checkpoint_every: int = 1,
        experiment_name: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        aws_conn_id: str | None = "aws_default",
        seed: int = 0,
        missing_target: str = "drop",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.missing_target = missing_target
        self.snapshot = snapshot
        self.target = target
        self.task = task
        self.entry_point = entry_point
        self.hyperparameters = hyperparameters if hyperparameters is not None else {}
        self.nproc_per_node = nproc_per_node
        self.nnodes = nnodes
        self.rdzv_endpoint = rdzv_endpoint
        self.rdzv_id = rdzv_id
        self.max_restarts = max_restarts
        self.backend = backend
        self.threads_per_proc = threads_per_proc
        self.checkpoint_every = checkpoint_every
        self.experiment_name = experiment_name
        self.artifact_root = artifact_root
        self.pipeline = pipeline
        self.mlflow_conn_id = mlflow_conn_id
        self.aws_conn_id = aws_conn_id
        self.seed = seed
        self._launcher: Any = None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops_provider.core.training.launcher import TorchrunLauncher, TrainingJob
        from airflow_mlops_provider.hooks.mlflow import MlflowHook
        from airflow_mlops_provider.operators.storage import storage_options

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
        job = TrainingJob(
            snapshot=_as_dict(self.snapshot, "snapshot"),
            target=self.target,
            task=self.task,
            entry_point=self.entry_point,
            hyperparameters=_as_dict(self.hyperparameters, "hyperparameters"),
            artifact_root=self.artifact_root,
            pipeline=self.pipeline,
            experiment_name=self.experiment_name,
            nproc_per_node=int(self.nproc_per_node),
            nnodes=int(self.nnodes),
            rdzv_endpoint=self.rdzv_endpoint,
            rdzv_id=self.rdzv_id,
            max_restarts=int(self.max_restarts),
            backend=self.backend,
            threads_per_proc=self.threads_per_proc,
            checkpoint_every=int(self.checkpoint_every),
            seed=int(self.seed),
            missing_target=self.missing_target,
            run_name=f"{ti.dag_id}.{ti.task_id}{suffix}",
            run_tags={
                "airflow.dag_id": ti.dag_id,
                "airflow.task_id": ti.task_id,
                "airflow.run_id": ti.run_id,
                "airflow.map_index": str(map_index),
            },
        )
        try:
            job.validate()
        except ValueError as err:  # a bad name or option: retrying cannot fix it
            raise AirflowFailException(str(err)) from err
        hook = MlflowHook(self.mlflow_conn_id)
        self._launcher = TorchrunLauncher(
            job, hook.settings, storage_options(self.artifact_root, self.aws_conn_id), log=self.log.info
        )
        result = self._launcher.run()
        result["run_url"] = run_url(hook.settings.browser_url, result["experiment_id"], result["run_id"])
        MlflowRunLink.persist(context, result["run_url"])
        self.log.info("Trained %s: %s", result["model_uri"], json.dumps(result["metrics"], sort_keys=True))
        return result

    def on_kill(self) -> None:
        """Stop torchrun and all its workers: SIGTERM to the group, SIGKILL within ~3 s."""
        if self._launcher is not None:
            self._launcher.terminate("the task was killed")


class SelectBestRunOperator(BaseOperator):
    """Pick the best of several training results (e.g. a mapped :class:`TorchrunTrainOperator`).

    Returns the winning result dict unchanged. Results whose ``metrics[metric]`` is missing or
    not finite are skipped; when none is left the task fails and names the metric.
    """

    template_fields: Sequence[str] = ("results", "metric", "mode")

    def __init__(self, *, results: Any, metric: str, mode: str = "max", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results
        self.metric = metric
        self.mode = mode

    def execute(self, context: Context) -> dict[str, Any]:
        # A mapped task's output arrives as a lazy sequence: a slice reads it in one request, where
        # iterating asks for the item past the end and Airflow logs that miss as "XCom not found".
        results = self.results[:] if isinstance(self.results, Sequence) else self.results
        best = select_best(results, self.metric, self.mode)
        self.log.info("Best run %s with %s=%s", best["run_id"], self.metric, best["metrics"][self.metric])
        MlflowRunLink.persist(context, best.get("run_url"))
        return best


def select_best(results: Iterable[Mapping[str, Any]], metric: str, mode: str = "max") -> dict[str, Any]:
    """The result with the best finite ``metrics[metric]`` (``mode`` ``"max"`` or ``"min"``)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    candidates = [dict(r) for r in results if r]
    scored = [
        (float(r["metrics"][metric]), i, r)
        for i, r in enumerate(candidates)
        if isinstance(r.get("metrics"), Mapping)
        and isinstance(r["metrics"].get(metric), int | float)
        and math.isfinite(r["metrics"][metric])
    ]
    if not scored:
        seen = sorted({k for r in candidates for k in (r.get("metrics") or {})})
        raise ValueError(
            f"No training result has a finite metric {metric!r} "
            f"({len(candidates)} results; metrics seen: {seen})"
        )
    pick = max if mode == "max" else min
    # Ties go to the earliest result (lowest map index), so the choice is stable across retries.
    return pick(scored, key=lambda item: (item[0], -item[1]) if mode == "max" else (item[0], item[1]))[2]


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        text = value.strip()
        if name == "snapshot" and not text.startswith("{"):
            return {"uri": text}
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{name} must be a dict (or its JSON), got {value[:200]!r}") from err
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, not {type(value).__name__}")
    return dict(value)
