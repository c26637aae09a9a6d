"""The provider's Airflow plugin: the Models pages in the UI, and a scheduler-side listener that
creates missing promotion pools.

The Models pages are a FastAPI app the api-server mounts at ``/mlops``
(:mod:`airflow_mlops_provider.ui.app`), shown inside Airflow's UI by two external views: a
"Models" entry in the navigation and a "Model" tab on every DAG (the tab names the DAG's
pipeline, or says the DAG is not one). The app is imported on its first request, so the
scheduler, dag-processor and workers that load this plugin never import it.

Airflow never schedules a task whose pool does not exist (the run waits forever and only the
scheduler log says why), and in Airflow 3 neither DAG parsing nor workers may write pools. The
scheduler may: when a run starts, every ``mlops_promote_<model>`` pool its tasks use that is
missing is created with one slot, in a session of its own on the scheduler's database (the
scheduler's session must not commit mid-loop). Pools that exist are
never changed. Registered through the ``airflow.plugins`` entry point; it needs the provider
installed where the scheduler runs (the compose init job still imports the pools file).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)


class PromotionPoolListener:
    """Create the missing promotion pools of a DAG run as it starts."""

    @hookimpl
    def on_dag_run_running(self, dag_run: DagRun, msg: str) -> None:
        from airflow.models.pool import Pool
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError
        from sqlalchemy.orm import Session, object_session

        from airflow_mlops_provider.operators.promote import PROMOTION_POOL_PREFIX

        scheduler_session = object_session(dag_run)
        dag = dag_run.dag
        if scheduler_session is None or dag is None:
            return
        wanted = {task.pool for task in dag.tasks if task.pool.startswith(PROMOTION_POOL_PREFIX)}
        if not wanted:
            return
        # The scheduler's session must not commit here (it guards its HA row locks): use our own.
        with Session(bind=scheduler_session.get_bind()) as session:
            existing = set(session.scalars(select(Pool.pool).where(Pool.pool.in_(wanted))))
            for name in sorted(wanted - existing):
                description = f"Serialise promotions and rollbacks; created when {dag_run.dag_id} started"
                session.add(Pool(pool=name, slots=1, description=description, include_deferred=False))
                try:
                    session.commit()
                except IntegrityError:  # another scheduler created it first
                    session.rollback()
                    continue
                log.warning("Created the missing pool %s (1 slot) for %s", name, dag_run.dag_id)


class LazyModelsApp:
    """ASGI stand-in for :func:`airflow_mlops_provider.ui.app.create_app`, built on the first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_mlops_provider.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


UI_PREFIX = "/mlops"


class MlopsPlugin(AirflowPlugin):
    """The Models pages and the promotion-pool listener of airflow-mlops-provider."""

    name = "airflow_mlops_provider"
    listeners = [PromotionPoolListener()]
    fastapi_apps = [{"app": LazyModelsApp(), "url_prefix": UI_PREFIX, "name": "MLOps models"}]
    external_views = [
        {
            "name": "Models",
            "href": f"{UI_PREFIX}/models",
            "destination": "nav",
            "url_route": "mlops-models",
            "nav_top_level": True,
        },
        {
            "name": "Model",
            "href": f"{UI_PREFIX}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "mlops-dag",
        },
    ]
