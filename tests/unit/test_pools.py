"""Promotion pools: derived from the pipeline configs and importable with Airflow's own CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_mlops_provider.factory.pools import required_pools

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_every_example_pipeline_gets_a_one_slot_pool():
    pools = required_pools(REPO / "dags" / "pipelines")
    assert pools["mlops_promote_cancer_diagnosis"]["slots"] == 1
    assert set(pools) == {"mlops_promote_cancer_diagnosis", "mlops_promote_diabetes"}


def test_airflow_pools_import_creates_them(airflow_db, tmp_path):
    printed = subprocess.run(
        [sys.executable, "-m", "airflow_mlops_provider.factory.pools", REPO / "dags" / "pipelines"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (tmp_path / "pools.json").write_text(printed.stdout)
    subprocess.run(
        [BIN / "airflow", "pools", "import", tmp_path / "pools.json"], check=True, capture_output=True
    )
    listed = subprocess.run(
        [BIN / "airflow", "pools", "get", "mlops_promote_diabetes", "-o", "json"],
        capture_output=True,
        text=True,
    )
    assert json.loads(listed.stdout)[0]["slots"] == "1"
