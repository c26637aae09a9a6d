"""Loading a downloaded model directory: confined to it, and every damaged file named.

Issue 13: an absolute (or ``..``) artifact path in ``MLmodel`` made the loader read a model from
anywhere on the worker, and a corrupt ``MLmodel`` or truncated ``tabular.json`` surfaced as a bare
YAML or JSON error that named no file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from airflow_mlops_provider.core.model_io import TABULAR_ARTIFACT, load_local_model
from airflow_mlops_provider.core.tabular_model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    TabularModel,
    TabularModelError,
)


def save_model(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=40), "y": rng.integers(0, 2, 40)})
    return TabularModel.fit_preprocessing(frame, "y", hidden=(4,)).save(folder)


def model_dir(root: Path, artifact_path: str) -> Path:
    """A downloaded MLflow model: ``MLmodel`` naming the tabular artifact at ``artifact_path``."""
    folder = root / "model"
    save_model(folder / "artifacts" / TABULAR_ARTIFACT)
    flavor = {"python_function": {"artifacts": {TABULAR_ARTIFACT: {"path": artifact_path}}}}
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavor}))
    return folder


def test_a_model_inside_its_folder_loads(tmp_path):
    assert load_local_model(model_dir(tmp_path, f"artifacts/{TABULAR_ARTIFACT}")).target == "y"


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_an_artifact_path_out_of_the_model_folder_is_refused(tmp_path, kind):
    elsewhere = save_model(tmp_path / "elsewhere")
    path = str(elsewhere) if kind == "absolute" else "../elsewhere"
    folder = model_dir(tmp_path, path)
    with pytest.raises(TabularModelError, match="lies outside the model's folder") as err:
        load_local_model(folder)
    assert path in str(err.value)


def test_a_corrupt_mlmodel_is_named(tmp_path):
    folder = model_dir(tmp_path, f"artifacts/{TABULAR_ARTIFACT}")
    (folder / "MLmodel").write_text("flavors: {python_function: [unclosed\n")
    with pytest.raises(TabularModelError, match="MLmodel") as err:
        load_local_model(folder, "models:/churn/3")
    assert str(folder / "MLmodel") in str(err.value) and "models:/churn/3" in str(err.value)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_a_truncated_model_file_is_named(tmp_path, name):
    folder = model_dir(tmp_path, f"artifacts/{TABULAR_ARTIFACT}")
    damaged = folder / "artifacts" / TABULAR_ARTIFACT / name
    damaged.write_bytes(damaged.read_bytes()[:20])
    with pytest.raises(TabularModelError, match="is damaged or unreadable") as err:
        load_local_model(folder)
    assert str(damaged) in str(err.value)
