"""TabularModel: preprocessing fitted on training data, MLP, JSON + safetensors persistence."""

from __future__ import annotations

import datetime
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch

from airflow_mlops_provider.core.scoring import predict_table
from airflow_mlops_provider.core.tabular_model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Preprocessor,
    TabularModel,
    TabularModelError,
)
from tests.unit.messy_data import messy_csv


def _frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    label = np.where(x + (colour == "red") * 1.5 > 0.5, "yes", "no")
    frame = pd.DataFrame({"x": x, "n": rng.integers(0, 10, rows), "colour": colour, "label": label})
    frame.loc[3, "x"] = np.nan
    frame.loc[4, "colour"] = None
    return frame


def _fit(model: TabularModel, frame: pd.DataFrame, epochs: int = 150) -> None:
    torch.manual_seed(0)
    x, y = model.encode_features(frame), model.encode_target(frame)
    optimiser = torch.optim.Adam(model.network.parameters(), lr=0.02)
    loss_fn = torch.nn.CrossEntropyLoss() if model.task == "classification" else torch.nn.MSELoss()
    for _ in range(epochs):
        optimiser.zero_grad()
        loss_fn(model.network(x), y).backward()
        optimiser.step()


def test_preprocessing_is_fitted_on_training_data_only():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]})
    pre = Preprocessor.fit(train, ["a", "c"])
    assert pre.numeric["a"][0] == pytest.approx(2.0)
    assert pre.categorical == {"c": ["x", "y"]}
    encoded = pre.transform(pd.DataFrame({"a": [2.0, np.nan], "c": ["unseen", None]}))
    # mean-imputed numeric, unknown and missing categories share the extra slot
    assert encoded.tolist() == [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
    assert Preprocessor.from_dict(pre.to_dict()) == pre


def test_classifier_learns_and_round_trips_through_json_and_safetensors(tmp_path):
    frame = _frame()
    model = TabularModel.fit_preprocessing(frame, "label", hidden=(16,))
    _fit(model, frame)
    assert model.feature_columns == ["x", "n", "colour"]
    assert model.classes == ["no", "yes"]
    accuracy = float((model.predict(frame) == frame["label"].to_numpy()).mean())
    assert accuracy > 0.85
    proba = model.predict_proba(frame)
    assert proba.shape == (len(frame), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)

    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS_FILE, CONFIG_FILE]
    assert b"pickle" not in (tmp_path / WEIGHTS_FILE).read_bytes()[:200]
    loaded = TabularModel.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), proba)


def test_regression_predicts_in_target_units(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.choice(["p", "q"], 300)})
    frame["y"] = 100.0 + 20.0 * frame["a"] + np.where(frame["b"] == "p", 10.0, -10.0)
    model = TabularModel.fit_preprocessing(frame, "y", "regression", hidden=(16,))
    _fit(model, frame, epochs=300)
    rmse = float(np.sqrt(np.mean((model.predict(frame) - frame["y"].to_numpy()) ** 2)))
    assert rmse < 5.0
    with pytest.raises(TabularModelError, match="only defined for classification"):
        model.predict_proba(frame)
    loaded = TabularModel.load(model.save(tmp_path))
    np.testing.assert_allclose(loaded.predict(frame), model.predict(frame))


def test_integer_classes_survive_json():
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "t": np.array([0, 1, 0, 2], dtype=np.int64)})
    model = TabularModel.fit_preprocessing(frame, "t")
    assert model.classes == [0, 1, 2]
    assert model.predict(frame).dtype.kind == "i"


@pytest.mark.parametrize(
    ("frame", "target", "task", "message"),
    [
        (pd.DataFrame({"a": [1.0, 2.0]}), "t", "classification", "Target column 't' is not in the data"),
        (pd.DataFrame({"a": [1.0, 2.0], "t": [1, 1]}), "t", "classification", "single class"),
        (pd.DataFrame({"a": [1.0, 2.0], "t": [1, None]}), "t", "classification", "1 missing values"),
        (pd.DataFrame({"a": [np.nan, np.nan], "t": [0, 1]}), "t", "classification", "'a' has no finite"),
        (pd.DataFrame({"a": [1.0], "t": [0]}), "t", "ranking", "task must be one of"),
        (pd.DataFrame({"a": [], "t": []}), "t", "regression", "training data is empty"),
    ],
)
def test_bad_training_data_is_named(frame, target, task, message):
    with pytest.raises(TabularModelError, match=message):
        TabularModel.fit_preprocessing(frame, target, task)


def test_missing_columns_and_unknown_labels_are_named(tmp_path):
    frame = _frame(20)
    model = TabularModel.fit_preprocessing(frame, "label")
    with pytest.raises(TabularModelError, match=r"missing feature columns \['colour'\]"):
        model.predict(frame.drop(columns=["colour"]))
    with pytest.raises(TabularModelError, match="not seen in training: \\['maybe'\\]"):
        model.encode_target(frame.assign(label="maybe"))
    with pytest.raises(TabularModelError, match="not a tabular model directory"):
        TabularModel.load(tmp_path)


def _dated_model() -> tuple[TabularModel, pd.DataFrame]:
    """A regressor on a messy CSV export whose target grows with its signup dates (2020 to 2022)."""
    train = pacsv.read_csv(io.BytesIO(messy_csv(600, seed=1))).to_pandas()
    model = TabularModel.fit_preprocessing(
        train, "spend", "regression", feature_columns=["signup", "city", "plan", "income"], hidden=(16,)
    )
    _fit(model, train, epochs=300)
    return model, train


def test_a_later_year_is_a_later_date_not_an_unseen_category(tmp_path):
    model, train = _dated_model()
    assert isinstance(train["signup"].iloc[0], datetime.date)  # Arrow read the ISO dates as date32
    rows = {"city": ["paris"] * 3, "plan": ["basic"] * 3, "income": [50_000.0] * 3}
    later = pa.table({"signup": pa.array([datetime.date(2022, 6, 1), datetime.date(2024, 1, 1),
                                          datetime.date(2024, 12, 1)]), **rows})  # fmt: skip
    mid_2022, jan_2024, dec_2024 = predict_table(model, later).column("prediction").to_pylist()
    assert mid_2022 < jan_2024 < dec_2024 and dec_2024 - jan_2024 > 150  # the trend goes on (335 days)
    # the scorer derives the same features from timestamps, in any unit, as from dates
    for unit in ("ms", "ns"):
        stamped = later.set_column(0, "signup", later.column("signup").cast(pa.timestamp(unit)))
        assert predict_table(model, stamped).equals(predict_table(model, later))
    saved = json.loads((model.save(tmp_path) / CONFIG_FILE).read_text())
    (dates,) = saved["preprocessor"]["dates"]
    parts = [part["part"] for part in dates["parts"]]
    assert dates["column"] == "signup" and parts == ["days", "month", "day_of_week"]
    assert TabularModel.load(tmp_path).predict(later.to_pandas()).tolist() == [mid_2022, jan_2024, dec_2024]


def test_a_model_saved_before_date_features_still_loads(tmp_path):
    frame = _frame(50)
    model = TabularModel.fit_preprocessing(frame, "label", hidden=(4,))
    config = model.save(tmp_path) / CONFIG_FILE
    old = json.loads(config.read_text())
    old["format_version"] = 1
    del old["preprocessor"]["dates"]
    config.write_text(json.dumps(old))
    np.testing.assert_array_equal(
        TabularModel.load(tmp_path).predict_proba(frame), model.predict_proba(frame)
    )
