"""Evaluate -> gate -> [approve] -> promote, and rollback, as real DAG runs (``dag.test()``) against MLflow.

The approval path uses the standard provider's HITL ApprovalOperator: the run parks the task in
``awaiting_input`` and a reviewer answers through Airflow's own HITL response handler (what the
Required Actions page and the REST API call), from a second thread sharing the metadata DB.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from airflow_mlops_provider.core import registry
from airflow_mlops_provider.core.decision_record import load_record
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.promotion import Models, new_model_name, shared_models

pytestmark = pytest.mark.integration

GATE = {"thresholds": {"accuracy": 0.6}, "primary_metric": "roc_auc"}
TRIGGER = {"cause": "drift", "events": [{"asset": "mlops://promo/drift", "extra": {"share": 0.4}}]}


@pytest.fixture(scope="module")
def models(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Models:
    return shared_models(mlflow_server, tmp_path_factory.getbasetemp() / "promotion-snapshots")


def retrain_dag(dag_id: str, name: str, run_id: str, models: Models, **options: Any) -> str:
    gate = options.get("gate", GATE)
    approval = options.get("approval", False)
    return f"""
from airflow.sdk import DAG, Asset
from airflow_mlops_provider.operators.approve import ApproveModelOperator
from airflow_mlops_provider.operators.evaluate import EvaluateChallengerOperator
from airflow_mlops_provider.operators.promote import GateChallengerOperator, PromoteModelOperator

with DAG({dag_id!r}, schedule=None) as dag:
    evaluate = EvaluateChallengerOperator(
        task_id="evaluate", challenger={{"run_id": {run_id!r}, "model_uri": "runs:/{run_id}/model"}},
        snapshot={models.snapshot!r}, model_name={name!r}, split="test", slices=["region"], aws_conn_id=None,
    )
    gate = GateChallengerOperator(
        task_id="gate", evaluation=evaluate.output, gate={gate!r}, model_name={name!r}, pipeline="promo",
        trigger={TRIGGER!r}, validation={{"success": True, "evaluated": 7, "failed": []}},
        on_fail={options.get("on_fail", "fail")!r},
    )
    promote = PromoteModelOperator(task_id="promote", decision=gate.output, aws_conn_id=None,
                              outlets=[Asset("mlops://promo/champion")], pool={promotion_pool(name)!r})
    last = ApproveModelOperator(task_id="approve", decision=gate.output) if {approval!r} else gate
    last >> promote
