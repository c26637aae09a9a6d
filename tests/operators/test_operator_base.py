"""The base operator: permanent errors fail without retry, transient ones retry; old names still import."""

from __future__ import annotations

import importlib
import uuid

import pytest
from airflow.exceptions import AirflowProviderDeprecationWarning

from tests.support.services import mlflow_connection

OPERATORS = "airflow_mlops_provider.operators"
RENAMED = [
    (f"{OPERATORS}.ingest", "IngestOperator", "IngestSnapshotOperator"),
    (f"{OPERATORS}.validate", "ValidateOperator", "ValidateSnapshotOperator"),
    (f"{OPERATORS}.train", "TorchrunTrainOperator", "TrainModelOperator"),
    (f"{OPERATORS}.evaluate", "EvaluateOperator", "EvaluateChallengerOperator"),
    (f"{OPERATORS}.promote", "GateOperator", "GateChallengerOperator"),
    (f"{OPERATORS}.promote", "PromoteOperator", "PromoteModelOperator"),
    (f"{OPERATORS}.promote", "RollbackOperator", "RollbackChampionOperator"),
    (f"{OPERATORS}.score", "BatchScoreOperator", "ScoreBatchOperator"),
    (f"{OPERATORS}.drift", "DriftOperator", "DetectDriftOperator"),
    ("airflow_mlops_provider.factory.tasks", "TriggerCauseOperator", "RecordTriggerCauseOperator"),
    ("airflow_mlops_provider.factory.tasks", "ChampionCheckOperator", "CheckChampionOperator"),
    ("airflow_mlops_provider.factory.notify", "PipelineNotifier", "PipelineNotifier"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_old_operator_names_import_warn_and_are_the_new_classes(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(AirflowProviderDeprecationWarning, match=f"{old} is deprecated; use .*{new}"):
        cls = getattr(mod, old)
    assert cls.__name__ == new
    with pytest.raises(AttributeError):
        mod.NoSuchOperator  # noqa: B018


def test_approval_task_builds_an_approve_model_operator_with_a_warning():
    from airflow.sdk import DAG
    from airflow.sdk.bases.operator import BaseOperator

    from airflow_mlops_provider.operators.approve import ApproveModelOperator, approval_task

    with DAG("approval_alias", schedule=None):
        gate = BaseOperator(task_id="gate")
        with pytest.warns(AirflowProviderDeprecationWarning, match="ApproveModelOperator"):
            task = approval_task("approve", decision=gate.output)
    assert isinstance(task, ApproveModelOperator)
    assert task.upstream_task_ids == {"gate"}
    assert "task_ids='gate', key='decision_markdown'" in task.body


def test_permanent_errors_fail_on_the_first_try_and_transient_ones_retry(dags, tmp_path, monkeypatch, capsys):
    """``EvaluateChallengerOperator`` used to retry bad input (a missing snapshot); now it fails at once."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection("http://127.0.0.1:9"))
    dag_id = f"base_errors_{uuid.uuid4().hex[:8]}"
    missing = (tmp_path / "snapshots" / ("0" * 64)).as_uri()
    run = dags.run(
        f"""
        from datetime import timedelta
        from airflow.sdk import DAG
        from airflow_mlops_provider.core.errors import PermanentError, TransientError
        from airflow_mlops_provider.operators.base import MlopsBaseOperator
        from airflow_mlops_provider.operators.evaluate import EvaluateChallengerOperator

        class Raise(MlopsBaseOperator):
            def __init__(self, *, error, **kwargs):
                super().__init__(**kwargs)
                self.error = error

            def execute(self, context):
                raise self.error("boom")

        RETRY = dict(retries=2, retry_delay=timedelta(0))
        with DAG("{dag_id}", schedule=None) as dag:
            EvaluateChallengerOperator(task_id="evaluate", challenger={{"run_id": "0" * 32}},
                                       snapshot={{"uri": {missing!r}, "sha256": "0" * 64}},
                                       model_name="m", aws_conn_id=None, **RETRY)
            Raise(task_id="permanent", error=PermanentError, **RETRY)
            Raise(task_id="transient", error=TransientError, **RETRY)
            Raise(task_id="other", error=RuntimeError, **RETRY)
        """,
        dag_id,
    )  # fmt: skip
    assert tries(run) == {
        "evaluate": ("failed", 1),
        "permanent": ("failed", 1),
        "transient": ("failed", 3),
        "other": ("failed", 3),
    }
    out = capsys.readouterr()
    assert "SnapshotError: No complete snapshot at" in out.out + out.err


def tries(run) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in tis}
