"""Ingestion from file:// sources: formats, content addressing, idempotency, splits, bounded memory."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tempfile
import textwrap

import pyarrow as pa
import pyarrow.compute
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from airflow_mlops_provider.core.ingest import IngestError, ingest_snapshot
from airflow_mlops_provider.core.snapshot import open_snapshot
from airflow_mlops_provider.core.storage import Location
from tests.unit.ingest_support import (
    csv_bytes,
    jsonl_bytes,
    parquet_bytes,
    published_files,
    sample,
    zero_page_tail,
)


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """Snapshot writers stage under this test's own temp dir, so leftovers can be checked."""
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return staging


def _root(tmp_path) -> Location:
    return Location((tmp_path / "artifacts").as_uri())


def test_same_rows_give_the_same_hash_whatever_the_format_compression_or_object_boundaries(tmp_path):
    table = sample(0, 3000)
    layouts = {
        "csv": {"a.csv": csv_bytes(table)},
        "gzip": {"a.csv.gz": gzip.compress(csv_bytes(table))},
        "jsonl": {"a.jsonl.gz": gzip.compress(jsonl_bytes(table))},
        "parquet": {
            "a.parquet": parquet_bytes(table.slice(0, 1234)),
            "b.parquet": parquet_bytes(table.slice(1234)),
        },
        "split-csv": {"a.csv": csv_bytes(table.slice(0, 100)), "b.csv": csv_bytes(table.slice(100))},
    }
    hashes = {}
    for name, files in layouts.items():
        folder = tmp_path / "src" / name
        folder.mkdir(parents=True)
        for file, data in files.items():
            (folder / file).write_bytes(data)
        ref = ingest_snapshot(
            folder.as_uri() + "/", _root(tmp_path), "demo", chunk_rows=500, block_bytes=4096
        )
        hashes[name] = ref.sha256
        assert ref.rows == 3000 and ref.splits == {"data": 3000}
        assert open_snapshot(ref).read().equals(table)
    assert len(set(hashes.values())) == 1, hashes


def test_manifest_records_sources_sizes_schema_and_producing_run(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_bytes(sample()))
    run = {"dag_id": "d", "run_id": "r1", "task_id": "ingest", "try_number": 1}
    ref = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", manifest_extra={"producing_run": run})
    manifest = open_snapshot(ref).manifest
    assert manifest["sha256"] == ref.sha256 and manifest["rows"] == 1000
    assert manifest["producing_run"] == run
    assert manifest["created_at"]
    assert [c["name"] for c in manifest["schema"]] == ["id", "amount", "city"]
    (obj,) = manifest["source_objects"]
    assert obj["uri"] == src.as_uri() and obj["size"] == src.stat().st_size and obj["last_modified"]


def test_rerun_reuses_the_snapshot_and_writes_nothing(tmp_path):
    src = tmp_path / "in.parquet"
    src.write_bytes(parquet_bytes(sample()))
    first = ingest_snapshot(
        src.as_uri(), _root(tmp_path), "demo", manifest_extra={"producing_run": {"run_id": "a"}}
    )
    before = {p: p.stat().st_mtime_ns for p in published_files(tmp_path / "artifacts")}
    second = ingest_snapshot(
        src.as_uri(), _root(tmp_path), "demo", manifest_extra={"producing_run": {"run_id": "b"}}
    )
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in published_files(tmp_path / "artifacts")} == before
    assert open_snapshot(second).manifest["producing_run"] == {"run_id": "a"}


def test_rerun_over_a_snapshot_rewritten_in_place_fails_naming_it_and_publishes_nothing(
    tmp_path, private_tmp
):
    src = tmp_path / "in.parquet"
    src.write_bytes(parquet_bytes(sample()))
    ref = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo")
    folder = tmp_path / "artifacts" / "demo" / "snapshots" / ref.sha256
    pq.write_table(sample(0, 10), folder / "data.parquet", write_page_checksum=True)
    before = {p: p.read_bytes() for p in published_files(tmp_path / "artifacts")}
    with pytest.raises(
        IngestError, match=rf"Snapshot {re.escape(ref.uri)} does not match its manifest: data\.parquet"
    ):
        ingest_snapshot(src.as_uri(), _root(tmp_path), "demo")
    assert {p: p.read_bytes() for p in published_files(tmp_path / "artifacts")} == before
    assert list(private_tmp.iterdir()) == []


