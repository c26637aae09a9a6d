"""The rendezvous record of a multi-node job, on a local artifact root (no torch, no network)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.rendezvous import NodeRendezvous, RendezvousFailed


def _rendezvous(tmp_path: Path, rdzv_id: str = "mlops-manual__2026-12-02T01:02:03+00:00-0") -> NodeRendezvous:
    return NodeRendezvous(Location(tmp_path.as_uri()), "churn", rdzv_id, nnodes=3)


def test_followers_get_node_0s_record_and_markers_count_who_joined(tmp_path: Path) -> None:
    node = _rendezvous(tmp_path)
    assert node.read() is None and node.joined() == []
    record = node.publish("10.0.0.5:29500", "run-1", "7")
    node.join(0, record)
    seen = node.wait(timeout_s=1)
    assert (seen["endpoint"], seen["run_id"], seen["experiment_id"]) == ("10.0.0.5:29500", "run-1", "7")
    node.join(2, seen)
    assert node.joined() == [0, 2]
    assert "only 2 of 3 nodes joined job mlops-manual" in node.missing_message(600)
    assert "(node ranks [0, 2])" in node.missing_message(600)
    assert node.folder.path.rsplit("/", 1)[-1].isalnum()  # the id's characters never reach the path


def test_a_retried_node_0_publishes_anew_and_old_markers_stop_counting(tmp_path: Path) -> None:
    node = _rendezvous(tmp_path)
    node.join(1, node.publish("a:1", "run-1", "7"))
    node.finish("failed")
    result: list[dict] = []
    waiting = threading.Thread(target=lambda: result.append(node.wait(timeout_s=30, poll_s=0.05)))
    waiting.start()
    time.sleep(0.3)  # the follower sees the finished record and keeps waiting
    assert waiting.is_alive()
    time.sleep(0.01)  # a new publication time
    node.publish("b:2", "run-1", "7")
    waiting.join(10)
    assert result and result[0]["endpoint"] == "b:2"
    assert node.joined() == []  # node 1 joined the earlier record


def test_waiting_fails_naming_what_happened(tmp_path: Path) -> None:
    node = _rendezvous(tmp_path, "job-x")
    with pytest.raises(
        RendezvousFailed, match=r"node 0 of job job-x did not publish .* within 0.2s \(0 of 3"
    ):
        node.wait(timeout_s=0.2, poll_s=0.05)
    node.publish("a:1", "run-1", "7")
    node.finish("failed")
    with pytest.raises(RendezvousFailed, match=r"the job job-x ended \(failed\) before this node joined"):
        node.wait(timeout_s=0.2, poll_s=0.05)
