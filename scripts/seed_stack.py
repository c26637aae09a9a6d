"""Start the retraining loop in the compose stack: land example data and post new-data events.

Run by the compose ``seed`` service (``docker compose run --rm seed``), inside the Airflow
image with the stack's connections. For every example pipeline named after a bundled dataset
(:mod:`airflow_mlops_provider.datasets`) it

1. writes a first training batch to the pipeline's data source and a live window whose
   features drifted by one standard deviation to its monitoring source (MinIO in the stack);
2. waits until the dag-processor has parsed the pipeline, then unpauses its DAGs;
3. posts the pipeline's new-data asset event through the REST API, as a producer would, so
   ``retrain_<name>`` runs at once; ``monitor_<name>`` then finds the drift on its schedule and
   its drift event starts the next retrain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from airflow_mlops_provider import datasets
from airflow_mlops_provider.factory import pipeline_files
from airflow_mlops_provider.factory.assets import new_data_asset
from airflow_mlops_provider.factory.dagfile import dag_ids
from airflow_mlops_provider.factory.plan import load_plan


class Api:
    """The few Airflow REST calls the seed needs, with a token from the simple auth manager."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.token = self._call("POST", "/auth/token", {"username": username, "password": password})[
            "access_token"
        ]

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, path, body, {"Authorization": f"Bearer {self.token}"})

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def asset_id(self, name: str, timeout_s: float) -> int:
        """The id of asset ``name``, waiting until the dag-processor has registered it."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self("GET", f"/api/v2/assets?name_pattern={urllib.parse.quote(name)}")["assets"]
            for asset in found:
                if asset["name"] == name:
                    return asset["id"]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"asset {name} did not appear within {timeout_s:.0f}s: is the dag-processor up?"
                )
            time.sleep(5)


def land_data(plan: Any) -> list[str]:
    """Write the first training batch and a drifted live window where the pipeline reads them."""
    from airflow.sdk import ObjectStoragePath

    conn = plan.data.source.aws_conn_id or plan.aws_conn_id
    frames = {plan.data.source.base_uri: ("batch-000.csv", datasets.batch(plan.name, 0, 2))}
    if plan.monitoring is not None:
        window = datasets.live_window(plan.name, rows=200, drift=1.0, seed=1)
        frames[plan.monitoring.source.base_uri] = ("window-001.csv", window)
    written = []
    for base, (name, frame) in frames.items():
        uri = f"{base.rstrip('/')}/{name}"
        target = ObjectStoragePath(uri, conn_id=conn)
        target.parent.mkdir(parents=True, exist_ok=True)  # a no-op on object stores
        target.write_text(frame.to_csv(index=False))
        written.append(uri)
    return written


def seed(folder: Path, api: Api, timeout_s: float) -> list[str]:
    """Seed every example pipeline of ``folder``; the names of those seeded."""
    seeded = []
    for path in pipeline_files(folder):
        plan = load_plan(path)
        if plan.name not in datasets.DATASETS:
            print(f"{path.name}: no bundled dataset named {plan.name!r}, left alone")
            continue
        files = land_data(plan)
        print(f"{plan.name}: wrote {', '.join(files)}")
        asset = new_data_asset(plan).name
        asset_id = api.asset_id(asset, timeout_s)
        for dag_id in dag_ids(plan):
            api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        api(
            "POST",
            "/api/v2/assets/events",
            {"asset_id": asset_id, "extra": {"files": files, "source": "seed"}},
        )
        print(f"{plan.name}: unpaused {', '.join(dag_ids(plan))}; posted a {asset} event")
        seeded.append(plan.name)
    return seeded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=Path, default=Path("/opt/airflow/dags/pipelines"))
    parser.add_argument("--api-url", default="http://airflow-api-server:8080")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the DAGs to be parsed"
    )
    args = parser.parse_args(argv)
    api = Api(args.api_url, "admin", os.environ["AIRFLOW_ADMIN_PASSWORD"])
    seeded = seed(args.pipelines, api, args.timeout)
    if not seeded:
        print(f"no example pipeline in {args.pipelines}", file=sys.stderr)
        return 1
    print(
        f"Seeded {', '.join(seeded)}: watch the runs at http://localhost:8080 (MLflow: http://localhost:5000)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
