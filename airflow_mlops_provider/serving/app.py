"""The FastAPI app: ``POST /v1/{pipeline}/predict``, ``/health``, ``/ready`` and ``/metrics``.

Each pipeline serves ``model_name@alias``; a background :class:`~.slot.Follower` (one
:class:`~airflow_mlops_provider.core.tracking.TrackingSettings` per process) follows the alias, so
no MLflow call happens while answering a request. Errors are ``{"error_code", "message", "field"}``:
404 for an unknown pipeline, 400 for a malformed body, 422 for rows that do not fit the model
(the field names the column), 503 while the pipeline has no model loaded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Body, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from airflow_mlops_provider.core.scoring import PREDICTION, predict_table
from airflow_mlops_provider.core.tracking import TrackingSettings
from airflow_mlops_provider.serving.metrics import ServingMetrics
from airflow_mlops_provider.serving.schema import InputError, request_rows, rows_to_table
from airflow_mlops_provider.serving.slot import DEFAULT_POLL_S, Follower, ModelSlot, Served


@dataclass(frozen=True)
class PipelineTarget:
    """The registered model and the alias a pipeline serves."""

    model_name: str
    alias: str


@dataclass(frozen=True)
class ServingConfig:
    """What the service serves: ``{pipeline: PipelineTarget}``, the tracking URI, the poll interval."""

    pipelines: Mapping[str, PipelineTarget]
    tracking_uri: str
    poll_s: float = DEFAULT_POLL_S
    slots: dict[str, ModelSlot] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pipelines:
            raise ValueError("The service needs at least one pipeline")
        slots = {name: ModelSlot(t.model_name, t.alias) for name, t in self.pipelines.items()}
        object.__setattr__(self, "slots", slots)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field

    def response(self, request_id: str, version: str | None) -> JSONResponse:
        body = {"error_code": self.code, "message": str(self), "field": self.field, "request_id": request_id}
        return JSONResponse(body, status_code=self.status, headers=_headers(request_id, version))


def create_app(config: ServingConfig) -> FastAPI:
    """The service for ``config``; the alias follower runs while the app's lifespan does."""
    slots = config.slots
    metrics = ServingMetrics(slots)
    follower = Follower(list(slots.values()), TrackingSettings(config.tracking_uri), config.poll_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower.start()
        try:
            yield
        finally:
            follower.stop()

    app = FastAPI(title="airflow-mlops-provider prediction service", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
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
    def predict(pipeline: str, payload: Any = Body(None)) -> JSONResponse:
        request_id = uuid.uuid4().hex
        slot = slots.get(pipeline)
        served = slot.current() if slot is not None else None
        labels = (pipeline, served.version if served else "", slot.alias if slot else "")
        started = time.perf_counter()
        try:
            body = _answer(pipeline, slot, served, payload, metrics, labels)
        except _Refused as refused:
            metrics.errors.labels(*labels, str(refused.status)).inc()
            return refused.response(request_id, labels[1] or None)
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        return JSONResponse({**body, "request_id": request_id}, headers=_headers(request_id, labels[1]))

    return app


def _answer(
    pipeline: str,
    slot: ModelSlot | None,
    served: Served | None,
    payload: Any,
    metrics: ServingMetrics,
    labels: tuple[str, str, str],
) -> dict[str, Any]:
    if slot is None:
        raise _Refused(404, "NOT_FOUND", f"No pipeline {pipeline!r} is served here")
    if served is None:
        raise _Refused(503, "NOT_READY", f"{slot.model_name}@{slot.alias} is not loaded yet")
    try:
        table = rows_to_table(served.model, request_rows(payload))
    except InputError as err:
        status = 400 if err.field == "body" else 422
        raise _Refused(status, "INVALID_INPUT", str(err), err.field) from err
    scored = predict_table(served.model, table)
    predictions = scored.column(PREDICTION).to_pylist()
    metrics.predictions(labels, served.model.task, predictions)
    body: dict[str, Any] = {"predictions": predictions, "model_version": served.version, "alias": slot.alias}
    if served.model.task == "classification":
        classes = served.model.classes or []
        columns = [(str(c), scored.column(f"proba_{c}").to_pylist()) for c in classes]
        body["probabilities"] = [
            {name: values[i] for name, values in columns} for i in range(len(predictions))
        ]
    return body


def _version(slot: ModelSlot) -> str | None:
    served = slot.current()
    return served.version if served else None


def _headers(request_id: str, version: str | None) -> dict[str, str]:
    headers = {"X-Request-Id": request_id}
    if version:
        headers["X-Model-Version"] = version
    return headers
