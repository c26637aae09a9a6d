"""The rendezvous record of a multi-node job, on a local artifact root (no torch; node 0's endpoint
is a listening socket on loopback, or a closed port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.rendezvous import NodeRendezvous, RendezvousFailed


@pytest.fixture
def endpoint() -> Iterator[str]:
    """``host:port`` where something listens, as node 0's c10d store does."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _closed_endpoint() -> str:
    """``host:port`` where nothing listens any more (node 0 lost with its machine)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return f"127.0.0.1:{server.getsockname()[1]}"


def _rendezvous(tmp_path: Path, rdzv_id: str = "mlops-manual__2026-12-02T01:02:03+00:00-0") -> NodeRendezvous:
    return NodeRendezvous(Location(tmp_path.as_uri()), "churn", rdzv_id, nnodes=3)


def test_followers_get_node_0s_record_and_markers_count_who_joined(tmp_path: Path, endpoint: str) -> None:
    node = _rendezvous(tmp_path)
    assert node.read() is None and node.joined() == []
    record = node.publish(endpoint, "run-1", "7")
    node.join(0, record)
    seen = node.wait(timeout_s=1)
    assert (seen["endpoint"], seen["run_id"], seen["experiment_id"]) == (endpoint, "run-1", "7")
    node.join(2, seen)
    assert node.joined() == [0, 2]
    assert "only 2 of 3 nodes joined job mlops-manual" in node.missing_message(600)
    assert "(node ranks [0, 2])" in node.missing_message(600)
    assert node.folder.path.rsplit("/", 1)[-1].isalnum()  # the id's characters never reach the path


def test_a_retried_node_0_publishes_anew_and_old_markers_stop_counting(tmp_path: Path, endpoint: str) -> None:
    node = _rendezvous(tmp_path)
    node.join(1, node.publish(endpoint, "run-1", "7"))
    node.finish("failed")
    result: list[dict] = []
    waiting = threading.Thread(target=lambda: result.append(node.wait(timeout_s=30, poll_s=0.05)))
    waiting.start()
    time.sleep(0.3)  # the follower sees the finished record and keeps waiting
    assert waiting.is_alive()
    time.sleep(0.01)  # a new publication time
    republished = node.publish(endpoint, "run-1", "7")
    waiting.join(10)
    assert result == [republished]
    assert node.joined() == []  # node 1 joined the earlier record


def test_a_record_whose_node_0_was_lost_is_waited_past_until_node_0s_retry_publishes(
    tmp_path: Path, endpoint: str
) -> None:
    node = _rendezvous(tmp_path)
    node.publish(_closed_endpoint(), "run-1", "7")  # never finished: its machine died with it
    result: list[dict] = []
    waiting = threading.Thread(target=lambda: result.append(node.wait(timeout_s=30, poll_s=0.05)))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive()  # a dead endpoint is not joined
    retried = node.publish(endpoint, "run-1", "7")
    waiting.join(10)
    assert result == [retried]


def test_waiting_fails_naming_what_happened(tmp_path: Path) -> None:
    node = _rendezvous(tmp_path, "job-x")
    with pytest.raises(
        RendezvousFailed, match=r"node 0 of job job-x did not publish .* within 0.2s \(0 of 3"
    ):
        node.wait(timeout_s=0.2, poll_s=0.05)
    lost = _closed_endpoint()
    node.publish(lost, "run-1", "7")
    with pytest.raises(
        RendezvousFailed, match=rf"published its rendezvous at {lost} .* did not answer within 0.2s"
    ):
        node.wait(timeout_s=0.2, poll_s=0.05)
    node.finish("failed")
    with pytest.raises(RendezvousFailed, match=r"the job job-x ended \(failed\) before this node joined"):
        node.wait(timeout_s=0.2, poll_s=0.05)


def test_a_follower_that_comes_after_the_job_succeeded_gets_its_record(tmp_path: Path) -> None:
    node = _rendezvous(tmp_path)
    node.publish(_closed_endpoint(), "run-1", "7")  # node 0 is done: its endpoint is closed
    node.finish("succeeded")
    assert node.wait(timeout_s=1, poll_s=0.05)["finished"] == "succeeded"


def test_a_retried_follower_waits_past_the_rendezvous_it_joined_before(tmp_path: Path, endpoint: str) -> None:
    """The rendezvous a lost node had joined cannot take its replacement: node 0 is retried too."""
    node = _rendezvous(tmp_path, "job-r")
    node.join(1, node.publish(endpoint, "run-1", "7"))  # node 1's first try joined, then was lost
    with pytest.raises(RendezvousFailed, match=r"node 1 of job job-r was lost after joining .* within 0.2s"):
        node.wait(timeout_s=0.2, rank=1, poll_s=0.05)
    assert node.wait(timeout_s=1, rank=2, poll_s=0.05)["run_id"] == "run-1"  # a node that never joined
    time.sleep(0.01)
    republished = node.publish(endpoint, "run-1", "7")  # node 0's retry
    assert node.wait(timeout_s=1, rank=1, poll_s=0.05) == republished
