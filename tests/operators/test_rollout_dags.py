"""Progressive rollout from the generated retrain DAG, against a real prediction service on loopback.

One pipeline, one service process, one request loop that runs throughout (callers with random
keys, the same rows every time, so predictions compare the models and not the rows):

1. the first model has no champion to be compared with: the rollout promotes it directly;
2. a challenger that needs a feature the callers do not send answers the canary's share with
   errors: the DAG rolls it back at the first step, fails with the reason, ``champion`` unchanged;
3. a sound challenger rolled out as a shadow is promoted; its copies never answered anyone;
4. with the service's metrics unreadable nothing is rolled out and nothing is left behind;
5. the rollback DAG undoes a rollout in progress, and that rollout notices.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.core import names
from airflow_mlops_provider.core.decision_record import load_record
from airflow_mlops_provider.core.rollout import state
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.operators.conftest import champion_version, pipeline_config
from tests.support.services import background_process, free_port
from tests.support.serving import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "rollout"
ROWS = datasets.live_window("cancer", rows=4, drift=0.0, seed=3)[datasets.features_of("cancer")]
BODY = {"rows": ROWS.to_dict(orient="records")}


class RequestLoop:
    """Callers sending the same rows until stopped; every answer's status, version and alias kept."""

    def __init__(self, service: Service) -> None:
        self.service, self.answers = service, []  # type: list[tuple[int, str | None, str | None]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, headers, body = self.service.call(
                f"/v1/{NAME}/predict", BODY, {"X-Caller-Key": uuid.uuid4().hex}
            )
            alias = body.get("alias") if isinstance(body, dict) else None
            self.answers.append((status, headers.get("x-model-version"), alias))
            self._stop.wait(0.02)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def mark(self) -> int:
        return len(self.answers)

    def since(self, mark: int) -> list[tuple[int, str | None, str | None]]:
        return self.answers[mark:]


