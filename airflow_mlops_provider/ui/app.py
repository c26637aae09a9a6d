"""The Models pages: a FastAPI app the api-server mounts at ``/mlops`` (see ``plugins.py``).

Read-only: every route is a GET, and nothing here writes to MLflow or Airflow. Each route asks the
api-server's own auth manager which DAGs the user may read (``ReadableDagsFilterDep``) and shows
a pipeline only when the user may read all of its DAGs; a pipeline the user may not read answers
404, exactly like one that does not exist.

Settings (``[mlops]`` in airflow.cfg or ``AIRFLOW__MLOPS__...``): ``ui_mlflow_conn_id`` (default
``mlflow_default``) and ``ui_aws_conn_id`` (default ``aws_default``, for reports on S3).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import ReadableDagsFilterDep, auth_manager_from_app
from airflow.configuration import conf
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from airflow_mlops_provider.ui import airflow_state, pages, reports
from airflow_mlops_provider.ui.registry_view import ModelView, RegistryCache, read_models

PREFIX = "/mlops"
log = logging.getLogger(__name__)
router = APIRouter()
templates = Environment(loader=PackageLoader("airflow_mlops_provider.ui"), autoescape=select_autoescape())


def _mlflow_conn_id() -> str:
    return conf.get("mlops", "ui_mlflow_conn_id", fallback="mlflow_default")


def _aws_conn_id() -> str:
    return conf.get("mlops", "ui_aws_conn_id", fallback="aws_default")


def _settings() -> Any:
    from airflow_mlops_provider.hooks.mlflow import MlflowHook

    return MlflowHook(_mlflow_conn_id()).settings


registry = RegistryCache(lambda names: read_models(_settings().client(), names))


def _models(names: list[str]) -> tuple[dict[str, ModelView], str | None]:
    """The registry's view of ``names``; with MLflow down, empty views and the reason (Airflow's side
    of the page still shows)."""
    try:
        return registry.get(names), None
    except Exception as err:  # MLflow unreachable or failing: say so on the page
        log.warning("Models page: MLflow lookup failed: %s", err)
        return {n: ModelView(n) for n in names}, f"MLflow could not be read: {str(err)[:300]}"


def _urls(request: Request) -> pages.Urls:
    app = str(request.scope.get("root_path", PREFIX)).rstrip("/")
    return pages.Urls(app=app, airflow=app.removesuffix(PREFIX))


def _readable(dags: Any) -> set[str]:
    return set(dags.value or ())


def _render(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context))


def _pipeline(session: Any, dags: Any, name: str) -> airflow_state.PipelineView:
    found = airflow_state.load_pipelines(session, _readable(dags), only=name)
    if not found:
        raise HTTPException(404, f"No pipeline {name!r} among the DAGs you may read")
    return found[0]


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, dags: ReadableDagsFilterDep, session: SessionDep) -> HTMLResponse:
    """Every pipeline the user may read: champion, metrics, decision, drift, approvals, next runs."""
    pipelines = airflow_state.load_pipelines(session, _readable(dags))
    models, error = _models([p.model_name for p in pipelines])
    rows = pages.model_rows(pipelines, models, _urls(request))
    return _render("models.html", rows=rows, error=error)


@router.get("/api/models")
def models_json(request: Request, dags: ReadableDagsFilterDep, session: SessionDep) -> JSONResponse:
    """The Models page's rows as JSON."""
    pipelines = airflow_state.load_pipelines(session, _readable(dags))
    models, error = _models([p.model_name for p in pipelines])
    rows = pages.model_rows(pipelines, models, _urls(request))
    body = {"models": [asdict(r) for r in rows], "error": error}
    return JSONResponse(_jsonable(body))


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


