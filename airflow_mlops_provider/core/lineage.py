"""OpenLineage datasets of the loop: every name and facet the operators report, in one place.

Names follow OpenLineage's naming spec (through the installed client's
:mod:`openlineage.client.naming.dataset`): an S3 object is namespace ``s3://<bucket>``, name
``<key>``; a local file (``file:///path``) namespace ``file``, name ``/path``; a file on a named
host (``file://host/path``) namespace ``file://host``. A snapshot is the dataset of its directory
URI, versioned by its sha256. MLflow has no entry in the spec; we name it so a consumer can join:

* namespace ``mlflow://<host>[:<port>][/<path>]`` of the tracking (for model versions the
  registry) server, user info dropped; a store without a host (``sqlite:///...``,
  ``file:///...``) is ``mlflow+<scheme>://<path>``;
* a run is ``runs/<run_id>`` (run ids are unique per server; every stage knows the run id, not
  always its experiment, which goes into the ``mlopsMlflowRun`` facet);
* a registered model version is ``models/<name>/versions/<version>``.

Custom facets are attrs classes whose JSON schemas are in ``lineage_facets.json`` beside this
module. Operators import this module inside their OpenLineage methods only (the ``openlineage``
extra); see :class:`~airflow_mlops_provider.operators.base.LineageMixin` and docs/lineage.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attr
from openlineage.client.event_v2 import Dataset, InputDataset, OutputDataset
from openlineage.client.facet_v2 import DatasetFacet, data_quality_assertions_dataset, dataset_version_dataset
from openlineage.client.naming.dataset import GCS, S3, DatasetNaming, LocalFileSystem, RemoteFileSystem

from airflow_mlops_provider.core.snapshot import snapshot_uri
from airflow_mlops_provider.core.tracking import TrackingSettings

SCHEMA_URL = (
    "https://raw.githubusercontent.com/airflow-mlops-provider/airflow-mlops-provider/main/"
    "airflow_mlops_provider/core/lineage_facets.json"
)


@attr.define
class SnapshotFacet(DatasetFacet):
    """A content-addressed snapshot: its hash, rows and rows per split."""

    sha256: str
    rows: int | None = None
    splits: dict[str, int] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/SnapshotFacet"


@attr.define
class SourceObjectFacet(DatasetFacet):
    """One object read into a snapshot, as listed when it was read (reads were pinned to the ETag)."""

    size: int
    etag: str | None = None
    versionId: str | None = None
    lastModified: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/SourceObjectFacet"


@attr.define
class MlflowRunFacet(DatasetFacet):
    """An MLflow training run: its experiment, logged model and validation metrics."""

    runId: str
    experimentId: str | None = None
    modelUri: str | None = None
    metrics: dict[str, float | None] = attr.field(factory=dict)
    runUrl: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/MlflowRunFacet"


@attr.define
class ModelVersionFacet(DatasetFacet):
    """A registered model version: the aliases this task gave it and what it was trained by."""

    name: str
    version: str
    aliases: list[str] = attr.field(factory=list)
    sourceRunId: str | None = None
    status: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/ModelVersionFacet"


@attr.define
class ReportFacet(DatasetFacet):
    """A monitoring report (drift, performance): its kind, verdict and the human-readable page."""

    kind: str
    verdict: str
    reportUri: str | None = None
    summary: dict[str, Any] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/ReportFacet"


@attr.define
class Lineage:
    """What one task read and wrote."""

    inputs: list[Dataset] = attr.field(factory=list)
    outputs: list[Dataset] = attr.field(factory=list)

    def input_datasets(self) -> list[InputDataset]:
        return [
            d
            if isinstance(d, InputDataset)
            else InputDataset(namespace=d.namespace, name=d.name, facets=d.facets)
            for d in self.inputs
        ]

    def output_datasets(self) -> list[OutputDataset]:
        return [
            d
            if isinstance(d, OutputDataset)
            else OutputDataset(namespace=d.namespace, name=d.name, facets=d.facets)
            for d in self.outputs
        ]


def dataset_name(uri: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a storage URI; a trailing ``/`` is dropped (a directory
    is one dataset). S3, GCS and files by the spec; other schemes as ``<scheme>://<netloc>``, path."""
    parts = urlsplit(uri.rstrip("/"))
    key = parts.path.lstrip("/") or "/"
    naming: DatasetNaming
    if parts.scheme in ("s3", "s3a", "s3n"):
        naming = S3(bucket_name=parts.netloc, object_key=key)
    elif parts.scheme in ("gs", "gcs"):
        naming = GCS(bucket_name=parts.netloc, object_key=key)
    elif parts.scheme in ("file", ""):
        host, path = parts.netloc, parts.path or "/"
        naming = RemoteFileSystem(host, path) if host not in ("", "localhost") else LocalFileSystem(path)
    else:
        return f"{parts.scheme}://{parts.netloc}", key
    return naming.get_namespace(), naming.get_name()


