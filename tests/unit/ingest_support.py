"""Helpers shared by the ingestion and snapshot tests: sample data, "nothing was published" checks,
corrupted Parquet."""

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


def zero_page_tail(data: bytes, column: int = 0, size: int = 64) -> bytes:
    """Zero the last ``size`` bytes of one column chunk's pages in a Parquet file, footer left intact.

    Without page checksums Arrow reads such a file without complaint and returns other values.
    """
    buf = bytearray(data)
    chunk = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    end = start + chunk.total_compressed_size
    buf[end - size : end] = bytes(size)
    return bytes(buf)
