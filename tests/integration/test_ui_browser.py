"""The Airflow UI, in headless Chromium on loopback, shows the provider's DAGs and extra links."""

from __future__ import annotations

import time

import pytest

from tests.support.browser import browser_available, chromium, login

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not browser_available(), reason="Debian chromium/chromedriver not installed"),
]


def _wait_for_text(driver, text: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if text in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared on {driver.current_url}; page shows:\n{body[:2000]}")


def _ui(live_airflow) -> tuple[str, str]:
    live_airflow._headers()
    return live_airflow.api_url, live_airflow._token


def test_the_ui_lists_a_dag_with_its_documentation(live_airflow, probe_dags):
    dag = live_airflow.wait_for_dag("live_probe_mlflow")
    base, token = _ui(live_airflow)
    with chromium() as driver:
        login(driver, base, token)
        driver.get(f"{base}/dags/{dag['dag_id']}")
        _wait_for_text(driver, "live_probe_mlflow")
        assert "log_run" in _wait_for_text(driver, "log_run")