@pytest.fixture
def service(mlflow_server: str, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    args = [
        sys.executable, "-m", "airflow_mlops_provider.serving", "--tracking-uri", mlflow_server,
        "--pipeline", f"{NAME}={NAME}@champion", "--port", str(port), "--poll", "0.3",
    ]  # fmt: skip
    with background_process(args, port, tmp_path / "serve.log") as proc:
        yield Service(f"http://127.0.0.1:{port}", proc)


def _config(data: Path, root: Path, service_url: str, strategy: str, features: list[str]) -> dict[str, Any]:
    config = pipeline_config(
        NAME, "cancer", data, root,
        # every challenger passes: the rollout, not the gate, is under test
        gate={"min_gain": -1.0, "max_regression": {"accuracy": 1.0}},
        rollout={
            "strategy": strategy, "service_urls": [service_url], "steps": [50, 100], "hold": 1,
            "min_requests": 8, "max_step_wait": 120, "poll": 0.5,
            # the same rows for both models: the distance compares models; latency is not judged
            # on a loaded test machine (the guardrail's arithmetic has its own tests)
            "guardrails": {"max_prediction_distance": 0.5, "max_p99_ratio": None},
        },
    )  # fmt: skip
    config.pop("monitoring")
    config["triggers"] = {}
    config["training"]["hyperparameters"]["feature_columns"] = features
    return config


def _record(settings: TrackingSettings, decision: dict[str, Any]) -> Any:
    return load_record(settings.client(), decision["run_artifact_uri"], NAME)


def _policy(settings: TrackingSettings) -> dict[str, str | None]:
    model = settings.client().get_registered_model(NAME)
    return {
        "weight": model.tags.get(names.TAG_CANARY_WEIGHT),
        "shadow": model.tags.get(names.TAG_SHADOW),
        "rollout": model.tags.get(names.TAG_ROLLOUT),
        "canary": model.aliases.get(names.CANARY),
    }


CLEARED = {"weight": "0", "shadow": "off", "rollout": None, "canary": None}


def test_canary_breach_rolls_back_shadow_promotes_and_the_rollback_dag_undoes_a_rollout(
    factory, dags, service: Service, mlflow_server: str, tmp_path: Path
) -> None:
    write, load = factory
    settings = TrackingSettings(mlflow_server)
    data, root = tmp_path / "data", tmp_path / "artifacts"
    features = datasets.features_of("cancer")
    datasets.write(datasets.batch("cancer", 0, 2), data / "train", "batch-000")

    # 1. no champion yet: nothing to compare with, promoted directly
    write(_config(data, root, service.url, "canary", features))
    run = load(f"retrain_{NAME}").test()
    assert run.state == "success", dags.task_states(run)
    first = str(dags.xcom(run, "gate")["version"])
    assert champion_version(NAME) == first
    wait_for(lambda: service.call("/ready")[0] == 200, "the service loading the first champion")

    with RequestLoop(service) as loop:
        # 2. the challenger also needs "id", which callers do not send: its canary share fails
        write(_config(data, root, service.url, "canary", [*features, "id"]))
        mark = loop.mark()
        run = load(f"retrain_{NAME}").test()
        states = dags.task_states(run)
        assert run.state == "failed" and states["rollout"] == "failed", states
        decision = dags.xcom(run, "gate")
        bad = str(decision["version"])
        assert decision["verdict"] == "pass" and bad != first
        assert champion_version(NAME) == first
        assert _policy(settings) == CLEARED
        version = settings.client().get_model_version(NAME, bad)
        assert "error rate" in version.tags[names.TAG_ROLLED_BACK]
        record = _record(settings, decision)
        assert record.status == "rolled_back"
        assert [e["event"] for e in record.rollout] == ["start", "step", "rolled_back"]
        assert "error rate 1.000 > 0.010" in record.reasons[-1]
        during = loop.since(mark)
        canary_answers = [a for a in during if a[1] == bad]
        assert canary_answers and {a[0] for a in canary_answers} == {422}  # the canary's share failed
        assert {a[0] for a in during if a[1] == first} == {200}
        after = loop.mark()
        wait_for(lambda: len(loop.since(after)) >= 20, "20 requests after the rollback")
        assert loop.since(after)[-10:] == [(200, first, "champion")] * 10

        # 3. a sound challenger (new data), rolled out as a shadow, becomes champion
        datasets.write(datasets.batch("cancer", 1, 2), data / "train", "batch-001")
        write(_config(data, root, service.url, "shadow", features))
        mark = loop.mark()
        run = load(f"retrain_{NAME}").test()
        assert run.state == "success", dags.task_states(run)
        decision = dags.xcom(run, "gate")
        good = str(decision["version"])
        assert champion_version(NAME) == good and dags.xcom(run, "rollout")["promoted"] is True
        assert _policy(settings) == CLEARED
        record = _record(settings, decision)
        assert record.status == "promoted"
        assert [e["event"] for e in record.rollout] == ["start", "step", "held", "promoted"]
        held = record.rollout[2]["reading"]
        assert held["canary"]["scored"] >= 8 and held["canary"]["errors"] == 0
        during = loop.since(mark)
        assert {a[0] for a in during} == {200}  # the shadow never failed a caller
        assert {a[2] for a in during} == {"champion"}  # ... and never answered one
        assert {a[1] for a in during} <= {first, good}

    # 4. a service whose metrics cannot be read: nothing is rolled out, nothing left behind
    datasets.write(datasets.drifted_batch("cancer", drift=0.3, seed=7), data / "train", "batch-002")
    write(_config(data, root, f"http://127.0.0.1:{free_port()}", "canary", features))
    run = load(f"retrain_{NAME}").test()
    assert dags.task_states(run)["rollout"] == "failed" and champion_version(NAME) == good
    assert _policy(settings) == CLEARED
    record = _record(settings, dags.xcom(run, "gate"))
    assert record.status == "approved" and [e["event"] for e in record.rollout] == ["start", "abandoned"]
    assert "metrics at http://127.0.0.1:" in record.rollout[-1]["text"]

    # 5. the rollback DAG undoes a rollout in progress; the champion stays, the rollout notices
    rollout = state.start(settings, decision, champion=good, strategy="canary", request_id="retrain_x/manual")
    state.set_step(settings, rollout, 25.0)
    assert _policy(settings)["weight"] == "25"
    run = load(f"rollback_{NAME}").test(run_conf={"reason": "canary looks wrong in the dashboard"})
    assert run.state == "success", dags.task_states(run)
    undone = dags.xcom(run, "rollback")
    assert undone["undone_rollout"] == good and undone["to_version"] == good
    assert champion_version(NAME) == good
    assert _policy(settings) == CLEARED
    with pytest.raises(state.RolloutAborted, match="was undone while it held a step"):
        state.check_ours(settings, rollout)
