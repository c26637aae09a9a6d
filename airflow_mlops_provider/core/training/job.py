"""One training launch as a dataclass: the only list of training parameters.

Standard library only (plus the light name and entry-point checks), so the DAG factory may
import it at parse time and derive its training arguments from :func:`dataclasses.fields`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import DEFAULT_ENTRY_POINT
from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.training.entrypoint import check_entry_point_syntax

TASKS = ("classification", "regression")
MISSING_TARGET = ("drop", "fail")  # what a worker does with rows whose label is missing


class TrainingConfigError(PermanentError, ValueError):
    """A training parameter is invalid: retrying the same job cannot fix it."""


@dataclass
class TrainingJob:
    """One training launch: what to train on, with which code and parameters, and how to run it.

    ``artifact_root`` is a plain URI because the job is serialised into the workers' spec; the
    launcher gets the storage options separately. ``attempt_key`` names the training task
    instance, the same for all its tries: a launch finds the MLflow run an earlier try left under
    that key and continues it. Like the run's name and tags, it is left out of :meth:`config_hash`.

    A multi-node job runs one launch per node: with ``node_rank`` set, node 0 creates the run and
    publishes the rendezvous, the others wait for it up to ``join_timeout`` seconds
    (:mod:`~airflow_mlops_provider.core.training.rendezvous`); without it, ``rdzv_endpoint`` names
    a rendezvous the caller arranged.
    """

    snapshot: dict[str, Any]
    target: str
    artifact_root: str
    pipeline: str
    task: str = "classification"
    entry_point: str = DEFAULT_ENTRY_POINT
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    experiment_name: str | None = None
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    max_restarts: int = 0
    backend: str | None = None
    threads_per_proc: int | None = None
    checkpoint_every: int = 1
    seed: int = 0
    missing_target: str = "drop"
    run_name: str | None = None
    run_tags: dict[str, str] = field(default_factory=dict)
    attempt_key: str | None = None
    node_rank: int | None = None
    join_timeout: int = 600

    def validate(self) -> None:
        safe_component(self.pipeline, "pipeline")
        if self.task not in TASKS:
            raise TrainingConfigError(f"task must be one of {TASKS}, not {self.task!r}")
        for name in ("nproc_per_node", "nnodes"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.max_restarts < 0 or self.checkpoint_every < 0:
            raise TrainingConfigError("max_restarts and checkpoint_every must not be negative")
        self._validate_nodes()
        if self.backend not in (None, "gloo", "nccl"):
            raise TrainingConfigError(
                f"backend must be 'gloo', 'nccl' or None (automatic), not {self.backend!r}"
            )
        if self.missing_target not in MISSING_TARGET:
            raise TrainingConfigError(
                f"missing_target must be one of {MISSING_TARGET}, not {self.missing_target!r}"
            )
        if not isinstance(self.hyperparameters, Mapping):
            raise TrainingConfigError(
                f"hyperparameters must be a dict, not {type(self.hyperparameters).__name__}"
            )
        check_entry_point_syntax(self.entry_point)

    def _validate_nodes(self) -> None:
        if self.nnodes == 1:
            return
        if not self.rdzv_id or (self.rdzv_endpoint is None and self.node_rank is None):
            raise TrainingConfigError(
                "Multi-node training (nnodes > 1) needs rdzv_id, and node_rank or rdzv_endpoint"
            )
        if self.node_rank is not None and not 0 <= int(self.node_rank) < self.nnodes:
            raise TrainingConfigError(f"node_rank must be in [0, {self.nnodes}), not {self.node_rank!r}")
        if self.join_timeout < 1:
            raise TrainingConfigError(f"join_timeout must be at least 1 second, not {self.join_timeout!r}")

    @property
    def world_size(self) -> int:
        return int(self.nproc_per_node) * int(self.nnodes)

    def config_hash(self) -> str:
        """Hash of everything that determines the trained model (data, code, parameters, world size, seed).

        Keys are sorted, so no dict order matters. ``missing_target`` is left out: it decides
        whether a run with unlabelled rows trains at all, never what a successful run learns.
        """
        payload = {
            "snapshot_sha256": self.snapshot.get("sha256"),
            "target": self.target,
            "task": self.task,
            "entry_point": self.entry_point,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
            "world_size": self.world_size,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def job_from_dict(data: Mapping[str, Any]) -> TrainingJob:
    """A :class:`TrainingJob` from the keys of ``data`` that name its fields (others are ignored)."""
    known = {f.name for f in dataclasses.fields(TrainingJob)}
    return TrainingJob(**{k: v for k, v in data.items() if k in known})
