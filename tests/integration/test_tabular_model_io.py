"""log_model / load_model against a real ``mlflow server``: runs:/ and models:/ URIs, no pickle."""

from __future__ import annotations

import datetime
import io
import uuid

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
import torch

from airflow_mlops_provider.core.model_io import load_model, log_model
from airflow_mlops_provider.core.tabular_model import TabularModel, TabularModelError
from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment
from tests.unit.messy_data import messy_csv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def global_tracking_uri(mlflow_server):
    """This module uses MLflow's global API; its tracking URI (also exported to the environment, which
    live stacks started later would inherit) must not outlive the module."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def logged(mlflow_server):
    """One trained classifier logged to a run and registered as version 1 with alias ``champion``."""
    import mlflow

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "c": rng.choice(["a", "b"], 120)})
    frame["y"] = np.where(frame["x"] > 0, 1, 0)
    model = TabularModel.fit_preprocessing(frame, "y", hidden=(8,))
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.network.parameters(), lr=0.05)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(
            model.network(model.encode_features(frame)), model.encode_target(frame)
        ).backward()
        optimiser.step()

    settings = TrackingSettings(tracking_uri=mlflow_server)
    client = settings.client()
    experiment_id = ensure_experiment(client, f"model-io-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(model, frame.drop(columns=["y"]))
    name = f"model-io-{uuid.uuid4().hex[:8]}"
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    client.set_registered_model_alias(name, "champion", version.version)
    return {"model": model, "frame": frame, "settings": settings, "run_id": run.info.run_id,
            "name": name, "version": version.version, "info": info}  # fmt: skip


@pytest.mark.parametrize(
    "uri", ["runs:/{run_id}/model", "models:/{name}/{version}", "models:/{name}@champion"]
)
def test_load_model_from_every_uri_form_predicts_like_the_original(logged, uri):
    loaded = load_model(uri.format(**logged), logged["settings"])
    frame = logged["frame"]
    assert loaded.feature_columns == ["x", "c"]
    assert loaded.classes == [0, 1]
    np.testing.assert_allclose(loaded.predict_proba(frame), logged["model"].predict_proba(frame))


def test_logged_model_has_signature_example_and_tabular_files_and_no_pickle(logged, tmp_path):
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"runs:/{logged['run_id']}/model", dst_path=str(tmp_path))
    files = {
        p.relative_to(local).as_posix() for p in __import__("pathlib").Path(local).rglob("*") if p.is_file()
    }
    assert {"MLmodel", "artifacts/tabular/tabular.json", "artifacts/tabular/model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    info = logged["info"]
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["x", "c"]
    assert info.saved_input_example_info is not None


def test_mlflow_pyfunc_loads_the_same_model_for_serving(logged):
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"models:/{logged['name']}@champion")
    frame = logged["frame"].drop(columns=["y"])
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(frame)), logged["model"].predict(frame))


def test_a_run_without_our_model_is_refused_by_name(logged, mlflow_server):
    import mlflow

    experiment_id = mlflow.get_run(logged["run_id"]).info.experiment_id
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_text("hello", "model/MLmodel")
    with pytest.raises(TabularModelError, match=f"runs:/{run.info.run_id}/model is not a tabular model"):
        load_model(f"runs:/{run.info.run_id}/model", logged["settings"])


def test_a_logged_model_derives_the_same_date_features_when_loaded_and_served(logged):
    import mlflow

    train = pacsv.read_csv(io.BytesIO(messy_csv(200, seed=3))).to_pandas()
    model = TabularModel.fit_preprocessing(
        train, "spend", "regression", feature_columns=["signup", "plan"], hidden=(4,)
    )
    later = pd.DataFrame({"signup": [datetime.date(2024, 1, 1), datetime.date(2024, 12, 1)], "plan": "pro"})
    experiment_id = mlflow.get_run(logged["run_id"]).info.experiment_id
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(model, train)
    assert info.signature.inputs.to_dict()[0] == {"name": "signup", "type": "datetime", "required": True}
    expected = model.predict(later)
    assert expected[0] != expected[1]
    loaded = load_model(f"runs:/{run.info.run_id}/model", logged["settings"])
    np.testing.assert_array_equal(loaded.predict(later), expected)
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(later)
    np.testing.assert_allclose(np.asarray(served), expected)
