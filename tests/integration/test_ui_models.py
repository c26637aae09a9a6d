"""The Models page in a live Airflow UI, in headless Chromium: after a real loop (train, promote,
check drift) it lists the pipelines with their champions, opens a drift report, and hides a
pipeline from a user who may not read its DAGs.

The deployment is the integration one (api-server, scheduler, dag-processor, triggerer, PostgreSQL,
MLflow server, moto S3) with two SimpleAuthManager users, ``admin`` and ``viewer``, under
``tests.support.ui_auth.RestrictedAuthManager``, which denies ``viewer`` the DAGs of one pipeline
(SimpleAuthManager alone decides by role, never per DAG).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import mlflow
import pytest
import requests

from airflow_mlops_provider import datasets
from airflow_mlops_provider.operators.promote import promotion_pool
from tests.support.airflow_stack import AirflowStack, airflow_stack
from tests.support.browser import browser_available, chromium, login
from tests.support.pipelines import cancer_pipeline_yaml
from tests.support.services import mlflow_connection, moto_connection, postgres_database

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not browser_available(), reason="Debian chromium/chromedriver not installed"),
]

REPO = Path(__file__).resolve().parents[2]
LIVE, HIDDEN = "uilive", "uihidden"
# The README's screenshot is refreshed with MLOPS_UI_SCREENSHOT=docs/images/models_page.png; a plain
# run leaves the working tree alone.
SCREENSHOT = Path(os.environ.get("MLOPS_UI_SCREENSHOT") or Path(tempfile.gettempdir()) / "models_page.png")


def _upload(s3: Any, bucket: str, key: str, frame: Any) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue().encode())


@pytest.fixture(scope="module")
def ui_stack(session_dir: Path, mlflow_server: str, moto_endpoint: str) -> Iterator[dict[str, Any]]:
    """The example pipelines plus two test pipelines on S3 (one hidden from ``viewer``), running."""
    folder = session_dir / "ui-dags"
    shutil.copytree(REPO / "dags", folder)
    bucket = f"ui-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    _upload(s3, bucket, "cancer/train/batch-000.csv", datasets.batch("cancer", 0, 2))
    root = (session_dir / "ui-artifacts").as_uri()
    for name in (LIVE, HIDDEN):
        yaml = cancer_pipeline_yaml(name, model=f"{name}_model", bucket=bucket, artifact_root=root)
        (folder / "pipelines" / f"{name}.yaml").write_text(yaml)
    env = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_connection(mlflow_server),
        "AIRFLOW_CONN_AWS_DEFAULT": moto_connection(moto_endpoint),
        "MLOPS_ARTIFACT_ROOT": root,
        "PYTHONPATH": str(REPO),  # the api-server imports the test auth manager
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.support.ui_auth.RestrictedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "MLOPS_UI_TEST_HIDDEN_DAGS": "viewer="
        + "|".join(f"{k}_{HIDDEN}" for k in ("retrain", "monitor", "rollback")),
    }
    with (
        postgres_database("airflow_ui") as db_url,
        airflow_stack(session_dir / "ui-airflow", folder, db_url, env) as stack,
    ):
        stack.ensure_pool(promotion_pool(f"{LIVE}_model"), 1, "serialise promotions")
        for dag_id in (f"retrain_{LIVE}", f"monitor_{LIVE}", f"retrain_{HIDDEN}", "retrain_cancer"):
            stack.wait_for_dag(dag_id, timeout_s=300)
        yield {"stack": stack, "s3": s3, "bucket": bucket}


def _token(stack: AirflowStack, user: str) -> str:
    password = json.loads((stack.home / "passwords.json").read_text())[user]
    reply = requests.post(
        f"{stack.api_url}/auth/token", json={"username": user, "password": password}, timeout=30
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def _run(stack: AirflowStack, dag_id: str, timeout_s: float = 900) -> None:
    run_id = stack.trigger(dag_id)
    finished = stack.wait_for_run(dag_id, run_id, timeout_s=timeout_s)
    assert finished["state"] == "success", stack.task_states(dag_id, run_id)


@pytest.fixture(scope="module")
def looped(ui_stack: dict[str, Any], mlflow_server: str) -> str:
    """Train and promote the live pipeline, then check a live window for drift; its champion version."""
    stack, s3, bucket = ui_stack["stack"], ui_stack["s3"], ui_stack["bucket"]
    _run(stack, f"retrain_{LIVE}")
    _upload(s3, bucket, "cancer/live/window-000.csv", datasets.live_window("cancer", 300, drift=2.0, seed=3))
    _run(stack, f"monitor_{LIVE}", timeout_s=600)
    return str(
        mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(f"{LIVE}_model", "champion").version
    )


def _models_frame(driver: Any, stack: AirflowStack, expected: str, timeout_s: float = 90) -> str:
    """Open the Models view of Airflow's UI, enter its frame and return the table's text once it
    shows ``expected``."""
    driver.get(f"{stack.api_url}/plugin/mlops-models")
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        driver.switch_to.default_content()
        frames = driver.find_elements("tag name", "iframe")
        if frames:
            driver.switch_to.frame(frames[0])
            tables = driver.find_elements("id", "models")
            text = tables[0].text if tables else ""
            if expected in text:
                return text
        time.sleep(1)
    raise AssertionError(f"{expected!r} never appeared in the Models view; it shows:\n{text[:2000]}")


def _row(driver: Any, pipeline: str) -> Any:
    return driver.find_element("css selector", f'tr[data-pipeline="{pipeline}"]')


def test_the_models_menu_entry_appears(ui_stack: dict[str, Any]) -> None:
    stack = ui_stack["stack"]
    with chromium() as driver:
        login(driver, stack.api_url, _token(stack, "admin"))
        driver.get(f"{stack.api_url}/")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hrefs = [a.get_attribute("href") or "" for a in driver.find_elements("tag name", "a")]
            if any(h.endswith("/plugin/mlops-models") for h in hrefs):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no Models entry in the navigation; links: {hrefs}")


def test_the_page_lists_the_pipelines_with_their_champions_and_opens_a_report(
    ui_stack: dict[str, Any], looped: str, mlflow_server: str
) -> None:
    stack = ui_stack["stack"]
    client = mlflow.MlflowClient(mlflow_server)
    with chromium() as driver:
        login(driver, stack.api_url, _token(stack, "admin"))
        text = _models_frame(driver, stack, f"v{looped}")
        for pipeline in ("cancer", "diabetes", LIVE, HIDDEN):
            assert pipeline in text
        for pipeline, model in (
            ("cancer", "cancer_diagnosis"),
            (LIVE, f"{LIVE}_model"),
            (HIDDEN, f"{HIDDEN}_model"),
        ):
            champion = _row(driver, pipeline).find_element("class name", "champion").text
            expected = _champion(client, model)
            assert (f"v{expected}" in champion) if expected else ("none yet" in champion), (
                pipeline,
                champion,
            )
        assert "pass" in _row(driver, LIVE).find_element("class name", "decision").text
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.switch_to.default_content()
        driver.save_screenshot(str(SCREENSHOT))
        _models_frame(driver, stack, f"v{looped}")
        drift = _row(driver, LIVE).find_element("css selector", "td.drift a")
        assert drift.get_attribute("href").startswith(f"{stack.api_url}/mlops/pipelines/{LIVE}/files/drift/")
        drift.click()
        heading = f"Drift: {LIVE} current"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and heading not in driver.find_element("tag name", "body").text:
            time.sleep(0.5)
        assert heading in driver.find_element("tag name", "body").text


def _champion(client: Any, model: str) -> str | None:
    from airflow_mlops_provider.core.registry import alias_number

    return alias_number(client, model, "champion")


def test_a_user_who_may_not_read_a_pipelines_dags_does_not_see_it(
    ui_stack: dict[str, Any], looped: str
) -> None:
    stack = ui_stack["stack"]
    with chromium() as driver:
        login(driver, stack.api_url, _token(stack, "viewer"))
        text = _models_frame(driver, stack, LIVE)
        assert HIDDEN not in text
        assert f"v{looped}" in text
    hidden = requests.get(
        f"{stack.api_url}/mlops/pipelines/{HIDDEN}",
        headers={"Authorization": f"Bearer {_token(stack, 'viewer')}"},
        timeout=30,
    )
    assert hidden.status_code == 404
