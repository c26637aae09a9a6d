"""Models page benchmark: the page for 100 pipelines, our batched registry reads vs one call per cell.

One run starts an MLflow tracking server on loopback (SQLite store in a temporary directory) and
registers PIPELINES models of VERSIONS versions each, every version from a run with metrics and
decision tags, the newest but one as ``champion`` with a drift verdict. Airflow's metadata DB
(SQLite, migrated) gets the pipelines' DAGs (retrain, monitor, rollback), tags, assets and a
champion event each, as the dag-processor and scheduler write them. The page is then rendered by
Airflow's own api-server app (``create_app``, our plugin loaded from its entry point, a JWT of the
SimpleAuthManager admin), in process with an HTTP test client, ROUNDS times each way:

* ours: :func:`airflow_mlops_provider.ui.registry_view.read_models` with the cache emptied before
  each render (a cold page: every registry read happens), and once warm (within the cache's TTL);
* baseline ``per_cell``: the same page with the registry read one call per cell, as a page written
  without batching would (``get_registered_model`` for the aliases, ``search_model_versions`` of
  one model for its decisions, ``get_run`` for the champion's metrics).

Both render the same rows (checked). ``models_page_s`` is ours, cold, median (target < 1 s).

Usage: ``python bench/ui.py`` (100 pipelines) or ``python bench/ui.py --quick`` (10).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, quick_flag, write_results
from tests.support.services import background_process, free_port, mlflow_connection

BIN = Path(sys.executable).parent
VERSIONS = 3
ROUNDS = 5
KINDS = ("retrain", "monitor", "rollback")


def _airflow_env(work: Path) -> None:
    os.environ.update(
        {
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "bench-ui-" + "0123456789abcdef" * 4,
        }
    )
    (work / "passwords.json").write_text('{"admin": "admin"}')
    subprocess.run([BIN / "airflow", "db", "migrate"], check=True, capture_output=True)


def _seed_mlflow(client: Any, pipelines: list[str]) -> None:
    from airflow_mlops_provider.core import names

    experiment = client.create_experiment("bench-ui")
    for pipeline in pipelines:
        client.create_registered_model(pipeline)
        for number in range(1, VERSIONS + 1):
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "test_roc_auc", 0.9 + number / 100)
            client.log_metric(run.info.run_id, "test_accuracy", 0.8 + number / 100)
            verdict = "pass" if number < VERSIONS else "fail"
            tags = {
                names.TAG_VERDICT: verdict,
                names.TAG_STATUS: "promoted" if verdict == "pass" else "rejected",
                names.TAG_RECORD_URI: f"{run.info.artifact_uri}/decision_record/{pipeline}/decision.json",
            }
            client.create_model_version(
                pipeline, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags
            )
        champion = str(VERSIONS - 1)
        client.set_registered_model_alias(pipeline, names.CHAMPION, champion)
        client.set_registered_model_alias(pipeline, names.PREVIOUS_CHAMPION, "1")
        drift = {
            "drift": False,
            "share": 0.1,
            "report_uri": f"file:///bench/{pipeline}/reports/drift/x/report.html",
        }
        client.set_model_version_tag(pipeline, champion, names.TAG_LAST_DRIFT, json.dumps(drift))


def _seed_airflow(pipelines: list[str]) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
        for pipeline in pipelines:
            for kind in KINDS:
                dag_id = f"{kind}_{pipeline}"
                session.add(
                    DagModel(dag_id=dag_id, bundle_name="dags-folder", is_stale=False, is_paused=False)
                )
                session.flush()
                session.add_all(
                    [DagTag(name=t, dag_id=dag_id) for t in ("mlops", kind, f"pipeline:{pipeline}")]
                )
            asset = AssetModel(
                name=f"mlops.{pipeline}.champion", uri=f"x-mlops://{pipeline}/champion", group="mlops",
                extra={"pipeline": pipeline, "model_name": pipeline},
            )  # fmt: skip
            session.add(asset)
            session.flush()
            session.add(
                AssetEvent(
                    asset_id=asset.id, extra={"promoted": True, "champion": str(VERSIONS - 1)},
                    source_dag_id=f"retrain_{pipeline}", timestamp=datetime.now(UTC),
                )
            )  # fmt: skip


def per_cell_reader(client: Any) -> Callable[[list[str]], dict[str, Any]]:
    """The registry read one call per cell: aliases, decisions and metrics asked model by model."""
    from airflow_mlops_provider.core.registry import filter_value
    from airflow_mlops_provider.ui.registry_view import ModelView, VersionView, _key_metrics

    def read(names: list[str]) -> dict[str, ModelView]:
        out = {}
        for name in names:
            by_version: dict[str, tuple[str, ...]] = {}
            for alias, version in client.get_registered_model(name).aliases.items():
                by_version[str(version)] = (*by_version.get(str(version), ()), alias)
            found = client.search_model_versions(f"name = {filter_value(name)}")
            versions = sorted(
                (
                    VersionView(str(v.version), v.run_id, int(v.creation_timestamp),
                                by_version.get(str(v.version), ()), dict(v.tags))
                    for v in found
                ),
                key=lambda v: int(v.version), reverse=True,
            )  # fmt: skip
            model = ModelView(name, tuple(versions))
            champion = model.champion
            metrics = client.get_run(champion.run_id).data.metrics if champion and champion.run_id else {}
            out[name] = ModelView(name, tuple(versions), _key_metrics(metrics))
        return out

    return read


class CountingClient:
    """An MlflowClient that counts its public calls (what the server answers)."""

    def __init__(self, client: Any) -> None:
        self._client, self.calls = client, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call


def _render(http: Any, token: str) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    page = http.get("/mlops/models", headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - start
    assert page.status_code == 200, page.text[:500]
    rows = http.get("/mlops/api/models", headers={"Authorization": f"Bearer {token}"}).json()
    assert rows["error"] is None, rows["error"]
    return elapsed, {r["pipeline"]: (r["champion"], r["decision"], r["metrics"]) for r in rows["models"]}


def _measure(
    http: Any, token: str, reader: Callable[[list[str]], Any], counter: CountingClient
) -> dict[str, Any]:
    """Cold renders (cache emptied each time): seconds per render, MLflow calls per render, rows."""
    from airflow_mlops_provider.ui import app as ui_app
    from airflow_mlops_provider.ui.registry_view import RegistryCache

    times, rows = [], {}
    for _ in range(ROUNDS):
        ui_app.registry = RegistryCache(reader, ttl_s=3600)
        before = counter.calls
        elapsed, rows = _render(http, token)
        calls = counter.calls - before
        times.append(elapsed)
    warm = [_render(http, token)[0] for _ in range(ROUNDS)]
    return {
        "median_s": statistics.median(times),
        "warm_s": statistics.median(warm),
        "calls": calls,
        "rows": rows,
    }


def main() -> None:
    quick = quick_flag()
    count = 10 if quick else 100
    pipelines = [f"bench_ui_{i:03d}" for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        work = Path(tmp)
        _airflow_env(work)
        port = free_port()
        server = [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                  "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
                  "--artifacts-destination", (work / "artifacts").as_uri()]  # fmt: skip
        with background_process(server, port, work / "mlflow.log", timeout_s=180):
            url = f"http://127.0.0.1:{port}"
            os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = mlflow_connection(url)
            import mlflow

            print(f"seeding {count} pipelines ({count * VERSIONS} model versions)...", flush=True)
            _seed_mlflow(mlflow.MlflowClient(url), pipelines)
            _seed_airflow(pipelines)
            figures = _bench(url, count)
    rows = [
        ("ours: cold page (s)", figures["models_page_s"],
         f"{figures['models_page_mlflow_calls']} MLflow calls"),
        ("ours: warm page, cached (s)", figures["models_page_warm_s"], "within the cache TTL"),
        ("per-cell baseline: cold page (s)", figures["per_cell_page_s"],
         f"{figures['per_cell_page_mlflow_calls']} MLflow calls"),
        ("per_cell / ours", figures["per_cell_over_ours_ratio"], "x slower without batching"),
    ]  # fmt: skip
    print_table(f"Models page, {count} pipelines (target: ours < 1 s)", rows)
    write_results("ui", figures, quick)


def _bench(url: str, count: int) -> dict[str, Any]:
    import mlflow
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airflow_mlops_provider.ui.registry_view import read_models

    counter = CountingClient(mlflow.MlflowClient(url))
    with TestClient(create_app("core")) as http:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        ours = _measure(http, token, lambda names: read_models(counter, names), counter)
        naive = _measure(http, token, per_cell_reader(counter), counter)
    assert len(ours["rows"]) == count and ours["rows"] == naive["rows"], "the two readers disagree"
    return {
        "pipelines": count,
        "models_page_s": round(ours["median_s"], 4),
        "models_page_warm_s": round(ours["warm_s"], 4),
        "models_page_mlflow_calls": ours["calls"],
        "per_cell_page_s": round(naive["median_s"], 4),
        "per_cell_page_mlflow_calls": naive["calls"],
        "per_cell_over_ours_ratio": round(naive["median_s"] / ours["median_s"], 2),
        "rounds": ROUNDS,
        "versions_per_model": VERSIONS,
    }


if __name__ == "__main__":
    main()
