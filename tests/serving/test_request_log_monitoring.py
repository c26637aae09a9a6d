"""The generated monitoring DAG reads the prediction service's request log as its live window.

One retrain makes a champion; a real service on loopback answers a drifted set of rows and logs
them under the pipeline's artifact root; a graceful stop flushes the log; ``monitor_<name>``, run
for the hour the rows were logged in, ingests exactly those rows, scores them, finds the drift,
and measures performance on labels joined to the logged rows by ``request_id``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest

from airflow_mlops_provider import datasets
from airflow_mlops_provider.core.storage import Location
from tests.operators import conftest as generated
from tests.support.services import background_process, free_port, stop_process_group
from tests.support.serving import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

factory = generated.factory  # the generated-DAG tests' fixture: write a pipeline file, load its DAGs

NAME = "served"
HOUR = "dt={{ data_interval_start | ds }}/hour={{ data_interval_start.strftime('%H') }}/"
ROWS, LABELLED = 150, 100


def test_the_monitoring_dag_reads_the_request_log_as_its_live_window(
    factory, dags, mlflow_server: str, tmp_path: Path
) -> None:
    write, load = factory
    data, root = tmp_path / "data", tmp_path / "artifacts"
    requests, labels = root / NAME / "serving" / "requests", data / "labels"
    config = generated.pipeline_config(NAME, "cancer", data, root)
    config["training"]["hyperparameters"]["epochs"] = 8
    config["monitoring"] = {  # the README's request-log monitoring
        "source": {"uri": requests.as_uri() + "/"},
        "window": {"by": "partition", "partition": HOUR},
        "labels": {
            "source": {"uri": labels.as_uri() + "/"},
            "id_column": "request_id",
            "window": {"by": "partition", "partition": HOUR},
        },
        "performance": {"metric": "accuracy", "min_labels": 50, "resamples": 100},
    }
    write(config)
    datasets.write(datasets.batch("cancer", 0, 2), data / "train", "batch-000")
    run = load(f"retrain_{NAME}").test()
    assert run.state == "success", dags.task_states(run)

    target = datasets.target_of("cancer")
    window = datasets.live_window("cancer", rows=ROWS, drift=1.0, seed=7, labelled=True)
    answer = _serve(mlflow_server, root, window.drop(columns=[target]), tmp_path / "serve.log")

    (day,) = requests.iterdir()  # one request: all its rows share one time, so one hour partition
    (hour,) = day.iterdir()
    start = datetime.strptime(f"{day.name} {hour.name}", "dt=%Y-%m-%d hour=%H").replace(tzinfo=UTC)
    truth = pd.DataFrame({"request_id": answer["row_ids"], target: window[target].to_numpy()})[:LABELLED]
    datasets.write(truth, labels / day.name / hour.name, "labels")

    run = load(f"monitor_{NAME}").test(logical_date=start + timedelta(hours=1))
    states = dags.task_states(run)
    assert run.state == "success", states
    assert {states[t] for t in ("ingest_live", "score", "detect_drift", "measure_performance")} == {"success"}
    assert dags.xcom(run, "ingest_live")["rows"] == ROWS  # exactly the logged rows
    drift = dags.xcom(run, "detect_drift")
    features = set(datasets.features_of("cancer"))
    assert drift["drift"] is True and set(drift["drifted_columns"]) <= features, drift
    assert drift["unknown_columns"] == [], drift  # the champion's target and ids are not compared
    report = json.loads(Location(drift["json_uri"]).read_bytes())
    assert {column["name"] for column in report["columns"]} == features  # nor the log's own columns
    (judged,) = dags.xcom(run, "measure_performance")["windows"]
    assert judged["window"]["start"] == start.isoformat()
    assert judged["labels"]["labelled"] == LABELLED and judged["labels"]["pending"] == ROWS - LABELLED
    served_right = sum(p == t for p, t in zip(answer["predictions"], truth[target], strict=False))
    assert judged["realized"]["accuracy"]["value"] == pytest.approx(served_right / LABELLED)


def _serve(tracking_uri: str, root: Path, rows: pd.DataFrame, log_path: Path) -> dict[str, Any]:
    """Start the service logging under ``root``, send ``rows`` in one request, stop it (which flushes
    the request log); return the answer (``predictions`` and ``row_ids``, each row's request id)."""
    port = free_port()
    args = [
        sys.executable, "-m", "airflow_mlops_provider.serving", "--tracking-uri", tracking_uri,
        "--pipeline", f"{NAME}={NAME}@champion", "--port", str(port), "--poll", "0.3",
        "--log-root", root.as_uri(),
    ]  # fmt: skip
    with background_process(args, port, log_path) as proc:
        service = Service(f"http://127.0.0.1:{port}", proc)
        wait_for(lambda: service.call("/ready")[0] == 200, "/ready turning 200")
        status, _, body = service.call(f"/v1/{NAME}/predict", {"rows": rows.to_dict(orient="records")})
        assert status == 200, body
        stop_process_group(proc)
    return cast(dict[str, Any], body)
