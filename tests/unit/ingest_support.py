"""Helpers shared by the ingestion tests: sample data, S3 uploads, "nothing was published" checks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def sample(start: int = 0, stop: int = 1000) -> pa.Table:
    ids = list(range(start, stop))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array([i * 0.25 for i in ids], pa.float64()),
            "city": pa.array([f"c{i % 7}" for i in ids], pa.string()),
        }
    )


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def parquet_bytes(table: pa.Table, **kwargs: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


def jsonl_bytes(table: pa.Table) -> bytes:
    import json

    return "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()


def published_files(root: Path) -> list[Path]:
    """Every file under a local artifact root (a failed ingest must leave none)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
