"""Distributed training with torchrun, tracked in MLflow, and picking the best of a mapped search.

Parse time stays light: torch, mlflow and the launcher are imported inside ``execute()``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops_provider.core.names import DEFAULT_ENTRY_POINT
from airflow_mlops_provider.links.mlflow import MlflowRunLink, run_url
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops_provider.core.lineage import Lineage
    from airflow_mlops_provider.core.payloads import TrainingResult
    from airflow_mlops_provider.core.tracking import TrackingSettings
    from airflow_mlops_provider.core.training.job import TrainingJob

# TrainingJob fields the operator does not take as arguments: it names, tags and keys the run itself.
_RUN_FIELDS = ("run_name", "run_tags", "attempt_key")


class TrainModelOperator(MlopsBaseOperator):
    """Train a model on a snapshot with ``torchrun`` (PyTorch DDP) and log it to MLflow.

    The task launches ``python -m torch.distributed.run`` in a process group of its own and
    streams the workers' output into the task log. ``entry_point`` (``"package.module:fn"``)
    receives a :class:`~airflow_mlops_provider.core.training.context.TrainingContext` and returns
    the model; the default is the built-in tabular MLP trainer. Rank 0 logs per-epoch metrics
    and the model (with signature and input example) to the MLflow run the task created first;
    the run id comes back through XCom::

        {"run_id", "experiment_id", "model_uri": "runs:/<run_id>/model", "metrics": {...},
         "params": {...}, "snapshot_sha256", "training_config_hash", "checkpoint_dir"}

    Mappable: ``TrainModelOperator.partial(...).expand(hyperparameters=[...])`` runs a grid
    search; :class:`SelectBestRunOperator` picks the winner. ``execution_timeout`` and
    ``on_kill`` stop torchrun and every worker (SIGTERM, SIGKILL after 3 s). With
    ``max_restarts > 0`` a failed worker group is restarted and resumes from the latest
    checkpoint (written every ``checkpoint_every`` epochs under
    ``<artifact_root>/<pipeline>/checkpoints/<run_id>/``). A retry of the task (``retries``)
    continues the MLflow run of the failed try from its latest checkpoint, and a try after one
    that trained completely (and failed later) returns that run's model without training again.
    The run is found by the task instance (DAG, DAG run, task, map index): a new DAG run trains
    in a new MLflow run, and so does a changed training config (new data, say).

    :param snapshot: training snapshot reference (``{"uri", "sha256", ...}``, usually the ingest
        task's XCom); it must have a ``train`` split, and ``validation`` is used for metrics.
    :param target: target column.
    :param task: ``"classification"`` or ``"regression"``.
    :param hyperparameters: passed to the training function (built-in trainer: ``epochs``,
        ``batch_size``, ``lr``, ``weight_decay``, ``hidden``, ``dropout``, ``feature_columns``,
        ``categorical_columns``, ``max_categories``).
    :param nproc_per_node: worker processes on this machine.
    :param nnodes: machines; more than one needs ``rdzv_id`` and, per node task, ``node_rank``
        (node 0 hosts the rendezvous and the MLflow run; every node returns the job's result once
        it succeeded), or an ``rdzv_endpoint`` arranged by the caller.
    :param node_rank: this task's node in a multi-node job (the DAG factory maps one task per node).
    :param join_timeout: seconds the nodes of a job wait for each other before all of them fail.
    :param max_restarts: torchrun worker-group restarts after a failure.
    :param backend: ``"gloo"`` or ``"nccl"``; default: NCCL when GPUs are visible, else gloo.
    :param threads_per_proc: intra-op threads per worker (default: cores / nproc_per_node).
    :param experiment_name: MLflow experiment (default: ``pipeline``).
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "snapshot",
        "target",
        "task",
        "entry_point",
        "hyperparameters",
        "experiment_name",
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
        node_rank: int | None = None,
        join_timeout: int = 600,
        max_restarts: int = 0,
        backend: str | None = None,
        threads_per_proc: int | None = None,
        checkpoint_every: int = 1,
        experiment_name: str | None = None,
        seed: int = 0,
        missing_target: str = "drop",
        **kwargs: Any,
    ) -> None:
        super().__init__(artifact_root=artifact_root, pipeline=pipeline, **kwargs)
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
        self.node_rank = node_rank
        self.join_timeout = join_timeout
        self.max_restarts = max_restarts
        self.backend = backend
        self.threads_per_proc = threads_per_proc
        self.checkpoint_every = checkpoint_every
        self.experiment_name = experiment_name
        self.seed = seed
        self._launcher: Any = None

    def execute(self, context: Context) -> TrainingResult:
        from airflow_mlops_provider.core.training.launcher import TorchrunLauncher

        ti = context["ti"]
        job = self.training_job(ti)
        job.validate()
        self.log.info("Try %s of training task instance %s", ti.try_number, job.attempt_key)
        settings = self.mlflow_settings()
        self._launcher = TorchrunLauncher(job, settings, self.storage_options(), log=self.log.info)
        return self.report(context, settings, self._launcher.run())

    def report(self, context: Context, settings: TrackingSettings, result: TrainingResult) -> TrainingResult:
        """The task's result: ``result`` with the run's MLflow page, which the run link shows."""
        result["run_url"] = run_url(settings.browser_url, result["experiment_id"], result["run_id"])
        MlflowRunLink.persist(context, result["run_url"])
        self.log.info("Trained %s: %s", result["model_uri"], json.dumps(result["metrics"], sort_keys=True))
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The training snapshot -> the MLflow run."""
        from airflow_mlops_provider.core import lineage

        outputs = [self.lineage_mlflow().run(result)] if result else []
        return lineage.Lineage(inputs=[lineage.snapshot(self.snapshot)], outputs=outputs)

    def training_job(self, ti: Any) -> TrainingJob:
        """The :class:`~airflow_mlops_provider.core.training.job.TrainingJob` of this task instance.

        Every job field comes from the operator attribute of the same name (``int`` fields cast),
        except the run's name, tags and attempt key, which name the task instance. A value that is
        not what its field needs raises
        :class:`~airflow_mlops_provider.core.training.job.TrainingConfigError`.
        """
        from airflow_mlops_provider.core.snapshot import as_snapshot_ref, snapshot_uri
        from airflow_mlops_provider.core.training.job import TrainingConfigError, TrainingJob

        values: dict[str, Any] = {}
        for f in dataclasses.fields(TrainingJob):
            if f.name not in _RUN_FIELDS:
                value = getattr(self, f.name)
                try:
                    values[f.name] = int(value) if f.type == "int" else value
                except ValueError as err:
                    raise TrainingConfigError(f"{f.name}: {err}") from err
        options = self.storage_options(snapshot_uri(self.snapshot))
        values["snapshot"] = as_snapshot_ref(self.snapshot, options).to_dict()
        values["hyperparameters"] = _hyperparameters(self.hyperparameters)
        map_index = getattr(ti, "map_index", -1)
        suffix = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
        return TrainingJob(
            **values,
            run_name=f"{ti.dag_id}.{ti.task_id}{suffix}",
            run_tags={
                "airflow.dag_id": ti.dag_id,
                "airflow.task_id": ti.task_id,
                "airflow.run_id": ti.run_id,
                "airflow.map_index": str(map_index),
                "airflow.try_number": str(ti.try_number),
            },
            # the same for every try of this task instance (a retry or a clear), new in a new DAG run
            attempt_key=json.dumps([ti.dag_id, ti.run_id, ti.task_id, map_index]),
        )

    def on_kill(self) -> None:
        """Stop torchrun and all its workers: SIGTERM to the group, SIGKILL within ~3 s."""
        if self._launcher is not None:
            self._launcher.terminate("the task was killed")


class SelectBestRunOperator(BaseOperator):
    """Pick the best of several training results (e.g. a mapped :class:`TrainModelOperator`).

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
        from airflow_mlops_provider.core.selection import select_best

        # A mapped task's output arrives as a lazy sequence: a slice reads it in one request, where
        # iterating asks for the item past the end and Airflow logs that miss as "XCom not found".
        results = self.results[:] if isinstance(self.results, Sequence) else self.results
        best = select_best(results, self.metric, self.mode)
        self.log.info("Best run %s with %s=%s", best["run_id"], self.metric, best["metrics"][self.metric])
        MlflowRunLink.persist(context, best.get("run_url"))
        return best


def _hyperparameters(value: Any) -> dict[str, Any]:
    """The hyperparameters as a dict: given as one, or as its JSON (a rendered template)."""
    from airflow_mlops_provider.core.training.job import TrainingConfigError

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            text = value[:200]
            raise TrainingConfigError(f"hyperparameters must be a dict (or its JSON), got {text!r}") from err
    if not isinstance(value, Mapping):
        raise TrainingConfigError(f"hyperparameters must be a dict, not {type(value).__name__}")
    return dict(value)


__getattr__ = renamed(__name__, {"TorchrunTrainOperator": TrainModelOperator})
