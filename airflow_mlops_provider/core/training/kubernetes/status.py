"""What a Kubeflow training job's status says: still running, complete or failed, and why.

Pure functions over the custom object as the API server returns it (a dict). ``TrainJob``
(Trainer v2) reports the conditions ``Complete``, ``Failed`` and ``Suspended``; ``PyTorchJob``
(Training Operator v1) ``Created``, ``Running``, ``Restarting``, ``Succeeded`` and ``Failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RUNNING, COMPLETE, FAILED, SUSPENDED = "running", "complete", "failed", "suspended"
_DONE = {
    "TrainJob": {"Complete": COMPLETE, "Failed": FAILED},
    "PyTorchJob": {"Succeeded": COMPLETE, "Failed": FAILED},
}
_WAITING = {"Suspended": SUSPENDED, "Restarting": RUNNING, "Running": RUNNING, "Created": RUNNING}


@dataclass(frozen=True)
class JobState:
    """One reading of a job: its phase and the condition behind it (reason and message)."""

    phase: str
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in (COMPLETE, FAILED)


def job_state(kind: str, obj: Mapping[str, Any]) -> JobState:
    """The phase of a ``kind`` object: a true final condition wins, else the latest true condition."""
    conditions = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    done = _DONE[kind]
    for condition in conditions:
        if condition.get("type") in done:
            return _state(done[condition["type"]], condition)
    waiting = [c for c in conditions if c.get("type") in _WAITING]
    if waiting:
        latest = max(waiting, key=lambda c: str(c.get("lastTransitionTime") or ""))
        return _state(_WAITING[latest["type"]], latest)
    return JobState(RUNNING, "Pending", "no condition reported yet")


def pod_selector(kind: str, name: str) -> str:
    """Label selector of every pod of the job."""
    if kind == "TrainJob":
        return f"jobset.sigs.k8s.io/jobset-name={name}"
    return f"training.kubeflow.org/job-name={name}"


def is_rank0(kind: str, pod: Mapping[str, Any]) -> bool:
    """Whether ``pod`` runs node 0, whose rank 0 logs the training (first node, first replica)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if kind == "TrainJob":
        return (
            labels.get("batch.kubernetes.io/job-completion-index") == "0"
            and labels.get("jobset.sigs.k8s.io/job-index", "0") == "0"
        )
    return (
        labels.get("training.kubeflow.org/replica-type", "").lower() == "master"
        and labels.get("training.kubeflow.org/replica-index") == "0"
    )


def trainer_container(kind: str) -> str:
    """The training container's name: ``pytorch`` (PyTorchJob), ``node`` (the torch-distributed runtime)."""
    return "node" if kind == "TrainJob" else "pytorch"


def restarts(pods: list[Mapping[str, Any]]) -> int:
    """Container restarts across the job's pods (a node restarted in place, after a failure)."""
    return sum(
        int(status.get("restartCount") or 0)
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _state(phase: str, condition: Mapping[str, Any]) -> JobState:
    return JobState(phase, str(condition.get("reason") or ""), str(condition.get("message") or ""))