def _bad_gzip_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]


CORRUPT_INPUTS = {
    "zeroed page, checksums": (
        "b.parquet",
        zero_page_tail(parquet_bytes(sample(), write_page_checksum=True)),
        "as parquet: .*CRC checksum verification failed",
    ),
    "truncated parquet": ("b.parquet", parquet_bytes(sample())[:3000], "as parquet: .*magic bytes"),
    "garbage gzip csv": ("b.csv.gz", b"\x1f\x8b\x08\x00" + b"\x00garbage" * 100, r"as csv\+gzip: zlib"),
    "gzip csv, bad crc": (
        "b.csv.gz",
        _bad_gzip_crc(gzip.compress(csv_bytes(sample()))),
        r"as csv\+gzip: zlib inflate failed: incorrect data check",
    ),
}


@pytest.mark.parametrize("case", CORRUPT_INPUTS)
def test_a_corrupt_input_object_fails_naming_it_and_publishes_nothing(tmp_path, private_tmp, case):
    name, data, message = CORRUPT_INPUTS[case]
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(parquet_bytes(sample(1000, 2000)))
    (folder / name).write_bytes(data)
    with pytest.raises(IngestError, match=f"Cannot read {re.escape((folder / name).as_uri())} {message}"):
        ingest_snapshot(folder.as_uri() + "/", _root(tmp_path), "demo")
    assert published_files(tmp_path / "artifacts") == []
    assert list(private_tmp.iterdir()) == []


def test_row_groups_hold_exactly_chunk_rows(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_bytes(sample(0, 2500)))
    ref = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", chunk_rows=1000, block_bytes=2048)
    meta = open_snapshot(ref).parquet_file().metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]


def test_hash_split_is_stable_as_data_grows_and_follows_the_seed(tmp_path):
    split = {
        "by": "hash",
        "key": "id",
        "seed": 7,
        "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2},
    }
    (tmp_path / "small.csv").write_bytes(csv_bytes(sample(0, 2000)))
    (tmp_path / "big.csv").write_bytes(csv_bytes(sample(0, 6000)))

    def assignment(name: str, **overrides) -> dict[int, str]:
        ref = ingest_snapshot(
            (tmp_path / name).as_uri(), _root(tmp_path), "demo", split={**split, **overrides}
        )
        snap = open_snapshot(ref)
        return {i: s for s in ref.splits for i in snap.read(s).column("id").to_pylist()}

    small, big = assignment("small.csv"), assignment("big.csv")
    assert all(big[i] == small[i] for i in small)
    counts = {s: list(big.values()).count(s) for s in ("train", "validation", "test")}
    assert abs(counts["train"] / 6000 - 0.6) < 0.03 and abs(counts["test"] / 6000 - 0.2) < 0.03
    reseeded = assignment("big.csv", seed=8)
    assert sum(reseeded[i] != big[i] for i in big) > 1000


def test_time_split_cuts_at_the_boundaries_and_keeps_empty_splits(tmp_path):
    table = sample(0, 100).append_column(
        "day", pa.array([f"2024-0{1 + i // 40}-01" for i in range(100)]).cast(pa.date32())
    )
    src = tmp_path / "t.parquet"
    src.write_bytes(parquet_bytes(table))
    ref = ingest_snapshot(
        src.as_uri(),
        _root(tmp_path),
        "demo",
        split={"by": "time", "column": "day", "validation_from": "2024-02-01", "test_from": "2024-03-01"},
    )
    assert ref.splits == {"train": 40, "validation": 40, "test": 20}
    late = ingest_snapshot(
        src.as_uri(),
        _root(tmp_path),
        "demo",
        split={"by": "time", "column": "day", "test_from": "2025-01-01"},
    )
    assert late.splits == {"train": 100, "test": 0}
    assert open_snapshot(late).read("test").num_rows == 0


