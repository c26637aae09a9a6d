"""The per-window performance history: window records, label arrivals, a Parquet series, MLflow steps.

Everything lives under ``<artifact_root>/<pipeline>/monitoring/``:

- ``windows/<key>/record.json``: the record of one window (a re-run overwrites it);
- ``labels/<key>.json``: the snapshot reference of the labels that arrived in that interval;
- ``series/<key>.parquet``: one flat row per window; the folder is a Parquet dataset whose files
  may differ in their metric columns (a reader unifies them, missing values are null).

Listing reads one folder level, so the cost grows with the number of windows, never with their
data; reading the series reads only the files asked for. :func:`log_window_to_mlflow` adds each
window as one step of one MLflow run per champion version. The trend report is :mod:`.trend`.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.monitoring.types import Window
from airflow_mlops_provider.core.names import (
    TAG_LAST_PERFORMANCE,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_MONITORING_KIND,
    TAG_PIPELINE,
)
from airflow_mlops_provider.core.paths import check_model_name, safe_component
from airflow_mlops_provider.core.registry import filter_value
from airflow_mlops_provider.core.storage import Location

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops_provider.core.tracking import TrackingSettings

RECORD = "record.json"
KIND = "performance"
_TIME = pa.timestamp("us", tz="UTC")
SERIES_SCHEMA = pa.schema(
    [
        ("window_start", _TIME),
        ("window_end", _TIME),
        ("model_version", pa.string()),
        ("rows", pa.int64()),
        ("labelled", pa.int64()),
        ("pending", pa.int64()),
        ("drift", pa.bool_()),
        ("drift_share", pa.float64()),
        ("status", pa.string()),
    ]
)
_BOUNDS = (("", "value"), ("_low", "low"), ("_high", "high"))


class HistoryError(PermanentError, ValueError):
    """A window record or a request the history cannot use (no window, naive times, a bad count)."""


class WindowStore:
    """The monitoring history of one pipeline under ``<root>/<pipeline>/monitoring/``."""

    def __init__(self, root: Location, pipeline: str) -> None:
        self.root = root
        self.pipeline = safe_component(pipeline, "pipeline")
        self.base = root.join(pipeline, "monitoring")

    # --- window records ---------------------------------------------------------------------------
    def save(self, record: dict[str, Any]) -> str:
        """Store ``record`` as its window's ``record.json`` (atomically, over an earlier one); the URI."""
        window = record_window(record)
        location = self.base.join("windows", window.key, RECORD)
        location.write_bytes_atomic(json.dumps(_finite(record), indent=1, default=str).encode())
        return location.uri

    def load(self, window: Window) -> dict[str, Any] | None:
        """The stored record of ``window``, or None."""
        return _read_json(self.base.join("windows", window.key, RECORD))

    def windows(self, since: datetime, until: datetime) -> list[Window]:
        """The stored windows whose start lies in ``[since, until)``, oldest first."""
        return _in_range(self._keys("windows", ""), since, until)

    # --- label arrivals ---------------------------------------------------------------------------
    def save_arrival(self, window: Window, labels_ref: dict[str, Any]) -> str:
        """Record that the labels ``labels_ref`` (a snapshot reference) arrived during ``window``; the URI."""
        location = self.base.join("labels", f"{window.key}.json")
        location.write_bytes_atomic(json.dumps({"window": window.to_dict(), "labels": labels_ref}).encode())
        return location.uri

    def arrivals(self, since: datetime, until: datetime) -> list[tuple[Window, dict[str, Any]]]:
        """The label arrivals of the windows starting in ``[since, until)``, oldest first."""
        out = []
        for window in _in_range(self._keys("labels", ".json"), since, until):
            stored = _read_json(self.base.join("labels", f"{window.key}.json"))
            if stored is not None:
                out.append((window, cast(dict[str, Any], stored["labels"])))
        return out

    # --- the series -------------------------------------------------------------------------------
    def write_series_row(self, record: dict[str, Any]) -> str:
        """Write the record's flat row to ``series/<key>.parquet`` (replacing an earlier one); its URI."""
        window = record_window(record)
        sink = io.BytesIO()
        pq.write_table(series_row(record), sink)
        location = self.base.join("series", f"{window.key}.parquet")
        location.write_bytes_atomic(sink.getvalue())
        return location.uri

    def read_series(self, last: int = 100) -> pa.Table:
        """The rows of the latest ``last`` windows (by start), oldest first; missing columns are null."""
        if not isinstance(last, int) or last < 1:
            raise HistoryError(f"read_series needs last >= 1 windows, got {last!r}")
        windows = sorted(self._keys("series", ".parquet"), key=_order)[-last:]
        tables = [
            pq.read_table(io.BytesIO(self.base.join("series", f"{w.key}.parquet").read_bytes()))
            for w in windows
        ]
        if not tables:
            return SERIES_SCHEMA.empty_table()
        return pa.concat_tables(tables, promote_options="permissive")

    def _keys(self, folder: str, suffix: str) -> list[Window]:
        """The windows named by the entries of one folder (one listing; foreign names are ignored)."""
        location = self.base.join(folder)
        try:
            names = location.fs.ls(location.path, detail=False, refresh=True)  # other writers' windows too
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            base = posixpath.basename(str(name).rstrip("/"))
            if base.endswith(suffix) and _KEY.match(base[: len(base) - len(suffix)]):
                out.append(Window.from_key(base[: len(base) - len(suffix)]))
        return out


