"""ScoreBatchOperator in dag.test(): the champion from a real MLflow registry scores a snapshot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airflow_mlops_provider.core.scoring import ScoringError, score_snapshot
from airflow_mlops_provider.core.snapshot import open_snapshot, write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import frame, live_window, register_champion

pytestmark = pytest.mark.integration

DAG_SOURCE = """
from airflow.sdk import DAG
from airflow_mlops_provider.operators.score import ScoreBatchOperator

with DAG("{dag_id}", schedule=None) as dag:
    ScoreBatchOperator(
        task_id="score",
        snapshot={snapshot},
        model_name="{model}",
        artifact_root="{root}",
        pipeline="scoring",
        retries=0,
    )
"""


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("score-root")
    return {**register_champion(TrackingSettings(mlflow_server), root, "scoring"), "root": root}


def _dag(dag_id: str, snapshot: dict, champion: dict, model: str | None = None) -> str:
    return DAG_SOURCE.format(
        dag_id=dag_id,
        snapshot=json.dumps(snapshot),
        model=model or champion["name"],
        root=champion["root"].as_uri(),
    )


def test_scores_a_snapshot_with_the_champion_into_a_predictions_snapshot(dags, mlflow_conn, champion):
    live = live_window(champion["root"], "scoring", shift=0.0, seed=5, rows=2500)
    run = dags.run(_dag("score_ok", live, champion), "score_ok")
    assert dags.task_states(run) == {"score": "success"}
    out = dags.xcom(run, "score")
    assert out["model_version"] == champion["version"]
    assert out["model_uri"] == f"models:/{champion['name']}/{champion['version']}"
    predictions = open_snapshot(out["predictions"]["uri"])
    assert "/scoring/predictions/" in predictions.location.uri
    assert predictions.manifest["model_version"] == champion["version"]
    assert predictions.manifest["source_sha256"] == live["sha256"]
    table = predictions.read()
    assert table.column_names == ["prediction", "proba_0", "proba_1"]
    assert table.num_rows == 2500
    features = open_snapshot(live["uri"]).read().to_pandas()
    np.testing.assert_array_equal(table["prediction"].to_numpy(), champion["model"].predict(features))
    np.testing.assert_allclose(table["proba_1"].to_numpy(), champion["model"].predict_proba(features)[:, 1])
    link = dags.xcom(run, "score", key="mlflow_model_version_url")
    assert link.endswith(f"/#/models/{champion['name']}/versions/{champion['version']}")
    # a retry scores into the same content-addressed snapshot
    again = dags.run(_dag("score_again", live, champion), "score_again")
    assert dags.xcom(again, "score")["predictions"] == out["predictions"]


def test_missing_features_fail_clearly_and_write_nothing(dags, mlflow_conn, champion, mlflow_server):
    table = frame(50, seed=3).drop(columns=["x2", "y"])
    import pyarrow as pa

    snap = write_snapshot(
        pa.Table.from_pandas(table, preserve_index=False), Location(champion["root"].as_uri()), "s2"
    )
    with pytest.raises(ScoringError, match=r"lacks the feature columns \['x2'\]"):
        score_snapshot(
            snap.to_dict(),
            model_name=champion["name"],
            settings=TrackingSettings(mlflow_server),
            artifact_root=Location(champion["root"].as_uri()),
            pipeline="s2",
        )
    run = dags.run(_dag("score_missing", snap.to_dict(), champion), "score_missing")
    assert dags.task_states(run) == {"score": "failed"}
    assert not Location(champion["root"].as_uri()).join("s2", "predictions").exists()


def test_a_model_without_a_champion_fails_clearly(dags, mlflow_conn, champion, mlflow_server):
    live = live_window(champion["root"], "scoring", shift=0.0, seed=6, rows=100)
    with pytest.raises(ScoringError, match="Model 'no-such-model' has no 'champion' alias"):
        score_snapshot(
            live,
            model_name="no-such-model",
            settings=TrackingSettings(mlflow_server),
            artifact_root=Location(champion["root"].as_uri()),
            pipeline="scoring",
        )
    run = dags.run(_dag("score_nochamp", live, champion, model="no-such-model"), "score_nochamp")
    assert dags.task_states(run) == {"score": "failed"}


def test_kept_columns_travel_with_the_predictions_and_a_missing_one_fails(mlflow_server, champion):
    """The row id that delayed labels are joined on is copied into the predictions, row for row."""
    import pyarrow as pa

    table = frame(300, seed=8).drop(columns=["y"])
    table["row_id"] = [f"r{i}" for i in range(len(table))]
    root = Location(champion["root"].as_uri())
    snap = write_snapshot(pa.Table.from_pandas(table, preserve_index=False), root, "kept").to_dict()
    settings = TrackingSettings(mlflow_server)
    out = score_snapshot(
        snap, model_name=champion["name"], settings=settings, artifact_root=root, pipeline="kept",
        keep_columns=["row_id"],
    )  # fmt: skip
    scored = open_snapshot(out["predictions"]["uri"]).read()
    assert scored.column_names == ["prediction", "proba_0", "proba_1", "row_id"]
    assert scored["row_id"].to_pylist() == table["row_id"].tolist()
    with pytest.raises(ScoringError, match=r"lacks the column\(s\) \['ticket'\] to keep"):
        score_snapshot(
            snap, model_name=champion["name"], settings=settings, artifact_root=root, pipeline="kept",
            keep_columns=["ticket"],
        )  # fmt: skip
