"""The built-in tabular model: preprocessing fitted on training data plus a small MLP.

A :class:`TabularModel` is a plain directory on disk: ``tabular.json`` (task, target, feature
columns, the fitted preprocessing, the class labels, the network shape) and
``model.safetensors`` (the weights). Nothing is pickled, so loading a model from an artifact
store never executes code from that store.

Preprocessing, fitted on the training split only:

* numeric columns (ints, floats, bools): standardised with the training mean and standard
  deviation (a constant column: its value and scale 1); missing values become the mean (0 after
  scaling);
* date columns (dates and timestamps): the numeric parts of :mod:`~airflow_mlops_provider.core.dates`
  (day number, month, day of week), each standardised like a numeric column, so a date later
  than any seen in training is further along, not an unseen category;
* categorical columns (everything else): one-hot over the training categories (at most
  ``max_categories`` most frequent ones, ties broken by value), plus one slot for values not
  seen in training and missing values.

Regression targets are standardised for training and scaled back by :meth:`TabularModel.predict`.
The statistics are accumulated batch by batch and merge exactly
(:mod:`~airflow_mlops_provider.core.tabular_fit`), so a split streamed by many ranks is fitted as
the whole frame would be.

A pandas frame (training, the MLflow pyfunc) and an Arrow table (batch scoring, the prediction
service: :meth:`TabularModel.score_table`) go through the same encoding and give the same matrix;
the table is read as Arrow, with pandas only for date columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from airflow_mlops_provider.core.dates import date_parts
from airflow_mlops_provider.core.errors import PermanentError

CONFIG_FILE = "tabular.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: before date columns (its dates, if any, were one-hot categories)
TASKS = ("classification", "regression")


class TabularModelError(PermanentError, ValueError):
    """The data or the saved files do not fit a tabular model."""


@dataclass
class Preprocessor:
    """Column-wise feature encoding fitted on training data, serialisable as JSON."""

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> (mean, std)
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> known categories
    # column -> date part (see core/dates.py) -> (mean, std)
    dates: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        feature_columns: Sequence[str],
        categorical_columns: Sequence[str] | None = None,
        max_categories: int = 64,
    ) -> Preprocessor:
        """Fit on ``frame``; columns are categorical when listed or when neither numeric nor dates
        (see :mod:`~airflow_mlops_provider.core.tabular_fit` for the statistics)."""
        from airflow_mlops_provider.core.tabular_fit import FeatureStatistics

        stats = FeatureStatistics(list(feature_columns), set(categorical_columns or ()), max_categories)
        stats.add(frame)
        return stats.preprocessor()

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.dates, *self.categorical]

    @property
    def width(self) -> int:
        """Number of encoded features."""
        return (
            len(self.numeric)
            + sum(len(parts) for parts in self.dates.values())
            + sum(len(cats) + 1 for cats in self.categorical.values())
        )

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` into a float32 matrix of shape (rows, width)."""
        self._check_columns(frame.columns)
        return self._encode(_FrameColumns(frame), len(frame))

    def transform_table(self, table: pa.Table) -> np.ndarray:
        """:meth:`transform` for an Arrow table, without converting it to pandas: the same matrix."""
        self._check_columns(table.column_names)
        return self._encode(_TableColumns(table), table.num_rows)

    def _check_columns(self, present: Iterable[str]) -> None:
        names = set(present)
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise TabularModelError(f"Input is missing feature columns {missing}")

    def _encode(self, columns: _Columns, rows: int) -> np.ndarray:
        """The one encoding of both input forms: standardised numbers and date parts, then one-hots."""
        out = np.zeros((rows, self.width), dtype=np.float32)
        pos = 0
        if self.numeric:
            means, stds = np.array(list(self.numeric.values()), dtype=np.float64).T
            pos = len(self.numeric)
            out[:, :pos] = _standardise(columns.numbers(list(self.numeric)), means, stds)
        for column, parts in self.dates.items():
            derived = date_parts(_arrow_dates(columns.series(column)))
            for part, moments in parts.items():
                out[:, pos] = _standardise(derived[part], *moments)
                pos += 1
        for column, categories in self.categorical.items():
            out[np.arange(rows), pos + _category_codes(columns.values(column), categories)] = 1.0
            pos += len(categories) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form; lists (not objects) so the column order survives any JSON tooling."""
        return {
            "numeric": [{"column": c, "mean": m, "std": s} for c, (m, s) in self.numeric.items()],
            "categorical": [{"column": c, "categories": cats} for c, cats in self.categorical.items()],
            "dates": [
                {"column": c, "parts": [{"part": p, "mean": m, "std": s} for p, (m, s) in parts.items()]}
                for c, parts in self.dates.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(
            numeric={e["column"]: (float(e["mean"]), float(e["std"])) for e in data["numeric"]},
            categorical={e["column"]: [str(c) for c in e["categories"]] for e in data["categorical"]},
            dates={
                e["column"]: {p["part"]: (float(p["mean"]), float(p["std"])) for p in e["parts"]}
                for e in data.get("dates", [])  # absent from format 1
            },
        )


@dataclass
class TabularSpec:
    """Everything about a tabular model except its weights (the content of ``tabular.json``)."""

    task: str
    target: str
    preprocessor: Preprocessor
    hidden: list[int]
    dropout: float = 0.0
    classes: list[Any] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessor"] = self.preprocessor.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularSpec:
        if data.get("format_version") not in READABLE_FORMATS:
            raise TabularModelError(f"Unsupported tabular model format {data.get('format_version')!r}")
        return cls(**{**data, "preprocessor": Preprocessor.from_dict(data["preprocessor"])})


class Scores(NamedTuple):
    """A model's outputs for some rows: labels or values, and class probabilities (classifiers)."""

    predictions: np.ndarray
    probabilities: np.ndarray | None


