"""Skip the rest of a run when the registered model's champion makes it pointless, and say why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.skipmixin import SkipMixin

from airflow_mlops_provider.core.champion_check import check_mode
from airflow_mlops_provider.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow_mlops_provider.core.lineage import Lineage


class CheckChampionOperator(MlopsBaseOperator, SkipMixin):
    """Look at the model's ``champion`` version; skip everything downstream when there is nothing to do.

    ``mode="unchanged"``: skip when the champion's ``mlops.snapshot_sha256`` tag equals the
    new snapshot's hash and its ``mlops.training_config_hash`` equals the hash of one of the
    training jobs this run would launch (``trainings``: the training operator's arguments, one
    dict per grid point; hashed exactly as the launcher tags the runs it starts).
    ``mode="require_champion"``: skip when the model has no ``champion`` alias yet (monitoring
    before the first promotion). Returns ``{"model_name", "champion_version", "skip", "reason", ...}``.

    :param model_name: registered model.
    :param snapshot: the new snapshot reference (``unchanged`` mode). Templated.
    :param trainings: training arguments per grid point (``unchanged`` mode).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "snapshot")
    ui_color = "#fdf6e3"

    def __init__(
        self,
        *,
        model_name: str,
        mode: str = "unchanged",
        snapshot: Any = None,
        trainings: Sequence[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.mode = check_mode(mode)
        self.snapshot = snapshot
        self.trainings = list(trainings)

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_mlops_provider.core.champion_check import check_champion

        result = check_champion(
            self.mlflow_settings(), self.model_name, self.mode, self.snapshot, self.trainings
        )
        self.log.info("%s", result["reason"])
        if result["skip"]:
            context["ti"].xcom_push(key="return_value", value=result)
            self.skip(ti=context["ti"], tasks=self.get_flat_relatives(upstream=False))
        return result

    def lineage(self, result: Any, task_instance: Any) -> Lineage:
        """The new snapshot (``unchanged`` mode) and the champion version it was checked against."""
        from airflow_mlops_provider.core import lineage

        inputs = [lineage.snapshot(self.snapshot)] if self.snapshot else []
        if result and result.get("champion_version"):
            inputs.append(self.lineage_mlflow().version(self.model_name, result["champion_version"]))
        return lineage.Lineage(inputs=inputs)
