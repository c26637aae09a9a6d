"""A better and a worse challenger race for the same model 50 times: the better one ends up champion.

Both challengers are evaluated against the same (weak) champion and both pass the gate, so both
reach the promotion step believing they may move ``champion``. Promotions of one model are
serialised (in Airflow by a one-slot pool per model; here by a per-model lock standing in for the
pool slot, the same mutual exclusion), but evaluations and gates run concurrently. Whoever
promotes second sees that the champion moved since its evaluation, re-evaluates against the new
champion on the same snapshot and is rejected if worse. The orders are forced both ways and also
left to the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_mlops_provider.core import names, registry
from airflow_mlops_provider.core.decision_record import load_record
from airflow_mlops_provider.core.evaluation import evaluate_challenger_and_champion
from airflow_mlops_provider.core.model_io import load_model
from airflow_mlops_provider.core.promotion import gate_and_register, promote
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.promotion import Models, new_model_name, shared_models

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RACES = 50
GATE = {"primary_metric": "roc_auc", "thresholds": {"accuracy": 0.5}}


@pytest.fixture(scope="module")
def models(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Models:
    return shared_models(mlflow_server, tmp_path_factory.getbasetemp() / "promotion-snapshots")


def cached_run_loader() -> Callable[[str, TrackingSettings], Any]:
    """``load_model``, caching ``runs:/`` URIs (immutable run artifacts) to keep 50 races quick.

    Registry URIs (``models:/<name>/<version>``: champions and artifact verification) always load
    from the server.
    """
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def load(uri: str, settings: TrackingSettings) -> Any:
        if not uri.startswith("runs:/"):
            return load_model(uri, settings)
        with lock:
            if uri not in cache:
                cache[uri] = load_model(uri, settings)
            return cache[uri]

    return load


def race(models: Models, index: int, loader: Callable[..., Any]) -> dict[str, Any]:
    """One race on a fresh model whose champion is the weak model; returns what happened."""
    settings, name = models.settings, new_model_name("race")
    client = settings.client()
    seed = registry.register_version(client, name, models.weak)
    registry.set_alias_verified(client, name, names.CHAMPION, seed.version)
    pool_slot = threading.Lock()  # the one-slot pool of this model
    ready = threading.Barrier(2)
    first_done = threading.Event()
    order = ["better", "worse"] if index % 3 == 0 else ["worse", "better"] if index % 3 == 1 else []
    log: list[str] = []
    outcome: dict[str, Any] = {}

    def contender(label: str, run_id: str) -> None:
        evaluation = evaluate_challenger_and_champion(
            challenger=models.challenger(run_id), snapshot=models.snapshot, model_name=name,
            settings=settings, split="test", loader=loader,
        )  # fmt: skip
        decision = gate_and_register(settings, evaluation, GATE, pipeline="race", loader=loader)
        assert decision["verdict"] == "pass", decision["reasons"]  # both beat the weak champion
        assert decision["champion_version_at_eval"] == seed.version
        ready.wait(timeout=60)  # both decided against the same champion before anyone promotes
        if order and label == order[1]:
            assert first_done.wait(timeout=60)
        with pool_slot:
            log.append(label)
            outcome[label] = promote(settings, decision, loader=loader)
        first_done.set()

    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(contender, "better", models.better),
            pool.submit(contender, "worse", models.worse),
        ]
        for future in futures:
            future.result()
    return {
        "name": name,
        "order": log,
        "champion": registry.alias_number(client, name, names.CHAMPION),
        "better_version": outcome["better"]["version"],
        "outcome": outcome,
    }


def test_better_challenger_wins_every_race(models: Models):
    loader = cached_run_loader()
    with ThreadPoolExecutor(5) as pool:  # five independent models race at once
        results = list(pool.map(lambda i: race(models, i, loader), range(RACES)))

    for result in results:
        assert result["champion"] == result["better_version"], result
        better, worse = result["outcome"]["better"], result["outcome"]["worse"]
        assert better["promoted"], result
        if result["order"][0] == "worse":
            # The worse one got there first; the better one noticed, re-evaluated and replaced it.
            assert worse["promoted"]
            assert better["reasons"][0].startswith("re-evaluated: champion of"), better["reasons"]
            assert better["previous_champion"] == worse["version"]
        else:
            # The worse one noticed the better champion, re-evaluated against it and was rejected.
            assert not worse["promoted"] and worse["status"] == "rejected", worse
            assert worse["reasons"][0] == (
                f"re-evaluated: champion of {result['name']!r} changed since evaluation: it was "
                f"version 1 and is now version {better['version']}"
            )
            assert worse["champion"] == better["version"]
    orders = [r["order"][0] for r in results]
    assert orders.count("better") >= RACES // 3 and orders.count("worse") >= RACES // 3

    # Each re-evaluation is on record next to the decision it replaced.
    client = models.settings.client()
    for first, loser in (("better", models.worse), ("worse", models.better)):
        result = next(r for r in results if r["order"][0] == first)
        record = load_record(client, client.get_run(loser).info.artifact_uri, result["name"])
        assert record.history[0]["previous_verdict"] == "pass"
        assert record.history[0]["previous_champion"]["version"] == "1"
        assert record.champion_version_at_eval != "1"