@router.get("/dags/{dag_id}", response_class=HTMLResponse)
def dag_tab(request: Request, dag_id: str, dags: ReadableDagsFilterDep, session: SessionDep) -> HTMLResponse:
    """The tab on each DAG's page: the history of the pipeline the DAG belongs to."""
    name = airflow_state.pipeline_of_dag(session, dag_id) if dag_id in _readable(dags) else None
    if name is None:
        return _render("message.html", text=f"{dag_id} is not a DAG of an MLOps pipeline you may read.")
    return pipeline_page(request, name, dags, session)


@router.get("/pipelines/{name}", response_class=HTMLResponse)
def pipeline_page(
    request: Request, name: str, dags: ReadableDagsFilterDep, session: SessionDep
) -> HTMLResponse:
    """One pipeline's history: champion moves, decisions, drift and performance per window, reports."""
    from airflow_mlops_provider.ui import history

    pipeline = _pipeline(session, dags, name)
    models, error = _models([pipeline.model_name])
    moves = airflow_state.champion_events(session, [name], per_pipeline=history.WINDOWS).get(name, [])
    drift: list[history.DriftPoint] = []
    if error is None:
        drift = history.drift_history(_settings().client(), name, pipeline.model_name)
    performance, listed = [], []
    if pipeline.artifact_root:
        options = reports.storage_options(pipeline.artifact_root, _aws_conn_id())
        performance = history.performance_history(pipeline.artifact_root, name, options)
        for kind in ("validation", "drift"):
            listed += reports.latest_reports(pipeline.artifact_root, name, kind, _aws_conn_id())
    page = pages.pipeline_page(
        pipeline, models[pipeline.model_name], _urls(request),
        moves=moves, drift=drift, performance=performance, reports=listed,
    )  # fmt: skip
    return _render("pipeline.html", page=page, error=error)


@router.get("/pipelines/{name}/decisions/{version}", response_class=HTMLResponse)
def decision_record(
    request: Request, name: str, version: str, dags: ReadableDagsFilterDep, session: SessionDep
) -> HTMLResponse:
    """The decision record of one model version (HTML, from the MLflow artifacts of its run)."""
    pipeline = _pipeline(session, dags, name)
    models, error = _models([pipeline.model_name])
    found = next((v for v in models[pipeline.model_name].versions if v.version == version), None)
    if found is None or not found.record_uri:
        raise HTTPException(404, error or f"{pipeline.model_name} v{version} has no decision record")
    text = reports.decision_html(_settings(), found.record_uri)
    files = _urls(request).files(name)
    return HTMLResponse(reports.rewrite_links(text, pipeline.artifact_root, name, files))


@router.get("/pipelines/{name}/files/{path:path}")
def report_file(
    request: Request, name: str, path: str, dags: ReadableDagsFilterDep, session: SessionDep
) -> Response:
    """A drift or validation report of the pipeline, read from its artifact root (S3 or files)."""
    pipeline = _pipeline(session, dags, name)
    if not pipeline.artifact_root:
        raise HTTPException(404, f"The artifact root of {name!r} is not known yet (no ingest has run)")
    try:
        location = reports.report_location(pipeline.artifact_root, name, path, _aws_conn_id())
    except reports.ReportRefused as err:
        raise HTTPException(400, str(err)) from err
    try:
        data = location.read_bytes()
    except FileNotFoundError as err:
        raise HTTPException(404, f"No report {path!r} in {name!r}") from err
    media = reports.MEDIA_TYPES[path[path.rfind(".") :]]
    if media.startswith("text/html"):
        files = _urls(request).files(name)
        return HTMLResponse(reports.rewrite_links(data.decode(), pipeline.artifact_root, name, files))
    return Response(data, media_type=media)


def create_app() -> FastAPI:
    """The app; the api-server's auth manager stands in for the one a mounted app cannot find in its state."""
    app = FastAPI(title="MLOps models", docs_url=None, redoc_url=None, openapi_url=None)
    app.dependency_overrides[auth_manager_from_app] = get_auth_manager
    app.include_router(router)
    return app
