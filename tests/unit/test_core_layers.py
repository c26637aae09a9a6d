"""The rooms inside ``core/``: only ingest imports ingest, and the drift config stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import airflow_mlops_provider

CORE = Path(airflow_mlops_provider.__path__[0]) / "core"


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_core_module_outside_ingest_imports_ingest():
    ingest = "airflow_mlops_provider.core.ingest"
    offenders = {
        str(path.relative_to(CORE)): sorted(
            m for m in _imported_modules(path) if m.split(".")[:3] == ingest.split(".")
        )
        for path in CORE.rglob("*.py")
        if "ingest" not in path.relative_to(CORE).parts
    }
    assert {name: modules for name, modules in offenders.items() if modules} == {}


def test_the_drift_config_imports_without_numpy_or_pyarrow():
    code = (
        "import json, sys\n"
        "from airflow_mlops_provider.core.drift.config import DriftConfig\n"
        "import airflow_mlops_provider.core.drift as drift\n"
        "assert drift.DriftConfig is DriftConfig\n"
        "print(json.dumps(sorted(m for m in ('numpy', 'pyarrow', 'scipy', 'pandas') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
