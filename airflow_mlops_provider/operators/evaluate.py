"""Score the challenger and the current champion on the same held-out snapshot split.

Parse time stays light: mlflow, pandas and the evaluation code are imported inside ``execute()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.operators.base import MlopsBaseOperator, renamed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops_provider.core.lineage import Lineage
    from airflow_mlops_provider.core.payloads import Evaluation


class EvaluateChallengerOperator(MlopsBaseOperator):
    """Evaluate the challenger (a training result) and the ``champion`` model version on one split.

    Both models are loaded from MLflow without unpickling and scored on ``split`` of
    ``snapshot``: classification gets accuracy, F1, ROC-AUC and log loss; regression RMSE, MAE
    and R2; ``slices`` add every metric per value of the named columns (a column name or
    ``{"column", "max_values", "min_rows"}``). Undefined metrics are ``None``. Returns::

        {"model_name", "task", "challenger": {"run_id", "model_uri", "metrics", "slices"},
         "champion": None | {"version", "run_id", "metrics", "slices"},
         "champion_version_at_eval", "snapshot_sha256", "snapshot": {"uri", "sha256", "split", "rows"},
         "metrics_requested", "slices_requested"}

    :param challenger: the training task's result (``{"run_id", "model_uri", ...}``), usually an XComArg.
    :param snapshot: snapshot reference dict (the ingest task's XCom) or URI.
    :param split: held-out split to score on (``"test"``).
    :param model_name: registered model whose ``champion`` alias names the current champion.
    :param metrics: subset of the task's metrics (default: all).
    :param slices: slice columns.
    """

    template_fields: Sequence[str] = (
        *MlopsBaseOperator.template_fields,
        "challenger",
        "snapshot",
        "split",
        "model_name",
        "metrics",
        "slices",
    )
    template_fields_renderers = {"challenger": "json", "snapshot": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        challenger: Any,
        snapshot: Any,
        model_name: str,
        split: str | None = "test",
        metrics: Sequence[str] | None = None,
        slices: Sequence[str | Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.challenger = challenger
        self.snapshot = snapshot
        self.split = split
        self.model_name = model_name
        self.metrics = metrics
        self.slices = slices

    def execute(self, context: Context) -> Evaluation:
        from airflow_mlops_provider.core.evaluation import evaluate_challenger_and_champion
        from airflow_mlops_provider.core.snapshot import snapshot_uri

        uri = snapshot_uri(self.snapshot)
        result = evaluate_challenger_and_champion(
            challenger=self.challenger,
            snapshot=self.snapshot,
            split=self.split,
            model_name=self.model_name,
            settings=self.mlflow_settings(),
            metrics=list(self.metrics) if self.metrics else None,
            slices=list(self.slices or ()),
            storage_options=self.storage_options(uri),
        )
        champion = result["champion"]
        self.log.info(
            "Challenger %s: %s; champion %s: %s",
            result["challenger"]["run_id"],
            result["challenger"]["metrics"],
            "none" if champion is None else f"v{champion['version']}",
            None if champion is None else champion["metrics"],
        )
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The held-out snapshot, the challenger's run and the champion version it was compared with."""
        from airflow_mlops_provider.core import lineage

        mlflow = self.lineage_mlflow()
        inputs = [lineage.snapshot(self.snapshot), mlflow.run(self.challenger)]
        champion = (result or {}).get("champion")
        if champion:
            inputs.append(
                mlflow.version(result["model_name"], champion["version"], source_run_id=champion["run_id"])
            )
        return lineage.Lineage(inputs=inputs)


__getattr__ = renamed(__name__, {"EvaluateOperator": EvaluateChallengerOperator})