_KEY = re.compile(r"^\d{8}T\d{6}Z--\d{8}T\d{6}Z$")


def _order(window: Window) -> tuple[datetime, datetime]:
    return window.start, window.end


def _in_range(windows: list[Window], since: datetime, until: datetime) -> list[Window]:
    for name, value in (("since", since), ("until", until)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise HistoryError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return sorted((w for w in windows if since <= w.start < until), key=_order)


def _read_json(location: Location) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads(location.read_bytes()))
    except FileNotFoundError:
        return None


def record_window(record: dict[str, Any]) -> Window:
    """The window of a record, or :class:`HistoryError` naming what is wrong."""
    try:
        return Window.from_dict(record["window"])
    except (KeyError, TypeError, ValueError) as err:
        raise HistoryError(f"window record has no valid 'window' {{start, end}}: {err}") from err


def series_row(record: dict[str, Any]) -> pa.Table:
    """One window record as a one-row table: the fixed columns, then per metric its value and bounds."""
    window = record_window(record)
    labels = record.get("labels") or {}
    drift = record.get("drift") or {}
    row: dict[str, Any] = {
        "window_start": window.start,
        "window_end": window.end,
        "model_version": _text(record.get("model_version")),
        "rows": record.get("rows"),
        "labelled": labels.get("labelled"),
        "pending": labels.get("pending"),
        "drift": drift.get("drift"),
        "drift_share": _number(drift.get("share")),
        "status": _text((record.get("verdict") or {}).get("status")),
    }
    fields = list(SERIES_SCHEMA)
    for source in ("realized", "estimated"):
        for metric, interval in sorted((record.get(source) or {}).items()):
            for suffix, part in _BOUNDS:
                name = f"{source}_{metric}{suffix}"
                row[name] = _number((interval or {}).get(part))
                fields.append(pa.field(name, pa.float64()))
    return pa.Table.from_pylist([row], schema=pa.schema(fields))


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    """A finite float, or None for None, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- MLflow ---------------------------------------------------------------------------------------
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def window_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of one window: ``realized.<m>[.low|.high]``, ``estimated.<m>...``, label and
    drift counts; None, NaN and infinite values are left out."""
    labels = record.get("labels") or {}
    values: dict[str, Any] = {
        "labelled_rows": labels.get("labelled"),
        "pending_rows": labels.get("pending"),
        "drift_share": (record.get("drift") or {}).get("share"),
    }
    for source in ("realized", "estimated"):
        for metric, interval in (record.get(source) or {}).items():
            name = _METRIC_NAME.sub("_", f"{source}.{metric}")
            for suffix, part in _BOUNDS:
                values[name + suffix.replace("_", ".")] = (interval or {}).get(part)
    numbers = {key: _number(value) for key, value in values.items()}
    return {key: value for key, value in numbers.items() if value is not None}


