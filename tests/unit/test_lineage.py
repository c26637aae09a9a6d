"""OpenLineage from every operator: names by the spec, facets by their schema, each operator's datasets.

Operators are built as a DAG file would build them and their OpenLineage methods called as Airflow's
OpenLineage provider calls them, with a task instance whose XCom holds the task's result: the real
result of a real ingest (moto S3) and validation, and results of the shapes the other stages return.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from openlineage.client.serde import Serde

from airflow_mlops_provider.core import lineage
from tests.support.services import mlflow_connection
from tests.unit.ingest_support import csv_bytes, sample

SHA = "ab" * 32
BLOCKED = ("openlineage", "airflow.providers.openlineage.extractors")
MLFLOW = "mlflow://mlflow.example:5000"


_ALL = object()


class FakeTaskInstance:
    """What the OpenLineage provider hands an operator: ``xcom_pull`` of its (or another task's)
    result, as the task SDK answers it (for a mapped task: every map index's unless one is named)."""

    task_id = "this_task"

    def __init__(
        self, result: Any, others: Mapping[str, Any] | None = None, mapped: list[Any] | None = None
    ) -> None:
        self.result, self.others = result, dict(others or {})
        self.mapped = mapped  # every map index's result when this task is mapped
        self.map_index = -1 if mapped is None else mapped.index(result)

    def xcom_pull(self, task_ids: str | None = None, map_indexes: Any = _ALL) -> Any:
        if task_ids not in (None, self.task_id):
            return self.others.get(task_ids)
        if self.mapped is None:
            return self.result
        return list(self.mapped) if map_indexes is _ALL else self.mapped[map_indexes]


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection("http://user:secret@mlflow.example:5000/")
    )


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def _snapshot_ref(root: Path, sha: str = SHA, rows: int = 10) -> dict[str, Any]:
    return {
        "uri": f"{root.as_uri()}/p/snapshots/{sha}",
        "sha256": sha,
        "rows": rows,
        "splits": {"data": rows},
    }


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/in/a.csv", ("s3://bucket", "in/a.csv")),
        ("s3a://bucket/p/snapshots/abc/", ("s3://bucket", "p/snapshots/abc")),
        ("s3://bucket", ("s3://bucket", "/")),
        ("gs://bucket/x/y.parquet", ("gs://bucket", "x/y.parquet")),
        ("file:///data/p/snapshots/abc", ("file", "/data/p/snapshots/abc")),
        ("file://localhost/data/a.csv", ("file", "/data/a.csv")),
        ("file://nas01/share/a.csv", ("file://nas01", "/share/a.csv")),
        ("/data/a.csv", ("file", "/data/a.csv")),
        ("memory://bucket/a.csv", ("memory://bucket", "a.csv")),
    ],
)
def test_storage_uris_are_named_by_the_openlineage_spec(uri, expected):
    assert lineage.dataset_name(uri) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://user:secret@mlflow.example:5000/", "mlflow://mlflow.example:5000"),
        ("https://mlflow.example/tracking", "mlflow://mlflow.example/tracking"),
        ("sqlite:////var/mlflow.db", "mlflow+sqlite:////var/mlflow.db"),
        ("file:///tmp/mlruns", "mlflow+file:///tmp/mlruns"),
        ("/tmp/mlruns", "mlflow+file:///tmp/mlruns"),
    ],
)
def test_mlflow_namespaces_name_the_server_without_credentials(uri, expected):
    assert lineage.mlflow_namespace(uri) == expected


def test_every_custom_facet_matches_its_json_schema():
    schema = json.loads((Path(lineage.__file__).parent / "lineage_facets.json").read_text())
    mlflow = lineage.Mlflow("mlflow://m", "mlflow://m")
    facets = {
        "SnapshotFacet": lineage.snapshot(_snapshot_ref(Path("/r"))).facets["mlopsSnapshot"],
        "SourceObjectFacet": lineage.source_objects([{"uri": "s3://b/k", "size": 3, "etag": "e"}])[0].facets[
            "mlopsSourceObject"
        ],
        "MlflowRunFacet": mlflow.run({"run_id": "r1", "metrics": {"val_auc": 0.9, "val_loss": None}}).facets[
            "mlopsMlflowRun"
        ],
        "ModelVersionFacet": mlflow.version("m", 3, aliases=["champion"]).facets["mlopsModelVersion"],
        "ReportFacet": lineage.report("file:///r/d.json", "drift", "drift", None, {"share": 0.5}).facets[
            "mlopsReport"
        ],
    }
    for name, facet in facets.items():
        document = Serde.to_dict(facet)
        assert document["_schemaURL"] == f"{lineage.SCHEMA_URL}#/$defs/{name}"
        jsonschema.validate(document, {**schema, "$ref": f"#/$defs/{name}"})
    with pytest.raises(jsonschema.ValidationError, match="'kind'"):
        jsonschema.validate({"_producer": "x", "_schemaURL": "y"}, {**schema, "$ref": "#/$defs/ReportFacet"})


