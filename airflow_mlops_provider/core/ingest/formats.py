"""Format readers: one source object in, Arrow record batches conformed to the target schema out.

CSV and JSON Lines are parsed block by block from a sequential stream (gzip decompressed on
the fly, the gzip CRC checked); Parquet is read row group by row group through a seekable view,
verifying page checksums where the writer stored them. Each reader checks the object's columns
against the target schema (the configured one, or the first object's) and turns Arrow errors
into :class:`IngestError` messages naming the object and column.

A CSV cell that holds one of the null markers (``csv_options["null_values"]``, by default
:data:`DEFAULT_NULL_VALUES`: the empty cell, ``NA``, ``N/A``, ``NULL``, ``null``, ``NaN``... as
Arrow and pandas have them) is missing in every column, string columns included, so the
null-rate checks and the drift engine's missing-share test count it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from airflow_mlops_provider.core.ingest.errors import IngestError
from airflow_mlops_provider.core.ingest.sources import Source, SourceObject
from airflow_mlops_provider.core.names import DEFAULT_CHUNK_ROWS

FORMATS = ("csv", "parquet", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
DEFAULT_BLOCK_BYTES = 8 << 20
DEFAULT_NULL_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)  # fmt: skip


@dataclass(frozen=True)
class ReadSpec:
    """How to read objects: format and compression (None = from the key), buffer sizes, CSV options."""

    format: str | None = None
    compression: str | None = None
    block_bytes: int = DEFAULT_BLOCK_BYTES
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    csv_options: Mapping[str, Any] | None = None


_PARSE_KEYS = ("delimiter", "quote_char", "double_quote", "escape_char", "ignore_empty_lines")
_CONVERT_KEYS = (
    "null_values", "true_values", "false_values", "strings_can_be_null", "quoted_strings_can_be_null",
    "decimal_point", "timestamp_parsers", "include_columns", "auto_dict_encode",
)  # fmt: skip


def check_csv_options(options: Mapping[str, Any] | None) -> None:
    """Fail early, naming the key, on a CSV option this reader does not take."""
    known = {*_PARSE_KEYS, *_CONVERT_KEYS, "column_types", "newlines_in_values"}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise IngestError(f"csv_options: unknown option(s) {unknown}; expected some of {sorted(known)}")


def _csv_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The given CSV options over this reader's defaults: the null markers apply to strings too."""
    return {"null_values": list(DEFAULT_NULL_VALUES), "strings_can_be_null": True, **(options or {})}


def detect_format(uri: str, spec: ReadSpec) -> tuple[str, str | None]:
    """``(format, compression)`` for one object: the configured values, else from its name."""
    name = uri.lower().split("?", 1)[0]
    compression = spec.compression
    if name.endswith(".gz"):
        compression = compression or "gzip"
        name = name[:-3]
    fmt = spec.format
    if fmt is None:
        fmt = next((f for ext, f in _EXTENSIONS.items() if name.endswith(ext)), None)
        if fmt is None:
            raise IngestError(f"Cannot tell the format of {uri} from its name: pass format= one of {FORMATS}")
    fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise IngestError(f"Unknown format {fmt!r} for {uri}: use one of {FORMATS}")
    if compression not in (None, "gzip", "none"):
        raise IngestError(f"Unsupported compression {compression!r} for {uri}: use 'gzip' or none")
    return fmt, (None if compression == "none" else compression)


def read_object(
    source: Source,
    obj: SourceObject,
    spec: ReadSpec,
    target: pa.Schema | None,
    on_bytes: Callable[[int], None],
) -> Iterator[pa.Table]:
    """Yield the object's rows as tables conformed to ``target`` (or its own schema when None)."""
    fmt, compression = detect_format(obj.uri, spec)
    if fmt == "parquet" and compression:
        raise IngestError(f"{obj.uri}: gzip-wrapped Parquet is not supported (Parquet compresses internally)")
    names: list[str] = list(target.names) if target is not None else []
    try:
        if fmt == "parquet":
            handle = source.open_seekable(obj, spec.block_bytes)
            batches, schema = _parquet(_Counting(handle, on_bytes), obj, spec)
        else:
            stream = pa.PythonFile(_Counting(source.open_stream(obj), on_bytes), mode="r")
            if compression:
                stream = pa.CompressedInputStream(stream, compression)
            if fmt == "csv" and not (spec.csv_options or {}).get("newlines_in_values"):
                schema, batches = _csv_blocks(stream, spec, target)
            else:
                reader = _csv(stream, spec, target) if fmt == "csv" else _jsonl(stream, spec, target)
                schema, batches = reader.schema, reader
        names = schema.names
        _check_schema(obj, schema, target)
        for batch in batches:
            yield _conform(pa.Table.from_batches([batch]), target, obj)
    except IngestError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as err:
        raise IngestError(
            f"Cannot read {obj.uri} as {_label(fmt, compression)}: {_describe(err, names)}"
        ) from err


def _column_types(options: dict[str, Any], target: pa.Schema | None) -> dict[str, Any]:
    """The ``column_types`` option (popped from ``options``), overridden by the types ``target`` fixes."""
    column_types = dict(options.pop("column_types", {}) or {})
    if target is not None:
        column_types.update({f.name: f.type for f in target if not pa.types.is_null(f.type)})
    return column_types


