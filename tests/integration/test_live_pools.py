"""A promotion pool that nobody created must not leave a run waiting forever in ``scheduled``.

Airflow never schedules a task whose pool does not exist and says so only in the scheduler log.
The provider's scheduler plugin creates a missing ``mlops_promote_<model>`` pool (one slot) when a
run of a DAG that uses it starts, so the promotion or rollback runs without a deployment step.
"""

from __future__ import annotations

import uuid

import pytest

from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.pipelines import cancer_pipeline_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_run_whose_promotion_pool_is_missing_runs_instead_of_hanging(
    live_airflow, live_dags_folder, session_dir
):
    name = f"nopool_{uuid.uuid4().hex[:6]}"
    model = f"{name}_model"
    (live_dags_folder / "pipelines" / f"{name}.yaml").write_text(
        cancer_pipeline_yaml(
            name, model=model, bucket="unused", artifact_root=(session_dir / "nopool").as_uri()
        )
    )
    pool = promotion_pool(model)
    assert all(p["name"] != pool for p in live_airflow.api("GET", "/pools")["pools"])
    dag_id = f"rollback_{name}"
    live_airflow.wait_for_dag(dag_id, timeout_s=300)

    run_id = live_airflow.trigger(dag_id, {"reason": "pool test"})
    run = live_airflow.wait_for_run(dag_id, run_id, timeout_s=420)

    # The rollback task ran (and refused: the model has no champion) instead of waiting in `scheduled`.
    assert run["state"] == "failed"
    rollback = live_airflow.task_instances(dag_id, run_id)[0]
    assert rollback["state"] == "failed" and rollback["pool"] == pool
    assert live_airflow.api("GET", f"/pools/{pool}")["slots"] == 1
