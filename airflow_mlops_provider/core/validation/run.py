"""Validate a snapshot: build the suite, run builtin checks and Great Expectations, write the
JSON result and HTML report under ``<artifact_root>/<pipeline>/reports/validation/<sha256>/``,
and return a small summary (raising :class:`ValidationFailed` in ``fail`` mode)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from airflow_mlops_provider.core.paths import UnsafeNameError, ensure_within, safe_component
from airflow_mlops_provider.core.snapshot import (
    Snapshot,
    SnapshotError,
    SnapshotLike,
    open_snapshot,
    snapshot_uri,
)
from airflow_mlops_provider.core.storage import Location, join_uri
from airflow_mlops_provider.core.validation.builtin import builtin_options, run_builtin
from airflow_mlops_provider.core.validation.errors import ValidationConfigError, ValidationFailed
from airflow_mlops_provider.core.validation.report import failure_message, render_html
from airflow_mlops_provider.core.validation.suite import infer_suite, load_suite_file, normalise_suite

log = logging.getLogger(__name__)

MAX_SUMMARY_FAILURES = 20


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
) -> dict[str, Any]:
    """Validate one snapshot (one split, or all splits together when ``split`` is None).

    ``suite`` is a list of expectations (``{"expectation": "expect_...", "column": ..., ...}`` or
    GX ``{"type", "kwargs"}``) or the path/URI of a GX suite JSON; ``reference`` is a snapshot to
    infer a suite from (its expectations are added, its schema and null fractions drive the
    builtin checks). ``artifact_root`` (with its storage options, which open the snapshots and the
    suite too) must hold the snapshots, and the report goes under its ``pipeline`` folder; without
    it, the report goes beside the snapshot and nothing gets storage options. Returns
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

    table = _read(snap, split)
    checks: list[dict[str, Any]] = []
    if builtin is not None:
        columns = [e["kwargs"]["column"] for e in expectations if isinstance(e["kwargs"].get("column"), str)]
        checks += run_builtin(table, builtin, reference_info, columns)
    gx_json: dict[str, Any] | None = None
    if expectations:
        from airflow_mlops_provider.core.validation.gx import run_gx

        gx_checks, gx_json = run_gx(table.to_pandas(), expectations)
        checks += gx_checks
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
        "rows": table.num_rows,
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
        snap.location.uri, table.num_rows, split or "all", len(checks), len(failed), report_uri.uri,
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