def _csv(stream: Any, spec: ReadSpec, target: pa.Schema | None) -> pacsv.CSVStreamingReader:
    options = _csv_options(spec.csv_options)
    column_types = _column_types(options, target)
    parse = pacsv.ParseOptions(
        **{k: options.pop(k) for k in (*_PARSE_KEYS, "newlines_in_values") if k in options}
    )
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=spec.block_bytes, use_threads=True),
        parse_options=parse,
        convert_options=pacsv.ConvertOptions(column_types=column_types, **options),
    )


def _csv_blocks(stream: Any, spec: ReadSpec, target: pa.Schema | None) -> tuple[pa.Schema, Iterator[Any]]:
    """CSV parsed ``block_bytes`` at a time, each block cut at its last newline and parsed by
    Arrow's multi-threaded ``read_csv`` (the streaming reader converts on one thread only).

    Rows never span blocks because values hold no newlines (``newlines_in_values`` off, as in
    Arrow's own default); with it on, :func:`_csv` streams instead.
    """
    options = _csv_options(spec.csv_options)
    column_types = _column_types(options, target)
    options.pop("newlines_in_values", None)
    parse = pacsv.ParseOptions(**{k: options.pop(k) for k in _PARSE_KEYS if k in options})
    internal = max(1 << 20, min(spec.block_bytes // 8, 4 << 20))

    def parse_block(data: bytes, names: list[str] | None, types: dict[str, Any]) -> pa.Table:
        read = pacsv.ReadOptions(block_size=internal, use_threads=True, column_names=names)
        convert = pacsv.ConvertOptions(column_types=types, **options)
        return pacsv.read_csv(
            pa.py_buffer(data), read_options=read, parse_options=parse, convert_options=convert
        )

    pieces = _newline_blocks(stream, spec.block_bytes)
    first_piece = next(pieces, b"")
    if not first_piece.strip():
        raise ValueError("the object holds no CSV header")
    first = parse_block(first_piece, None, column_types)
    names = first.schema.names
    fixed = {**{f.name: f.type for f in first.schema if not pa.types.is_null(f.type)}, **column_types}

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        for piece in pieces:
            yield from parse_block(piece, names, fixed).to_batches()

    return first.schema, batches()


def _newline_blocks(stream: Any, block_bytes: int) -> Iterator[bytes]:
    """``stream`` read ``block_bytes`` at a time, each block cut after its last newline (the rest
    carries over to the next), so no row spans two blocks."""
    carry = b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            break
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        yield data[: cut + 1]
    if carry.strip():
        yield carry


def _jsonl(stream: Any, spec: ReadSpec, target: pa.Schema | None) -> Any:
    parse = (
        pajson.ParseOptions(explicit_schema=target, unexpected_field_behavior="error")
        if target is not None
        else pajson.ParseOptions()
    )
    return pajson.open_json(
        stream, read_options=pajson.ReadOptions(block_size=spec.block_bytes), parse_options=parse
    )


def _parquet(
    handle: io.RawIOBase, obj: SourceObject, spec: ReadSpec
) -> tuple[Iterator[pa.RecordBatch], pa.Schema]:
    parquet = pq.ParquetFile(pa.PythonFile(handle, mode="r"), page_checksum_verification=True)
    return parquet.iter_batches(batch_size=spec.chunk_rows), parquet.schema_arrow


def _check_schema(obj: SourceObject, schema: pa.Schema, target: pa.Schema | None) -> None:
    if target is None:
        return
    got, want = list(schema.names), list(target.names)
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"column {', '.join(map(repr, missing))} missing")
        if extra:
            parts.append(f"unexpected column {', '.join(map(repr, extra))}")
        hint = " (renamed?)" if missing and extra else ""
        raise IngestError(
            f"Schema change in {obj.uri}: {' and '.join(parts)}{hint}; expected columns {want}, got {got}"
        )
    for field in target:
        actual = schema.field(field.name).type
        if actual != field.type and not pa.types.is_null(actual):
            raise IngestError(
                f"Schema change in {obj.uri}: column {field.name!r} has type {actual}, expected {field.type}"
            )


def _conform(table: pa.Table, target: pa.Schema | None, obj: SourceObject) -> pa.Table:
    table = table.replace_schema_metadata(None)
    if target is None:
        return table
    if table.schema.names != target.names:
        table = table.select(target.names)
    if not table.schema.equals(target):
        try:
            table = table.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise IngestError(f"Schema change in {obj.uri}: {err}") from err
    return table


def _describe(err: BaseException, names: list[str]) -> str:
    text = str(err).strip()

    def name_it(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"In CSV column {names[index]!r}" if index < len(names) else match.group(0)

    text = _CSV_COLUMN.sub(name_it, text)
    if "conversion error" in text:
        text += " (the column's type changed from earlier rows or objects; set `schema` to fix column types)"
    if isinstance(err, EOFError) or "Truncated" in text or "truncated" in text:
        text = f"truncated or corrupt compressed data ({text})"
    return text


def _label(fmt: str, compression: str | None) -> str:
    return f"{fmt}+{compression}" if compression else fmt


class _Counting(io.RawIOBase):
    """Pass reads through, reporting how many bytes went by (for progress logs)."""

    def __init__(self, inner: BinaryIO, on_bytes: Callable[[int], None]) -> None:
        self._inner, self._on_bytes = inner, on_bytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(getattr(self._inner, "seekable", lambda: False)())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._on_bytes(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()
