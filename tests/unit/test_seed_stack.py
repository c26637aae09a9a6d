"""scripts/seed_stack.py: lands example data where the pipelines read it and starts their loop."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _seed_module() -> Any:
    spec = importlib.util.spec_from_file_location("seed_stack", REPO / "scripts" / "seed_stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeApi:
    """Records the REST calls; knows one asset id per asset name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def asset_id(self, name: str, timeout_s: float) -> int:
        return len(name)

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        self.calls.append((method, path, body))
        return {}


def test_seed_writes_data_unpauses_the_dags_and_posts_new_data_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLOPS_DATA_ROOT", (tmp_path / "data").as_uri())
    monkeypatch.setenv("MLOPS_PLAN_CACHE", "off")
    shutil.copytree(REPO / "dags" / "pipelines", tmp_path / "pipelines")
    (tmp_path / "pipelines" / "custom.yaml").write_text(
        (tmp_path / "pipelines" / "diabetes.yaml").read_text().replace("name: diabetes", "name: custom")
    )
    api = FakeApi()
    assert _seed_module().seed(tmp_path / "pipelines", api, timeout_s=1) == ["cancer", "diabetes"]
    batch = pd.read_csv(tmp_path / "data" / "cancer" / "train" / "batch-000.csv")
    assert {"id", "diagnosis", "mean_radius"} <= set(batch.columns)
    assert (tmp_path / "data" / "diabetes" / "live" / "window-001.csv").exists()
    unpaused = {
        path for method, path, body in api.calls if method == "PATCH" and body == {"is_paused": False}
    }
    assert "/api/v2/dags/retrain_cancer" in unpaused and "/api/v2/dags/monitor_diabetes" in unpaused
    events = [body for method, path, body in api.calls if path == "/api/v2/assets/events"]
    assert [e["asset_id"] for e in events] == [len("mlops.cancer.new_data"), len("mlops.diabetes.new_data")]
    assert events[0]["extra"]["files"][0].endswith("/cancer/train/batch-000.csv")
