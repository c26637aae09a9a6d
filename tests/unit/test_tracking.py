"""Tracking settings: no secrets in reprs or logs, experiments placed under the artifact root."""

from __future__ import annotations

from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment, strip_userinfo


def test_userinfo_is_stripped_for_display():
    assert strip_userinfo("https://bob:pw@mlflow.example:443/x") == "https://mlflow.example:443/x"
    assert TrackingSettings("https://bob:pw@h").display_uri == "https://h"


def test_local_store_experiments_live_under_the_artifact_root(tmp_path):
    client = TrackingSettings(f"sqlite:///{tmp_path}/mlflow.db").client()
    first = ensure_experiment(client, "exp", (tmp_path / "artifacts").as_uri())
    assert ensure_experiment(client, "exp", "file:///elsewhere") == first
    assert client.get_experiment(first).artifact_location == f"{(tmp_path / 'artifacts').as_uri()}/mlflow/exp"
