"""The Models pages inside Airflow's own api-server app (in process), over a real metadata DB and a
real MLflow server: what they list, who sees what, reports served safely, and read-only routes.

The api-server app is Airflow's ``create_app`` with the provider's plugin loaded from its entry
point; users come from a SimpleAuthManager subclass that hides one pipeline's DAGs from ``viewer``
(``tests.support.ui_auth``: SimpleAuthManager alone decides by role, never per DAG).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_mlops_provider.core import names
from tests.support.services import free_port, mlflow_connection

pytestmark = [pytest.mark.integration]

SUFFIX = uuid.uuid4().hex[:6]
SHOWN, HIDDEN = f"uiapp{SUFFIX}", f"uisecret{SUFFIX}"
KINDS = ("retrain", "monitor", "rollback")
NEXT_RETRAIN = datetime(2031, 1, 2, 3, 0, tzinfo=UTC)


def _seed_airflow(root: Path) -> None:
    """DAG, tag and asset rows as the dag-processor writes them for two pipelines and one other DAG."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
        session.flush()
        for pipeline in (SHOWN, HIDDEN):
            for kind in KINDS:
                dag_id = f"{kind}_{pipeline}"
                session.add(
                    DagModel(
                        dag_id=dag_id, bundle_name="dags-folder", is_stale=False, is_paused=False,
                        timetable_summary="0 3 * * *" if kind == "retrain" else None,
                        next_dagrun_create_after=NEXT_RETRAIN if kind == "retrain" else None,
                    )
                )  # fmt: skip
                session.flush()
                session.add_all(
                    [DagTag(name=t, dag_id=dag_id) for t in ("mlops", kind, f"pipeline:{pipeline}")]
                )
            extras = {
                "champion": {"model_name": _model(pipeline)},
                "training_snapshot": {"artifact_root": root.as_uri()},
            }
            for kind, extra in extras.items():
                session.add(
                    AssetModel(
                        name=f"mlops.{pipeline}.{kind}",
                        uri=f"x-mlops://{pipeline}/{kind}",
                        group="mlops",
                        extra={"pipeline": pipeline, **extra},
                    )
                )
        session.add(DagModel(dag_id=f"plain_{SUFFIX}", bundle_name="dags-folder", is_stale=False))
        session.flush()
        champion = session.query(AssetModel).filter(AssetModel.name == f"mlops.{SHOWN}.champion").one()
        session.add(
            AssetEvent(
                asset_id=champion.id, extra={"promoted": True, "champion": "2", "previous_champion": "1"},
                source_dag_id=f"retrain_{SHOWN}", source_run_id="manual__promote",
                timestamp=datetime(2030, 5, 6, 7, 8, tzinfo=UTC),
            )
        )  # fmt: skip


def _model(pipeline: str) -> str:
    return f"model_{pipeline}"


def _seed_mlflow(client: Any, root: Path) -> None:
    """v1 failed the gate, v2 passed and is champion (drift checked), v3 failed; the hidden model v1."""
    report = f"{root.as_uri()}/{SHOWN}/reports/drift/cur-ref-cfg/report.html"
    experiment = client.create_experiment(f"ui-{SUFFIX}")
    for pipeline, verdicts in ((SHOWN, ["fail", "pass", "fail"]), (HIDDEN, ["pass"])):
        model = _model(pipeline)
        client.create_registered_model(model)
        for number, verdict in enumerate(verdicts, start=1):
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "test_accuracy", 0.9 + number / 100)
            client.log_metric(run.info.run_id, "val_loss", 0.3)
            html = f'<h1>{model} v{number}: {verdict.upper()}</h1><a href="{report}">drift report</a>'
            client.log_text(run.info.run_id, html, f"decision_record/{model}/decision.html")
            record = f"{run.info.artifact_uri}/decision_record/{model}/decision.json"
            status = "promoted" if verdict == "pass" else "rejected"
            tags = {names.TAG_VERDICT: verdict, names.TAG_STATUS: status, names.TAG_RECORD_URI: record}
            client.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags)
        client.set_registered_model_alias(model, names.CHAMPION, "2" if pipeline == SHOWN else "1")
    drift = {"drift": True, "share": 0.25, "report_uri": report, "drifted_columns": ["a"]}
    client.set_model_version_tag(_model(SHOWN), "2", names.TAG_LAST_DRIFT, json.dumps(drift))


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui-artifacts")
    report = root / SHOWN / "reports" / "drift" / "cur-ref-cfg"
    report.mkdir(parents=True)
    (report / "report.html").write_text("<h1>Drift report of the live window</h1>")
    (report / "drift.json").write_text('{"share": 0.25}')
    (root / SHOWN / "snapshots" / "abc").mkdir(parents=True)
    (root / SHOWN / "snapshots" / "abc" / "manifest.json").write_text('{"secret": "snapshot data"}')
    (root / "outside.html").write_text("outside the pipeline")
    return root


