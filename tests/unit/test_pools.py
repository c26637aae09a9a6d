"""Promotion pools: derived from the pipeline configs and importable with Airflow's own CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_mlops_provider.factory.pools import required_pools

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = REPO / "dags" / "pipelines"


def _pools_script(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_mlops_provider.factory.pools", folder], capture_output=True, text=True
    )


def test_every_example_pipeline_gets_a_one_slot_pool():
    pools, errors = required_pools(EXAMPLES)
    assert errors == {}
    assert pools["mlops_promote_cancer_diagnosis"]["slots"] == 1
    assert set(pools) == {"mlops_promote_cancer_diagnosis", "mlops_promote_diabetes"}


def test_a_broken_config_is_reported_and_the_others_still_get_their_pools(tmp_path: Path):
    """One bad YAML made the script exit 1, failing the compose init job and every Airflow service."""
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "broken.yaml").write_text("name: [x\n")
    result = _pools_script(tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"mlops_promote_cancer_diagnosis", "mlops_promote_diabetes"}
    assert f"skipped, no pool created: {tmp_path / 'broken.yaml'}: invalid pipeline config" in result.stderr
    assert "invalid YAML at line" in result.stderr


def test_the_pools_script_reads_the_files_the_dag_loader_reads(tmp_path: Path):
    """A ``.yml`` file is no pipeline to the loader, so it must be none to the pools script either."""
    from airflow_mlops_provider.factory import load_dags

    shutil.copy(EXAMPLES / "diabetes.yaml", tmp_path / "diabetes.yaml")
    shutil.copy(EXAMPLES / "cancer.yaml", tmp_path / "cancer.yml")
    (tmp_path / "draft.yml").write_text("name: [x\n")
    pools, errors = required_pools(tmp_path)
    assert (set(pools), errors) == ({"mlops_promote_diabetes"}, {})
    assert set(load_dags(tmp_path)) == {"retrain_diabetes", "monitor_diabetes", "rollback_diabetes"}


def test_airflow_pools_import_creates_them(airflow_db, tmp_path):
    printed = _pools_script(EXAMPLES)
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