def test_time_split_by_fractions_cuts_at_quantiles_in_a_second_pass(tmp_path):
    table = sample(0, 1000).append_column("ts", pa.array(range(1000, 0, -1), pa.int64()))
    src = tmp_path / "t.csv"
    src.write_bytes(csv_bytes(table))
    fractions = {"train": 0.7, "validation": 0.2, "test": 0.1}
    ref = ingest_snapshot(
        src.as_uri(), _root(tmp_path), "demo", chunk_rows=128,
        split={"by": "time", "column": "ts", "fractions": fractions},
    )  # fmt: skip
    assert ref.splits == {"train": 700, "validation": 200, "test": 100}
    snap = open_snapshot(ref)
    train, test = snap.read("train").column("ts"), snap.read("test").column("ts")
    assert pa.compute.max(train).as_py() < pa.compute.min(test).as_py()
    assert snap.manifest["split_config"]["boundaries"] == {"validation": 701, "test": 901}


def test_hash_split_without_key_hashes_whole_rows_and_random_split_is_reproducible(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_bytes(sample(0, 3000)))
    rows = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", split={"by": "hash"})
    assert sum(rows.splits.values()) == 3000 and min(rows.splits.values()) > 200
    first = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", split={"by": "random", "seed": 3})
    again = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", split={"by": "random", "seed": 3})
    other = ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", split={"by": "random", "seed": 4})
    assert first == again and first.sha256 != other.sha256 and first.sha256 != rows.sha256


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"by": "time"}, "split.column is required for a time split"),
        ({"by": "hash", "key": "id", "fractions": {"train": 0.5}}, "sum to 1"),
        ({"by": "hash", "key": "nope"}, "Split column 'nope' is not in the data"),
        (
            {"by": "time", "column": "id", "test_from": 5, "fractions": {"train": 0.5, "test": 0.5}},
            "either fractions or validation_from/test_from",
        ),
        ({"by": "time", "column": "id", "test_from": "yesterday"}, "cannot be compared with column 'id'"),
        ({"by": "shuffle"}, "split.by must be 'hash', 'random' or 'time'"),
        ({"by": "hash", "key": "id", "colour": 1}, "Unknown split option(s) ['colour']"),
    ],
)
def test_bad_split_configs_fail_clearly(tmp_path, split, message):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_bytes(sample()))
    with pytest.raises(IngestError) as err:
        ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", split=split)
    assert message in str(err.value)
    assert published_files(tmp_path / "artifacts") == []


def test_configured_schema_fixes_types(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_bytes(sample()))
    ref = ingest_snapshot(
        src.as_uri(), _root(tmp_path), "demo", schema={"id": "string", "amount": "float32", "city": "string"}
    )
    assert open_snapshot(ref).read().schema.types == [pa.string(), pa.float32(), pa.string()]


