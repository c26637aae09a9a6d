"""Event-driven ingestion: the new-data asset's SQS watcher, run as the triggerer runs it, on moto's SQS."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest

from airflow_mlops_provider.factory.assets import MESSAGE_QUEUE_TRIGGER, new_data_asset
from airflow_mlops_provider.factory.loader import parse_pipeline

S3_EVENT = {
    "Records": [
        {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "raw-data"}, "object": {"key": "churn/batch-002.csv", "size": 1234}},
        }
    ]
}


def _config(queue_url: str):
    return parse_pipeline(
        {
            "name": "churn",
            "artifact_root": "s3://ml-artifacts",
            "data": {"source": {"bucket": "raw-data", "prefix": "churn/", "format": "csv"}},
            "training": {"target": "churned", "task": "classification"},
            "triggers": {"new_data": {"sqs": {"queue_url": queue_url, "waiter_delay": 1}}},
        }
    )


def test_sqs_watcher_turns_an_s3_notification_into_a_trigger_event(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    import boto3
    from airflow.serialization.encoders import encode_trigger

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}}
        ),
    )
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="mlops-churn-s3-events")["QueueUrl"]

    asset = new_data_asset(_config(queue_url))
    (watcher,) = asset.watchers
    encoded = encode_trigger(watcher.trigger)  # what the dag-processor stores for the triggerer
    assert encoded["classpath"] == MESSAGE_QUEUE_TRIGGER
    assert encoded["kwargs"]["scheme"] == "sqs"

    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(S3_EVENT))
    module, _, name = encoded["classpath"].rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**watcher.trigger.serialize()[1])

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    messages = event.payload["message_batch"]
    assert json.loads(messages[0]["Body"]) == S3_EVENT
    left = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"  # consumed, so it fires once
