"""The DAG files as the dag-processor sees them: shapes, schedules, docs, isolation of broken configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HEAVY = ["torch", "mlflow", "great_expectations", "pandas", "scipy", "boto3", "sklearn", "pyarrow", "numpy"]
RETRAIN_EDGES = {
    ("record_trigger_cause", "ingest"),
    ("ingest", "check_unchanged"),
    ("check_unchanged", "validate"),
    ("validate", "train"),
    ("train", "select_best"),
    ("select_best", "evaluate"),
    ("evaluate", "gate"),
    ("gate", "promote"),
}


def _bag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def _edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


@pytest.fixture(scope="module")
def bag():
    bag = _bag(DAGS)
    assert bag.import_errors == {}
    return bag


def test_example_pipelines_give_three_dags_each(bag):
    expected = {
        f"{kind}_{name}" for kind in ("retrain", "monitor", "rollback") for name in ("cancer", "diabetes")
    }
    assert set(bag.dag_ids) == expected


def test_retrain_dag_shape_with_grid(bag):
    dag = bag.dags["retrain_cancer"]
    assert _edges(dag) >= RETRAIN_EDGES
    train = dag.get_task("train")
    assert type(train).__name__ == "MappedOperator"  # one task per grid point
    gate = dag.get_task("gate")
    decision_record_inputs = {"evaluate", "validate", "record_trigger_cause"}
    assert decision_record_inputs <= gate.upstream_task_ids
    assert dag.max_active_runs == 1


def test_retrain_dag_without_grid_trains_once(bag):
    dag = bag.dags["retrain_diabetes"]
    assert "select_best" not in dag.task_ids
    assert type(dag.get_task("train")).__name__ != "MappedOperator"
    assert ("train", "evaluate") in _edges(dag)


def test_retrain_schedule_is_cron_or_new_data_or_drift_or_performance(bag):
    from airflow.sdk import AssetAny, AssetOrTimeSchedule

    timetable = bag.dags["retrain_cancer"].timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert timetable.timetable.expression == "0 3 * * 1"
    assert isinstance(timetable.asset_condition, AssetAny)
    names = {a.name for a in timetable.asset_condition.objects}
    assert names == {"mlops.cancer.new_data", "mlops.cancer.drift", "mlops.cancer.performance"}
    diabetes = bag.dags["retrain_diabetes"].timetable  # cron + drift only
    assert diabetes.asset_condition.name == "mlops.diabetes.drift"


def test_monitor_dag_emits_the_drift_asset_retrain_listens_to(bag):
    dag = bag.dags["monitor_cancer"]
    assert _edges(dag) >= {
        ("require_champion", "ingest_live"),
        ("ingest_live", "score"),
        ("score", "detect_drift"),
    }
    (outlet,) = dag.get_task("detect_drift").outlets
    assert outlet.name == "mlops.cancer.drift"
    assert dag.timetable.expression == "0 * * * *"


def test_monitor_runs_read_their_window_and_measure_performance_from_late_labels(bag):
    from airflow.task.trigger_rule import TriggerRule

    dag = bag.dags["monitor_cancer"]
    assert dag.timetable.interval == timedelta(hours=1)  # a run stands for the hour before it
    for task_id in ("ingest_live", "ingest_labels"):
        ingest = dag.get_task(task_id)
        assert ingest.empty == "skip"
        assert ingest.window == {"by": "mtime", "column": None, "length": 3600}
    assert dag.get_task("ingest_labels").source.endswith("/cancer/labels/*.csv")
    assert dag.get_task("score").keep_columns == ["id"]
    measure = dag.get_task("measure_performance")
    assert measure.upstream_task_ids == {"score", "detect_drift", "ingest_labels"}
    assert measure.trigger_rule == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    assert (measure.id_column, measure.target, measure.max_delay) == ("id", "diagnosis", 3 * 86400)
    assert measure.performance["metric"] == "accuracy" and measure.performance["rule"] == "significant"
    assert measure.window_length == 3600
    (outlet,) = measure.outlets
    assert outlet.name == "mlops.cancer.performance"
    kinds = bag.dags["retrain_cancer"].get_task("record_trigger_cause").asset_kinds
    assert kinds["mlops.cancer.performance"] == "performance"
    diabetes = bag.dags["monitor_diabetes"]  # no labels: the error is estimated, never measured
    assert "ingest_labels" not in diabetes.task_ids
    assert diabetes.get_task("measure_performance").upstream_task_ids == {"score", "detect_drift"}
    assert diabetes.timetable.interval == timedelta(hours=6)  # the schedule's period


def test_dags_and_tasks_explain_themselves(bag):
    for dag in bag.dags.values():
        assert dag.doc_md and "pipeline" in dag.doc_md and dag.owner == "ml-team", dag.dag_id
        assert "mlops" in dag.tags
        for task in dag.tasks:
            assert task.doc_md, (dag.dag_id, task.task_id)
            assert task.execution_timeout and task.execution_timeout <= timedelta(hours=1)
    train = bag.dags["retrain_cancer"].get_task("train")
    assert train.partial_kwargs["execution_timeout"] == timedelta(minutes=15)
    assert train.partial_kwargs["retries"] == 1


def test_every_dag_serializes(bag):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)


def _folder(tmp_path: Path, configs: dict[str, dict | str]) -> Path:
    (tmp_path / "pipelines").mkdir()
    shutil.copy(DAGS / "pipelines_loader.py", tmp_path)
    for name, config in configs.items():
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        (tmp_path / "pipelines" / f"{name}.yaml").write_text(text)
    return tmp_path


def _example(name: str = "cancer") -> dict:
    return yaml.safe_load((DAGS / "pipelines" / f"{name}.yaml").read_text())


def test_broken_config_is_an_import_error_and_others_still_load(tmp_path: Path):
    broken = _example()
    broken["name"] = "broken"
    broken["training"]["epochz"] = 3
    folder = _folder(tmp_path, {"good": _example("diabetes"), "broken": broken, "syntax": "name: [x\n"})
    bag = _bag(folder)
    assert set(bag.dag_ids) == {"retrain_diabetes", "monitor_diabetes", "rollback_diabetes"}
    (error,) = bag.import_errors.values()
    assert "pipelines/broken.yaml: invalid pipeline config (1 error)" in error
    assert "training.epochz: unknown key" in error
    assert "pipelines/syntax.yaml: invalid pipeline config" in error and "invalid YAML at line" in error


def test_duplicate_pipeline_names_are_reported(tmp_path: Path):
    folder = _folder(tmp_path, {"a": _example(), "b": _example()})
    bag = _bag(folder)
    assert "retrain_cancer" in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert "pipelines/b.yaml: pipeline name 'cancer' is already used by pipelines/a.yaml" in error


def test_approval_and_notifications_are_wired(tmp_path: Path):
    config = _example()
    config["approval"] = {"enabled": True, "timeout": "2h"}
    config["notifications"] = {
        "on_failure": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        "on_promotion": [{"type": "email", "to": ["ml-team@example.com"]}],
    }
    bag = _bag(_folder(tmp_path, {"cancer": config}))
    dag = bag.dags["retrain_cancer"]
    assert ("gate", "approve") in _edges(dag) and ("approve", "promote") in _edges(dag)
    assert dag.get_task("approve").response_timeout == timedelta(hours=2)
    assert dag.get_task("promote").pool == "mlops_promote_cancer_diagnosis"
    assert dag.on_failure_callback and dag.get_task("promote").on_success_callback


def test_parse_imports_no_heavy_module(tmp_path: Path):
    """DESIGN.md rule 1, for the DAG files themselves (the SQS watcher included)."""
    config = _example()
    config["triggers"]["new_data"] = {"sqs": {"queue_url": "http://127.0.0.1:9/000000000000/q"}}
    folder = _folder(tmp_path, {"cancer": config, "diabetes": _example("diabetes")})
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "before = set(sys.modules)\n"
        f"bag = DagBag(dag_folder={str(folder)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "assert len(bag.dags) == 6, bag.dag_ids\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules and h not in before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_worker_parse_builds_only_the_pipeline_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow_mlops_provider.factory import load_dags

    folder = _folder(tmp_path, {"cancer": _example(), "diabetes": _example("diabetes")})
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "monitor_diabetes")
    assert set(load_dags(folder / "pipelines")) == {
        "retrain_diabetes",
        "monitor_diabetes",
        "rollback_diabetes",
    }


def test_expanded_values_never_reach_the_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``description: ${AWS_SECRET_ACCESS_KEY}`` showed the dag-processor's secret in the UI."""
    secret, token = "aws-secret-in-the-processor", "team-token-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("MLOPS_TEAM_TOKEN", token)
    monkeypatch.setenv("MLOPS_BUCKET", "bucket-name-from-env")
    denied = _example()
    denied["description"] = "${AWS_SECRET_ACCESS_KEY}"
    allowed = _example("diabetes")
    allowed["description"] = "x" * 185 + " ${MLOPS_TEAM_TOKEN}"  # cut at 200 characters mid-token
    allowed["artifact_root"] = "s3://${MLOPS_BUCKET}/artifacts"
    bag = _bag(_folder(tmp_path, {"cancer": denied, "diabetes": allowed}))
    (error,) = bag.import_errors.values()
    assert "description: environment variable AWS_SECRET_ACCESS_KEY is not allowed" in error
    assert secret not in error
    assert set(bag.dag_ids) == {"retrain_diabetes", "monitor_diabetes", "rollback_diabetes"}
    for dag in bag.dags.values():
        shown = f"{dag.description}\n{dag.doc_md}"
        assert token[:6] not in shown and "bucket-name-from-env" not in shown, dag.dag_id
    doc_md = bag.dags["retrain_diabetes"].doc_md
    assert "${MLOPS_TEAM_TOKEN}" in doc_md and "s3://${MLOPS_BUCKET}/artifacts" in doc_md