def build_network(inputs: int, outputs: int, hidden: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """An MLP: Linear -> ReLU (-> Dropout) per hidden layer, then a linear head."""
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class TabularModel:
    """An MLP over numeric and categorical columns, with its fitted preprocessing."""

    def __init__(self, spec: TabularSpec, network: nn.Module | None = None) -> None:
        if spec.task not in TASKS:
            raise TabularModelError(f"task must be one of {TASKS}, not {spec.task!r}")
        self.spec = spec
        outputs = len(spec.classes or ()) if spec.task == "classification" else 1
        self.network = network or build_network(spec.preprocessor.width, outputs, spec.hidden, spec.dropout)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def fit_preprocessing(
        cls,
        train: pd.DataFrame,
        target: str,
        task: str = "classification",
        *,
        feature_columns: Sequence[str] | None = None,
        categorical_columns: Sequence[str] | None = None,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        max_categories: int = 64,
    ) -> TabularModel:
        """A new, untrained model whose preprocessing (and class list) is fitted on ``train``."""
        from airflow_mlops_provider.core.tabular_fit import TabularFit

        fit = TabularFit.start(
            list(train.columns),
            target,
            task,
            feature_columns=feature_columns,
            categorical_columns=categorical_columns,
            max_categories=max_categories,
        )
        fit.add(train)
        return fit.model(hidden, dropout)

    # --- properties ---------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def feature_columns(self) -> list[str]:
        return self.spec.preprocessor.columns

    @property
    def classes(self) -> list[Any] | None:
        return self.spec.classes

    # --- encoding -----------------------------------------------------------------------------
    def encode_features(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.spec.preprocessor.transform(frame))

    def encode_target(self, frame: pd.DataFrame) -> torch.Tensor:
        """Class indices (int64) for classification, the standardised target (float32, (n, 1)) otherwise."""
        if self.target not in frame.columns:
            raise TabularModelError(f"Target column {self.target!r} is not in the data")
        labels = frame[self.target]
        if self.task == "classification":
            index = {c: i for i, c in enumerate(self.classes or ())}
            codes = [index.get(_plain(v), -1) for v in labels]
            unknown = sorted({_plain(v) for v, c in zip(labels, codes, strict=True) if c < 0}, key=str)
            if unknown:
                raise TabularModelError(f"Target values not seen in training: {unknown[:10]}")
            return torch.tensor(codes, dtype=torch.int64)
        y = pd.to_numeric(labels, errors="raise").astype("float64").to_numpy()
        return torch.from_numpy(
            ((y - self.spec.target_mean) / self.spec.target_std).astype(np.float32)
        ).unsqueeze(1)

    # --- inference ----------------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class labels (classification) or values (regression), one per row."""
        return self._predictions(self._forward(self.spec.preprocessor.transform(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in :attr:`classes` order (classification only)."""
        if self.task != "classification":
            raise TabularModelError("predict_proba is only defined for classification models")
        return _probabilities(self._forward(self.spec.preprocessor.transform(frame)))

    def score_table(self, table: pa.Table) -> Scores:
        """:meth:`predict` and :meth:`predict_proba` of an Arrow table in one forward pass, without pandas."""
        out = self._forward(self.spec.preprocessor.transform_table(table))
        proba = _probabilities(out) if self.task == "classification" else None
        return Scores(self._predictions(out), proba)

    def _forward(self, features: np.ndarray) -> torch.Tensor:
        """The network's outputs in eval mode (its training mode is restored afterwards)."""
        was_training = self.network.training
        if was_training:
            self.network.eval()
        try:
            with torch.inference_mode():
                return cast(torch.Tensor, self.network(torch.from_numpy(features)))
        finally:
            if was_training:
                self.network.train()

    def _predictions(self, out: torch.Tensor) -> np.ndarray:
        if self.task == "classification":
            labels = np.asarray(self.classes, dtype=object if _mixed(self.classes) else None)
            return cast(np.ndarray, labels[out.argmax(dim=1).numpy()])
        values = out.squeeze(1).double().numpy()
        return cast(np.ndarray, values * self.spec.target_std + self.spec.target_mean)

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tabular.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE))
        (path / CONFIG_FILE).write_text(json.dumps(self.spec.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TabularModel:
        """Read a model written by :meth:`save` (JSON + safetensors; no unpickling).

        A missing, truncated or inconsistent file raises :class:`TabularModelError` naming it.
        """
        path = Path(directory)
        config = path / CONFIG_FILE
        try:
            spec = TabularSpec.from_dict(json.loads(config.read_text()))
        except FileNotFoundError as err:
            raise TabularModelError(f"No {CONFIG_FILE} in {path}: not a tabular model directory") from err
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TabularModelError(f"{config} is damaged or unreadable: {err!r}") from err
        model = cls(spec)
        weights = path / WEIGHTS_FILE
        if not weights.exists():
            raise TabularModelError(f"No {WEIGHTS_FILE} in {path}")
        try:
            model.network.load_state_dict(load_file(str(weights)))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise TabularModelError(f"{weights} is damaged or unreadable: {err}") from err
        model.network.eval()
        return model


def _standardise(values: np.ndarray, mean: float | np.ndarray, std: float | np.ndarray) -> np.ndarray:
    """Scaled values (column-wise for a matrix); missing ones become the mean (0)."""
    scaled = (values - mean) / std
    return np.where(np.isfinite(scaled), scaled, 0.0)


def _probabilities(out: torch.Tensor) -> np.ndarray:
    return torch.softmax(out, dim=1).double().numpy()


def _category_codes(values: Iterable[Any], categories: list[str]) -> np.ndarray:
    """Each value's index in ``categories`` by its text; missing and unseen values get the last slot."""
    lookup = {value: i for i, value in enumerate(categories)}
    unseen = len(categories)
    codes = [unseen if v is None or v != v else lookup.get(str(v), unseen) for v in values]
    return np.array(codes, dtype=np.int64)


def _series_numbers(series: pd.Series) -> np.ndarray:
    return np.asarray(pd.to_numeric(series, errors="coerce").astype("float64").to_numpy())


class _Columns(Protocol):
    """A feature column in the forms :meth:`Preprocessor._encode` reads."""

    def numbers(self, columns: list[str]) -> np.ndarray: ...  # (rows, columns) float64, NaN: missing
    def series(self, column: str) -> pd.Series: ...
    def values(self, column: str) -> Iterable[Any]: ...  # the values pandas holds, for their text


@dataclass(frozen=True)
class _FrameColumns:
    frame: pd.DataFrame

    def numbers(self, columns: list[str]) -> np.ndarray:
        return np.column_stack([_series_numbers(self.frame[column]) for column in columns])

    def series(self, column: str) -> pd.Series:
        return self.frame[column]

    def values(self, column: str) -> Iterable[Any]:
        return cast(Iterable[Any], self.frame[column])


@dataclass(frozen=True)
class _TableColumns:
    """An Arrow table read as its pandas conversion would read, converting only what needs pandas
    (date columns, and columns of types whose pandas values differ from Arrow's Python ones)."""

    table: pa.Table

    def numbers(self, columns: list[str]) -> np.ndarray:
        data = self.table.select(columns)
        if all(pa.types.is_float64(kind) for kind in data.schema.types):  # one copy for all columns
            batches = data.combine_chunks().to_batches()
            if batches:
                return np.asarray(batches[0].to_tensor(null_to_nan=True), dtype=np.float64)
        return np.column_stack([self._numbers(column) for column in data.columns])

    @staticmethod
    def _numbers(data: pa.ChunkedArray) -> np.ndarray:
        if _is_any(data.type, _NUMBER_TYPES):
            return _floats(data)
        return _series_numbers(data.to_pandas())

    def series(self, column: str) -> pd.Series:
        return self.table.column(column).to_pandas()

    def values(self, column: str) -> Iterable[Any]:
        data = self.table.column(column)
        if pa.types.is_float64(data.type) or (pa.types.is_integer(data.type) and data.null_count):
            return _floats(data)  # pandas holds integers with nulls as floats too
        if _is_any(data.type, _PLAIN_TYPES):
            return cast(list[Any], data.to_pylist())  # whose text equals that of the pandas values
        return cast(Iterable[Any], data.to_pandas())


_TypeCheck = Callable[[pa.DataType], bool]
# Arrow types whose float64 cast equals pandas' to_numeric of them (numbers), and those whose Python
# values print as their pandas values do (categories; integers with nulls aside: pandas holds floats).
_NUMBER_TYPES: tuple[_TypeCheck, ...] = (
    pa.types.is_integer, pa.types.is_float32, pa.types.is_float64, pa.types.is_boolean,
)  # fmt: skip
_PLAIN_TYPES: tuple[_TypeCheck, ...] = (
    pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_null,
)  # fmt: skip


def _is_any(kind: pa.DataType, checks: tuple[_TypeCheck, ...]) -> bool:
    return any(check(kind) for check in checks)


def _floats(data: pa.ChunkedArray) -> np.ndarray:
    """float64 values, NaN where null."""
    return np.asarray(pc.cast(data, pa.float64(), safe=False).to_numpy(), dtype=np.float64)


def _is_date(series: pd.Series) -> bool:
    """datetime64 columns, and object columns of dates (Arrow's ``date32`` reads back as those)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("date", "datetime")


def _arrow_dates(series: pd.Series) -> pa.Array:
    """A date column as Arrow timestamps for :func:`~airflow_mlops_provider.core.dates.date_parts`
    (time-zone-aware values in UTC; unparseable ones missing)."""
    return pa.array(pd.to_datetime(series, errors="coerce", utc=True))


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar for a NumPy/pandas scalar."""
    return value.item() if hasattr(value, "item") else value


def _mixed(values: Sequence[Any] | None) -> bool:
    return len({type(v) for v in values or ()}) > 1
