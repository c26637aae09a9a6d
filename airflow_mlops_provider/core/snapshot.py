"""Immutable, content-addressed data snapshots (DESIGN.md rule 2).

Layout: ``<artifact_root>/<pipeline>/<kind>/<sha256>/`` holding one Parquet file per split
(``data.parquet``, or ``train.parquet`` / ``validation.parquet`` / ``test.parquet``) and a
``manifest.json`` written last. A snapshot is complete exactly when its manifest exists;
readers refuse a directory without one. The hash covers the Parquet bytes of every split in
order, so the same rows written with the same chunking give the same snapshot, and a retry
reuses the existing snapshot instead of rewriting it, once it has re-hashed the published files
and found them unchanged.

Parquet pages carry CRC checksums, verified on every read through :class:`Snapshot`, and the
manifest records each file's sha256 and size, so damaged or rewritten data fails with a
:class:`SnapshotError` naming the file instead of being read or reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS
from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.storage import Location, is_local

MANIFEST = "manifest.json"
DEFAULT_SPLIT = "data"
_HASH_CHUNK = 1 << 20


class SnapshotError(PermanentError, RuntimeError):
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


SnapshotLike: TypeAlias = SnapshotRef | Mapping[str, Any] | str
"""What callers may pass for a snapshot: a reference, the dict that travels through XCom and
asset-event ``extra`` (``{"uri", "sha256", "rows", "splits"}``), its JSON text (a rendered
template), or a bare URI."""


def snapshot_uri(value: SnapshotLike) -> str:
    """The URI of a snapshot given in any :data:`SnapshotLike` form, without touching storage."""
    if isinstance(value, SnapshotRef):
        return value.uri
    if isinstance(value, str):
        text = value.strip()
        if text and not text.startswith("{"):
            return text
        value = _parse_json_ref(text) if text else {}
    uri = value.get("uri") if isinstance(value, Mapping) else None
    if not isinstance(uri, str) or not uri:
        raise SnapshotError(f"Not a snapshot reference (expected a dict with a 'uri'): {str(value)[:200]!r}")
    return uri


def as_snapshot_ref(value: SnapshotLike, storage_options: Mapping[str, Any] | None = None) -> SnapshotRef:
    """The :class:`SnapshotRef` for any :data:`SnapshotLike`; a bare URI is resolved from its manifest."""
    if isinstance(value, SnapshotRef):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _parse_json_ref(value.strip())
    if isinstance(value, Mapping) and {"sha256", "rows", "splits"} <= value.keys():
        snapshot_uri(value)
        return SnapshotRef.from_dict(value)
    return open_snapshot(snapshot_uri(value), storage_options).ref


def _parse_json_ref(text: str) -> Mapping[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError as err:
        raise SnapshotError(f"Not a snapshot reference (invalid JSON): {text[:200]!r}") from err
    if not isinstance(parsed, Mapping):
        raise SnapshotError(f"Not a snapshot reference (JSON is not an object): {text[:200]!r}")
    return parsed


class SnapshotWriter:
    """Write a snapshot split by split, batch by batch, then publish it atomically.

    Batches go to local temporary Parquet files (bounded memory: one batch at a time), the
    hash is taken from those files, and only then are they copied under the content address,
    manifest last. Use as a context manager: leaving it with an exception discards everything.

    Row groups are sized for training ranks (:func:`balanced_row_groups`): a split of at least
    ``8 * BALANCED_MIN_GROUP_ROWS`` rows is written as a multiple of 8 row groups of equal size
    (give or take one row), each of at most ``row_group_rows`` rows, so that 2, 4 or 8 ranks
    get the same whole row groups' worth of rows. A smaller split keeps row groups of
    ``row_group_rows`` rows (the last one fewer). The split is regrouped once, streaming, from
    the local file at commit when its row groups do not already follow the rule.
    """

    def __init__(
        self,
        artifact_root: Location,
        pipeline: str,
        *,
        kind: str = "snapshots",
        row_group_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self._root = artifact_root.join(safe_component(pipeline, "pipeline"), safe_component(kind, "kind"))
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
            writer = pq.ParquetWriter(
                self._local(split), self._schema, compression="zstd", write_page_checksum=True
            )
            self._writers[split] = writer
            self._rows[split] = 0
        writer.write_table(table, row_group_size=self._row_group_rows)
        self._rows[split] += table.num_rows

    def commit(self, manifest_extra: Mapping[str, Any] | None = None) -> SnapshotRef:
        """Publish the snapshot (or find the identical one already published) and return its reference."""
        if not self._writers:
            raise SnapshotError("Nothing was written to the snapshot")
        for split, writer in self._writers.items():
            writer.close()
            self._balance(split)
        splits = sorted(self._writers, key=split_order)
        sha, files = _hash_files({split: Location(self._local(split)) for split in splits})
        target = self._root.join(sha)
        splits_rows = {split: self._rows[split] for split in splits}
        ref = SnapshotRef(uri=target.uri, sha256=sha, rows=sum(splits_rows.values()), splits=splits_rows)
        if target.join(MANIFEST).exists():
            open_snapshot(target.uri, target.storage_options).verify()
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
            "files": files,
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

    def _balance(self, split: str) -> None:
        """Regroup the split's local file into :func:`balanced_row_groups` sizes (if it is not already)."""
        path = self._local(split)
        source = pq.ParquetFile(path)
        meta = source.metadata
        sizes = balanced_row_groups(meta.num_rows, self._row_group_rows)
        if not meta.num_rows or [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == sizes:
            return
        regrouped = os.path.join(self._tmp, f"{split}.balanced.parquet")
        with pq.ParquetWriter(
            regrouped, self._schema, compression="zstd", write_page_checksum=True
        ) as writer:  # fmt: skip
            batches = source.iter_batches(batch_size=min(self._row_group_rows, 8192))
            pending: list[pa.RecordBatch] = []
            for size in sizes:
                pending = _take(batches, pending, size, writer)
        source.close()
        os.replace(regrouped, path)


BALANCED_MIN_GROUP_ROWS = 8192
BALANCED_GROUPS = 8  # a multiple of 8 row groups: balanced for 1, 2, 4 and 8 ranks


def balanced_row_groups(rows: int, row_group_rows: int) -> list[int]:
    """Row group sizes of a split of ``rows`` rows (see :class:`SnapshotWriter`).

    ``G = 8 * ceil(rows / (8 * row_group_rows))`` groups of ``rows // G`` rows, the first
    ``rows % G`` of them one more, when ``rows >= 8 * BALANCED_MIN_GROUP_ROWS``; otherwise groups
    of ``row_group_rows`` rows, the last one fewer.
    """
    if rows < BALANCED_GROUPS * BALANCED_MIN_GROUP_ROWS:
        full, rest = divmod(rows, row_group_rows)
        return [row_group_rows] * full + ([rest] if rest else [])
    groups = BALANCED_GROUPS * -(-rows // (BALANCED_GROUPS * row_group_rows))
    size, extra = divmod(rows, groups)
    return [size + 1] * extra + [size] * (groups - extra)


def _take(
    batches: Iterator[pa.RecordBatch], pending: list[pa.RecordBatch], size: int, writer: pq.ParquetWriter
) -> list[pa.RecordBatch]:
    """Write the next ``size`` rows (``pending``, then ``batches``) as one row group; return the rest."""
    have = sum(b.num_rows for b in pending)
    while have < size:
        batch = next(batches)
        pending.append(batch)
        have += batch.num_rows
    table = pa.Table.from_batches(pending, schema=writer.schema)  # no copy: the row group spans chunks
    writer.write_table(table.slice(0, size), row_group_size=size)
    return list(table.slice(size).to_batches())


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
        return self._file(split).uri

    def parquet_file(self, split: str | None = None, *, memory_map: bool = True) -> pq.ParquetFile:
        """Open one split for streaming reads (row group by row group), page checksums verified.

        Local files are read by Arrow's native reader (faster than through a Python file object),
        memory-mapped unless ``memory_map`` is false (a long pass over a large file: mapped pages
        count in the process's resident memory); others stream through their fsspec filesystem.
        """
        loc = self._file(split)
        fs = loc.fs
        if is_local(fs):
            return SnapshotParquetFile(loc.path, loc.uri, memory_map=memory_map)
        return SnapshotParquetFile(fs.open(loc.path, "rb"), loc.uri)

    def read(self, split: str | None = None, columns: list[str] | None = None) -> pa.Table:
        return self.parquet_file(split).read(columns=columns)

    def verify(self) -> None:
        """Re-hash every split's Parquet bytes (streaming) and check them against the manifest.

        Raises :class:`SnapshotError` naming the snapshot and each file that is missing or
        changed since it was published.
        """
        splits = sorted(self.manifest["splits"], key=split_order)
        try:
            sha, files = _hash_files({split: self._file(split) for split in splits})
        except FileNotFoundError as err:
            missing = [f"{s}.parquet" for s in splits if not self._file(s).exists()]
            raise SnapshotError(f"Snapshot {self.location.uri} is missing {', '.join(missing)}") from err
        if sha != self.manifest["sha256"]:
            recorded = self.manifest.get("files", {})
            changed = [name for name, entry in files.items() if recorded.get(name) != entry] or [MANIFEST]
            raise SnapshotError(
                f"Snapshot {self.location.uri} does not match its manifest: {', '.join(changed)} changed "
                "after it was published. Delete the snapshot directory so that the next run writes it again"
            )

    def _file(self, split: str | None) -> Location:
        return self.location.join(f"{self._split(split)}.parquet")

    def _split(self, split: str | None) -> str:
        splits = self.manifest["splits"]
        if split is None:
            if DEFAULT_SPLIT in splits:
                return DEFAULT_SPLIT
            raise SnapshotError(f"Snapshot {self.location.uri} is split into {sorted(splits)}: name a split")
        if split not in splits:
            raise SnapshotError(f"Snapshot {self.location.uri} has no split {split!r} (has {sorted(splits)})")
        return split


def open_snapshot(snapshot: SnapshotLike, storage_options: Mapping[str, Any] | None = None) -> Snapshot:
    """Open a published snapshot (any :data:`SnapshotLike`); an incomplete one raises SnapshotError."""
    location = Location(snapshot_uri(snapshot), dict(storage_options or {}))
    manifest_loc = location.join(MANIFEST)
    try:
        manifest = json.loads(manifest_loc.read_bytes())
    except FileNotFoundError as err:
        raise SnapshotError(f"No complete snapshot at {location.uri}: {MANIFEST} is missing") from err
    return Snapshot(location=location, manifest=manifest)


class SnapshotParquetFile(pq.ParquetFile):  # type: ignore[misc]  # pyarrow ships no type stubs
    """One snapshot file, read with page checksums verified; read errors name the file."""

    def __init__(self, source: str | BinaryIO, uri: str, *, memory_map: bool = False) -> None:
        self.uri = uri
        with self._naming_errors():
            super().__init__(source, memory_map=memory_map, page_checksum_verification=True)

    def read(self, *args: Any, **kwargs: Any) -> pa.Table:
        with self._naming_errors():
            return super().read(*args, **kwargs)

    def read_row_group(self, *args: Any, **kwargs: Any) -> pa.Table:
        with self._naming_errors():
            return super().read_row_group(*args, **kwargs)

    def read_row_groups(self, *args: Any, **kwargs: Any) -> pa.Table:
        with self._naming_errors():
            return super().read_row_groups(*args, **kwargs)

    def iter_batches(self, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        with self._naming_errors():
            yield from super().iter_batches(*args, **kwargs)

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, pa.ArrowException) as err:
            raise SnapshotError(f"Snapshot file {self.uri} is damaged or unreadable: {err}") from err


def schema_to_json(schema: pa.Schema | None) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in (schema or [])]


def _hash_files(files: Mapping[str, Location]) -> tuple[str, dict[str, dict[str, Any]]]:
    """Stream the split files (split name -> file, in hash order) once: the content hash over their
    Parquet bytes, and each file's own sha256 and size for the manifest."""
    content = hashlib.sha256()
    entries: dict[str, dict[str, Any]] = {}
    for split, location in files.items():
        content.update(split.encode())
        own, size = hashlib.sha256(), 0
        with location.fs.open(location.path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                content.update(chunk)
                own.update(chunk)
                size += len(chunk)
        entries[f"{split}.parquet"] = {"sha256": own.hexdigest(), "bytes": size}
    return content.hexdigest(), entries


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.names != schema.names:
        raise SnapshotError(
            f"Columns changed mid-snapshot: expected {schema.names}, got {table.schema.names}"
        )
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SnapshotError(f"Column types changed mid-snapshot: {err}") from err


def split_order(split: str) -> tuple[int, str]:
    """Sort key that puts split names in the order of their meaning: train, validation, test, then others."""
    order = {DEFAULT_SPLIT: 0, "train": 1, "validation": 2, "test": 3}
    return order.get(split, 9), split
