"""Read the prediction service's ``/metrics`` from every replica: once (sync) or from a trigger (async)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from airflow_mlops_provider.core.errors import TransientError
from airflow_mlops_provider.core.rollout.signals import TrafficSnapshot, merge, parse_service_metrics

TIMEOUT_S = 10.0


class ServiceUnreachable(TransientError):
    """A replica of the prediction service did not answer its ``/metrics``."""


def _metrics_url(base: str) -> str:
    return base.rstrip("/") + "/metrics"


def _failed(url: str, err: Exception) -> ServiceUnreachable:
    return ServiceUnreachable(f"the prediction service's metrics at {url} could not be read: {err}")


def scrape(urls: Sequence[str], pipeline: str) -> TrafficSnapshot:
    """``pipeline``'s counters summed over the replicas at ``urls``."""
    texts = []
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for url in map(_metrics_url, urls):
            try:
                response = client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as err:
                raise _failed(url, err) from err
            texts.append(response.text)
    return merge(parse_service_metrics(text, pipeline) for text in texts)


async def scrape_async(urls: Sequence[str], pipeline: str) -> TrafficSnapshot:
    """:func:`scrape` without blocking the triggerer's event loop."""
    texts = []
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        for url in map(_metrics_url, urls):
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as err:
                raise _failed(url, err) from err
            texts.append(response.text)
    return merge(parse_service_metrics(text, pipeline) for text in texts)
