"""Which split a row lands in depends on the row, the seed and the split's meaning, never on dict order.

The plan cache stores a validated config as JSON with sorted keys, so a fresh parse and a cached
one list ``fractions`` in different orders (train/validation/test against test/train/validation).
Rows must land in the same split either way, and a time split's test rows are always the newest.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from airflow_mlops_provider.core.ingest import ingest_snapshot
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.split import parse_split
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.launcher import TrainingJob
from airflow_mlops_provider.factory import plan as plans
from tests.unit.ingest_support import csv_bytes, sample

CANONICAL = {"train": 0.6, "validation": 0.25, "test": 0.15}
SHUFFLED = {"test": 0.15, "train": 0.6, "validation": 0.25}
SPLITS = {
    "hash": {"by": "hash", "key": "id", "seed": 3},
    "random": {"by": "random", "seed": 3},
    "time": {"by": "time", "column": "ts"},
}


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    table = sample(0, 2000).append_column("ts", pa.array(range(2000, 0, -1), pa.int64()))
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_bytes(table))
    return path


def _pipeline_yaml(split: dict[str, Any], fractions: dict[str, float]) -> str:
    """A pipeline file whose fractions keep the given order (PyYAML would sort them otherwise)."""
    config = {
        "name": "order",
        "artifact_root": "file:///tmp/unused",
        "data": {"source": {"uri": "file:///tmp/unused/"}, "split": {**split, "fractions": fractions}},
        "training": {"target": "label", "task": "classification"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def _assignment(source: Path, root: Path, split: dict[str, Any]) -> dict[int, str]:
    ref = ingest_snapshot(source.as_uri(), Location(root.as_uri()), "order", split=split)
    snap = open_snapshot(ref)
    return {i: name for name in ref.splits for i in snap.read(name).column("id").to_pylist()}


@pytest.mark.parametrize("kind", sorted(SPLITS))
def test_fresh_and_cached_plans_put_every_row_in_the_same_split(
    kind: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLOPS_PLAN_CACHE", str(tmp_path / "cache"))
    assignments = []
    for number, fractions in enumerate((CANONICAL, SHUFFLED)):
        config = tmp_path / f"order-{number}.yaml"
        config.write_text(_pipeline_yaml(SPLITS[kind], fractions))
        fresh = plans.load_plan(config)
        cached = plans.load_plan(config)
        for plan in (fresh, cached):
            assignments.append(_assignment(source, tmp_path / "artifacts", dict(plan.data.split.options)))
    assert all(a == assignments[0] for a in assignments[1:])
    shares = {name: list(assignments[0].values()).count(name) / 2000 for name in CANONICAL}
    assert all(abs(shares[name] - CANONICAL[name]) < 0.05 for name in CANONICAL), shares


@pytest.mark.parametrize("fractions", [CANONICAL, SHUFFLED, dict(sorted(CANONICAL.items()))])
def test_time_split_test_rows_are_always_the_newest(
    fractions: dict[str, float], source: Path, tmp_path: Path
):
    ref = ingest_snapshot(
        source.as_uri(),
        Location((tmp_path / "artifacts").as_uri()),
        "order",
        split={"by": "time", "column": "ts", "fractions": fractions},
    )
    snap = open_snapshot(ref)
    newest = {name: pc.max(snap.read(name).column("ts")).as_py() for name in ref.splits}
    oldest = {name: pc.min(snap.read(name).column("ts")).as_py() for name in ref.splits}
    assert newest["train"] < oldest["validation"] and newest["validation"] < oldest["test"]
    assert ref.splits == {"train": 1200, "validation": 500, "test": 300}
    assert list(snap.manifest["splits"]) == ["train", "validation", "test"]


def test_split_names_are_canonical_whatever_the_dict_order():
    assert parse_split({"by": "hash", "fractions": SHUFFLED}).names == ["train", "validation", "test"]
    assert parse_split({"by": "time", "column": "ts", "test_from": 5, "validation_from": 3}).names == [
        "train",
        "validation",
        "test",
    ]


def test_training_config_hash_ignores_dict_order():
    def job(hyperparameters: dict[str, Any]) -> TrainingJob:
        return TrainingJob(
            snapshot={"sha256": "ab" * 32},
            target="label",
            artifact_root="file:///tmp/a",
            pipeline="p",
            hyperparameters=hyperparameters,
        )

    first = job({"lr": 0.01, "epochs": 5, "hidden": [16, 8], "extra": {"a": 1, "b": 2}})
    second = job({"extra": {"b": 2, "a": 1}, "hidden": [16, 8], "epochs": 5, "lr": 0.01})
    assert first.config_hash() == second.config_hash()
    assert job({"hidden": [8, 16], "epochs": 5, "lr": 0.01}).config_hash() != first.config_hash()
