"""Tracking settings: no secrets in reprs or logs, experiments placed under the artifact root,
a fresh SQLite store safe for concurrent first use."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import threading
from typing import Any

import pytest

from airflow_mlops_provider.core.tracking import (
    TrackingSettings,
    check_reachable,
    ensure_experiment,
    strip_userinfo,
)

PIPELINES = 5


def test_userinfo_is_stripped_for_display():
    assert strip_userinfo("https://bob:pw@mlflow.example:443/x") == "https://mlflow.example:443/x"
    assert TrackingSettings("https://bob:pw@h").display_uri == "https://h"
    assert strip_userinfo("postgresql://u:p@ss@db:bad/x") == "postgresql://db:bad/x"  # no crash, no leak
    text = "API request to http://bob:pw@h:5000/api failed; retry https://x:y@other/"
    assert strip_userinfo(text) == "API request to http://h:5000/api failed; retry https://other/"


def test_credentials_in_uris_never_show_in_reprs_or_reachability_errors():
    settings = TrackingSettings(
        "http://bob:uri-password@127.0.0.1:9",
        registry_uri="postgresql://reg:db-password@127.0.0.1:9/registry",
        ui_url="https://viewer:ui-password@mlflow.example",
        max_retries=0,
        request_timeout_s=2,
    )
    assert not any(secret in repr(settings) for secret in ("uri-password", "db-password", "ui-password"))
    assert "127.0.0.1:9" in repr(settings)
    assert settings.browser_url == "https://mlflow.example"
    with pytest.raises(ConnectionError) as info:
        check_reachable(settings)
    assert str(info.value).startswith("Cannot reach MLflow at http://127.0.0.1:9: ")
    assert "uri-password" not in str(info.value)


def test_local_store_experiments_live_under_the_artifact_root(tmp_path):
    client = TrackingSettings(f"sqlite:///{tmp_path}/mlflow.db").client()
    first = ensure_experiment(client, "exp", (tmp_path / "artifacts").as_uri())
    assert ensure_experiment(client, "exp", "file:///elsewhere") == first
    assert client.get_experiment(first).artifact_location == f"{(tmp_path / 'artifacts').as_uri()}/mlflow/exp"


def _first_task(index: int, start: Any, results: Any) -> None:
    """What a pipeline's first MLflow-touching tasks do, through the hook every operator uses."""
    from airflow_mlops_provider.core.tracking import check_reachable
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    try:
        settings = MlflowHook("mlflow_fresh").settings
        start.wait(timeout=300)  # all processes hit the brand-new store at the same moment
        check_reachable(settings)
        client = settings.client()
        ensure_experiment(client, f"pipeline_{index}")
        client.create_registered_model(f"model_{index}")
        results.put((index, None))
    except Exception as err:  # reported to the test, which names it
        results.put((index, f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"))


@pytest.mark.slow
def test_five_pipelines_first_use_of_a_fresh_sqlite_store_at_once(tmp_path, monkeypatch):
    """MLflow migrates a new SQLite schema unlocked; five first tasks at once raced it and failed."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_FRESH", json.dumps({"conn_type": "mlflow", "host": uri}))
    monkeypatch.chdir(tmp_path)  # MLflow's default experiment points at ./mlruns
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PIPELINES), context.Queue()
    processes = [context.Process(target=_first_task, args=(i, start, results)) for i in range(PIPELINES)]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=500) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert {i: error for i, error in outcomes.items() if error} == {}
    client = TrackingSettings(uri).client()
    assert len(client.search_registered_models()) == PIPELINES


class _RefusingServer(http.server.ThreadingHTTPServer):
    """A stand-in MLflow server on loopback that answers 500 and records each request's credentials."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server.seen.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_two_settings_in_one_process_keep_their_own_credentials_and_retries(monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "outer-token")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    before = dict(os.environ)
    server = _RefusingServer()
    try:
        first = TrackingSettings(server.url, token="token-a", max_retries=0, request_timeout_s=5).client()
        second = TrackingSettings(server.url, token="token-b", max_retries=1, request_timeout_s=5).client()
        for client in (first, second, first):
            with pytest.raises(MlflowException):
                client.search_experiments()
    finally:
        server.shutdown()
        server.server_close()
    # token-b's settings retry once, token-a's never; nobody sends the process's own token.
    assert server.seen == ["Bearer token-a", "Bearer token-b", "Bearer token-b", "Bearer token-a"]
    assert dict(os.environ) == before


def test_settings_environment_is_restored_and_nests(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "postgresql://outer/registry")
    before = dict(os.environ)
    outer = TrackingSettings("http://127.0.0.1:9", token="t", insecure_tls=True, max_retries=7)
    inner = TrackingSettings(f"sqlite:///{tmp_path}/mlflow.db")
    with outer.environment():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"
        assert "MLFLOW_REGISTRY_URI" not in os.environ
        with inner.environment():
            assert os.environ["MLFLOW_TRACKING_URI"] == inner.tracking_uri
            assert not {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_INSECURE_TLS"} & os.environ.keys()
        assert os.environ["MLFLOW_TRACKING_TOKEN"] == "t"
    assert dict(os.environ) == before


def test_a_subprocess_environment_holds_only_these_settings():
    earlier = {
        "PATH": "/bin",
        "MLFLOW_REGISTRY_URI": "postgresql://db/registry",
        "MLFLOW_TRACKING_TOKEN": "x",
    }
    env = TrackingSettings("http://mlflow:5000", max_retries=2).environ(earlier)
    assert env == {
        "PATH": "/bin",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
