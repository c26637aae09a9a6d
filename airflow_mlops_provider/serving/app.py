"""The FastAPI app: ``POST /v1/{pipeline}/predict``, ``/health``, ``/ready`` and ``/metrics``.

Each pipeline serves ``model_name@alias``, and a ``canary`` version on the share of traffic the
registry's rollout policy gives it (sticky per ``X-Caller-Key``), or as a shadow scoring a copy of
each request (:mod:`.traffic`). A background :class:`~.slot.Follower` (one
:class:`~airflow_mlops_provider.core.tracking.TrackingSettings` per process) follows aliases and
policy, so no MLflow call happens while answering a request. With a ``log_root`` every answered
row (and every shadow row) is logged to Parquet partitions by hour (:mod:`.request_log`), each
with its own ``request_id`` (``<request id>-<row>``, returned as ``row_ids``) that delayed labels
join on. Errors are ``{"error_code", "message", "field"}``: 404 for an unknown pipeline, 400 for a
malformed body, 422 for rows that do not fit the model (the field names the column), 503 while
the pipeline has no model loaded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import BackgroundTasks, Body, FastAPI, Header, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from airflow_mlops_provider.core.scoring import prediction_array
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tracking import TrackingSettings
from airflow_mlops_provider.serving.metrics import ServingMetrics
from airflow_mlops_provider.serving.request_log import RequestLog
from airflow_mlops_provider.serving.schema import InputError, request_rows, rows_to_table
from airflow_mlops_provider.serving.slot import DEFAULT_POLL_S, Follower, ModelSlot, Served
from airflow_mlops_provider.serving.traffic import PipelineTraffic

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineTarget:
    """The registered model and the alias a pipeline serves."""

    model_name: str
    alias: str


@dataclass(frozen=True)
class ServingConfig:
    """What the service serves: ``{pipeline: PipelineTarget}``, the tracking URI, the poll interval,
    and where request logs go (``<log_root>/<pipeline>/serving/requests/``; None: not logged)."""

    pipelines: Mapping[str, PipelineTarget]
    tracking_uri: str
    poll_s: float = DEFAULT_POLL_S
    log_root: str | None = None

    def __post_init__(self) -> None:
        if not self.pipelines:
            raise ValueError("The service needs at least one pipeline")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field

    def response(self, request_id: str, version: str | None) -> JSONResponse:
        body = {"error_code": self.code, "message": str(self), "field": self.field, "request_id": request_id}
        return JSONResponse(body, status_code=self.status, headers=_headers(request_id, version))


def create_app(config: ServingConfig) -> FastAPI:
    """The service for ``config``; the follower (and the request logs) live while the app's lifespan does."""
    pipelines = {name: PipelineTraffic(t.model_name, t.alias) for name, t in config.pipelines.items()}
    metrics = ServingMetrics(pipelines)
    follower = Follower(list(pipelines.values()), TrackingSettings(config.tracking_uri), config.poll_s)
    logs = _request_logs(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower.start()
        try:
            yield
        finally:
            follower.stop()
            for request_log in logs.values():
                request_log.close()

    app = FastAPI(title="airflow-mlops-provider prediction service", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        slots = {name: traffic.primary for name, traffic in pipelines.items()}
        missing = {
            name: slot.last_error or f"{slot.model_name}@{slot.alias} not loaded yet"
            for name, slot in slots.items()
            if slot.current() is None
        }
        if missing:
            return JSONResponse({"ready": False, "missing": missing}, status_code=503)
        return JSONResponse({"ready": True, "versions": {n: _version(s) for n, s in slots.items()}})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/{pipeline}/predict")
    def predict(
        pipeline: str,
        background: BackgroundTasks,
        payload: Any = Body(None),
        caller: str | None = Header(None, alias="X-Caller-Key"),
    ) -> JSONResponse:
        request_id = uuid.uuid4().hex
        traffic = pipelines.get(pipeline)
        route = traffic.route(caller) if traffic is not None else None
        slot = route.answer if route is not None else None
        served = route.served if route is not None else None
        labels = (pipeline, served.version if served else "", slot.alias if slot else "")
        started = time.perf_counter()
        try:
            answer = _answer(pipeline, slot, served, payload, metrics, labels)
        except _Refused as refused:
            metrics.errors.labels(*labels, str(refused.status)).inc()
            return refused.response(request_id, labels[1] or None)
        seconds = time.perf_counter() - started
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(seconds)
        row_ids = [f"{request_id}-{i}" for i in range(len(answer.predictions))]
        after = _After(pipeline, answer, row_ids, seconds, metrics, logs.get(pipeline))
        background.add_task(after.run, route.shadow if route is not None else None)
        body = {**answer.body, "request_id": request_id, "row_ids": row_ids}
        return JSONResponse(body, headers=_headers(request_id, labels[1]))

    return app


@dataclass(frozen=True)
class _Answer:
    """A request's rows, the model version and alias that answered, and the response body."""

    table: pa.Table
    served: Served
    alias: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "predictions": self.predictions, "model_version": self.served.version, "alias": self.alias,
        }  # fmt: skip
        if self.probabilities is not None:
            body["probabilities"] = self.probabilities
        return body


def _answer(
    pipeline: str,
    slot: ModelSlot | None,
    served: Served | None,
    payload: Any,
    metrics: ServingMetrics,
    labels: tuple[str, str, str],
) -> _Answer:
    if slot is None:
        raise _Refused(404, "NOT_FOUND", f"No pipeline {pipeline!r} is served here")
    if served is None:
        raise _Refused(503, "NOT_READY", f"{slot.model_name}@{slot.alias} is not loaded yet")
    try:
        table = rows_to_table(served.model, request_rows(payload))
    except InputError as err:
        status = 400 if err.field == "body" else 422
        raise _Refused(status, "INVALID_INPUT", str(err), err.field) from err
    try:
        predictions, probabilities = _outputs(served, table)
    except Exception as err:  # the model itself failed: the caller's rows were valid
        log.warning("%s v%s failed to predict: %s", slot.model_name, served.version, err)
        raise _Refused(500, "PREDICTION_FAILED", f"the model failed: {type(err).__name__}: {err}") from err
    metrics.predictions(labels, served.model.task, predictions)
    return _Answer(table, served, slot.alias, predictions, probabilities)


def _outputs(served: Served, table: pa.Table) -> tuple[list[Any], list[dict[str, float]] | None]:
    """The model's predictions for ``table`` and class probabilities: one forward pass, no pandas,
    the same values as batch scoring (:func:`~airflow_mlops_provider.core.scoring.predict_table`)."""
    scores = served.model.score_table(table)
    predictions = prediction_array(scores.predictions).to_pylist()
    if scores.probabilities is None:
        return predictions, None
    names = [str(c) for c in served.model.classes or []]
    return predictions, [dict(zip(names, row, strict=True)) for row in scores.probabilities.tolist()]


@dataclass(frozen=True)
class _After:
    """What follows a response: the request log, and the shadow's copy (scored, measured, logged)."""

    pipeline: str
    answer: _Answer
    row_ids: list[str]
    seconds: float
    metrics: ServingMetrics
    request_log: RequestLog | None

    def run(self, shadow: ModelSlot | None) -> None:
        self._log(self.answer, shadow=False, seconds=self.seconds)
        served = shadow.current() if shadow is not None else None
        if shadow is None or served is None:
            return
        labels = (self.pipeline, served.version, shadow.alias)
        started = time.perf_counter()
        try:
            predictions, probabilities = _outputs(served, self.answer.table)
        except Exception as err:  # counted against the shadow; the caller already has its answer
            log.warning("Shadow %s v%s failed to predict: %s", shadow.model_name, served.version, err)
            self.metrics.errors.labels(*labels, "500").inc()
            return
        seconds = time.perf_counter() - started
        self.metrics.shadow.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(seconds)
        self.metrics.predictions(labels, served.model.task, predictions)
        copy = _Answer(self.answer.table, served, shadow.alias, predictions, probabilities)
        self._log(copy, shadow=True, seconds=seconds)

    def _log(self, answer: _Answer, *, shadow: bool, seconds: float) -> None:
        if self.request_log is None:
            return
        now = datetime.now(UTC)
        for i, inputs in enumerate(answer.table.to_pylist()):
            record = {
                "request_id": self.row_ids[i],
                "time": now,
                "alias": answer.alias,
                "model_version": answer.served.version,
                "inputs": inputs,
                "prediction": answer.predictions[i],
                "latency_ms": seconds * 1000.0,
                "shadow": shadow,
            }
            if answer.probabilities is not None:
                record["probabilities"] = answer.probabilities[i]
            self.request_log.append(record)


def _request_logs(config: ServingConfig) -> dict[str, RequestLog]:
    if config.log_root is None:
        return {}
    root = Location(config.log_root)
    return {name: RequestLog(root, name) for name in config.pipelines}


def _version(slot: ModelSlot) -> str | None:
    served = slot.current()
    return served.version if served else None


def _headers(request_id: str, version: str | None) -> dict[str, str]:
    headers = {"X-Request-Id": request_id}
    if version:
        headers["X-Model-Version"] = version
    return headers