@pytest.fixture(scope="module")
def api_server(airflow_db: Path, mlflow_server: str, artifact_root: Path) -> Iterator[Any]:
    """Airflow's api-server app with our plugin, a restricted SimpleAuthManager and seeded data."""
    import mlflow

    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.support.ui_auth.RestrictedAuthManager")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
        env.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "ui-test-jwt-secret-" + "0123456789abcdef" * 4)
        env.setenv("MLOPS_UI_TEST_HIDDEN_DAGS", "viewer=" + "|".join(f"{k}_{HIDDEN}" for k in KINDS))
        env.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection(mlflow_server))
        _seed_airflow(artifact_root)
        _seed_mlflow(mlflow.MlflowClient(mlflow_server), artifact_root)
        from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
        from fastapi.testclient import TestClient

        purge_cached_app()
        app = create_app("core")
        with TestClient(app) as http:
            http.tokens = {u: get_auth_manager().generate_jwt(_user(u)) for u in ("admin", "viewer")}
            yield http
        purge_cached_app()


def _user(name: str) -> Any:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return SimpleAuthManagerUser(username=name, role=name)


def _get(http: Any, path: str, user: str = "admin") -> Any:
    return http.get(path, headers={"Authorization": f"Bearer {http.tokens[user]}"})


def _rows(http: Any, user: str) -> dict[str, dict[str, Any]]:
    reply = _get(http, "/mlops/api/models", user)
    assert reply.status_code == 200, reply.text
    return {r["pipeline"]: r for r in reply.json()["models"]}


def test_the_models_page_shows_champion_decision_drift_and_next_run(api_server: Any) -> None:
    row = _rows(api_server, "admin")[SHOWN]
    assert row["model_name"] == _model(SHOWN)
    assert row["champion"] == "2"
    assert (row["champion_how"], row["champion_since"]) == ("promoted", "2030-05-06 07:08:00+00:00")
    assert row["metrics"] == {"test_accuracy": pytest.approx(0.92)}
    assert row["decision"] == {"text": "v3: fail", "href": f"/mlops/pipelines/{SHOWN}/decisions/3"}
    assert row["drift"] == {
        "text": "drift (25% of columns)",
        "href": f"/mlops/pipelines/{SHOWN}/files/drift/cur-ref-cfg/report.html",
    }
    assert {"text": "retrain: 2031-01-02 03:00 UTC", "href": f"/dags/retrain_{SHOWN}"} in row["schedule"]
    page = _get(api_server, "/mlops/models")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'data-pipeline="{SHOWN}"' in page.text and "v2" in page.text


def test_a_user_sees_only_pipelines_whose_dags_they_may_read(api_server: Any) -> None:
    assert {SHOWN, HIDDEN} <= set(_rows(api_server, "admin"))
    seen = _rows(api_server, "viewer")
    assert SHOWN in seen and HIDDEN not in seen
    assert HIDDEN not in _get(api_server, "/mlops/models", "viewer").text
    for path in (f"/mlops/pipelines/{HIDDEN}", f"/mlops/pipelines/{HIDDEN}/decisions/1",
                 f"/mlops/dags/retrain_{HIDDEN}"):  # fmt: skip
        reply = _get(api_server, path, "viewer")
        assert _model(HIDDEN) not in reply.text
        assert reply.status_code in (200, 404)
    assert _get(api_server, f"/mlops/pipelines/{HIDDEN}", "viewer").status_code == 404
    assert _get(api_server, f"/mlops/pipelines/{HIDDEN}", "admin").status_code == 200


def test_requests_without_a_token_are_refused(api_server: Any) -> None:
    assert api_server.get("/mlops/models").status_code == 401