def test_peak_arrow_memory_is_bounded_by_chunk_size_not_input_size(tmp_path):
    """A ~30 MB CSV ingested with 1 MiB blocks and 20k-row chunks never holds more than a few MB in Arrow."""
    src = tmp_path / "big.csv"
    pa.csv.write_csv(sample(0, 1_500_000), src)
    size_mb = src.stat().st_size / 2**20
    assert size_mb > 25, size_mb
    code = textwrap.dedent(
        f"""
        import json, pyarrow as pa
        from airflow_mlops_provider.core.ingest import ingest_snapshot
        from airflow_mlops_provider.core.storage import Location
        ingest_snapshot({src.as_uri()!r}, Location({(tmp_path / "art").as_uri()!r}), "demo",
                        chunk_rows=20_000, block_bytes=1 << 20)
        print(json.dumps(pa.default_memory_pool().max_memory() / 2**20))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_mb = json.loads(out.stdout.strip().splitlines()[-1])
    assert peak_mb < 12, f"Arrow peak {peak_mb:.1f} MB for a {size_mb:.0f} MB input"
    assert pq.ParquetFile(next((tmp_path / "art").rglob("data.parquet"))).metadata.num_rows == 1_500_000


def test_object_storage_path_sources_bring_their_own_filesystem(tmp_path):
    from airflow.sdk import ObjectStoragePath

    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl_bytes(sample(0, 50)))
    (folder / "b.csv.gz").write_bytes(gzip.compress(csv_bytes(sample(50, 80))))
    ref = ingest_snapshot(ObjectStoragePath(folder.as_uri()), _root(tmp_path), "demo")
    snap = open_snapshot(ref)
    assert snap.read().equals(sample(0, 80))
    assert [o["uri"] for o in snap.manifest["source_objects"]] == [
        (folder / "a.jsonl").as_uri(),
        (folder / "b.csv.gz").as_uri(),
    ]


def test_progress_is_logged_with_objects_bytes_and_rows(tmp_path, caplog):
    import logging

    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_bytes(csv_bytes(sample(0, 5000)))
    caplog.set_level(logging.INFO, logger="airflow_mlops_provider")
    ingest_snapshot(
        [(tmp_path / "a.csv").as_uri(), (tmp_path / "b.csv").as_uri()], _root(tmp_path), "demo",
        block_bytes=16 * 1024, progress_every_s=0,
    )  # fmt: skip
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Ingesting 2 object(s), ")
    assert any(line.startswith("Reading object 2/2: " + (tmp_path / "b.csv").as_uri()) for line in lines)
    progress = [line for line in lines if line.startswith("Ingest progress: object ")]
    assert len(progress) > 4 and "10,000 rows" in progress[-1] and "of" in progress[-1]
    assert lines[-1].startswith("Snapshot file://") and "10000 rows" in lines[-1]


def test_csv_options_are_applied_and_unknown_ones_named(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"id;amount;city\n1;2,5;x\n2;NA;y\n")
    ref = ingest_snapshot(
        src.as_uri(), _root(tmp_path), "demo",
        csv_options={"delimiter": ";", "decimal_point": ",", "null_values": ["NA"]},
    )  # fmt: skip
    assert open_snapshot(ref).read().column("amount").to_pylist() == [2.5, None]
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'id,note\n1,"two\nlines"\n2,plain\n')
    ref = ingest_snapshot(quoted.as_uri(), _root(tmp_path), "demo", csv_options={"newlines_in_values": True})
    assert open_snapshot(ref).read().column("note").to_pylist() == ["two\nlines", "plain"]
    with pytest.raises(IngestError, match=r"csv_options: unknown option\(s\) \['delimeter'\]"):
        ingest_snapshot(src.as_uri(), _root(tmp_path), "demo", csv_options={"delimeter": ";"})


def test_a_listing_skips_hidden_objects_such_as_a_writer_s_temporary_file(tmp_path):
    """A prefix or glob never reads a dot-file (a half-written ``.tmp-...`` of a writer that
    publishes by rename, as the prediction service's request log does); a path named exactly does."""
    folder = tmp_path / "hour=10"
    folder.mkdir()
    (folder / "part-1.csv").write_bytes(csv_bytes(sample(0, 10)))
    (folder / ".tmp-9f2c-part-2.csv").write_bytes(b"id,amount,ci")  # cut off mid-write
    uri = f"file://{folder}"  # Path.as_uri would escape the '='
    for source in (uri + "/", uri + "/*.csv"):
        ref = ingest_snapshot(source, _root(tmp_path), "demo")
        assert ref.rows == 10
        (obj,) = open_snapshot(ref).manifest["source_objects"]
        assert obj["uri"].endswith("/part-1.csv")
    with pytest.raises(IngestError, match=r"\.tmp-9f2c-part-2\.csv"):
        ingest_snapshot(uri + "/.tmp-9f2c-part-2.csv", _root(tmp_path), "demo")
