"""Content-addressed snapshots: immutable, idempotent, complete-or-absent, verified on read and reuse."""

from __future__ import annotations

import hashlib
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops_provider.core.snapshot import (
    MANIFEST,
    SnapshotError,
    SnapshotRef,
    SnapshotWriter,
    as_snapshot_ref,
    open_snapshot,
    snapshot_uri,
    write_snapshot,
)
from airflow_mlops_provider.core.storage import Location
from tests.unit.ingest_support import sample, zero_page_tail


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


def test_every_form_of_a_reference_opens_the_same_snapshot(root):
    ref = write_snapshot({"train": pa.table({"x": [1, 2]}), "test": pa.table({"x": [3]})}, root, "demo")
    forms = [ref, ref.to_dict(), json.dumps(ref.to_dict()), f"  {ref.uri} "]
    for form in forms:
        assert snapshot_uri(form) == ref.uri
        assert as_snapshot_ref(form) == ref
        assert open_snapshot(form).ref == ref


def test_a_bare_uri_is_resolved_from_the_manifest(root):
    ref = write_snapshot(pa.table({"x": [1, 2, 3]}), root, "demo")
    resolved = as_snapshot_ref(ref.uri)
    assert resolved == ref and resolved.rows == 3 and resolved.splits == {"data": 3}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"sha256": "abc"}, "expected a dict with a 'uri'"),
        ({"uri": ""}, "expected a dict with a 'uri'"),
        ({"uri": 7}, "expected a dict with a 'uri'"),
        ('{"uri": ', "invalid JSON"),
        ('{"rows": 3}', "expected a dict with a 'uri'"),
        ("  ", "expected a dict with a 'uri'"),
        (42, "expected a dict with a 'uri'"),
    ],
)
def test_a_value_that_is_no_reference_is_refused_with_a_message(value, message):
    with pytest.raises(SnapshotError, match=re.escape(message)):
        snapshot_uri(value)
    with pytest.raises(SnapshotError, match=re.escape(message)):
        as_snapshot_ref(value)


def test_a_uri_without_a_snapshot_is_refused_by_as_snapshot_ref(root, tmp_path):
    with pytest.raises(SnapshotError, match=r"manifest\.json is missing"):
        as_snapshot_ref((tmp_path / "nothing").as_uri())


def test_manifest_records_each_files_sha256_and_size(root, tmp_path):
    ref = write_snapshot({"train": sample(0, 800), "test": sample(800, 1000)}, root, "demo")
    folder = tmp_path / "demo" / "snapshots" / ref.sha256
    assert open_snapshot(ref).manifest["files"] == {
        name: {
            "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "bytes": (folder / name).stat().st_size,
        }
        for name in ("train.parquet", "test.parquet")
    }


READS = {
    "whole split": lambda snap: snap.read(),
    "some columns": lambda snap: snap.read(columns=["id"]),
    "one row group": lambda snap: snap.parquet_file().read_row_group(0),
    "batches": lambda snap: list(snap.parquet_file().iter_batches(batch_size=100)),
}


@pytest.mark.parametrize("how", READS)
def test_a_zeroed_data_page_is_caught_on_read_with_the_file_named(root, tmp_path, how):
    ref = write_snapshot(sample(), root, "demo")
    path = tmp_path / "demo" / "snapshots" / ref.sha256 / "data.parquet"
    path.write_bytes(zero_page_tail(path.read_bytes()))
    assert not pq.read_table(path).equals(sample())  # footer intact: a plain read returns other rows silently
    snap = open_snapshot(ref)
    with pytest.raises(SnapshotError, match=rf"Snapshot file {re.escape(snap.split_uri())} .*CRC checksum"):
        READS[how](snap)


def test_reusing_a_snapshot_rewritten_in_place_is_refused_and_leaves_it_alone(root, tmp_path):
    ref = write_snapshot(sample(), root, "demo")
    folder = tmp_path / "demo" / "snapshots" / ref.sha256
    pq.write_table(sample(0, 10), folder / "data.parquet", write_page_checksum=True)
    manifest = (folder / MANIFEST).read_bytes()
    with pytest.raises(
        SnapshotError, match=rf"Snapshot {re.escape(ref.uri)} does not match its manifest: data\.parquet"
    ):
        write_snapshot(sample(), root, "demo")
    assert (folder / MANIFEST).read_bytes() == manifest
    assert pq.read_table(folder / "data.parquet").num_rows == 10
    assert sorted(p.name for p in (tmp_path / "demo" / "snapshots").iterdir()) == [ref.sha256]


def test_verify_names_only_the_split_that_changed(root, tmp_path):
    ref = write_snapshot({"train": sample(0, 800), "test": sample(800, 1000)}, root, "demo")
    snap = open_snapshot(ref)
    snap.verify()
    test_file = tmp_path / "demo" / "snapshots" / ref.sha256 / "test.parquet"
    test_file.write_bytes(zero_page_tail(test_file.read_bytes()))
    with pytest.raises(SnapshotError, match=r"does not match its manifest: test\.parquet changed") as err:
        snap.verify()
    assert "train.parquet" not in str(err.value)
    test_file.unlink()
    with pytest.raises(SnapshotError, match=rf"Snapshot {re.escape(ref.uri)} is missing test\.parquet"):
        snap.verify()
