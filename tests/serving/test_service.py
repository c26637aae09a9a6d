"""The prediction service as a real process on loopback, following a real MLflow server's aliases."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from airflow_mlops_provider.core.model_io import load_model
from airflow_mlops_provider.core.scoring import predict_table
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import frame, register_champion
from tests.support.services import background_process, free_port
from tests.support.serving import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def settings(mlflow_server: str) -> TrackingSettings:
    return TrackingSettings(mlflow_server)


@pytest.fixture(scope="module")
def champion(settings: TrackingSettings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return register_champion(settings, tmp_path_factory.mktemp("serving"), "serving")


@pytest.fixture(scope="module")
def service(
    champion: dict[str, Any], mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    port = free_port()
    name = champion["name"]
    args = [
        sys.executable, "-m", "airflow_mlops_provider.serving", "--tracking-uri", mlflow_server,
        "--pipeline", f"demo={name}@champion", "--pipeline", f"pending={name}@canary",
        "--port", str(port), "--poll", "0.3",
    ]  # fmt: skip
    log = Path(tmp_path_factory.mktemp("serving-log")) / "serve.log"
    with background_process(args, port, log) as proc:
        yield Service(f"http://127.0.0.1:{port}", proc)
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the service's process group is left


def rows(n: int = 40) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = frame(n, seed=11).drop(columns=["y"]).to_dict(orient="records")
    return records


def test_ready_only_when_every_pipeline_has_a_model(
    service: Service, champion: dict[str, Any], settings: TrackingSettings
) -> None:
    assert service.call("/health")[0] == 200
    assert service.call("/ready")[0] == 503

    def only_canary_missing() -> bool:
        status, _, body = service.call("/ready")
        missing = body.get("missing", {})
        return (
            status == 503 and list(missing) == ["pending"] and "has no alias 'canary'" in missing["pending"]
        )

    wait_for(only_canary_missing, "the champion loaded and the canary alias found missing")
    status, _, body = service.call("/v1/pending/predict", {"rows": rows(1)})
    assert (status, body["error_code"]) == (503, "NOT_READY")

    settings.client().set_registered_model_alias(champion["name"], "canary", champion["version"])
    wait_for(lambda: service.call("/ready")[0] == 200, "/ready turning 200")
    assert service.call("/ready")[2]["versions"] == {"demo": "1", "pending": "1"}


def test_predictions_equal_batch_scoring(
    service: Service, champion: dict[str, Any], settings: TrackingSettings
) -> None:
    wait_for(lambda: service.call("/ready")[0] == 200, "/ready turning 200")
    model = load_model(f"models:/{champion['name']}/{champion['version']}", settings)
    sent = rows()
    batch = predict_table(model, pa.Table.from_pylist(sent))
    for key in ("rows", "dataframe_records"):
        status, headers, body = service.call("/v1/demo/predict", {key: sent})
        assert status == 200, body
        assert body["predictions"] == batch.column("prediction").to_pylist()
        assert body["probabilities"] == [
            {"0": row["proba_0"], "1": row["proba_1"]} for row in batch.to_pylist()
        ]
        assert (body["model_version"], body["alias"]) == ("1", "champion")
        assert headers["x-model-version"] == "1"
        assert headers["x-request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "words"),
    [
        ("/v1/demo/predict", {"rows": [{"x1": 1.0, "region": "eu"}]}, 422, "x2", "'x2' is missing"),
        (
            "/v1/demo/predict",
            {"rows": [{"x1": "high", "x2": 0, "region": "eu"}]},
            422,
            "x1",
            "'x1' is numeric",
        ),
        ("/v1/demo/predict", {"instances": []}, 400, "body", "exactly one of"),
        ("/v1/nosuch/predict", {"rows": rows(1)}, 404, None, "No pipeline 'nosuch'"),
    ],
)
def test_bad_requests_name_what_is_wrong(
    service: Service, path: str, body: Any, status: int, field: str | None, words: str
) -> None:
    got, headers, answer = service.call(path, body)
    assert (got, answer["field"]) == (status, field)
    assert words in answer["message"]
    assert headers["x-request-id"] == answer["request_id"]


def test_alias_move_under_load_loses_no_request(
    service: Service, champion: dict[str, Any], settings: TrackingSettings
) -> None:
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, headers, _ = service.call("/v1/demo/predict", {"rows": rows(5)})
            seen.append((status, headers.get("x-model-version")))

    client = settings.client()
    with settings.environment():
        import mlflow

        second = mlflow.register_model(f"runs:/{champion['run_id']}/model", champion["name"])
    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_for(lambda: len(seen) >= 20, "requests before the move")
        client.set_registered_model_alias(champion["name"], "champion", second.version)
        wait_for(lambda: len(seen) > 20 and seen[-1][1] == str(second.version), "the new version answering")
        wait_for(lambda: sum(1 for _, v in seen if v == str(second.version)) >= 20, "requests after the move")
    finally:
        stop.set()
        worker.join(30)
    assert {status for status, _ in seen} == {200}
    versions = [int(v or 0) for _, v in seen]
    assert versions[0] == 1 and versions[-1] == int(second.version)
    assert versions == sorted(versions)  # one swap, never back


def test_failed_load_keeps_the_old_version(
    service: Service, champion: dict[str, Any], settings: TrackingSettings
) -> None:
    client = settings.client()
    serving = service.call("/v1/demo/predict", {"rows": rows(1)})[1]["x-model-version"]
    client.log_text(champion["run_id"], "not a model", "junk/readme.txt")
    junk = client.create_model_version(
        champion["name"], f"runs:/{champion['run_id']}/junk", champion["run_id"]
    )
    client.set_registered_model_alias(champion["name"], "champion", junk.version)

    def failures() -> float:
        text = service.call("/metrics")[2]
        return sample(text, "mlops_serving_model_load_failures_total", pipeline="demo", alias="champion")

    wait_for(lambda: failures() >= 1, "a counted load failure")
    status, headers, _ = service.call("/v1/demo/predict", {"rows": rows(1)})
    assert (status, headers["x-model-version"]) == (200, serving)
    assert service.call("/ready")[0] == 200
    client.set_registered_model_alias(champion["name"], "champion", serving)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the Prometheus sample ``name`` whose labels include ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return float(found.value)
    return 0.0


def test_metrics_carry_the_version(service: Service) -> None:
    assert service.call("/v1/demo/predict", {"rows": rows(3)})[0] == 200
    assert service.call("/v1/demo/predict", {"rows": [{"x1": "bad"}]})[0] == 422
    text = service.call("/metrics")[2]
    labels = {
        "pipeline": "demo",
        "alias": "champion",
        "model_version": service.call("/ready")[2]["versions"]["demo"],
    }
    assert sample(text, "mlops_serving_requests_total", **labels) >= 1
    assert sample(text, "mlops_serving_latency_seconds_bucket", le="+Inf", **labels) >= 1
    predicted = sum(
        sample(text, "mlops_serving_predicted_class_total", **labels, **{"class": c}) for c in "01"
    )
    assert predicted >= 3
    assert sample(text, "mlops_serving_errors_total", status="422", **labels) == 1
    assert sample(text, "mlops_serving_model_loaded", **labels) == 1
