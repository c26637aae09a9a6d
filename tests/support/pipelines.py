"""Pipeline configs for live-stack tests and benchmarks: the breast-cancer example read from S3."""

from __future__ import annotations

from typing import Any

import yaml


def cancer_pipeline_yaml(
    name: str,
    *,
    model: str,
    bucket: str,
    artifact_root: str,
    epochs: int = 8,
    defaults: dict[str, Any] | None = None,
    **training: Any,
) -> str:
    """A small, fast classifier: training data under ``cancer/train/``, live data under ``cancer/live/``,
    delayed labels under ``cancer/labels/``; ``training`` overrides keys of the training section and
    ``defaults`` those of the task defaults."""
    source: dict[str, Any] = {"bucket": bucket, "glob": "*.csv", "format": "csv"}
    config = {
        "name": name,
        "owner": "integration",
        "artifact_root": artifact_root,
        "model_name": model,
        "data": {
            "source": {**source, "prefix": "cancer/train/"},
            "split": {"by": "hash", "key": "id", "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        },
        "training": {
            "target": "diagnosis",
            "task": "classification",
            "hyperparameters": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "hidden": [16]},
            "workers": 1,
            "timeout": "10m",
            "retries": 0,
            **training,
        },
        "evaluation": {"split": "test", "primary_metric": "roc_auc"},
        "gate": {"thresholds": {"roc_auc": 0.8}},
        "monitoring": {
            "schedule": None,
            "source": {**source, "prefix": "cancer/live/"},
            "drift": {"exclude": ["id"]},
            "labels": {"source": {**source, "prefix": "cancer/labels/"}, "id_column": "id"},
            "performance": {"metric": "accuracy", "min_labels": 50, "resamples": 100},
        },
        "triggers": {"schedule": None, "new_data": True, "drift": True, "performance": True},
        "defaults": {"retries": 0, **(defaults or {})},
    }
    return yaml.safe_dump(config, sort_keys=False)