"""


def record(models: Models, run_id: str, name: str):
    client = models.settings.client()
    return load_record(client, client.get_run(run_id).info.artifact_uri, name)


def test_promotion_dag_first_model_then_worse_rejected_with_skip_or_fail(dags, mlflow_conn, models: Models):
    name = new_model_name("dag")
    client = models.settings.client()

    run = dags.run(retrain_dag("promo_first", name, models.baseline, models), "promo_first")
    assert dags.task_states(run) == {"evaluate": "success", "gate": "success", "promote": "success"}
    decision = dags.xcom(run, "gate")
    assert decision["verdict"] == "pass" and decision["version"] == "1"
    assert dags.xcom(run, "gate", "decision_markdown").startswith(f"## {name} v1: **PASS**")
    link = dags.xcom(run, "gate", "mlflow_model_version_url")
    assert link.endswith(f"/#/models/{name}/versions/1")
    assert "/artifacts/decision_record/" in dags.xcom(run, "gate", "report_url")
    assert dags.xcom(run, "promote")["alias_changes"][0]["alias"] == "champion"
    assert registry.alias_number(client, name, "champion") == "1"
    kept = record(models, models.baseline, name)
    assert kept.trigger["cause"] == "drift" and kept.trigger["events"][0]["extra"] == {"share": 0.4}
    assert kept.validation["evaluated"] == 7 and kept.status == "promoted"

    run = dags.run(retrain_dag("promo_skip", name, models.worse, models, on_fail="skip"), "promo_skip")
    assert dags.task_states(run) == {"evaluate": "success", "gate": "success", "promote": "skipped"}
    assert dags.xcom(run, "gate")["verdict"] == "fail"
    assert registry.alias_number(client, name, "champion") == "1"

    run = dags.run(retrain_dag("promo_fail", name, models.worse, models, on_fail="fail"), "promo_fail")
    assert dags.task_states(run) == {"evaluate": "success", "gate": "failed", "promote": "upstream_failed"}
    assert registry.alias_number(client, name, "champion") == "1"
    assert len(client.search_model_versions(f"name = '{name}'")) == 2  # the worse run registered once


def respond_when_waiting(dag_id: str, answer: str, user: str = "reviewer") -> threading.Thread:
    """Answer the HITL task of ``dag_id`` like the UI would, as soon as it waits for input."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def respond() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="approve").first()
                if ti is not None and str(ti.state) == "awaiting_input":
                    update_hitl_detail(
                        dag_id=dag_id,
                        dag_run_id=ti.run_id,
                        task_id="approve",
                        update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[answer]),
                        user=SimpleAuthManagerUser(username=user, role="admin"),
                        session=session,
                    )
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=respond, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_approval_path_records_the_approver_or_keeps_the_champion(dags, mlflow_conn, models: Models, answer):
    name = new_model_name("hitl")
    client = models.settings.client()
    run = dags.run(retrain_dag("promo_seed", name, models.baseline, models), "promo_seed")
    assert registry.alias_number(client, name, "champion") == "1"

    dag_id = f"promo_hitl_{uuid.uuid4().hex[:6]}"
    gate = {**GATE, "require_approval": True}
    responder = respond_when_waiting(dag_id, answer)
    run = dags.run(retrain_dag(dag_id, name, models.better, models, gate=gate, approval=True), dag_id)
    responder.join(5)
    states = dags.task_states(run)
    kept = record(models, models.better, name)
    if answer == "Approve":
        assert states == {
            "evaluate": "success",
            "gate": "success",
            "approve": "success",
            "promote": "success",
        }
        assert registry.aliases(client, name) == {
            "champion": "2",
            "previous_champion": "1",
            "challenger": "2",
        }
        assert kept.status == "promoted" and kept.approval["approved"]
        assert kept.approval["by"]["name"] == "reviewer" and kept.approval["required"]
        assert "approved by reviewer" in kept.to_markdown()
    else:
        assert states == {
            "evaluate": "success",
            "gate": "success",
            "approve": "success",
            "promote": "skipped",
        }
        assert registry.alias_number(client, name, "champion") == "1"
        assert kept.status == "rejected" and not kept.approval["approved"]
        assert kept.approval["by"]["name"] == "reviewer"
        assert kept.reasons[-1] == "promotion rejected by reviewer; champion not moved"
        assert client.get_model_version(name, "2").tags["mlops.decision_status"] == "rejected"


def test_rollback_dag_restores_the_previous_champion(dags, mlflow_conn, models: Models):
    name = new_model_name("rollback")
    client = models.settings.client()
    for index, run_id in enumerate((models.baseline, models.better)):
        dags.run(retrain_dag(f"promo_rb_{index}", name, run_id, models), f"promo_rb_{index}")
    assert registry.alias_number(client, name, "champion") == "2"

    source = f"""
from airflow.sdk import DAG, Param
from airflow_mlops_provider.operators.promote import RollbackChampionOperator, promotion_pool

params = {{"reason": Param("p99 latency doubled", type="string")}}
with DAG("rollback_dag", schedule=None, params=params) as dag:
    RollbackChampionOperator(task_id="rollback", model_name={name!r}, reason="{{{{ params.reason }}}}",
                     pool=promotion_pool({name!r}))
"""
    run = dags.run(source, "rollback_dag")
    assert dags.task_states(run) == {"rollback": "success"}
    done = dags.xcom(run, "rollback")
    assert (done["from_version"], done["to_version"], done["reason"]) == ("2", "1", "p99 latency doubled")
    assert registry.aliases(client, name) == {"champion": "1", "challenger": "2"}
    assert dags.xcom(run, "rollback", "mlflow_model_version_url").endswith("/versions/1")

    run = dags.run(source, "rollback_dag")  # nothing left to roll back to: a clear failure
    assert dags.task_states(run) == {"rollback": "failed"}
    assert registry.alias_number(client, name, "champion") == "1"
