"""Airflow hook for an MLflow tracking server and model registry."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_mlops_provider.core.tracking import TrackingSettings


class MlflowHook(BaseHook):
    """Connect to MLflow with credentials from an Airflow connection of type ``mlflow``.

    Connection fields: ``host`` holds the tracking URI (``http://mlflow:5000``, ``sqlite:///...``,
    ``file:///...``; a bare host name gets ``extra.scheme``, default ``http``, and ``port``),
    ``login``/``password`` give basic auth, a ``password`` without ``login`` is sent as a bearer
    token. Extra: ``registry_uri``, ``ui_url``, ``insecure_tls``, ``request_timeout_s``,
    ``max_retries``. The client is created lazily on first use.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def settings(self) -> TrackingSettings:
        """Tracking settings built from the connection; every secret, passwords inside the URIs
        included, is registered with Airflow's secrets masker."""
        from airflow.sdk.log import mask_secret

        from airflow_mlops_provider.core.tracking import TrackingSettings

        conn = self.get_connection(self.mlflow_conn_id)
        extra = conn.extra_dejson
        if not conn.host:
            raise ValueError(
                f"Connection {self.mlflow_conn_id!r} has no host: set it to the MLflow tracking URI"
            )
        if "://" in conn.host:
            tracking_uri = conn.host
        else:
            port = f":{conn.port}" if conn.port else ""
            path = f"/{conn.schema}" if conn.schema else ""
            tracking_uri = f"{extra.get('scheme', 'http')}://{conn.host}{port}{path}"
        token = conn.password if conn.password and not conn.login else None
        password = conn.password if conn.login else None
        settings = TrackingSettings(
            tracking_uri=tracking_uri,
            registry_uri=extra.get("registry_uri") or None,
            username=conn.login or None,
            password=password,
            token=token,
            insecure_tls=bool(extra.get("insecure_tls", False)),
            request_timeout_s=int(extra.get("request_timeout_s", 30)),
            max_retries=int(extra.get("max_retries", 3)),
            ui_url=extra.get("ui_url") or None,
        )
        for secret in settings.secrets():
            mask_secret(secret)
        return settings

    @cached_property
    def client(self) -> MlflowClient:
        """The ``MlflowClient``, created on first access."""
        self.log.info("Connecting to MLflow at %s", self.settings.display_uri)
        return self.settings.client()

    def get_conn(self) -> MlflowClient:
        """Return the lazily created ``MlflowClient``."""
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """Check that the tracking server answers (used by the UI's *Test* button)."""
        from airflow_mlops_provider.core.tracking import check_reachable

        try:
            return True, check_reachable(self.settings)
        except (ConnectionError, ValueError) as err:
            return False, str(err)