def dataset(uri: str, **facets: DatasetFacet) -> Dataset:
    """The dataset of a storage URI (:func:`dataset_name`) with ``facets``."""
    namespace, name = dataset_name(uri)
    return Dataset(namespace=namespace, name=name, facets=dict(facets))


def mlflow_namespace(uri: str) -> str:
    """``mlflow://<host>[:<port>][/<path>]`` of a tracking or registry URI (see the module docs)."""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme in ("http", "https"):
        return f"mlflow://{host}{parts.path.rstrip('/')}"
    return f"mlflow+{parts.scheme or 'file'}://{host}{parts.path}"


def snapshot(value: Any) -> Dataset:
    """A snapshot (its reference dict, the JSON of one, or its URI), versioned by its sha256."""
    facets: dict[str, DatasetFacet] = {}
    sha = value.get("sha256") if isinstance(value, Mapping) else None
    if sha:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=sha)
        splits = {str(k): int(v) for k, v in (value.get("splits") or {}).items()}
        facets["mlopsSnapshot"] = SnapshotFacet(sha256=sha, rows=value.get("rows"), splits=splits)
    return dataset(snapshot_uri(value), **facets)


def source_objects(entries: Iterable[Mapping[str, Any]]) -> list[Dataset]:
    """The objects a snapshot was read from (its manifest's ``source_objects``), versioned by ETag."""
    out = []
    for entry in entries:
        facets: dict[str, DatasetFacet] = {
            "mlopsSourceObject": SourceObjectFacet(
                size=int(entry["size"]),
                etag=entry.get("etag"),
                versionId=entry.get("version_id"),
                lastModified=entry.get("last_modified"),
            )
        }
        version = entry.get("version_id") or entry.get("etag")
        if version:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)
        out.append(dataset(entry["uri"], **facets))
    return out


@attr.define(frozen=True)
class Mlflow:
    """The namespaces of one MLflow deployment: runs on its tracking server, versions in its registry."""

    runs: str
    models: str

    @classmethod
    def of(cls, settings: TrackingSettings) -> Mlflow:
        return cls(
            mlflow_namespace(settings.tracking_uri),
            mlflow_namespace(settings.registry_uri or settings.tracking_uri),
        )

    def run(self, run: Mapping[str, Any]) -> Dataset:
        """A run from a training result: ``run_id`` (and ``experiment_id``, ``model_uri``, ``metrics``)."""
        facet = MlflowRunFacet(
            runId=str(run["run_id"]),
            experimentId=_text(run.get("experiment_id")),
            modelUri=run.get("model_uri"),
            metrics=dict(run.get("metrics") or {}),
            runUrl=run.get("run_url"),
        )
        return Dataset(namespace=self.runs, name=f"runs/{run['run_id']}", facets={"mlopsMlflowRun": facet})

    def version(
        self,
        name: str,
        version: Any,
        *,
        aliases: Sequence[str] = (),
        source_run_id: str | None = None,
        status: str | None = None,
    ) -> Dataset:
        """A registered model version, with the aliases this task pointed at it."""
        facet = ModelVersionFacet(
            name=name, version=str(version), aliases=list(aliases), sourceRunId=source_run_id, status=status
        )
        return Dataset(
            namespace=self.models,
            name=f"models/{name}/versions/{version}",
            facets={"mlopsModelVersion": facet},
        )


def report(uri: str, kind: str, verdict: str, report_uri: str | None, summary: Mapping[str, Any]) -> Dataset:
    """A monitoring report's JSON document with its verdict."""
    facet = ReportFacet(kind=kind, verdict=verdict, reportUri=report_uri, summary=dict(summary))
    return dataset(uri, mlopsReport=facet)


def with_assertions(target: Dataset, checks: Iterable[Mapping[str, Any]]) -> InputDataset:
    """``target`` as an input with a ``dataQualityAssertions`` facet: one assertion per validation check."""
    assertions = [
        data_quality_assertions_dataset.Assertion(
            assertion=str(check["expectation"]),
            success=bool(check["success"]),
            column=_column(check.get("column")),
            actual=None if check.get("observed") is None else str(check["observed"])[:200],
        )
        for check in checks
    ]
    facet = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=assertions)
    return InputDataset(
        namespace=target.namespace,
        name=target.name,
        facets=target.facets,
        inputFacets={"dataQualityAssertions": facet},
    )


def _column(value: Any) -> str | None:
    if value is None:
        return None
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
