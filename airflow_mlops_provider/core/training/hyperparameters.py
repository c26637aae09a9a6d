"""Hyperparameter schemas: what a training entry point accepts, checked when the pipeline is parsed.

The built-in trainer declares :class:`TabularHyperparameters`. A custom entry point declares its
own the same way: a pydantic model (``extra="forbid"``), named in the pipeline as
``training.hyperparameters_schema: "package.module:Model"``; keep that module light (pydantic
only), because the dag-processor imports it whenever the pipeline file changes. Without a
schema, a custom entry point's hyperparameters are passed as they are.

This module imports only pydantic (and the stdlib-only :mod:`~airflow_mlops_provider.core.names`):
the pipeline config validates with it at parse time.
"""

from __future__ import annotations

import importlib

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from airflow_mlops_provider.core.names import DEFAULT_ENTRY_POINT


class TabularHyperparameters(BaseModel):
    """The built-in trainer's hyperparameters (every one optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = Field(default=10, description="passes over the training split")
    batch_size: PositiveInt = Field(default=64, description="rows per step and process")
    lr: float = Field(default=1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    hidden: list[PositiveInt] = Field(default=[64, 32], description="hidden layer widths of the MLP")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout after each hidden layer")
    feature_columns: list[str] | None = Field(
        default=None, min_length=1, description="default: every column but the target and the split key"
    )
    categorical_columns: list[str] | None = Field(
        default=None, description="default: string, boolean and dictionary columns"
    )
    max_categories: PositiveInt = Field(
        default=64, description="most frequent levels kept per categorical column"
    )


def schema_for(entry_point: str, declared: str | None) -> type[BaseModel] | None:
    """The hyperparameter schema of ``entry_point``: declared (``"module:Model"``), built-in, or none."""
    if declared is not None:
        return load_schema(declared)
    return TabularHyperparameters if entry_point == DEFAULT_ENTRY_POINT else None


def load_schema(reference: str) -> type[BaseModel]:
    """Import ``"package.module:Model"``; raises ``ValueError`` that says what is wrong."""
    module_name, _, name = reference.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import hyperparameter schema {reference!r}: {err}") from None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"hyperparameter schema {reference!r} is not a pydantic model class")
    return model