def test_ingest_reports_the_s3_objects_with_their_etags_and_the_snapshot(s3_bucket, moto_endpoint, tmp_path):
    from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for key, rows in (("in/a.csv", (0, 40)), ("in/b.csv", (40, 100))):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=csv_bytes(sample(*rows)))
    op = IngestSnapshotOperator(
        task_id="ingest", source=f"s3://{s3_bucket}/in/", artifact_root=tmp_path.as_uri(), pipeline="p"
    )
    assert _names(op.get_openlineage_facets_on_start().outputs) == []  # nothing listed yet
    ref = op.execute({})

    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(ref))

    assert _names(done.inputs) == [(f"s3://{s3_bucket}", "in/a.csv"), (f"s3://{s3_bucket}", "in/b.csv")]
    for dataset in done.inputs:
        head = s3.head_object(Bucket=s3_bucket, Key=dataset.name)
        facet = dataset.facets["mlopsSourceObject"]
        assert (facet.etag, facet.size) == (head["ETag"].strip('"'), head["ContentLength"])
        assert dataset.facets["version"].datasetVersion == facet.etag
    [snapshot] = done.outputs
    assert (snapshot.namespace, snapshot.name) == ("file", f"{tmp_path}/p/snapshots/{ref['sha256']}")
    assert snapshot.facets["version"].datasetVersion == ref["sha256"]
    assert snapshot.facets["mlopsSnapshot"].rows == 100
    assert op.get_openlineage_facets_on_failure(FakeTaskInstance(None)).outputs == []


def test_validate_reports_every_check_as_a_data_quality_assertion(tmp_path):
    from airflow_mlops_provider.core.ingest import ingest_snapshot
    from airflow_mlops_provider.core.storage import Location
    from airflow_mlops_provider.core.validation import validate_snapshot
    from airflow_mlops_provider.operators.validate import ValidateSnapshotOperator

    (tmp_path / "in.csv").write_bytes(csv_bytes(sample(0, 50)))
    root = tmp_path / "root"
    ref = ingest_snapshot((tmp_path / "in.csv").as_uri(), Location(root.as_uri()), "p").to_dict()
    suite = [
        {
            "expectation": "expect_column_values_to_be_between",
            "column": "amount",
            "min_value": 0,
            "max_value": 5,
        },
        {"expectation": "expect_column_values_to_be_unique", "column": "id"},
    ]
    op = ValidateSnapshotOperator(
        task_id="validate", snapshot=ref, suite=suite, mode="warn", artifact_root=root.as_uri(), pipeline="p"
    )
    started = op.get_openlineage_facets_on_start()
    assert _names(started.inputs) == [("file", ref["uri"].removeprefix("file://"))]

    result = validate_snapshot(
        ref, suite=suite, mode="warn", artifact_root=Location(root.as_uri()), pipeline="p"
    )
    [snapshot] = op.get_openlineage_facets_on_complete(FakeTaskInstance(result)).inputs

    assertions = snapshot.inputFacets["dataQualityAssertions"].assertions
    assert len(assertions) == result["evaluated"]
    by_check = {(a.assertion, a.column): a.success for a in assertions}
    assert by_check[("expect_column_values_to_be_between", "amount")] is False  # amount reaches 12.25
    assert by_check[("expect_column_values_to_be_unique", "id")] is True
    assert sum(not a.success for a in assertions) == result["failed_count"] == 1
    assert snapshot.facets["version"].datasetVersion == ref["sha256"]


