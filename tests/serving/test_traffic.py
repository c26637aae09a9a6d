"""Canary and shadow traffic, driven by the registry's rollout policy, and the request log that
monitoring reads: a real service process on loopback against a real MLflow server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest

from airflow_mlops_provider.core import names
from airflow_mlops_provider.core.ingest import ingest_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import frame, register_champion
from tests.support.services import background_process, free_port, stop_process_group
from tests.support.serving import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BODY = {"rows": frame(3, seed=21).drop(columns=["y"]).to_dict(orient="records")}


@pytest.fixture(scope="module")
def model(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A champion (v1) and the same weights registered again as v2, the canary."""
    settings = TrackingSettings(mlflow_server)
    champion = register_champion(settings, tmp_path_factory.mktemp("traffic"), "traffic")
    with settings.environment():
        canary = mlflow.register_model(f"runs:/{champion['run_id']}/model", champion["name"])
    settings.client().set_registered_model_alias(champion["name"], names.CANARY, canary.version)
    return {**champion, "canary": str(canary.version), "settings": settings}


@pytest.fixture(scope="module")
def served(
    model: dict[str, Any], mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    port, root = free_port(), tmp_path_factory.mktemp("requests")
    args = [
        sys.executable, "-m", "airflow_mlops_provider.serving", "--tracking-uri", mlflow_server,
        "--pipeline", f"demo={model['name']}@champion", "--port", str(port), "--poll", "0.3",
        "--log-root", root.as_uri(),
    ]  # fmt: skip
    with background_process(args, port, root / "serve.log") as proc:
        service = Service(f"http://127.0.0.1:{port}", proc)
        wait_for(lambda: service.call("/ready")[0] == 200, "/ready turning 200")
        yield service, root
        stop_process_group(proc)  # a graceful stop flushes the request log


def _policy(model: dict[str, Any], weight: int, shadow: str = "") -> None:
    client = model["settings"].client()
    client.set_registered_model_tag(model["name"], names.TAG_CANARY_WEIGHT, str(weight))
    client.set_registered_model_tag(model["name"], names.TAG_SHADOW, shadow)


def _weight(service: Service) -> float | None:
    text = service.call("/metrics")[2]
    line = next((ln for ln in text.splitlines() if ln.startswith("mlops_serving_canary_weight{")), None)
    return None if line is None else float(line.rsplit(" ", 1)[1])


def _versions(service: Service, keys: range) -> dict[str, str]:
    answers = {}
    for key in keys:
        status, headers, _ = service.call("/v1/demo/predict", BODY, {"X-Caller-Key": f"caller-{key}"})
        assert status == 200
        answers[f"caller-{key}"] = headers["x-model-version"]
    return answers


def test_the_canary_answers_its_weight_sticky_per_caller_and_a_shadow_never_answers(served, model):
    service, _ = served
    _policy(model, 50)
    wait_for(lambda: _weight(service) == 50, "the service reading canary weight 50")
    first = _versions(service, range(60))
    assert _versions(service, range(60)) == first  # sticky: each caller keeps its version
    share = sum(v == model["canary"] for v in first.values()) / len(first)
    assert 0.25 < share < 0.75, first

    _policy(model, 0)
    wait_for(lambda: _weight(service) == 0, "the service reading canary weight 0")
    plain = service.call("/v1/demo/predict", BODY)
    _policy(model, 0, shadow=names.CANARY)

    def shadow_scored() -> bool:
        service.call("/v1/demo/predict", BODY)
        return (
            f'mlops_serving_shadow_requests_total{{alias="canary",model_version="{model["canary"]}"'
            in (service.call("/metrics")[2])
        )

    wait_for(shadow_scored, "the canary scoring shadow copies")
    shadowed = service.call("/v1/demo/predict", BODY)
    assert shadowed[1]["x-model-version"] == model["version"]  # the champion always answers
    strip = ("request_id", "row_ids")
    assert {k: v for k, v in shadowed[2].items() if k not in strip} == {
        k: v for k, v in plain[2].items() if k not in strip
    }

    # a finished rollout removes the canary alias: the canary's model goes and its callers get the
    # champion, also while the policy still gives the canary every request
    _policy(model, 100)
    wait_for(lambda: _weight(service) == 100, "the service reading canary weight 100")
    client = model["settings"].client()
    client.delete_registered_model_alias(model["name"], names.CANARY)
    loaded = f'mlops_serving_model_loaded{{alias="canary",model_version="{model["canary"]}"'
    wait_for(lambda: loaded not in service.call("/metrics")[2], "the canary's model unloaded")
    assert set(_versions(service, range(20)).values()) == {model["version"]}
    client.set_registered_model_alias(model["name"], names.CANARY, model["canary"])
    _policy(model, 0)


def test_every_answered_row_is_logged_where_a_monitoring_window_reads_it(served, model):
    service, root = served
    _policy(model, 0, shadow=names.CANARY)
    before = _shadowed(service)
    wait_for(
        lambda: service.call("/v1/demo/predict", BODY)[0] == 200 and _shadowed(service) > before, "shadow on"
    )
    answered = [service.call("/v1/demo/predict", BODY)[2] for _ in range(4)]
    stop_process_group(service.proc)  # flushes what is buffered
    requests, shadow = _partition(root, "requests"), _partition(root, "shadow")
    assert {row_id for body in answered for row_id in body["row_ids"]} <= set(requests["request_id"])
    assert {"alias", "model_version", "prediction", "x1", "x2", "region", "proba_1"} <= set(requests)
    pairs = set(zip(requests["alias"], requests["model_version"], strict=True))
    assert pairs <= {("champion", model["version"]), ("canary", model["canary"])}
    # the shadow's copies sit apart (not counted twice in a monitoring window), scored by the canary
    assert set(shadow["model_version"]) == {model["canary"]}
    assert {row_id for body in answered for row_id in body["row_ids"]} <= set(shadow["request_id"])


def _shadowed(service: Service) -> float:
    """How many requests the shadow has scored a copy of, from /metrics."""
    lines = service.call("/metrics")[2].splitlines()
    return sum(
        float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith("mlops_serving_shadow_requests_total{")
    )


def _partition(root: Path, kind: str) -> dict[str, list[Any]]:
    """The one hour partition of ``kind`` rows, read by the ingest a monitoring window runs."""
    from airflow_mlops_provider.core.snapshot import open_snapshot

    (day,) = (Path(root) / "demo" / "serving" / kind).iterdir()
    (hour,) = day.iterdir()
    ref = ingest_snapshot(f"file://{hour}/", Location((Path(root) / "snapshots").as_uri()), "demo")
    return open_snapshot(ref).read().to_pydict()
