"""MLflow "models from code" definition for :class:`TabularModel` (loaded by MLflow, not imported by us).

:func:`airflow_mlops_provider.core.model_io.log_model` logs this file as the model's code, so
``mlflow.pyfunc.load_model``, ``mlflow models serve`` and the MLflow UI work on our models
without any pickled Python object: the weights are safetensors and the preprocessing is JSON
under the model's ``artifacts/tabular/`` directory.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

from airflow_mlops_provider.core.tabular_model import TabularModel


class TabularPyfunc(PythonModel):
    """pyfunc wrapper: ``predict`` returns class labels (classification) or values (regression)."""

    model: TabularModel

    def load_context(self, context: Any) -> None:
        self.model = TabularModel.load(context.artifacts["tabular"])

    # No type hints: MLflow would derive a schema from them; the logged signature is the schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict(frame)


set_model(TabularPyfunc())
