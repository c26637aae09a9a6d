"""The assets a pipeline produces and consumes, and the optional SQS watcher on new data.

Asset URIs use the ``x-mlops://`` scheme on purpose: Airflow normalises URIs of known schemes
(``s3://``, ``file://``) through provider hooks, and building an ``s3://`` asset at parse time
imports boto3 in the dag-processor. ``x-`` schemes are never normalised (DESIGN.md rule 1).
The data location an asset stands for is in its ``extra``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetWatcher

if TYPE_CHECKING:
    from airflow_mlops_provider.factory.plan import PipelinePlan, SqsPlan

GROUP = "mlops"
MESSAGE_QUEUE_TRIGGER = "airflow.providers.common.messaging.triggers.msg_queue.MessageQueueTrigger"


def _asset(config: PipelinePlan, kind: str, extra: dict[str, Any], **kwargs: Any) -> Asset:
    return Asset(
        name=f"mlops.{config.name}.{kind}",
        uri=f"x-mlops://{config.name}/{kind.replace('_', '-')}",
        group=GROUP,
        extra={"pipeline": config.name, **extra},
        **kwargs,
    )


def new_data_asset(config: PipelinePlan) -> Asset:
    """New training data landed at the pipeline's source (posted by a producer or an SQS watcher)."""
    source = config.data.source
    watchers = []
    sqs = config.triggers.new_data.sqs
    if sqs is not None:
        conn = sqs.aws_conn_id or source.aws_conn_id or config.aws_conn_id
        watchers.append(sqs_watcher(f"mlops_{config.name}_s3_events", sqs, conn))
    return _asset(config, "new_data", {"source": source.base_uri}, watchers=watchers)


def drift_asset(config: PipelinePlan) -> Asset:
    """Drift was found in the live data; the event's extra is the drift operator's summary."""
    live = config.monitoring.source.base_uri if config.monitoring else None
    return _asset(config, "drift", {"live_source": live})


def performance_asset(config: PipelinePlan) -> Asset:
    """The champion's measured (or estimated) performance degraded; the extra holds numbers and rule."""
    live = config.monitoring.source.base_uri if config.monitoring else None
    return _asset(config, "performance", {"live_source": live})


def snapshot_asset(config: PipelinePlan) -> Asset:
    """A training snapshot was ingested; the event's extra holds its reference (uri, sha256, rows)."""
    return _asset(config, "training_snapshot", {"artifact_root": config.artifact_root})


def champion_asset(config: PipelinePlan) -> Asset:
    """The registered model's ``champion`` alias moved (consumers such as batch scoring may follow)."""
    return _asset(config, "champion", {"model_name": config.registered_model_name})


def sqs_watcher(name: str, sqs: SqsPlan, aws_conn_id: str | None) -> AssetWatcher:
    """An AssetWatcher running the common-messaging ``MessageQueueTrigger`` (scheme ``sqs``).

    The triggerer instantiates ``MessageQueueTrigger(scheme="sqs", sqs_queue=..., ...)``, which
    dispatches to the amazon provider's SQS trigger; each S3 event notification in the queue
    becomes an asset event whose ``extra["payload"]`` is the message. The trigger is declared by
    its serialised form so that parsing the DAG file does not import the amazon provider
    (importing ``MessageQueueTrigger`` initialises every queue provider, boto3 included).
    """
    kwargs: dict[str, Any] = {"scheme": "sqs", "sqs_queue": sqs.queue_url, "aws_conn_id": aws_conn_id}
    kwargs["waiter_delay"] = sqs.waiter_delay
    return AssetWatcher(name=name, trigger=_deferred_trigger_class()(MESSAGE_QUEUE_TRIGGER, kwargs))


@functools.cache
def _deferred_trigger_class() -> type:
    """A BaseEventTrigger that only carries a classpath and kwargs (built on first use)."""
    from airflow.triggers.base import BaseEventTrigger

    class SerializedEventTrigger(BaseEventTrigger):
        """Stands in for an event trigger by its serialised form; the triggerer builds the real one."""

        def __init__(self, classpath: str, kwargs: dict[str, Any]) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.classpath = classpath
            self.kwargs = kwargs

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return self.classpath, dict(self.kwargs)

        async def run(self) -> AsyncIterator[Any]:  # pragma: no cover - the triggerer runs the real class
            raise RuntimeError(f"{self.classpath} is run by the triggerer from its serialised form")
            yield  # type: ignore[unreachable]  # makes run() an async generator, as triggers are

    return SerializedEventTrigger
