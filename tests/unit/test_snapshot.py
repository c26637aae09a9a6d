"""Content-addressed snapshots: immutable, idempotent, complete-or-absent."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_mlops_provider.core.snapshot import (
    MANIFEST,
    SnapshotError,
    SnapshotRef,
    SnapshotWriter,
    open_snapshot,
    write_snapshot,
)
from airflow_mlops_provider.core.storage import Location


@pytest.fixture
def root(tmp_path) -> Location:
    return Location(tmp_path.as_uri())


def test_same_rows_give_the_same_snapshot_and_are_not_rewritten(root):
    table = pa.table({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    first = write_snapshot(table, root, "demo", manifest_extra={"source": "unit"})
    manifest_mtime = first_mtime = root.join("demo", "snapshots", first.sha256, MANIFEST).fs.modified(
        root.join("demo", "snapshots", first.sha256, MANIFEST).path
    )
    second = write_snapshot(table, root, "demo")
    assert second == first
    assert first_mtime == manifest_mtime
    snap = open_snapshot(first.uri)
    assert snap.read().equals(table)
    assert snap.manifest["source"] == "unit" and snap.manifest["rows"] == 3
    assert [c["name"] for c in snap.manifest["schema"]] == ["x", "y"]


def test_different_rows_give_a_different_address(root):
    a = write_snapshot(pa.table({"x": [1]}), root, "demo")
    b = write_snapshot(pa.table({"x": [2]}), root, "demo")
    assert a.sha256 != b.sha256 and a.uri != b.uri


def test_splits_are_written_and_named(root):
    ref = write_snapshot({"train": pa.table({"x": [1, 2]}), "test": pa.table({"x": [3]})}, root, "demo")
    assert ref.splits == {"train": 2, "test": 1} and ref.rows == 3
    snap = open_snapshot(ref)
    assert snap.read("test").column("x").to_pylist() == [3]
    with pytest.raises(SnapshotError, match="name a split"):
        snap.read()
    with pytest.raises(SnapshotError, match="no split 'validation'"):
        snap.read("validation")


def test_a_failure_mid_write_publishes_nothing(root):
    with pytest.raises(RuntimeError, match="boom"), SnapshotWriter(root, "demo") as writer:
        writer.write(pa.table({"x": [1]}))
        raise RuntimeError("boom")
    assert not root.join("demo").exists()


def test_a_directory_without_manifest_is_not_a_snapshot(root, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(SnapshotError, match=r"manifest\.json is missing"):
        open_snapshot(root.join("half").uri)


def test_schema_change_between_batches_is_refused(root):
    with pytest.raises(SnapshotError, match="Columns changed"), SnapshotWriter(root, "demo") as writer:
        writer.write(pa.table({"x": [1]}))
        writer.write(pa.table({"z": [1]}))


def test_reference_round_trips_through_a_dict(root):
    ref = write_snapshot(pa.table({"x": [1]}), root, "demo")
    assert SnapshotRef.from_dict(ref.to_dict()) == ref