def test_train_reads_the_snapshot_and_writes_the_mlflow_run(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.train import TrainModelOperator

    ref = _snapshot_ref(tmp_path)
    op = TrainModelOperator(
        task_id="train", snapshot=ref, target="y", artifact_root="file:///r", pipeline="p"
    )
    result = {
        "run_id": "r1",
        "experiment_id": "7",
        "model_uri": "runs:/r1/model",
        "metrics": {"val_auc": 0.9},
    }

    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(result))

    assert _names(done.inputs) == [("file", f"{tmp_path}/p/snapshots/{SHA}")]
    [run] = done.outputs
    assert (run.namespace, run.name) == (MLFLOW, "runs/r1")
    facet = run.facets["mlopsMlflowRun"]
    assert (facet.experimentId, facet.modelUri, facet.metrics) == ("7", "runs:/r1/model", {"val_auc": 0.9})
    assert "secret" not in json.dumps(Serde.to_dict(run))
    assert op.get_openlineage_facets_on_start().outputs == []

    # one of a grid's mapped train tasks reports its own run, not the list of every index's results
    other = {**result, "run_id": "r0"}
    [mapped_run] = op.get_openlineage_facets_on_complete(
        FakeTaskInstance(result, mapped=[other, result])
    ).outputs
    assert mapped_run.name == "runs/r1"


def test_evaluate_reads_snapshot_challenger_run_and_champion_version(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.evaluate import EvaluateChallengerOperator

    ref = _snapshot_ref(tmp_path)
    op = EvaluateChallengerOperator(
        task_id="evaluate", challenger={"run_id": "r2"}, snapshot=ref, model_name="m"
    )
    result = {"model_name": "m", "champion": {"version": "4", "run_id": "r1", "metrics": {}}}

    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(result))

    assert _names(done.inputs) == [
        ("file", f"{tmp_path}/p/snapshots/{SHA}"),
        (MLFLOW, "runs/r2"),
        (MLFLOW, "models/m/versions/4"),
    ]
    assert done.outputs == []
    first_model = op.get_openlineage_facets_on_complete(
        FakeTaskInstance({"model_name": "m", "champion": None})
    )
    assert len(first_model.inputs) == 2


def test_gate_registers_the_run_as_a_version_with_the_challenger_alias(mlflow_env):
    from airflow_mlops_provider.operators.promote import GateChallengerOperator

    op = GateChallengerOperator(task_id="gate", evaluation={"challenger": {"run_id": "r2"}})
    decision = {
        "model_name": "m",
        "version": "5",
        "status": "pending",
        "verdict": "pass",
        "source_run_id": "r2",
    }

    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(decision))

    assert _names(done.inputs) == [(MLFLOW, "runs/r2")]
    [version] = done.outputs
    assert (version.namespace, version.name) == (MLFLOW, "models/m/versions/5")
    facet = version.facets["mlopsModelVersion"]
    assert (facet.aliases, facet.sourceRunId, facet.status) == (["challenger"], "r2", "pending")
    assert op.get_openlineage_facets_on_failure(FakeTaskInstance(None)).outputs == []


def test_promote_writes_the_champion_version_only_when_it_promoted(mlflow_env):
    from airflow_mlops_provider.operators.promote import PromoteModelOperator
    from airflow_mlops_provider.operators.rollout import RolloutModelOperator

    decision = {"model_name": "m", "version": "5", "source_run_id": "r2"}
    promoted = {"promoted": True, "status": "promoted", "model_name": "m", "version": "5"}
    for op in (
        PromoteModelOperator(task_id="promote", decision=decision),
        RolloutModelOperator(task_id="rollout", decision=decision, rollout={"strategy": "canary"}),
    ):
        done = op.get_openlineage_facets_on_complete(FakeTaskInstance(promoted))
        assert _names(done.inputs) == [(MLFLOW, "runs/r2")]
        assert _names(done.outputs) == [(MLFLOW, "models/m/versions/5")]
        assert done.outputs[0].facets["mlopsModelVersion"].aliases == ["champion"]
        refused = op.get_openlineage_facets_on_complete(FakeTaskInstance({**promoted, "promoted": False}))
        assert refused.outputs == []


def test_rollback_moves_from_one_version_to_the_champion(mlflow_env):
    from airflow_mlops_provider.operators.promote import RollbackChampionOperator

    op = RollbackChampionOperator(task_id="rollback", model_name="m", reason="bad")
    done = op.get_openlineage_facets_on_complete(FakeTaskInstance({"from_version": "5", "to_version": "4"}))
    assert _names(done.inputs) == [(MLFLOW, "models/m/versions/5")]
    assert _names(done.outputs) == [(MLFLOW, "models/m/versions/4")]
    assert done.outputs[0].facets["mlopsModelVersion"].aliases == ["champion"]