def test_reports_open_through_the_plugin_and_links_are_rewritten(api_server: Any) -> None:
    report = _get(api_server, f"/mlops/pipelines/{SHOWN}/files/drift/cur-ref-cfg/report.html")
    assert report.status_code == 200 and "Drift report of the live window" in report.text
    data = _get(api_server, f"/mlops/pipelines/{SHOWN}/files/drift/cur-ref-cfg/drift.json")
    assert data.json() == {"share": 0.25}
    record = _get(api_server, f"/mlops/pipelines/{SHOWN}/decisions/2")
    assert record.status_code == 200 and "v2: PASS" in record.text
    assert f'href="/mlops/pipelines/{SHOWN}/files/drift/cur-ref-cfg/report.html"' in record.text
    assert "file://" not in record.text


@pytest.mark.parametrize(
    "path",
    [
        "../snapshots/abc/manifest.json",
        "drift/../../snapshots/abc/manifest.json",
        "..%2Fsnapshots%2Fabc%2Fmanifest.json",
        "%2e%2e/%2e%2e/outside.html",
        "/etc/passwd",
        "drift/cur-ref-cfg/.hidden.html",
        "drift\\..\\..\\outside.html",
        "file:///etc/passwd.html",
        "drift/cur-ref-cfg/report.parquet",
    ],
)
def test_paths_outside_the_reports_folder_are_refused(api_server: Any, path: str) -> None:
    reply = _get(api_server, f"/mlops/pipelines/{SHOWN}/files/{path}")
    assert reply.status_code in (400, 404), reply.text
    assert "snapshot data" not in reply.text and "outside the pipeline" not in reply.text
    assert "root:" not in reply.text


def test_the_dag_tab_shows_the_pipeline_history_or_says_it_is_no_pipeline(api_server: Any) -> None:
    tab = _get(api_server, f"/mlops/dags/monitor_{SHOWN}")
    assert tab.status_code == 200
    assert "Champion over time" in tab.text and "manual__promote" in tab.text
    assert f'href="/mlops/pipelines/{SHOWN}/decisions/1"' in tab.text
    assert "drift/cur-ref-cfg/report.html" in tab.text  # listed among the reports
    other = _get(api_server, f"/mlops/dags/plain_{SUFFIX}")
    assert other.status_code == 200 and "is not a DAG of an MLOps pipeline" in other.text


def test_nothing_in_the_app_can_write(api_server: Any) -> None:
    from airflow_mlops_provider.ui.app import create_app

    methods = {m for route in create_app().routes for m in getattr(route, "methods", set())}
    assert methods <= {"GET", "HEAD"}
    headers = {"Authorization": f"Bearer {api_server.tokens['admin']}"}
    assert api_server.post("/mlops/models", headers=headers).status_code == 405


def test_with_mlflow_down_the_page_still_shows_airflow_and_says_why(
    api_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops_provider.ui.app import registry

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_connection(f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(registry, "_entries", {})
    reply = _get(api_server, "/mlops/api/models")
    assert reply.status_code == 200
    body = reply.json()
    assert body["error"].startswith("MLflow could not be read")
    row = {r["pipeline"]: r for r in body["models"]}[SHOWN]
    assert row["champion"] is None and row["schedule"]
    monkeypatch.setattr(registry, "_entries", {})


def test_registry_lookups_are_batched_and_cached(mlflow_server: str, api_server: Any) -> None:
    import mlflow

    from airflow_mlops_provider.ui.registry_view import RegistryCache, read_models

    calls: list[list[str]] = []

    def reader(batch: list[str]) -> Any:
        calls.append(batch)
        return read_models(mlflow.MlflowClient(mlflow_server), batch)

    cache = RegistryCache(reader, ttl_s=60)
    first = cache.get([_model(SHOWN), _model(HIDDEN)])
    assert first[_model(SHOWN)].champion.version == "2"
    assert [v.decision for v in first[_model(SHOWN)].versions] == ["fail", "pass", "fail"]
    assert cache.get([_model(SHOWN)])[_model(SHOWN)] is first[_model(SHOWN)]
    assert cache.get([_model(SHOWN), "no_such_model"])["no_such_model"].versions == ()
    assert calls == [sorted([_model(SHOWN), _model(HIDDEN)]), ["no_such_model"]]