def log_window_to_mlflow(
    settings: TrackingSettings, pipeline: str, model_name: str, version: str, record: dict[str, Any]
) -> str:
    """Log one window as one step (at the window's end) of the version's performance run; its run id.

    The run (experiment ``<pipeline>-monitoring``, run name ``performance-<model>-v<version>``)
    is found by its tags and created the first time. The model version's ``mlops.last_performance``
    tag gets a short summary, unless it already describes a later window (a backfill).
    """
    from mlflow.entities import Metric

    safe_component(pipeline, "pipeline")
    check_model_name(model_name)
    if version is None or str(version) == "":
        raise HistoryError(f"cannot log window {record.get('window')} to MLflow: no model version was given")
    version = str(version)
    window = record_window(record)
    client = settings.client()
    run_id = performance_run(client, pipeline, model_name, version)
    step = int(window.end.timestamp())
    batch = [Metric(key, value, step * 1000, step) for key, value in sorted(window_metrics(record).items())]
    for i in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[i : i + 500])
    client.set_terminated(run_id)
    _tag_version(client, model_name, version, window, record)
    return run_id


def performance_run(client: MlflowClient, pipeline: str, model_name: str, version: str) -> str:
    """The id of the performance run of ``model_name`` v``version``, created the first time.

    Tasks that create it at once each keep the oldest run and delete their own duplicate.
    """
    from airflow_mlops_provider.core.tracking import ensure_experiment

    experiment_id = ensure_experiment(client, f"{pipeline}-monitoring")
    tags = {
        TAG_PIPELINE: pipeline,
        TAG_MODEL_NAME: model_name,
        TAG_MODEL_VERSION: version,
        TAG_MONITORING_KIND: KIND,
    }
    found = _oldest_run(client, experiment_id, tags)
    if found is not None:
        return found
    created = client.create_run(experiment_id, tags=tags, run_name=f"performance-{model_name}-v{version}")
    mine = cast(str, created.info.run_id)
    oldest = _oldest_run(client, experiment_id, tags) or mine
    if oldest != mine:
        client.delete_run(mine)
    return oldest


def _oldest_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    query = " AND ".join(f"tags.`{key}` = {filter_value(value)}" for key, value in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=100)
    if not runs:
        return None
    return cast(str, min(runs, key=lambda run: (run.info.start_time, run.info.run_id)).info.run_id)


def performance_summary(window: Window, record: dict[str, Any]) -> dict[str, Any]:
    """The short summary of a window that the model version's tag carries."""
    verdict = record.get("verdict") or {}
    value = verdict.get("value") or {}
    return {
        "window": window.to_dict(),
        "status": _text(verdict.get("status")),
        "metric": None if verdict.get("metric") is None else str(verdict["metric"])[:200],
        "source": _text(verdict.get("source")),
        "value": _number(value.get("value")),
        "low": _number(value.get("low")),
        "high": _number(value.get("high")),
        "reference": _number(verdict.get("reference")),
        "labelled": (record.get("labels") or {}).get("labelled"),
        "drift_share": _number((record.get("drift") or {}).get("share")),
    }


def _tag_version(
    client: MlflowClient, model_name: str, version: str, window: Window, record: dict[str, Any]
) -> None:
    current = (client.get_model_version(model_name, version).tags or {}).get(TAG_LAST_PERFORMANCE)
    if current and _tagged_end(current) > window.end:
        return
    summary = json.dumps(performance_summary(window, record), separators=(",", ":"))
    client.set_model_version_tag(model_name, version, TAG_LAST_PERFORMANCE, summary[:4000])


def _tagged_end(tag: str) -> datetime:
    """The window end a ``last_performance`` tag describes (the epoch start when it cannot be read)."""
    try:
        return Window.from_dict(json.loads(tag)["window"]).end
    except (KeyError, TypeError, ValueError):
        return datetime.fromtimestamp(0, UTC)
