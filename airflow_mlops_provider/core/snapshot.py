"""Immutable, content-addressed data snapshots (DESIGN.md rule 2).

Layout: ``<artifact_root>/<pipeline>/<kind>/<sha256>/`` holding one Parquet file per split
(``data.parquet``, or ``train.parquet`` / ``validation.parquet`` / ``test.parquet``) and a
``manifest.json`` written last. A snapshot is complete exactly when its manifest exists;
readers refuse a directory without one. The hash covers the Parquet bytes of every split in
order, so the same rows written with the same chunking give the same snapshot, and a retry
reuses the existing snapshot instead of rewriting it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_mlops_provider.core.storage import Location

MANIFEST = "manifest.json"
DEFAULT_SPLIT = "data"


class SnapshotError(RuntimeError):
    """A snapshot is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class SnapshotRef:
    """The small reference that travels through XCom and asset-event ``extra``."""

    uri: str
    sha256: str
    rows: int
    splits: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnapshotRef:
        return cls(
            uri=data["uri"], sha256=data["sha256"], rows=int(data["rows"]), splits=dict(data["splits"])
        )


class SnapshotWriter:
    """Write a snapshot split by split, batch by batch, then publish it atomically.

    Batches go to local temporary Parquet files (bounded memory: one batch at a time), the
    hash is taken from those files, and only then are they copied under the content address,
    manifest last. Use as a context manager: leaving it with an exception discards everything.
    """

    def __init__(
        self,
        artifact_root: Location,
        pipeline: str,
        *,
        kind: str = "snapshots",
        row_group_rows: int = 128_000,
    ) -> None:
        self._root = artifact_root.join(pipeline, kind)
        self._tmp = tempfile.mkdtemp(prefix="snapshot-")
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, int] = {}
        self._schema: pa.Schema | None = None
        self._row_group_rows = row_group_rows

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, batch: pa.Table | pa.RecordBatch, split: str = DEFAULT_SPLIT) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema, check_metadata=False):
            table = _conform(table, self._schema)
        writer = self._writers.get(split)
        if writer is None:
            writer = pq.ParquetWriter(self._local(split), self._schema, compression="zstd")
            self._writers[split] = writer
            self._rows[split] = 0
        writer.write_table(table, row_group_size=self._row_group_rows)
        self._rows[split] += table.num_rows

    def commit(self, manifest_extra: Mapping[str, Any] | None = None) -> SnapshotRef:
        """Publish the snapshot (or find the identical one already published) and return its reference."""
        if not self._writers:
            raise SnapshotError("Nothing was written to the snapshot")
        for writer in self._writers.values():
            writer.close()
        splits = sorted(self._writers, key=_split_order)
        digest = hashlib.sha256()
        for split in splits:
            digest.update(split.encode())
            with open(self._local(split), "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(chunk)
        sha = digest.hexdigest()
        target = self._root.join(sha)
        ref = SnapshotRef(uri=target.uri, sha256=sha, rows=sum(self._rows.values()), splits=dict(self._rows))
        if target.join(MANIFEST).exists():
            self.close()
            return ref
        fs = target.fs
        fs.makedirs(target.path, exist_ok=True)
        for split in splits:
            fs.put_file(self._local(split), target.join(f"{split}.parquet").path)
        manifest = {
            "sha256": sha,
            "rows": ref.rows,
            "splits": ref.splits,
            "schema": schema_to_json(self._schema),
            "created_at": datetime.now(UTC).isoformat(),
            **dict(manifest_extra or {}),
        }
        target.join(MANIFEST).write_bytes_atomic(json.dumps(manifest, indent=2, default=str).encode())
        self.close()
        return ref

    def close(self) -> None:
        for writer in self._writers.values():
            if writer.is_open:
                writer.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _local(self, split: str) -> str:
        return os.path.join(self._tmp, f"{split}.parquet")


def write_snapshot(
    data: pa.Table | Mapping[str, pa.Table],
    artifact_root: Location,
    pipeline: str,
    *,
    kind: str = "snapshots",
    manifest_extra: Mapping[str, Any] | None = None,
) -> SnapshotRef:
    """Write an in-memory table (or one table per split) as a snapshot."""
    tables = {DEFAULT_SPLIT: data} if isinstance(data, pa.Table) else dict(data)
    with SnapshotWriter(artifact_root, pipeline, kind=kind) as writer:
        for split, table in tables.items():
            writer.write(table, split)
        return writer.commit(manifest_extra)


@dataclass(frozen=True)
class Snapshot:
    """A published snapshot, opened for reading."""

    location: Location
    manifest: dict[str, Any]

    @property
    def ref(self) -> SnapshotRef:
        return SnapshotRef(
            uri=self.location.uri,
            sha256=self.manifest["sha256"],
            rows=int(self.manifest["rows"]),
            splits=dict(self.manifest["splits"]),
        )

    def split_uri(self, split: str | None = None) -> str:
        return self.location.join(f"{self._split(split)}.parquet").uri

    def parquet_file(self, split: str | None = None) -> pq.ParquetFile:
        """Open one split for streaming reads (row group by row group)."""
        loc = self.location.join(f"{self._split(split)}.parquet")
        return pq.ParquetFile(loc.fs.open(loc.path, "rb"))

    def read(self, split: str | None = None, columns: list[str] | None = None) -> pa.Table:
        return self.parquet_file(split).read(columns=columns)

    def _split(self, split: str | None) -> str:
        splits = self.manifest["splits"]
        if split is None:
            if DEFAULT_SPLIT in splits:
                return DEFAULT_SPLIT
            raise SnapshotError(f"Snapshot {self.location.uri} is split into {sorted(splits)}: name a split")
        if split not in splits:
            raise SnapshotError(f"Snapshot {self.location.uri} has no split {split!r} (has {sorted(splits)})")
        return split


def open_snapshot(uri: str | SnapshotRef, storage_options: Mapping[str, Any] | None = None) -> Snapshot:
    """Open a published snapshot by URI or reference; an incomplete one raises :class:`SnapshotError`."""
    location = Location(uri.uri if isinstance(uri, SnapshotRef) else uri, dict(storage_options or {}))
    manifest_loc = location.join(MANIFEST)
    try:
        manifest = json.loads(manifest_loc.read_bytes())
    except FileNotFoundError as err:
        raise SnapshotError(f"No complete snapshot at {location.uri}: {MANIFEST} is missing") from err
    return Snapshot(location=location, manifest=manifest)


def schema_to_json(schema: pa.Schema | None) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in (schema or [])]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.names != schema.names:
        raise SnapshotError(
            f"Columns changed mid-snapshot: expected {schema.names}, got {table.schema.names}"
        )
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SnapshotError(f"Column types changed mid-snapshot: {err}") from err


def _split_order(split: str) -> tuple[int, str]:
    order = {DEFAULT_SPLIT: 0, "train": 1, "validation": 2, "test": 3}
    return order.get(split, 9), split
