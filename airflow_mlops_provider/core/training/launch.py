"""One prepared training launch: its MLflow run, the workers' job spec, and how it ends.

:meth:`~airflow_mlops_provider.core.training.launcher.TorchrunLauncher.prepare` makes it before
any training starts; whatever then runs the workers (torchrun here, a Kubeflow job on a cluster)
ends it the same way: :meth:`Launch.result` reads what rank 0 wrote, :meth:`Launch.close` closes
the run. :meth:`Launch.to_json` / :meth:`Launch.from_json` carry it across a deferred task.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_mlops_provider.core.payloads import TrainingResult
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.errors import TrainingError
from airflow_mlops_provider.core.training.rendezvous import JOB_SUCCEEDED, NodeRendezvous

_CARRIED = (
    "run_id", "experiment_id", "earlier", "spec", "params", "snapshot_sha256", "config_hash", "threads",
)  # fmt: skip


@dataclass
class Launch:
    """A launch ready to train (see the module docstring); ``client`` is an MLflow client."""

    run_id: str
    experiment_id: str
    earlier: str | None  # the status an earlier launch left the run in; None: the run is new
    spec: dict[str, Any]  # the workers' job file (``core.training.worker``)
    params: dict[str, Any]
    snapshot_sha256: str
    config_hash: str
    checkpoint_dir: Location
    threads: int
    client: Any = None
    node: NodeRendezvous | None = None

    def result(self) -> TrainingResult:
        """The task's result from the file rank 0 wrote; :class:`TrainingError` when there is none."""
        found = self.checkpoint_dir.join("result.json")
        if not found.exists():
            raise TrainingError(f"Training succeeded but rank 0 wrote no result at {found.uri}")
        result = json.loads(found.read_bytes())
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "model_uri": result.get("model_uri") or f"runs:/{self.run_id}/model",
            "metrics": {k: v for k, v in result["metrics"].items() if k.startswith("val_")},
            "params": dict(self.params),
            "snapshot_sha256": self.snapshot_sha256,
            "training_config_hash": self.config_hash,
            "checkpoint_dir": self.checkpoint_dir.uri,
        }

    def close(self, status: str) -> None:
        """Close the run as ``FINISHED`` or ``FAILED`` (best effort: the training outcome decides the
        task), and the rendezvous record of a multi-node job."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, status)
        if self.node is not None:
            self.node.finish(JOB_SUCCEEDED if status == "FINISHED" else "failed")

    def to_json(self) -> dict[str, Any]:
        """What a deferred task carries to its resumption (no client, no credentials)."""
        return {**{name: getattr(self, name) for name in _CARRIED}, "checkpoint_dir": self.checkpoint_dir.uri}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], storage_options: Mapping[str, Any], client: Any) -> Launch:
        return cls(
            **{name: data[name] for name in _CARRIED},
            checkpoint_dir=Location(data["checkpoint_dir"], dict(storage_options)),
            client=client,
        )
