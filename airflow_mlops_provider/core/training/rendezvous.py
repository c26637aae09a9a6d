"""How the node tasks of one multi-node job find each other: a small record on the artifact store.

Airflow starts the node tasks whenever it has slots, not together. Node 0 creates the MLflow run,
picks a rendezvous port on its machine and publishes ``record.json`` (the c10d endpoint and the
run) under ``<artifact_root>/<pipeline>/rendezvous/<id hash>/``; every other node waits for that
record (up to the join timeout), and each node leaves a ``node-<rank>.json`` marker when it joins,
so a job that never completes its rendezvous can say how many nodes joined. Node 0 marks the record
finished when the job ends; a node that starts after that waits for a retried node 0 to publish
anew, and at its join timeout fails saying the job ended before it joined. A node joins a record
only once its endpoint answers: node 0 lost with its machine leaves a record behind that nobody
finishes, and a retried node waits past it for the record of node 0's retry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from datetime import UTC, datetime
from typing import Any

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.errors import TrainingError

ADDRESS_ENV = "MLOPS_NODE_ADDRESS"
JOB_SUCCEEDED = "succeeded"  # the outcome node 0 records for a job that trained completely
_MARKER = re.compile(r"^node-(\d+)\.json$")


class RendezvousFailed(TrainingError):
    """The node tasks of a job did not all meet, or the job ended before this node joined."""


def node_address() -> str:
    """This machine's address as the other nodes reach it (``$MLOPS_NODE_ADDRESS`` overrides)."""
    configured = os.environ.get(ADDRESS_ENV)
    if configured:
        return configured
    return socket.gethostbyname(socket.getfqdn())


class NodeRendezvous:
    """The record and markers of one job's rendezvous (``rdzv_id``) on the artifact store."""

    def __init__(self, root: Location, pipeline: str, rdzv_id: str, nnodes: int) -> None:
        digest = hashlib.sha256(rdzv_id.encode()).hexdigest()[:24]
        self.folder = root.join(pipeline, "rendezvous", digest)
        self.rdzv_id, self.nnodes = rdzv_id, nnodes

    @property
    def _record(self) -> Location:
        return self.folder.join("record.json")

    def publish(self, endpoint: str, run_id: str, experiment_id: str) -> dict[str, Any]:
        """Node 0: the endpoint and run every node uses (a retry of node 0 publishes anew)."""
        record = {
            "rdzv_id": self.rdzv_id,
            "endpoint": endpoint,
            "run_id": run_id,
            "experiment_id": experiment_id,
            "nnodes": self.nnodes,
            "published_at": _now(),
            "finished": None,
        }
        self._record.write_bytes_atomic(json.dumps(record).encode())
        return record

    def wait(self, timeout_s: float, rank: int | None = None, poll_s: float = 0.5) -> dict[str, Any]:
        """Node ``rank`` > 0: the record node 0 published, once it is there and its endpoint
        answers, or the record of a job that succeeded (this node came late: a retry after its
        machine was lost near the end); fails after ``timeout_s``.

        Waited past, for node 0 to publish anew (a retry of it does): a record of a job that failed,
        one whose endpoint does not answer (node 0 is still starting torchrun, or was lost), and one
        this node joined before (this is a retry of it: the rendezvous it left cannot take a new
        member, so node 0 gives up on it and is retried too). At the deadline the failure says which.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.read()
            if record is not None and self._joinable(record, rank):
                return record
            if time.monotonic() > deadline:
                raise self._not_joined(record, rank, timeout_s)
            time.sleep(poll_s)

    def _joinable(self, record: dict[str, Any], rank: int | None) -> bool:
        finished = record.get("finished")
        if finished:
            return bool(finished == JOB_SUCCEEDED)
        return rank not in self.joined() and _answers(record["endpoint"])

    def _not_joined(
        self, record: dict[str, Any] | None, rank: int | None, timeout_s: float
    ) -> RendezvousFailed:
        if record is None:
            return RendezvousFailed(
                f"node 0 of job {self.rdzv_id} did not publish its rendezvous within {timeout_s:g}s "
                f"({len(self.joined())} of {self.nnodes} nodes started): node 0 never got a worker "
                "or pool slot, or failed before training"
            )
        if record.get("finished"):
            return RendezvousFailed(
                f"the job {self.rdzv_id} ended ({record['finished']}) before this node joined"
            )
        if rank in self.joined():
            return RendezvousFailed(
                f"node {rank} of job {self.rdzv_id} was lost after joining the rendezvous published at "
                f"{record['published_at']}, and node 0 did not publish a new one within {timeout_s:g}s"
            )
        return RendezvousFailed(
            f"node 0 of job {self.rdzv_id} published its rendezvous at {record['endpoint']} "
            f"({record['published_at']}) but it did not answer within {timeout_s:g}s: node 0 was "
            "lost (its worker died) and no retry of it published anew"
        )

    def read(self) -> dict[str, Any] | None:
        if not self._record.exists():
            return None
        data: dict[str, Any] = json.loads(self._record.read_bytes())
        return data

    def join(self, node_rank: int, record: dict[str, Any]) -> None:
        """Leave this node's marker, tied to the record it joined."""
        marker = {"rank": node_rank, "host": socket.gethostname(), "at": _now()}
        marker["for"] = record["published_at"]
        self.folder.join(f"node-{node_rank}.json").write_bytes_atomic(json.dumps(marker).encode())

    def joined(self) -> list[int]:
        """Ranks of the nodes that joined the current record (all markers when none is published)."""
        if not self.folder.exists():
            return []
        record = self.read()
        ranks = []
        for path in self.folder.fs.ls(self.folder.path, detail=False):
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            match = _MARKER.match(name)
            if not match:
                continue
            marker = json.loads(self.folder.join(name).read_bytes())
            if record is None or marker.get("for") == record["published_at"]:
                ranks.append(int(match.group(1)))
        return sorted(ranks)

    def finish(self, outcome: str) -> None:
        """Node 0: the job ended (``succeeded`` or the failure), so late nodes stop waiting."""
        record = self.read()
        if record is not None:
            record["finished"] = outcome
            self._record.write_bytes_atomic(json.dumps(record).encode())

    def missing_message(self, join_timeout_s: float) -> str:
        """Why the rendezvous did not complete, in the words a failed node reports."""
        joined = self.joined()
        return (
            f"only {len(joined)} of {self.nnodes} nodes joined job {self.rdzv_id} within "
            f"{join_timeout_s:g}s (node ranks {joined}): the others never started. Airflow does not "
            "start a job's node tasks together: give the training pool at least `nodes` slots per "
            "job running at once, and keep that many workers free"
        )


def _answers(endpoint: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (node 0's c10d store)."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat()
