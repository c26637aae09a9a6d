"""Validate a snapshot: build the suite, run builtin checks and Great Expectations, write the
JSON result and HTML report under ``<artifact_root>/<pipeline>/reports/validation/<sha256>/``,
and return a small summary (raising :class:`ValidationFailed` in ``fail`` mode)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from airflow_mlops_provider.core.paths import UnsafeNameError, ensure_within, safe_component
from airflow_mlops_provider.core.snapshot import (
    DEFAULT_SPLIT,
    Snapshot,
    SnapshotError,
    SnapshotLike,
    SnapshotParquetFile,
    open_snapshot,
    snapshot_uri,
)
from airflow_mlops_provider.core.storage import Location, is_local, join_uri
from airflow_mlops_provider.core.validation.builtin import TableFacts, builtin_options, run_builtin
from airflow_mlops_provider.core.validation.errors import ValidationConfigError, ValidationFailed
from airflow_mlops_provider.core.validation.report import failure_message, render_html
from airflow_mlops_provider.core.validation.suite import infer_suite, load_suite_file, normalise_suite

log = logging.getLogger(__name__)

MAX_SUMMARY_FAILURES = 20
STREAM_ABOVE_MB = 1024.0
BATCH_ROWS = 500_000
PARTITION_ROWS = 2_000_000


def validate_snapshot(
    snapshot: SnapshotLike,
    *,
    suite: str | Sequence[Mapping[str, Any]] | None = None,
    reference: SnapshotLike | None = None,
    split: str | None = None,
    mode: str = "fail",
    builtin_checks: bool | Mapping[str, Any] | None = True,
    infer_options: Mapping[str, Any] | None = None,
    artifact_root: Location | None = None,
    pipeline: str | None = None,
    run_info: Mapping[str, Any] | None = None,
    stream_above_mb: float | None = STREAM_ABOVE_MB,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """Validate one snapshot (one split, or all splits together when ``split`` is None).

    ``suite`` is a list of expectations (``{"expectation": "expect_...", "column": ..., ...}`` or
    GX ``{"type", "kwargs"}``) or the path/URI of a GX suite JSON; ``reference`` is a snapshot to
    infer a suite from (its expectations are added, its schema and null fractions drive the
    builtin checks). ``artifact_root`` (with its storage options, which open the snapshots and the
    suite too) must hold the snapshots, and the report goes under its ``pipeline`` folder; without
    it, the report goes beside the snapshot and nothing gets storage options.

    A split whose in-memory size (the Parquet row groups' uncompressed bytes) exceeds
    ``stream_above_mb`` is validated streaming, ``batch_rows`` rows at a time
    (docs/streaming_validation.md); ``0`` always streams, ``None`` never does. Returns
    ``{"success", "evaluated", "failed", "report_uri", "result_uri", "snapshot_sha256", "split", "mode"}``.
    """
    if mode not in ("fail", "warn"):
        raise ValidationConfigError(f"mode must be 'fail' or 'warn', got {mode!r}")
    options = dict(artifact_root.storage_options) if artifact_root else {}
    snap = _open(snapshot, options, artifact_root, "snapshot")
    report_dir = _report_dir(snap, artifact_root, pipeline, options)
    started = time.monotonic()

    expectations: list[dict[str, Any]] = []
    if isinstance(suite, str):
        expectations += load_suite_file(suite, options)
    elif suite:
        expectations += normalise_suite(suite)
    reference_info = None
    if reference:
        inferred = infer_suite(_open(reference, options, artifact_root, "reference"), infer_options)
        expectations += inferred["expectations"]
        reference_info = inferred["reference"]
    builtin = builtin_options(builtin_checks)
    if not expectations and builtin is None:
        raise ValidationConfigError("Nothing to validate: no suite, no reference and builtin checks are off")

    in_memory_mb = split_in_memory_mb(snap, split)
    streaming = stream_above_mb is not None and in_memory_mb > stream_above_mb
    run = _streaming_checks if streaming else _in_memory_checks
    checks, rows, gx_json = run(snap, split, expectations, builtin, reference_info, batch_rows)
    failed = [c for c in checks if not c["success"]]

    suite_id = _suite_id(expectations, builtin, reference_info)
    stem = f"{split or 'all'}-{suite_id}"
    report_uri, result_uri = (report_dir.join(f"{stem}.{ext}") for ext in ("html", "json"))
    outcome = {
        "success": not failed,
        "evaluated": len(checks),
        "failed": [_short(c) for c in failed[:MAX_SUMMARY_FAILURES]],
        "failed_count": len(failed),
        "report_uri": report_uri.uri,
        "result_uri": result_uri.uri,
        "snapshot_uri": snap.location.uri,
        "snapshot_sha256": snap.manifest["sha256"],
        "split": split,
        "mode": mode,
    }
    document = {
        **outcome,
        "snapshot": snap.ref.to_dict(),
        "rows": rows,
        "engine": "stream" if streaming else "memory",
        "in_memory_estimate_mb": round(in_memory_mb, 3),
        "validated_at": datetime.now(UTC).isoformat(),
        "run": dict(run_info or {}),
        "reference": reference_info,
        "builtin_options": builtin,
        "expectations": expectations,
        "statistics": {
            "evaluated": len(checks),
            "failed": len(failed),
            "seconds": time.monotonic() - started,
        },
        "checks": checks,
        "great_expectations": gx_json,
    }
    result_uri.write_bytes_atomic(json.dumps(document, indent=2, default=str).encode())
    report_uri.write_bytes_atomic(render_html(document).encode())
    log.info(
        "Validated %s (%s rows, split %s): %d checks, %d failed; report %s",
        snap.location.uri, rows, split or "all", len(checks), len(failed), report_uri.uri,
    )  # fmt: skip
    if failed:
        message = failure_message(outcome, failed)
        if mode == "fail":
            raise ValidationFailed(message, outcome)
        log.warning("%s\n(mode=warn: continuing)", message)
    return outcome


def _open(
    value: SnapshotLike, options: dict[str, Any], artifact_root: Location | None, what: str
) -> Snapshot:
    try:
        uri = snapshot_uri(value)
    except SnapshotError as err:
        raise ValidationConfigError(f"{what}: {err}") from err
    if artifact_root:
        try:
            ensure_within(artifact_root.uri, uri, what)
        except UnsafeNameError as err:
            raise ValidationConfigError(str(err)) from err
    try:
        return open_snapshot(uri, options)
    except SnapshotError as err:
        raise ValidationConfigError(f"{what}: {err}") from err


def _report_dir(
    snap: Snapshot, artifact_root: Location | None, pipeline: str | None, options: dict[str, Any]
) -> Location:
    sha = snap.manifest["sha256"]
    if not (artifact_root and pipeline):
        root, pipeline = snapshot_home(snap.location.uri)
        artifact_root = Location(root, options)
    try:
        safe_component(pipeline, "pipeline")
    except UnsafeNameError as err:
        raise ValidationConfigError(str(err)) from err
    return Location(join_uri(artifact_root.uri, pipeline, "reports", "validation", sha), options)


def snapshot_home(snapshot: SnapshotLike) -> tuple[str, str]:
    """The artifact root and pipeline a snapshot lives under (``<root>/<pipeline>/snapshots/<sha256>``).

    Where a validation without an explicit artifact root puts its report, beside the snapshot.
    """
    uri = snapshot_uri(snapshot).rstrip("/")
    parts = uri.rsplit("/", 3)
    if len(parts) != 4 or parts[2] != "snapshots":
        raise ValidationConfigError(f"Cannot place the report for {uri}: pass artifact_root and pipeline")
    return parts[0], parts[1]


def _in_memory_checks(
    snap: Snapshot,
    split: str | None,
    expectations: list[dict[str, Any]],
    builtin: dict[str, Any] | None,
    reference_info: Mapping[str, Any] | None,
    batch_rows: int,
) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]:
    """Today's path: the whole split in pandas for Great Expectations. (checks, rows, GX JSON)."""
    table = _read(snap, split)
    checks: list[dict[str, Any]] = []
    if builtin is not None:
        checks += run_builtin(TableFacts.of(table), builtin, reference_info, _suite_columns(expectations))
    gx_json: dict[str, Any] | None = None
    if expectations:
        from airflow_mlops_provider.core.validation.gx import run_gx

        gx_checks, gx_json = run_gx(table.to_pandas(), expectations)
        checks += gx_checks
    return checks, table.num_rows, gx_json


def _streaming_checks(
    snap: Snapshot,
    split: str | None,
    expectations: list[dict[str, Any]],
    builtin: dict[str, Any] | None,
    reference_info: Mapping[str, Any] | None,
    batch_rows: int,
) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]:
    """The split in record batches (:mod:`stream`); builtin checks from the streamed facts."""
    from airflow_mlops_provider.core.validation.stream import validate_batches
    from airflow_mlops_provider.core.validation.stream_plan import refused

    names = _split_names(snap, split)
    try:
        schema = _stream_file(snap, names[0]).schema_arrow
        rows = sum(_stream_file(snap, name).metadata.num_rows for name in names)
        blocked = refused(expectations, schema)
        if blocked:
            raise ValidationConfigError(
                f"Cannot stream {', '.join(blocked)} (not streamable and naming no column, so it would "
                f"read the whole split into memory): raise stream_above_mb above this split's size or "
                f"remove it from the suite"
            )
        with tempfile.TemporaryDirectory(prefix="mlops-validate-") as workdir:
            suite_checks, facts = validate_batches(
                lambda columns: _batches(snap, names, columns, batch_rows),
                schema,
                expectations,
                all_columns=builtin is not None,
                workdir=Path(workdir),
                partition_rows=PARTITION_ROWS,
                rows_hint=rows,
            )
    except SnapshotError as err:
        raise ValidationConfigError(str(err)) from err
    checks = run_builtin(facts, builtin, reference_info, _suite_columns(expectations)) if builtin else []
    return checks + suite_checks, facts.rows, None


