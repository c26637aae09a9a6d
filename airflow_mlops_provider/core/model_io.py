"""Log tabular models to MLflow and load them back, without pickle.

A model is logged as an MLflow pyfunc "model from code" (``core/tabular_pyfunc.py``) at
artifact path ``model``: the code file, an ``MLmodel`` with signature and input example, and
our own files (``tabular.json`` + ``model.safetensors``) under ``artifacts/tabular/``.
:func:`load_model` downloads the model's artifacts and rebuilds the :class:`TabularModel`
from those files directly; it never executes or unpickles anything from the artifact store.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import yaml

from airflow_mlops_provider.core.tabular_model import TabularModel, TabularModelError

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from airflow_mlops_provider.core.tracking import TrackingSettings

ARTIFACT_PATH = "model"
TABULAR_ARTIFACT = "tabular"
_CODE_FILE = Path(__file__).with_name("tabular_pyfunc.py")


def log_model(
    model: TabularModel,
    input_example: pd.DataFrame,
    *,
    name: str = ARTIFACT_PATH,
    tags: dict[str, str] | None = None,
) -> ModelInfo:
    """Log ``model`` into the active MLflow run (call from rank 0 only); returns MLflow's ModelInfo.

    The signature is inferred from ``input_example`` (feature columns only; at most 5 rows are
    kept) and the model's predictions on it.
    """
    import mlflow
    from mlflow.models import infer_signature

    example = input_example[model.feature_columns].head(5).reset_index(drop=True)
    signature = infer_signature(example, model.predict(example))
    with tempfile.TemporaryDirectory(prefix="tabular-model-") as tmp, warnings.catch_warnings():
        # predict() has no type hints on purpose: the explicit signature is the schema.
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        local = model.save(Path(tmp) / TABULAR_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_CODE_FILE),
            artifacts={TABULAR_ARTIFACT: str(local)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            tags=tags,
        )
        return cast("ModelInfo", info)  # mlflow's log_model is wrapped by an untyped decorator


def load_model(model_uri: str, settings: TrackingSettings) -> TabularModel:
    """Load a tabular model from an MLflow model URI.

    ``runs:/<run_id>/model``, ``models:/<name>/<version>`` and ``models:/<name>@<alias>`` work.
    Only ``MLmodel`` (YAML), ``tabular.json`` and ``model.safetensors`` are read.
    """
    import mlflow.artifacts

    with settings.environment(), tempfile.TemporaryDirectory(prefix="tabular-load-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri,
            dst_path=tmp,
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
        )
        return load_local_model(local, model_uri)


def load_local_model(path: str | os.PathLike[str], source: str | None = None) -> TabularModel:
    """Load the tabular model inside a downloaded MLflow model directory, and nothing outside it."""
    root = Path(path)
    mlmodel = root / "MLmodel"
    where = source or str(root)
    if not mlmodel.exists():
        raise TabularModelError(f"{where} is not an MLflow model (no MLmodel file)")
    try:
        meta = yaml.safe_load(mlmodel.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise TabularModelError(f"{mlmodel} of {where} is damaged or unreadable: {err}") from err
    flavor = meta.get("flavors", {}).get("python_function", {}) if isinstance(meta, dict) else {}
    artifact = (flavor.get("artifacts") or {}).get(TABULAR_ARTIFACT) if isinstance(flavor, dict) else None
    relative = artifact.get("path") if isinstance(artifact, dict) else None
    if not relative or not isinstance(relative, str):
        raise TabularModelError(
            f"{where} is not a tabular model from this provider (no '{TABULAR_ARTIFACT}')"
        )
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise TabularModelError(
            f"{where}: the '{TABULAR_ARTIFACT}' artifact path {relative!r} in {mlmodel} lies outside "
            "the model's folder"
        )
    return TabularModel.load(target)


def _requirements() -> list[str]:
    pins = []
    for dist in ("airflow-mlops-provider", "mlflow", "torch", "safetensors", "pandas", "numpy", "pyyaml"):
        try:
            pins.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def model_summary(model: TabularModel) -> dict[str, Any]:
    """A short description of the model for logs and params."""
    return {
        "task": model.task,
        "target": model.target,
        "features": len(model.feature_columns),
        "classes": len(model.classes or ()),
        "hidden": model.spec.hidden,
    }