def test_score_reads_window_and_champion_and_writes_predictions(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.score import ScoreBatchOperator

    live, predictions = _snapshot_ref(tmp_path), _snapshot_ref(tmp_path, sha="cd" * 32)
    op = ScoreBatchOperator(
        task_id="score", snapshot=live, model_name="m", artifact_root="file:///r", pipeline="p"
    )
    done = op.get_openlineage_facets_on_complete(
        FakeTaskInstance({"predictions": predictions, "model_version": "4"})
    )
    assert _names(done.inputs) == [("file", f"{tmp_path}/p/snapshots/{SHA}"), (MLFLOW, "models/m/versions/4")]
    assert done.inputs[1].facets["mlopsModelVersion"].aliases == ["champion"]
    assert _names(done.outputs) == [("file", f"{tmp_path}/p/snapshots/{'cd' * 32}")]


def test_drift_reads_window_predictions_and_champion_and_writes_its_report(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.drift import DetectDriftOperator

    live, predictions = _snapshot_ref(tmp_path), _snapshot_ref(tmp_path, sha="cd" * 32)
    op = DetectDriftOperator(
        task_id="detect_drift",
        current=live,
        predictions={"predictions": predictions},
        model_name="m",
        artifact_root="file:///r",
        pipeline="p",
    )
    summary = {
        "drift": False,
        "share": 0.1,
        "drifted_columns": ["a"],
        "unknown_columns": [],
        "json_uri": "file:///r/p/reports/drift/x/drift.json",
        "report_uri": "file:///r/p/reports/drift/x/report.html",
        "model_version": "4",
    }
    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(summary))  # a skipped task's result
    assert _names(done.inputs) == [
        ("file", f"{tmp_path}/p/snapshots/{SHA}"),
        ("file", f"{tmp_path}/p/snapshots/{'cd' * 32}"),
        (MLFLOW, "models/m/versions/4"),
    ]
    [report] = done.outputs
    assert (report.namespace, report.name) == ("file", "/r/p/reports/drift/x/drift.json")
    facet = report.facets["mlopsReport"]
    assert (facet.kind, facet.verdict, facet.summary["drifted_columns"]) == ("drift", "no_drift", ["a"])


def test_performance_reads_upstream_predictions_and_labels(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.performance import MeasurePerformanceOperator

    predictions, labels = _snapshot_ref(tmp_path, sha="cd" * 32), _snapshot_ref(tmp_path, sha="ef" * 32)
    op = MeasurePerformanceOperator(
        task_id="measure_performance",
        model_name="m",
        task="classification",
        artifact_root="file:///r",
        pipeline="p",
        labels_task_id="ingest_labels",
    )
    summary = {"degraded": True, "model_version": "4", "window": {}, "report_uri": "file:///r/p/perf.html"}
    upstream = {"score": {"predictions": predictions}, "ingest_labels": labels}

    done = op.get_openlineage_facets_on_complete(FakeTaskInstance(summary, upstream))

    assert [name for _, name in _names(done.inputs)] == [
        f"{tmp_path}/p/snapshots/{'cd' * 32}",
        f"{tmp_path}/p/snapshots/{'ef' * 32}",
        "models/m/versions/4",
    ]
    assert done.outputs[0].facets["mlopsReport"].verdict == "degraded"


def test_the_champion_check_reads_the_snapshot_and_the_champion(mlflow_env, tmp_path):
    from airflow_mlops_provider.operators.champion import CheckChampionOperator

    op = CheckChampionOperator(task_id="check_unchanged", model_name="m", snapshot=_snapshot_ref(tmp_path))
    done = op.get_openlineage_facets_on_complete(FakeTaskInstance({"champion_version": "4", "skip": False}))
    assert _names(done.inputs)[1] == (MLFLOW, "models/m/versions/4")


def test_the_provider_parses_its_dags_without_openlineage():
    """The ``openlineage`` extra is optional: with the OpenLineage client and the provider's extractors
    unimportable (Airflow itself still discovers the installed provider), every operator module and
    the example DAGs load, and nothing imported the client."""
    dags = Path(__file__).resolve().parents[2] / "dags"
    code = (
        "import sys, importlib, pkgutil, json\n"
        f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
        "import airflow_mlops_provider.operators as ops\n"
        "for m in pkgutil.iter_modules(ops.__path__): importlib.import_module(f'{ops.__name__}.{m.name}')\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dags)!r})\n"
        "print(json.dumps([bag.import_errors == {}, len(bag.dag_ids),"
        " sorted(m for m, v in sys.modules.items() if m.split('.')[0] == 'openlineage' and v)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, 6, []]
