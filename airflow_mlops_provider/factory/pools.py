"""The one-slot promotion pools a folder of pipelines needs, in ``airflow pools import`` format.

A task naming a missing pool is never scheduled. The provider's scheduler plugin
(:mod:`airflow_mlops_provider.plugins`) creates a missing promotion pool when a run starts; a
deployment can also create them all up front (the compose init job does)::

    python -m airflow_mlops_provider.factory.pools dags/pipelines > pools.json
    airflow pools import pools.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from airflow_mlops_provider.factory.loader import load_pipeline
from airflow_mlops_provider.operators.promote import promotion_pool


def required_pools(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Pool name -> pool settings for every pipeline config in ``folder``."""
    pools = {}
    for path in sorted(Path(folder).glob("*.y*ml")):
        model = load_pipeline(path).registered_model_name
        pools[promotion_pool(model)] = {
            "slots": 1,
            "description": f"Serialise promotions and rollbacks of {model}",
            "include_deferred": False,
        }
    return pools


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m airflow_mlops_provider.factory.pools PIPELINES_FOLDER", file=sys.stderr)
        return 2
    print(json.dumps(required_pools(args[0]), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
