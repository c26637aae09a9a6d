"""Turn one pipeline config into its three DAGs: ``retrain_<name>``, ``monitor_<name>``, ``rollback_<name>``.

The builder only wires operators (DESIGN.md: ``factory/`` never holds ML logic). Everything
here runs at parse time in the dag-processor, so it imports only the stdlib, pydantic,
``airflow.sdk`` and the provider's thin operator modules.

retrain_<name>  (cron OR new-data, drift or performance asset; one run at a time)::

    record_trigger_cause ─► ingest ─► check_unchanged ─► validate ─► train[grid] ─► select_best
                                    ─► evaluate ─► gate ─► [approve] ─► promote | rollout (canary, shadow)

monitor_<name>  (cron; each run reads the live rows of its data interval)::

    require_champion ─► ingest_live ─► score ─► detect_drift (emits the drift asset on drift)
                    └─► ingest_labels ─────────► measure_performance (emits the performance asset
                                                 when the champion degraded)

rollback_<name>  (manual, with a ``reason`` param)::

    rollback
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param

from airflow_mlops_provider.factory import docs, env
from airflow_mlops_provider.factory.assets import (
    champion_asset,
    drift_asset,
    new_data_asset,
    performance_asset,
    snapshot_asset,
)
from airflow_mlops_provider.factory.plan import PipelinePlan, SourcePlan, WindowPlan
from airflow_mlops_provider.notifications.pipeline import notifier
from airflow_mlops_provider.operators.champion import CheckChampionOperator
from airflow_mlops_provider.operators.trigger import RecordTriggerCauseOperator

if TYPE_CHECKING:
    from airflow.sdk.definitions.asset import BaseAsset

    from airflow_mlops_provider.factory.config import PipelineConfig


def build_pipeline(config: PipelinePlan | PipelineConfig, source: str | None = None) -> dict[str, DAG]:
    """Build every DAG of one pipeline (its plan, or a validated config); keys are the DAG ids."""
    if not isinstance(config, PipelinePlan):
        config = config.plan()
    env.register_secrets(config.env)
    dags = [build_retrain_dag(config, source), build_rollback_dag(config, source)]
    if config.monitoring is not None:
        dags.append(build_monitor_dag(config, source))
    return {dag.dag_id: dag for dag in dags}


def retrain_schedule(config: PipelinePlan) -> Any:
    """``AssetOrTimeSchedule(cron, new_data | drift)``, or the part of it that is configured."""
    triggers = config.triggers
    assets = []
    if triggers.new_data.enabled:
        assets.append(new_data_asset(config))
    if triggers.drift:
        assets.append(drift_asset(config))
    if triggers.performance:
        assets.append(performance_asset(config))
    timetable = _cron(triggers.schedule) if triggers.schedule else None
    condition: BaseAsset | None = None
    if assets:
        condition = assets[0]
        for asset in assets[1:]:
            condition = condition | asset
    if timetable is not None and condition is not None:
        return AssetOrTimeSchedule(timetable=timetable, assets=condition)
    if condition is not None:
        return condition if len(assets) > 1 else assets
    return timetable


def build_retrain_dag(config: PipelinePlan, source: str | None = None) -> DAG:
    from airflow_mlops_provider.operators.evaluate import EvaluateChallengerOperator
    from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator
    from airflow_mlops_provider.operators.promote import GateChallengerOperator
    from airflow_mlops_provider.operators.validate import ValidateSnapshotOperator

    common = _common(config)
    data = config.data
    training = config.training
    dag = DAG(
        dag_id=f"retrain_{config.name}",
        schedule=retrain_schedule(config),
        max_active_runs=1,
        auto_register=False,  # a DAG whose build fails half-way must not be picked up
        catchup=False,
        tags=_tags(config, "retrain"),
        doc_md=_shown(config, docs.retrain_dag(config, source)),
        description=_shown(
            config, f"Retrain {config.registered_model_name}: {config.description}".strip(": ")
        )[:200],
        default_args=_default_args(config),
        dagrun_timeout=timedelta(seconds=training.timeout * 2 + config.defaults.timeout * 6),
        on_failure_callback=notifier(config.name, "failure", config.notifications.on_failure),
        params={},
    )
    with dag:
        watched = {"new_data": new_data_asset(config), "drift": drift_asset(config)}
        watched["performance"] = performance_asset(config)
        cause = RecordTriggerCauseOperator(
            task_id="record_trigger_cause",
            asset_kinds={asset.name: kind for kind, asset in watched.items()},
            inlets=list(watched.values()),
            doc_md=docs.TASKS["record_trigger_cause"],
        )
        ingest = IngestSnapshotOperator(
            task_id="ingest",
            source=data.source.resolved,
            format=data.source.format,
            csv_options=_csv_options(data.source),
            split=dict(data.split.options),
            chunk_rows=data.chunk_rows,
            aws_conn_id=data.source.aws_conn_id or config.aws_conn_id,
            outlets=[snapshot_asset(config)],
            doc_md=docs.TASKS["ingest"],
            **common,
        )
        check = CheckChampionOperator(
            task_id="check_unchanged",
            model_name=config.registered_model_name,
            snapshot=ingest.output,
            trainings=training_jobs(config),
            mlflow_conn_id=config.mlflow_conn_id,
            doc_md=docs.TASKS["check_unchanged"],
        )
        validate = ValidateSnapshotOperator(
            task_id="validate",
            snapshot=ingest.output,
            suite=config.validation.suite,
            split=config.validation.split,
            mode=config.validation.mode,
            builtin_checks=config.validation.builtin_checks,
            streaming={
                "stream_above_mb": config.validation.stream_above_mb,
                "batch_rows": config.validation.batch_rows,
            },
            aws_conn_id=config.aws_conn_id,
            doc_md=docs.TASKS["validate"],
            **common,
        )
        train, best = _training(config, ingest, common)
        evaluate = EvaluateChallengerOperator(
            task_id="evaluate",
            challenger=best.output,
            snapshot=ingest.output,
            split=config.evaluation.split,
            model_name=config.registered_model_name,
            metrics=config.evaluation.metrics,
            slices=list(config.evaluation.slices),
            mlflow_conn_id=config.mlflow_conn_id,
            aws_conn_id=config.aws_conn_id,
            doc_md=docs.TASKS["evaluate"],
        )
        gate = GateChallengerOperator(
            task_id="gate",
            evaluation=evaluate.output,
            gate=dict(config.gate),
            trigger=cause.output,
            validation=validate.output,
            pipeline=config.name,
            model_name=config.registered_model_name,
            mlflow_conn_id=config.mlflow_conn_id,
            on_fail=config.gate_on_fail,
            doc_md=docs.TASKS["gate"],
        )
        approval = None
        if config.approval.enabled:
            from airflow_mlops_provider.operators.approve import ApproveModelOperator

            timeout = config.approval.timeout
            approve = ApproveModelOperator(
                task_id="approve",
                decision=gate.output,
                response_timeout=timedelta(seconds=timeout) if timeout else None,
                doc_md=docs.TASKS["approve"],
            )
            approval = approve.output
        _promotion(config, gate, approval)
        # Data edges (ingest -> ..., train -> select_best -> evaluate -> gate -> [approve] -> promote,
        # record_trigger_cause/validate -> gate) come from the XComArgs above; these are the ordering ones.
        cause >> ingest
        check >> validate >> train
    return dag


def _promotion(config: PipelinePlan, gate: Any, approval: Any) -> Any:
    """``promote`` (the champion moves at once), or ``rollout`` through canary or shadow steps."""
    from airflow_mlops_provider.operators.promote import PromoteModelOperator, promotion_pool

    kwargs: dict[str, Any] = dict(
        decision=gate.output,
        approval=approval,
        mlflow_conn_id=config.mlflow_conn_id,
        aws_conn_id=config.aws_conn_id,
        pool=promotion_pool(config.registered_model_name),
        outlets=[champion_asset(config)],
        on_success_callback=notifier(
            config.name, "promotion", config.notifications.on_promotion, decision_task_id=gate.task_id
        ),
    )
    if config.rollout["strategy"] == "direct":
        return PromoteModelOperator(task_id="promote", doc_md=docs.TASKS["promote"], **kwargs)
    from airflow_mlops_provider.operators.rollout import RolloutModelOperator

    return RolloutModelOperator(
        task_id="rollout",
        rollout=config.rollout,
        pipeline=config.name,
        execution_timeout=timedelta(seconds=config.rollout_s + config.defaults.timeout),
        doc_md=docs.TASKS["rollout"],
        **kwargs,
    )


def _training(config: PipelinePlan, ingest: Any, common: _Common) -> tuple[Any, Any]:
    """One training task, or a task mapped over the grid followed by ``select_best`` (first, last).

    Backend ``nodes`` maps one task per node of each grid point; ``kubernetes`` submits each grid
    point's job (all its nodes) to the cluster from one task.
    """
    from airflow_mlops_provider.factory.gpus import executor_arguments
    from airflow_mlops_provider.operators.train import SelectBestRunOperator, TrainModelOperator

    training = config.training
    kwargs = dict(
        snapshot=ingest.output,
        **training_arguments(config),
        mlflow_conn_id=config.mlflow_conn_id,
        aws_conn_id=config.aws_conn_id,
        execution_timeout=timedelta(seconds=training.timeout),
        retries=training.retries,
        doc_md=docs.TASKS["train"],
        **executor_arguments(training),
        **common,
    )
    if training.pool:
        kwargs.update(pool=training.pool, pool_slots=training.pool_slots)
    operator: Any = TrainModelOperator
    if training.engine == "kubernetes":
        from airflow_mlops_provider.operators.train_kubernetes import TrainOnKubernetesOperator

        operator = TrainOnKubernetesOperator
        kwargs.update(kubernetes=dict(training.kubernetes or {}), gpus=training.gpus)
    points = training.grid_points
    nodes = int(training.job["nnodes"]) if training.engine == "nodes" else 1
    if len(points) == 1 and nodes == 1:
        single = operator(task_id="train", hyperparameters=dict(points[0]), **kwargs)
        return single, single
    if training.max_parallel:
        kwargs["max_active_tis_per_dagrun"] = training.max_parallel * nodes
    train = operator.partial(task_id="train", **kwargs).expand_kwargs(_node_tasks(points, nodes))
    best = SelectBestRunOperator(
        task_id="select_best",
        results=train.output,
        metric=training.select_metric,
        mode=training.select_mode,
        doc_md=docs.TASKS["select_best"],
    )
    return train, best


def _node_tasks(points: list[dict[str, Any]], nodes: int) -> list[dict[str, Any]]:
    """The mapped training tasks: one per grid point, or ``nodes`` per grid point of a multi-node
    job (node ranks 0..nodes-1 sharing the point's rendezvous id; every node returns the result)."""
    if nodes == 1:
        return [{"hyperparameters": dict(point)} for point in points]
    return [
        {"hyperparameters": dict(point), "node_rank": rank, "rdzv_id": f"mlops-{{{{ run_id }}}}-{index}"}
        for index, point in enumerate(points)
        for rank in range(nodes)
    ]


def training_arguments(config: PipelinePlan) -> dict[str, Any]:
    """The training operator's ``TrainingJob`` arguments that define *what* is trained (hashed for the
    skip check): the plan's (a multi-node job's rendezvous id and node rank come per mapped task)."""
    return dict(config.training.job)


def training_jobs(config: PipelinePlan) -> list[dict[str, Any]]:
    """The training arguments of every grid point (hashed at run time by the skip check)."""
    base = {**training_arguments(config), **_common(config)}
    return [{**base, "hyperparameters": point} for point in config.training.grid_points]


def build_monitor_dag(config: PipelinePlan, source: str | None = None) -> DAG:
    from airflow_mlops_provider.operators.drift import DetectDriftOperator
    from airflow_mlops_provider.operators.score import ScoreBatchOperator

    monitoring = config.monitoring
    assert monitoring is not None
    common = _common(config)
    live = monitoring.source
    length = timedelta(seconds=monitoring.window.length)
    dag = DAG(
        dag_id=f"monitor_{config.name}",
        # each run stands for the window [run time - length, run time); a manual run for the
        # length up to the moment it was triggered
        schedule=_cron(monitoring.schedule, interval=length) if monitoring.schedule else None,
        max_active_runs=1,
        auto_register=False,  # a DAG whose build fails half-way must not be picked up
        catchup=False,
        tags=_tags(config, "monitor"),
        doc_md=_shown(config, docs.monitor_dag(config, source)),
        description=_shown(config, f"Watch live data of {config.registered_model_name} for drift")[:200],
        default_args=_default_args(config, timeout=monitoring.timeout),
        dagrun_timeout=timedelta(seconds=monitoring.timeout * 4),
        on_failure_callback=notifier(config.name, "failure", config.notifications.on_failure),
    )
    with dag:
        guard = CheckChampionOperator(
            task_id="require_champion",
            model_name=config.registered_model_name,
            mode="require_champion",
            mlflow_conn_id=config.mlflow_conn_id,
            doc_md=docs.TASKS["require_champion"],
        )
        ingest = _window_ingest(config, "ingest_live", live, monitoring.windowed_source, monitoring.window)
        labels = monitoring.labels
        score = None
        if monitoring.score:
            score = ScoreBatchOperator(
                task_id="score",
                snapshot=ingest.output,
                model_name=config.registered_model_name,
                alias="champion",
                keep_columns=[labels.id_column] if labels is not None else [],
                mlflow_conn_id=config.mlflow_conn_id,
                aws_conn_id=config.aws_conn_id,
                doc_md=docs.TASKS["score"],
                **common,
            )
        drift = DetectDriftOperator(
            task_id="detect_drift",
            current=ingest.output,
            reference=None,
            predictions=score.output if score is not None else None,
            model_name=config.registered_model_name,
            config=dict(monitoring.drift),
            mlflow_conn_id=config.mlflow_conn_id,
            aws_conn_id=config.aws_conn_id,
            outlets=[drift_asset(config)],
            doc_md=docs.TASKS["detect_drift"],
            **common,
        )
        guard >> ingest >> drift
        if score is not None:
            ingest >> score >> drift
        if monitoring.performance is not None:
            _performance(config, guard, [t for t in (score, drift) if t is not None])
    return dag


def _window_ingest(
    config: PipelinePlan, task_id: str, source: SourcePlan, read: Any, window: WindowPlan
) -> Any:
    """An ingest of the rows of the run's window (an empty window skips downstream with the reason)."""
    from airflow_mlops_provider.operators.ingest import IngestSnapshotOperator

    return IngestSnapshotOperator(
        task_id=task_id,
        source=read,
        format=source.format,
        csv_options=_csv_options(source),
        split=None,
        window={"by": window.by, "column": window.column, "length": window.length},  # the run's interval
        empty="skip",
        chunk_rows=config.data.chunk_rows,
        aws_conn_id=source.aws_conn_id or config.aws_conn_id,
        doc_md=docs.TASKS[task_id],
        **_common(config),
    )


def _performance(config: PipelinePlan, guard: Any, upstream: list[Any]) -> None:
    """``ingest_labels`` (with labels) and ``measure_performance``, which runs when any input exists."""
    from airflow_mlops_provider.operators.performance import MeasurePerformanceOperator

    monitoring = config.monitoring
    assert monitoring is not None and monitoring.performance is not None
    labels = monitoring.labels
    label_args: dict[str, Any] = {}
    if labels is not None:
        ingest_labels = _window_ingest(
            config, "ingest_labels", labels.source, labels.windowed_source, labels.window
        )
        guard >> ingest_labels
        upstream = [*upstream, ingest_labels]
        label_args = dict(
            labels_task_id="ingest_labels",
            id_column=labels.id_column,
            target=labels.target,
            max_delay=labels.max_delay,
        )
    measure = MeasurePerformanceOperator(
        task_id="measure_performance",
        model_name=config.registered_model_name,
        task=config.training.job["task"],
        performance=monitoring.performance,
        window_length=monitoring.window.length,
        score_task_id="score" if monitoring.score else None,
        mlflow_conn_id=config.mlflow_conn_id,
        aws_conn_id=config.aws_conn_id,
        trigger_rule="none_failed_min_one_success",  # an empty live window still joins late labels
        outlets=[performance_asset(config)],
        doc_md=docs.TASKS["measure_performance"],
        **label_args,
        **_common(config),
    )
    upstream >> measure


def build_rollback_dag(config: PipelinePlan, source: str | None = None) -> DAG:
    from airflow_mlops_provider.operators.promote import RollbackChampionOperator, promotion_pool

    dag = DAG(
        dag_id=f"rollback_{config.name}",
        schedule=None,
        max_active_runs=1,
        auto_register=False,  # a DAG whose build fails half-way must not be picked up
        catchup=False,
        tags=_tags(config, "rollback"),
        doc_md=_shown(config, docs.rollback_dag(config, source)),
        description=_shown(config, f"Restore the previous champion of {config.registered_model_name}")[:200],
        default_args={**_default_args(config), "retries": 0},
        params={
            "reason": Param(
                "manual rollback", type="string", minLength=3, description="Why (kept in the decision record)"
            )
        },
        on_failure_callback=notifier(config.name, "failure", config.notifications.on_failure),
    )
    with dag:
        RollbackChampionOperator(
            task_id="rollback",
            model_name=config.registered_model_name,
            reason="{{ params.reason }}",
            mlflow_conn_id=config.mlflow_conn_id,
            pool=promotion_pool(config.registered_model_name),
            outlets=[champion_asset(config)],
            doc_md=docs.TASKS["rollback"],
        )
    return dag


def _csv_options(source: SourcePlan) -> dict[str, Any] | None:
    """The source's CSV reading options; None keeps the reader's default null markers."""
    markers = source.null_values
    return None if markers is None else {"null_values": list(markers)}


def _cron(expression: str, interval: timedelta = timedelta()) -> CronTriggerTimetable:
    return CronTriggerTimetable(expression, timezone="UTC", interval=interval)


def _shown(config: PipelinePlan, text: str) -> str:
    """UI text with expanded environment values written as ``${NAME}`` (before any cut: none half-shown)."""
    return env.shown(text, config.env)


class _Common(TypedDict):
    """The arguments every stage operator of a pipeline shares."""

    pipeline: str
    artifact_root: str


def _common(config: PipelinePlan) -> _Common:
    return {"pipeline": config.name, "artifact_root": config.artifact_root}


def _tags(config: PipelinePlan, kind: str) -> list[str]:
    return list(dict.fromkeys(["mlops", kind, f"pipeline:{config.name}", *config.tags]))


def _default_args(config: PipelinePlan, timeout: float | None = None) -> dict[str, Any]:
    defaults = config.defaults
    args: dict[str, Any] = {
        "owner": config.owner,
        "retries": defaults.retries,
        "retry_delay": timedelta(seconds=defaults.retry_delay),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=defaults.retry_delay * 10),
        "execution_timeout": timedelta(seconds=timeout or defaults.timeout),
    }
    return args
