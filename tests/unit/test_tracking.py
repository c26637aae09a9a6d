"""Tracking settings: no secrets in reprs or logs, experiments placed under the artifact root,
a fresh SQLite store safe for concurrent first use."""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import pytest

from airflow_mlops_provider.core import tracking
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


def test_applying_settings_leaves_nothing_of_earlier_settings_behind(tmp_path, monkeypatch):
    for name in tracking._EXPORTED:  # restored after the test
        monkeypatch.delenv(name, raising=False)
    TrackingSettings(
        "http://127.0.0.1:9", registry_uri="postgresql://db/registry", token="t", insecure_tls=True
    ).apply()
    TrackingSettings(f"sqlite:///{tmp_path}/mlflow.db").apply()
    leftovers = ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_INSECURE_TLS")
    assert {name: os.environ[name] for name in leftovers if name in os.environ} == {}
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/mlflow.db"
