"""The layers of ARCHITECTURE.md, checked: each folder imports only the folders below it.

Every ``import`` in the package (at module level and inside functions) is read from the source,
so a forbidden import fails here even when no test happens to execute the line that holds it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airflow_mlops_provider

PACKAGE = Path(airflow_mlops_provider.__path__[0])
ROOT = "airflow_mlops_provider"
# Layer -> the layers of ours it may import (besides itself and the package root's __version__).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "serving": {"core"},
    "hooks": {"core"},
    "links": set(),
    "notifications": {"core"},
    "triggers": {"core"},
    "operators": {"core", "hooks", "links", "triggers"},
    "factory": {"core", "operators", "notifications"},
    "testing": {"core", "factory", "operators"},
    "ui": {"core", "hooks", "operators"},
}
# Layers that must run without Airflow installed.
WITHOUT_AIRFLOW = {"core", "serving"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == ROOT and len(parts) > 1 else None


def _violations(layer: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module in _imports(path):
            target = _layer(module)
            uses_airflow = module == "airflow" or module.startswith("airflow.")
            crosses = target not in (None, layer, "__version__") and target not in ALLOWED[layer]
            if crosses or (uses_airflow and layer in WITHOUT_AIRFLOW):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("layer", sorted(layer for layer in ALLOWED if (PACKAGE / layer).is_dir()))
def test_layer_imports_only_the_layers_below_it(layer: str) -> None:
    assert _violations(layer) == []


def test_every_folder_of_the_package_has_a_layer_rule() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(ALLOWED), f"folders without a rule in ALLOWED: {sorted(folders - set(ALLOWED))}"
