"""Turn an Airflow AWS connection into fsspec ``storage_options`` for core code.

Core functions take a URI and storage options; operators call :func:`storage_options` inside
``execute()`` so credentials come from connections only (DESIGN.md rule 7).
"""

from __future__ import annotations

from typing import Any


def storage_options(uri: str, aws_conn_id: str | None) -> dict[str, Any]:
    """Options for opening ``uri``: S3 credentials, region and endpoint from ``aws_conn_id``."""
    if not uri.startswith(("s3://", "s3a://")) or aws_conn_id is None:
        return {}
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    credentials = hook.get_credentials()
    options: dict[str, Any] = {"key": credentials.access_key, "secret": credentials.secret_key}
    if credentials.token:
        options["token"] = credentials.token
    endpoint = hook.conn_config.get_service_endpoint_url("s3")
    if endpoint:
        options["endpoint_url"] = endpoint
    if hook.conn_config.region_name:
        options["client_kwargs"] = {"region_name": hook.conn_config.region_name}
    return options
