"""DESIGN.md rule 1: importing what the dag-processor imports pulls in no heavy library."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import airflow_mlops_provider

HEAVY = ["torch", "mlflow", "great_expectations", "pandas", "scipy", "sklearn", "boto3", "pyarrow", "numpy"]
PARSE_TIME_PACKAGES = ("hooks", "operators", "links", "notifications", "factory")


def _parse_time_modules() -> list[str]:
    names = []
    for package in PARSE_TIME_PACKAGES:
        path = [f"{airflow_mlops_provider.__path__[0]}/{package}"]
        names.append(f"airflow_mlops_provider.{package}")
        names += [f"airflow_mlops_provider.{package}.{m.name}" for m in pkgutil.iter_modules(path)]
    return [*names, "airflow_mlops_provider.get_provider_info"]


def test_parse_time_modules_import_no_heavy_library():
    modules = _parse_time_modules()
    code = (
        "import importlib, json, sys\n"
        "import airflow.sdk\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], f"heavy imports at parse time: {out.stdout}"
