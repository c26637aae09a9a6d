"""Every operator refuses names that would escape the artifact root or break the registry, before writing.

Issue 13: ``pipeline="../../x"`` made the drift, scoring and training operators write outside the
artifact root, and ``model_name="../../escape"`` ran until the registry refused it and then asked
for retries that could never succeed. Each operator here gets such a name, with retries allowed:
each must fail on its first try, name the field, and leave the files under the test's folder
exactly as they were.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import frame, live_window, register_champion

pytestmark = pytest.mark.integration

ESCAPE = "../../x"
BAD_MODEL = "../../escape"


@pytest.fixture(scope="module")
def champion(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("names-champion")
    return register_champion(TrackingSettings(mlflow_server), root, "names")


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Any]:
    """An artifact root two levels below ``tmp_path`` (so ``../../x`` lands in ``tmp_path``), a live
    window, a split training snapshot and a CSV source."""
    root = tmp_path / "deep" / "art"
    tables = {name: pa.Table.from_pandas(frame(300, seed), preserve_index=False) for name, seed in
              (("train", 1), ("validation", 2), ("test", 3))}  # fmt: skip
    source = tmp_path / "in" / "a.csv"
    source.parent.mkdir()
    frame(50, 4).to_csv(source, index=False)
    return {
        "root": root.as_uri(),
        "live": live_window(root, "demo", shift=1.0, seed=5, rows=400),
        "train": write_snapshot(tables, Location(root.as_uri()), "demo").to_dict(),
        "source": source.as_uri(),
    }


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def first_try_failures(dags, run) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in tis}


def test_every_operator_refuses_a_pipeline_that_escapes_the_root_before_writing(
    dags, mlflow_conn, champion, inputs, tmp_path, capsys
):
    dag_id = f"escape_{uuid.uuid4().hex[:8]}"
    before = files_under(tmp_path)
    run = dags.run(
        f"""
        from datetime import timedelta
        from airflow.sdk import DAG
        from airflow_mlops_provider.operators.drift import DetectDriftOperator
        from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator
        from airflow_mlops_provider.operators.score import ScoreBatchOperator
        from airflow_mlops_provider.operators.train import TrainModelOperator
        from airflow_mlops_provider.operators.validate import ValidateSnapshotOperator

        ROOT, P = {inputs["root"]!r}, {ESCAPE!r}
        LIVE, TRAIN = {json.dumps(inputs["live"])}, {json.dumps(inputs["train"])}
        RETRY = dict(retries=2, retry_delay=timedelta(0))

        with DAG("{dag_id}", schedule=None) as dag:
            IngestSnapshotOperator(task_id="ingest", source={inputs["source"]!r}, artifact_root=ROOT,
                                   pipeline=P,
                           aws_conn_id=None, **RETRY)
            ValidateSnapshotOperator(task_id="validate", snapshot=LIVE, artifact_root=ROOT, pipeline=P,
                               aws_conn_id=None, **RETRY)
            TrainModelOperator(task_id="train", snapshot=TRAIN, target="y", artifact_root=ROOT, pipeline=P,
                                  hyperparameters={{"epochs": 1}}, **RETRY)
            ScoreBatchOperator(task_id="score", snapshot=LIVE, model_name={champion["name"]!r},
                               artifact_root=ROOT, pipeline=P, aws_conn_id=None, **RETRY)
            DetectDriftOperator(task_id="drift", current=LIVE, reference=TRAIN, artifact_root=ROOT,
                                pipeline=P,
                          aws_conn_id=None, **RETRY)
        """,
        dag_id,
    )  # fmt: skip
    tasks = ("ingest", "validate", "train", "score", "drift")
    assert first_try_failures(dags, run) == {task: ("failed", 1) for task in tasks}
    out = capsys.readouterr()
    assert (out.out + out.err).count(f"pipeline {ESCAPE!r} is not a safe name") >= len(tasks)
    assert files_under(tmp_path) == before


def test_every_operator_refuses_a_model_name_mlflow_cannot_hold_without_retrying(
    dags, mlflow_conn, inputs, tmp_path, capsys
):
    dag_id = f"bad_model_{uuid.uuid4().hex[:8]}"
    before = files_under(tmp_path)
    challenger = {"run_id": "0" * 32, "model_uri": f"runs:/{'0' * 32}/model", "metrics": {}}
    run = dags.run(
        f"""
        from datetime import timedelta
        from airflow.sdk import DAG
        from airflow_mlops_provider.operators.drift import DetectDriftOperator
        from airflow_mlops_provider.operators.evaluate import EvaluateChallengerOperator
        from airflow_mlops_provider.operators.promote import GateChallengerOperator, RollbackChampionOperator
        from airflow_mlops_provider.operators.score import ScoreBatchOperator

        ROOT, M = {inputs["root"]!r}, {BAD_MODEL!r}
        LIVE, TRAIN, CHALLENGER = {json.dumps(inputs["live"])}, {json.dumps(inputs["train"])}, {challenger!r}
        RETRY = dict(retries=2, retry_delay=timedelta(0))

        with DAG("{dag_id}", schedule=None) as dag:
            EvaluateChallengerOperator(task_id="evaluate", challenger=CHALLENGER, snapshot=TRAIN,
                                       model_name=M,
                             aws_conn_id=None, **RETRY)
            GateChallengerOperator(task_id="gate", evaluation={{"model_name": M, "challenger": CHALLENGER}},
                                   **RETRY)
            RollbackChampionOperator(task_id="rollback", model_name=M, reason="test", **RETRY)
            ScoreBatchOperator(task_id="score", snapshot=LIVE, model_name=M, artifact_root=ROOT,
                               pipeline="demo", aws_conn_id=None, **RETRY)
            DetectDriftOperator(task_id="drift", current=LIVE, model_name=M, artifact_root=ROOT,
                                pipeline="demo",
                          aws_conn_id=None, **RETRY)
        """,
        dag_id,
    )  # fmt: skip
    tasks = ("evaluate", "gate", "rollback", "score", "drift")
    assert first_try_failures(dags, run) == {task: ("failed", 1) for task in tasks}
    out = capsys.readouterr()
    logs = out.out + out.err
    assert logs.count(f"model name {BAD_MODEL!r} is not valid in the MLflow registry") >= len(tasks)
    assert "retrying the task completes it" not in logs
    assert files_under(tmp_path) == before


def test_drift_refuses_a_champion_reference_outside_the_artifact_root(dags, mlflow_conn, champion, inputs):
    """The reference comes from the champion's ``mlops.snapshot_uri`` tag, which anyone reaching MLflow
    may edit; reference statistics would be written beside it."""
    reference = Path(champion["snapshot"]["uri"].removeprefix("file://"))
    assert not reference.is_relative_to(Path(inputs["root"].removeprefix("file://")))
    dag_id = f"outside_ref_{uuid.uuid4().hex[:8]}"
    run = dags.run(
        f"""
        from datetime import timedelta
        from airflow.sdk import DAG
        from airflow_mlops_provider.operators.drift import DetectDriftOperator

        with DAG("{dag_id}", schedule=None) as dag:
            DetectDriftOperator(task_id="drift", current={json.dumps(inputs["live"])},
                          model_name={champion["name"]!r}, artifact_root={inputs["root"]!r}, pipeline="demo",
                          aws_conn_id=None,
                          retries=2, retry_delay=timedelta(0))
        """,
        dag_id,
    )  # fmt: skip
    assert first_try_failures(dags, run) == {"drift": ("failed", 1)}
    assert not (reference / "drift-reference").exists()
    assert not (Path(inputs["root"].removeprefix("file://")) / "demo" / "reports").exists()
