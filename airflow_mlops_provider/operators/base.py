"""The base of the provider's operators: connections, artifact root, storage, asset events, errors.

Modelled on the amazon provider's ``AwsBaseOperator``: one class owns the arguments every stage
shares (``aws_conn_id``, ``mlflow_conn_id``, ``artifact_root``, ``pipeline``) and their template
fields, turns a connection into fsspec storage options and MLflow settings, fills the outlet
asset events and describes the running task instance.

Errors: each subclass's ``execute`` is wrapped (in ``__init_subclass__``, so an override in a
user's subclass is wrapped too) so that a :class:`~airflow_mlops_provider.core.errors.PermanentError`
fails the task without retry; a ``TransientError`` or anything else propagates to Airflow's
retries. Operators therefore catch no stage error themselves.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops_provider.core.errors import PermanentError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_mlops_provider.core.lineage import Lineage, Mlflow
    from airflow_mlops_provider.core.storage import Location
    from airflow_mlops_provider.core.tracking import TrackingSettings


def _fail_permanent_errors(execute: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(execute)
    def wrapper(self: MlopsBaseOperator, *args: Any, **kwargs: Any) -> Any:
        try:
            return execute(self, *args, **kwargs)
        except PermanentError as err:
            raise AirflowFailException(str(err)) from err

    return wrapper


class LineageMixin:
    """OpenLineage inputs and outputs through Airflow's OpenLineage provider (the ``openlineage`` extra).

    The provider calls these methods in the worker: at start and on failure :meth:`lineage` names
    what the task's rendered arguments say it reads, on completion (success or skip) also what
    its XCom result says it wrote. Names and facets come from :mod:`airflow_mlops_provider.core.lineage`
    (docs/lineage.md). Without the extra nothing here is imported.
    """

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Any, Any]:
        return _operator_lineage(self.lineage(None, None))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        # this map index's own result: a bare xcom_pull of a mapped task returns every index's
        result = task_instance.xcom_pull(task_ids=task_instance.task_id, map_indexes=task_instance.map_index)
        return _operator_lineage(self.lineage(result, task_instance))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        return self.get_openlineage_facets_on_start()

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """What the task reads and writes: ``result`` is its XCom result, None before it has one.
        Operators override this; the default reports nothing (Airflow then uses inlets/outlets)."""
        from airflow_mlops_provider.core.lineage import Lineage

        return Lineage()


def _operator_lineage(lineage: Lineage) -> OperatorLineage[Any, Any]:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=lineage.input_datasets(), outputs=lineage.output_datasets())


class MlopsBaseOperator(LineageMixin, BaseOperator):
    """Base of the provider's operators (not used in DAGs directly).

    :param artifact_root: where snapshots and reports live (``s3://...`` or ``file://...``). Templated.
    :param pipeline: pipeline name, the first path component under the artifact root. Templated.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` URIs; None: no credentials. Templated.
    :param mlflow_conn_id: Airflow connection of the MLflow server. Templated.
    """

    template_fields: Sequence[str] = ("artifact_root", "pipeline", "aws_conn_id", "mlflow_conn_id")

    def __init__(
        self,
        *,
        artifact_root: str | None = None,
        pipeline: str | None = None,
        aws_conn_id: str | None = "aws_default",
        mlflow_conn_id: str = "mlflow_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.artifact_root = artifact_root
        self.pipeline = pipeline
        self.aws_conn_id = aws_conn_id
        self.mlflow_conn_id = mlflow_conn_id

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "execute" in cls.__dict__:
            cls.execute = _fail_permanent_errors(cls.__dict__["execute"])  # type: ignore[method-assign]

    def storage_options(self, uri: str | None = None) -> dict[str, Any]:
        """fsspec options for ``uri`` (default: the artifact root): S3 credentials, region and endpoint.

        Empty for non-S3 URIs or without ``aws_conn_id``; credentials come from the connection only.
        """
        uri = uri if uri is not None else self.artifact_root or ""
        if not uri.startswith(("s3://", "s3a://")) or self.aws_conn_id is None:
            return {}
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
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

    def artifact_location(self) -> Location:
        """The artifact root with its storage options, as every core entry point takes it."""
        from airflow_mlops_provider.core.storage import Location

        if not self.artifact_root:
            raise PermanentError(f"task {self.task_id!r} needs an artifact_root")
        return Location(self.artifact_root, self.storage_options())

    def mlflow_settings(self) -> TrackingSettings:
        """Tracking settings from ``mlflow_conn_id``."""
        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        return MlflowHook(self.mlflow_conn_id).settings

    def lineage_mlflow(self) -> Mlflow:
        """The OpenLineage namespaces of ``mlflow_conn_id``'s server (runs) and registry (model versions)."""
        from airflow_mlops_provider.core.lineage import Mlflow

        return Mlflow.of(self.mlflow_settings())

    def emit_asset_events(self, context: Any, extra: Mapping[str, Any]) -> None:
        """Give every outlet ``Asset``'s event of this task ``extra``."""
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = dict(extra)

    @staticmethod
    def run_window(context: Any, length: float) -> tuple[datetime, datetime]:
        """The window a run stands for: its data interval, or for a run without one (an asset-triggered
        run, a manual run of an unscheduled DAG) the ``length`` seconds up to when it was due."""
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is not None and end is not None and end > start:
            return start, end
        due = context["dag_run"].run_after
        return due - timedelta(seconds=length), due

    @staticmethod
    def run_info(context: Any) -> dict[str, Any]:
        """The running task instance: ``{"dag_id", "run_id", "task_id", "map_index", "try_number"}``."""
        ti = context.get("ti")
        dag_run = context.get("dag_run")
        return {
            "dag_id": getattr(ti, "dag_id", None),
            "run_id": getattr(dag_run, "run_id", None) or context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "map_index": getattr(ti, "map_index", -1),
            "try_number": getattr(ti, "try_number", None),
        }


def renamed(module: str, names: Mapping[str, type]) -> Callable[[str], type]:
    """A module ``__getattr__`` that keeps old class names importable for one release, with a warning."""

    def __getattr__(name: str) -> type:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new = names[name]
        warnings.warn(
            f"{module}.{name} is deprecated; use {new.__module__}.{new.__name__}",
            AirflowProviderDeprecationWarning,
            stacklevel=2,
        )
        return new

    return __getattr__
