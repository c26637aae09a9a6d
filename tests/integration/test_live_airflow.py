"""The provider inside a running Airflow (api-server, scheduler, dag-processor, triggerer, PostgreSQL).

Airflow is driven only through its REST API, as a user or an upstream system would.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_task_on_the_live_deployment_uses_the_mlflow_connection(live_airflow, probe_dags, mlflow_server):
    import mlflow

    live_airflow.wait_for_dag("live_probe_mlflow")
    run_id = live_airflow.trigger("live_probe_mlflow")
    run = live_airflow.wait_for_run("live_probe_mlflow", run_id, timeout_s=300)
    assert run["state"] == "success", live_airflow.task_states("live_probe_mlflow", run_id)
    xcom = live_airflow.api(
        "GET", f"/dags/live_probe_mlflow/dagRuns/{run_id}/taskInstances/log_run/xcomEntries/return_value"
    )
    mlflow_run_id = xcom["value"]
    assert mlflow.MlflowClient(mlflow_server).get_run(mlflow_run_id).info.run_id == mlflow_run_id


def test_an_asset_event_posted_over_rest_triggers_the_consumer_with_its_extra(live_airflow, probe_dags):
    live_airflow.wait_for_dag("live_probe_consumer")
    before = len(live_airflow.runs("live_probe_consumer"))
    live_airflow.post_asset_event("mlops-live-probe://new-data", {"snapshot": {"sha256": "abc"}})
    import time

    deadline = time.monotonic() + 240
    while len(live_airflow.runs("live_probe_consumer")) == before and time.monotonic() < deadline:
        time.sleep(2)
    run = live_airflow.runs("live_probe_consumer")[-1]
    finished = live_airflow.wait_for_run("live_probe_consumer", run["dag_run_id"], timeout_s=240)
    assert finished["state"] == "success"
    assert finished["run_type"] == "asset_triggered"


def test_tasks_run_on_a_celery_worker(celery_airflow, probe_dags, mlflow_server):
    import mlflow

    celery_airflow.wait_for_dag("live_probe_mlflow")
    run_id = celery_airflow.trigger("live_probe_mlflow")
    run = celery_airflow.wait_for_run("live_probe_mlflow", run_id, timeout_s=300)
    assert run["state"] == "success", celery_airflow.task_states("live_probe_mlflow", run_id)
    (ti,) = celery_airflow.task_instances("live_probe_mlflow", run_id)
    assert celery_airflow.celery_worker_that_ran(ti) is not None  # one of the stack's Celery workers
    xcom = celery_airflow.api(
        "GET", f"/dags/live_probe_mlflow/dagRuns/{run_id}/taskInstances/log_run/xcomEntries/return_value"
    )
    assert mlflow.MlflowClient(mlflow_server).get_run(xcom["value"]).info.run_id == xcom["value"]
