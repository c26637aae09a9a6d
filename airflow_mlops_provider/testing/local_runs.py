"""Run generated DAGs on one machine without a scheduler: for the demo, the tests and debugging.

``dag.test()`` always makes a *manual* run. The retraining DAG behaves differently when assets
start it (it records the trigger cause and the triggering events in the decision record), so
:func:`run_asset_triggered` does what the scheduler does when a DAG's asset condition is met:
the run is created as ``asset_triggered`` and consumes the queued asset events, and then
``dag.test()`` executes it. :func:`post_asset_event` records an event the way
``POST /api/v2/assets/events`` does (for "new data landed" without an SQS queue).

Needs Airflow's metadata database (``airflow db migrate``); imports Airflow core lazily.
"""

from __future__ import annotations

from typing import Any


def post_asset_event(asset_name: str, extra: dict[str, Any] | None = None) -> int:
    """Record an asset event for ``asset_name`` (as the REST API does); returns the event id."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        model = session.scalar(select(AssetModel).where(AssetModel.name == asset_name))
        if model is None:
            raise LookupError(
                f"asset {asset_name!r} is not known yet: parse or test a DAG that uses it first"
            )
        event = asset_manager.register_asset_change(
            asset=model, extra=extra or {}, source_is_api=True, session=session
        )
        if event is None:
            raise RuntimeError(f"asset event for {asset_name!r} was not recorded")
        session.flush()
        return event.id


def pending_asset_events(dag_id: str, asset_names: list[str]) -> list[int]:
    """Events of ``asset_names`` that no run of ``dag_id`` has consumed yet (oldest first)."""
    from airflow.models.asset import AssetEvent, AssetModel, association_table
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        consumed = (
            select(association_table.c.event_id)
            .join(DagRun, DagRun.id == association_table.c.dag_run_id)
            .where(DagRun.dag_id == dag_id)
        )
        query = (
            select(AssetEvent.id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name.in_(asset_names), AssetEvent.id.not_in(consumed))
            .order_by(AssetEvent.timestamp)
        )
        return list(session.scalars(query))


def run_asset_triggered(dag: Any, asset_names: list[str], **test_kwargs: Any) -> Any:
    """Run ``dag`` with ``dag.test()`` as an asset-triggered run consuming the pending events.

    Raises when no event is pending: the scheduler would not have started the run either.
    """
    from unittest import mock

    import airflow.models.dagrun as dagrun_module
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.types import DagRunType
    from sqlalchemy import delete, select

    event_ids = pending_asset_events(dag.dag_id, asset_names)
    if not event_ids:
        raise LookupError(f"no pending events of {asset_names} for {dag.dag_id}: nothing would trigger it")
    original = dagrun_module.get_or_create_dagrun

    def create_asset_triggered_run(**kwargs: Any) -> Any:
        session = kwargs["session"]
        run = original(**kwargs)
        run.run_type = DagRunType.ASSET_TRIGGERED
        run.consumed_asset_events.extend(
            session.scalars(select(AssetEvent).where(AssetEvent.id.in_(event_ids)))
        )
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag.dag_id))
        session.commit()
        return run

    with mock.patch.object(dagrun_module, "get_or_create_dagrun", create_asset_triggered_run):
        return dag.test(**test_kwargs)


def ensure_pools(*dags: Any) -> list[str]:
    """Create the pools the DAGs' tasks use that do not exist yet (one slot each); returns their names.

    The promotion pool of a model must hold one slot (see ``operators.promote.promotion_pool``).
    """
    from airflow.models.pool import Pool

    created = []
    for name in sorted({task.pool for dag in dags for task in dag.tasks} - {Pool.DEFAULT_POOL_NAME}):
        if Pool.get_pool(name) is None:
            Pool.create_or_update_pool(name, 1, f"Serialise {name}", include_deferred=False)
            created.append(name)
    return created
