"""The one-slot promotion pools a folder of pipelines needs, in ``airflow pools import`` format.

A task naming a missing pool is never scheduled. The provider's scheduler plugin
(:mod:`airflow_mlops_provider.plugins`) creates a missing promotion pool when a run starts; a
deployment can also create them all up front (the compose init job does)::

    python -m airflow_mlops_provider.factory.pools dags/pipelines > pools.json
    airflow pools import pools.json

It reads the same files as the DAG loader (:func:`~airflow_mlops_provider.factory.pipeline_files`)
and, like the loader, isolates a broken config: it is named on stderr and the other pipelines
still get their pools, so one bad YAML file cannot keep the whole deployment down.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from airflow_mlops_provider.factory import pipeline_files
from airflow_mlops_provider.factory.plan import load_plan
from airflow_mlops_provider.operators.promote import promotion_pool


def required_pools(folder: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Pool name -> pool settings for every valid pipeline config in ``folder``, and
    file -> error for each config that could not be read or validated."""
    pools: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for path in pipeline_files(folder):
        try:
            model = load_plan(path).registered_model_name
        except (OSError, ValueError) as exc:  # ValueError: ConfigError names the file and field
            errors[str(path)] = str(exc)
            continue
        pools[promotion_pool(model)] = {
            "slots": 1,
            "description": f"Serialise promotions and rollbacks of {model}",
            "include_deferred": False,
        }
    return pools, errors


def main(argv: list[str] | None = None) -> int:
    """Print the pools as JSON; report broken configs on stderr and still exit 0."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m airflow_mlops_provider.factory.pools PIPELINES_FOLDER", file=sys.stderr)
        return 2
    pools, errors = required_pools(args[0])
    for error in errors.values():
        print(f"skipped, no pool created: {error}", file=sys.stderr)
    print(json.dumps(pools, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
