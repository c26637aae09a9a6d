"""A drift check against the champion's training data compares the champion's features, not its target.

Live inputs (a monitoring window, the prediction service's request log) never carry the target,
so comparing the whole training snapshot would call the target unknown in every check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops_provider.core.drift import run_drift_check
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.drift_models import live_window, register_champion

pytestmark = pytest.mark.integration

PIPELINE = "features"


def test_the_champions_training_data_is_compared_on_its_features_unless_include_says(
    mlflow_server: str, tmp_path: Path
) -> None:
    settings = TrackingSettings(mlflow_server)
    champion = register_champion(settings, tmp_path, PIPELINE)  # trained on x1, x2, region -> y
    live = live_window(tmp_path, PIPELINE, shift=1.0, seed=3, rows=500)  # x1 moved; no y

    def check(config: dict[str, list[str]]) -> list[tuple[str, str]]:
        result = run_drift_check(
            live,
            artifact_root=Location(tmp_path.as_uri()),
            pipeline=PIPELINE,
            config=config,
            model_name=champion["name"],
            settings=settings,
        ).result
        return [(column.name, column.verdict) for column in result.columns]

    assert check({}) == [("x1", "drift"), ("x2", "no drift"), ("region", "no drift")]
    assert check({"include": ["x1", "y"]}) == [("x1", "drift"), ("y", "unknown")]  # the user's columns
