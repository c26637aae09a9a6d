"""The MLflow server goes down in the middle of a promotion: clear failure, no bad alias, retry completes.

A second, short-lived ``mlflow server`` (PostgreSQL backend, local artifacts) belongs to this test
alone, so it can be killed at an exact point of the promotion: just before ``champion`` moves
(``previous_champion`` already set). A proxy in front of it sees each request; it kills the real
server there, and also cuts the network right after the new version was created and while its
artifacts are downloaded for verification.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_mlops_provider.core import registry
from airflow_mlops_provider.core.evaluation import evaluate_challenger_and_champion
from airflow_mlops_provider.core.promotion import gate_and_register, promote
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.promotion import (
    RestartableMlflow,
    fault_proxy,
    fit_model,
    log_run,
    make_frame,
    new_model_name,
    restartable_mlflow,
    write_eval_snapshot,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATE = {"thresholds": {"accuracy": 0.6}, "primary_metric": "roc_auc"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableMlflow]:
    with restartable_mlflow(tmp_path_factory.mktemp("flaky-mlflow")) as running:
        yield running


def partition_after(matches):
    """Proxy hooks: once a matching request was answered by the server, refuse everything until healed."""
    state = {"down": False}

    def after(method: str, path: str, body: bytes) -> None:
        if matches(method, path, body):
            state["down"] = True

    def rule(method: str, path: str, body: bytes) -> str | None:
        return "refuse" if state["down"] else None

    return after, rule, state


def refuse_once(server: RestartableMlflow | None, matches):
    """A proxy rule failing the first matching request (stopping the real server first, if given)."""
    fired: list[str] = []

    def rule(method: str, path: str, body: bytes) -> str | None:
        if not fired and matches(method, path, body):
            fired.append(f"{method} {path}")
            if server is not None:
                server.stop()
            return "refuse"
        return None

    return rule


def test_server_stopped_mid_promotion_fails_clearly_and_a_retry_completes(
    server: RestartableMlflow, tmp_path: Path
):
    direct = TrackingSettings(tracking_uri=server.url)
    train, test = make_frame(300, seed=11), make_frame(200, seed=12)
    baseline = log_run(direct, "outage", fit_model(train, 0.3, seed=1), train)
    better = log_run(direct, "outage", fit_model(train, 0.0, seed=2), train)
    snapshot = write_eval_snapshot(tmp_path, test)
    name = new_model_name("outage")

    def evaluation(settings: TrackingSettings, run_id: str) -> dict:
        return evaluate_challenger_and_champion(
            challenger={"run_id": run_id}, snapshot=snapshot, model_name=name, settings=settings, split="test"
        )

    assert promote(direct, gate_and_register(direct, evaluation(direct, baseline), GATE))["promoted"]

    def aliases() -> dict[str, str]:
        # A fresh client re-applies the direct settings (MLflow reads retries from the environment,
        # which the flaky client set to 0) so a pooled connection to the killed server is retried.
        return registry.aliases(direct.client(), name)

    assert aliases() == {"champion": "1", "challenger": "1"}

    with fault_proxy(server.url) as proxy:
        flaky = TrackingSettings(tracking_uri=proxy.url, max_retries=0, request_timeout_s=20)
        evaluated = evaluation(flaky, better)

        # 1. The server becomes unreachable right after it registered the new version.
        proxy.after, proxy.rule, partition = partition_after(
            lambda m, p, b: p.endswith("/model-versions/create")
        )
        with pytest.raises(registry.RegistryUnavailable, match=rf"MLflow at {proxy.url} failed while "):
            gate_and_register(flaky, evaluated, GATE)
        assert partition["down"]
        partition["down"] = False
        assert aliases() == {"champion": "1", "challenger": "1"}  # v2 exists, but nothing points at it

        # 2. The network to it fails while the new version's artifacts are downloaded for verification:
        #    an unreachable server is not mistaken for missing artifacts.
        proxy.after = lambda m, p, b: None
        download = refuse_once(
            None, lambda m, p, b: m == "GET" and p.split("?")[0].endswith("model.safetensors")
        )
        proxy.rule = download
        with pytest.raises(
            registry.RegistryUnavailable, match="failed while downloading the artifacts of models:/"
        ):
            gate_and_register(flaky, evaluated, GATE)
        assert aliases() == {"champion": "1", "challenger": "1"}

        decision = gate_and_register(flaky, evaluated, GATE)  # the retry completes the gate
        assert (decision["verdict"], decision["version"]) == ("pass", "2")

        # 3. The server is killed just before `champion` moves (previous_champion was already set).
        def champion_alias(method: str, path: str, body: bytes) -> bool:
            return (
                path.endswith("/registered-models/alias")
                and json.loads(body or b"{}").get("alias") == "champion"
            )

        proxy.rule = refuse_once(server, champion_alias)
        with pytest.raises(registry.RegistryUnavailable, match="failed while setting alias 'champion'"):
            promote(flaky, decision)
        server.start()
        assert aliases()["champion"] == "1"

        done = promote(flaky, decision)  # the retry completes the promotion
    assert done["promoted"] and done["status"] == "promoted"
    assert aliases() == {"champion": "2", "previous_champion": "1", "challenger": "2"}
    assert sorted(v.version for v in direct.client().search_model_versions(f"name = '{name}'")) == ["1", "2"]
