"""Example data for the demo, the example pipelines and the tests, from scikit-learn's bundled sets.

Nothing is downloaded: scikit-learn ships these tables inside its wheel. Each dataset gets a
stable integer ``id`` column (the hash-split key) and snake_case column names. The training
data is cut into batches so that "new data" can land (``batch-000.csv``, ``batch-001.csv``...),
and live windows can be drawn with or without drift (numeric features shifted by a multiple
of their standard deviation), for the monitoring DAG.

Command line::

    python -m airflow_mlops_provider.datasets cancer /tmp/data/cancer/train --batches 2 --batch 0
    python -m airflow_mlops_provider.datasets cancer /tmp/data/cancer/live --live --drift 1.5
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import pandas as pd


class DatasetSpec(TypedDict):
    loader: str  # the sklearn.datasets function
    target: str
    task: str


DATASETS: dict[str, DatasetSpec] = {
    "cancer": {"loader": "load_breast_cancer", "target": "diagnosis", "task": "classification"},
    "iris": {"loader": "load_iris", "target": "species", "task": "classification"},
    "wine": {"loader": "load_wine", "target": "cultivar", "task": "classification"},
    "diabetes": {"loader": "load_diabetes", "target": "progression", "task": "regression"},
}


def load(name: str) -> pd.DataFrame:
    """The whole dataset: ``id``, the features (snake_case) and the target column."""
    import sklearn.datasets

    spec = _spec(name)
    kwargs = {"as_frame": True}
    if name == "diabetes":
        kwargs["scaled"] = False
    bunch = getattr(sklearn.datasets, spec["loader"])(**kwargs)
    frame = bunch.frame.copy()
    frame.columns = [_snake(c) for c in frame.columns]
    target = frame.pop("target")
    if spec["task"] == "classification":
        target = target.map(dict(enumerate(str(n) for n in bunch.target_names)))
    frame.insert(0, "id", range(len(frame)))
    frame[spec["target"]] = target.to_numpy()
    return frame


def target_of(name: str) -> str:
    return _spec(name)["target"]


def features_of(name: str) -> list[str]:
    """The feature columns: everything but ``id`` (the split key, never a feature) and the target."""
    return [c for c in load(name).columns if c not in ("id", _spec(name)["target"])]


def batch(name: str, index: int, batches: int) -> pd.DataFrame:
    """Rows of batch ``index`` out of ``batches`` (a fixed, shuffled partition of the dataset)."""
    if not 0 <= index < batches:
        raise ValueError(f"batch index {index} is not in [0, {batches})")
    frame = load(name).sample(frac=1.0, random_state=7)
    return frame.iloc[index::batches].sort_values("id").reset_index(drop=True)


def live_window(
    name: str, rows: int = 200, drift: float = 0.0, seed: int = 0, *, labelled: bool = False
) -> pd.DataFrame:
    """A window of live rows; ``drift`` shifts numeric features by that many std devs.

    Unlabelled unless ``labelled``: then the target stays, to be cut off as the labels that
    arrive later (see :func:`labels_of`).
    """
    import numpy as np

    frame = load(name)
    spec = _spec(name)
    window = frame.sample(n=rows, replace=rows > len(frame), random_state=seed)
    if not labelled:
        window = window.drop(columns=[spec["target"]])
    window["id"] = np.arange(len(frame), len(frame) + rows) + seed * rows
    if drift:
        rng = np.random.default_rng(seed)
        for column in _numeric_features(window.drop(columns=[spec["target"]], errors="ignore")):
            std = float(frame[column].std()) or 1.0
            noise = rng.normal(0.0, 0.1 * std, size=len(window))
            window[column] = window[column] + drift * std + noise
    return window.reset_index(drop=True)


def labels_of(name: str, window: pd.DataFrame, flip: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """The ``id`` and target columns of a labelled window: the ground truth that arrives later.

    ``flip`` gives that share of rows another class (a classifier's concept shift: the inputs
    stay, their labels change).
    """
    import numpy as np

    target = _spec(name)["target"]
    labels = window[["id", target]].copy()
    if flip:
        rng = np.random.default_rng(seed)
        classes = sorted(labels[target].unique())
        chosen = rng.random(len(labels)) < flip
        shifted = [classes[(classes.index(v) + 1) % len(classes)] for v in labels.loc[chosen, target]]
        labels.loc[chosen, target] = shifted
    return labels.reset_index(drop=True)


def drifted_batch(name: str, drift: float = 1.5, seed: int = 1) -> pd.DataFrame:
    """Labelled rows from the drifted distribution (the data a drift-triggered retrain learns from)."""
    import numpy as np

    frame = load(name)
    rng = np.random.default_rng(seed)
    shifted = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for column in _numeric_features(shifted.drop(columns=[_spec(name)["target"]])):
        std = float(frame[column].std()) or 1.0
        shifted[column] = shifted[column] + drift * std + rng.normal(0.0, 0.1 * std, size=len(shifted))
    shifted["id"] = np.arange(len(shifted)) + 1_000_000 + seed * len(shifted)
    return shifted


def write(frame: pd.DataFrame, folder: str | Path, stem: str, fmt: str = "csv") -> Path:
    """Write ``frame`` as ``<folder>/<stem>.<fmt>`` (atomically: readers never see half a file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{fmt}"
    tmp = folder / f".{stem}.{fmt}.tmp"
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    elif fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    tmp.replace(path)
    return path


def _numeric_features(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "id" and frame[c].dtype.kind in "fi"]


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _snake(name: object) -> str:
    text = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    return text or "column"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("folder")
    parser.add_argument("--format", default="csv", choices=["csv", "parquet"])
    parser.add_argument("--batches", type=int, default=1, help="cut the training data into this many batches")
    parser.add_argument("--batch", type=int, default=0, help="which batch to write")
    parser.add_argument("--live", action="store_true", help="write an unlabelled live window instead")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--drift", type=float, default=0.0, help="shift in standard deviations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.live:
        frame = live_window(args.dataset, args.rows, args.drift, args.seed)
        path = write(frame, args.folder, f"window-{args.seed:03d}", args.format)
    elif args.drift:
        path = write(
            drifted_batch(args.dataset, args.drift, args.seed), args.folder, "drifted-000", args.format
        )
    else:
        frame = batch(args.dataset, args.batch, args.batches)
        path = write(frame, args.folder, f"batch-{args.batch:03d}", args.format)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