def _suite_columns(expectations: list[dict[str, Any]]) -> list[str]:
    return [e["kwargs"]["column"] for e in expectations if isinstance(e["kwargs"].get("column"), str)]


def _split_names(snap: Snapshot, split: str | None) -> list[str]:
    """The split files to read, in the order the in-memory path concatenates them."""
    if split is not None or DEFAULT_SPLIT in snap.manifest["splits"]:
        snap.split_uri(split)  # a SnapshotError naming the splits there are, for an unknown one
        return [split or DEFAULT_SPLIT]
    return list(snap.manifest["splits"])


def _stream_file(snap: Snapshot, name: str) -> SnapshotParquetFile:
    """One split file for streaming: not memory-mapped, so pages read leave the process's memory."""
    location = snap.location.join(f"{name}.parquet")
    if is_local(location.fs):
        return SnapshotParquetFile(location.path, location.uri)
    return SnapshotParquetFile(location.fs.open(location.path, "rb"), location.uri)


def _batches(
    snap: Snapshot, names: list[str], columns: list[str] | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Record batches of about ``batch_rows`` rows, read row group by row group.

    Not ``ParquetFile.iter_batches``: its reader runs ahead of the consumer and had most of a
    5M-row split decoded in memory at once.
    """
    for name in names:
        file = _stream_file(snap, name)
        pending: list[pa.Table] = []
        for group in range(file.num_row_groups):
            pending.append(file.read_row_group(group, columns=columns))
            if sum(t.num_rows for t in pending) >= batch_rows or group == file.num_row_groups - 1:
                yield from pa.concat_tables(pending).combine_chunks().to_batches(max_chunksize=batch_rows)
                pending = []


def split_in_memory_mb(snap: Snapshot, split: str | None) -> float:
    """The split's size in memory as Arrow holds it: its row groups' uncompressed bytes."""
    try:
        names = _split_names(snap, split)
        metadata = [snap.parquet_file(name).metadata for name in names]
    except SnapshotError as err:
        raise ValidationConfigError(str(err)) from err
    total = sum(m.row_group(i).total_byte_size for m in metadata for i in range(m.num_row_groups))
    return float(total) / 2**20


def _read(snap: Snapshot, split: str | None) -> pa.Table:
    """One split, or all splits together, page checksums verified by :meth:`Snapshot.read`."""
    try:
        if split is not None or "data" in snap.manifest["splits"]:
            return snap.read(split)
        return pa.concat_tables(snap.read(name) for name in snap.manifest["splits"])
    except SnapshotError as err:
        raise ValidationConfigError(str(err)) from err


def _suite_id(expectations: list[dict[str, Any]], builtin: dict[str, Any] | None, reference: Any) -> str:
    payload = json.dumps(
        {"expectations": expectations, "builtin": builtin, "reference": (reference or {}).get("sha256")},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _short(check: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "expectation": check["expectation"],
        "column": check.get("column"),
        "observed": _clip(check.get("exception") or check.get("observed")),
        "unexpected_count": check.get("unexpected_count"),
        "examples": [_clip(v) for v in (check.get("examples") or [])[:3]],
        "source": check.get("source"),
        "note": check.get("note"),
    }


def _clip(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value[:200] if isinstance(value, str) else value
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
