"""Score a snapshot with the registered champion (or any alias) into a predictions snapshot (issue 6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.names import CHAMPION
from airflow_mlops_provider.links.mlflow import MlflowModelVersionLink, model_version_url
from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class ScoreBatchOperator(MlopsBaseOperator):
    """Load ``model_name@alias`` from the MLflow registry (no unpickling) and score a snapshot.

    :param snapshot: snapshot reference dict (an upstream task's XCom, e.g. the ingest result)
        or its URI. Templated.
    :param model_name: registered model name. Templated.
    :param alias: registry alias to score with (resolved to a fixed version at start). Templated.
    :param split: split of the snapshot to score (default ``data``).
    :param keep_columns: input columns copied into the predictions (a row id for delayed labels).
    :param artifact_root: where snapshots live; predictions go to
        ``<artifact_root>/<pipeline>/predictions/<sha256>/``. Templated.
    :param pipeline: pipeline name. Templated.
    :param mlflow_conn_id: Airflow connection of the MLflow server.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` snapshots. Templated.
    :return: ``{"predictions": <snapshot ref dict, kind predictions>, "model_version", "model_uri"}``.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "snapshot",
        "model_name",
        "alias",
        "split",
    )
    template_fields_renderers = {"snapshot": "json"}
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#e8daef"
    pipeline: str  # a required argument here

    def __init__(
        self,
        *,
        snapshot: Any,
        model_name: str,
        artifact_root: str,
        pipeline: str,
        alias: str = CHAMPION,
        split: str | None = None,
        keep_columns: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(artifact_root=artifact_root, pipeline=pipeline, **kwargs)
        self.snapshot = snapshot
        self.model_name = model_name
        self.alias = alias
        self.split = split
        self.keep_columns = list(keep_columns)

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.scoring import score_snapshot

        settings = self.mlflow_settings()
        result = score_snapshot(
            self.snapshot,
            model_name=self.model_name,
            alias=self.alias,
            split=self.split,
            settings=settings,
            artifact_root=self.artifact_location(),
            pipeline=self.pipeline,
            keep_columns=self.keep_columns,
        )
        self.log.info(
            "Scored %s rows with %s version %s into %s",
            result["predictions"]["rows"],
            self.model_name,
            result["model_version"],
            result["predictions"]["uri"],
        )
        url = model_version_url(settings.browser_url, self.model_name, result["model_version"])
        MlflowModelVersionLink.persist(context, url)
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The window's snapshot and the model version behind ``alias`` -> the predictions snapshot."""
        from airflow_mlops_provider.core import lineage

        inputs = [lineage.snapshot(self.snapshot)]
        if not result:
            return lineage.Lineage(inputs=inputs)
        model = self.lineage_mlflow().version(self.model_name, result["model_version"], aliases=[self.alias])
        return lineage.Lineage(inputs=[*inputs, model], outputs=[lineage.snapshot(result["predictions"])])


__getattr__ = renamed(__name__, {"BatchScoreOperator": ScoreBatchOperator})
