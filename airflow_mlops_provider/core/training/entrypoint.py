"""Resolve ``"package.module:function"`` training entry points with errors that name the problem."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from airflow_mlops_provider.core.training.errors import EntryPointError

_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def check_entry_point_syntax(entry_point: str) -> tuple[str, str]:
    """Split ``"module:attr"``; raise :class:`EntryPointError` when it is not of that form."""
    if not isinstance(entry_point, str) or not _PATTERN.match(entry_point.strip()):
        raise EntryPointError(
            f"Malformed training entry point {entry_point!r}: expected 'package.module:function'"
        )
    module, attr = entry_point.strip().split(":", 1)
    return module, attr


def check_entry_point_static(entry_point: str) -> None:
    """Check that the module exists and defines the name, without importing (running) it.

    The task process stays free of torch and of user code; the worker imports the entry point
    for real (and reports a non-callable one as a fatal error). Modules that are not plain
    Python sources, or that define names dynamically (``__getattr__``, ``import *``), pass.
    """
    module_name, attr = check_entry_point_syntax(entry_point)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as err:
        spec, reason = None, str(err)
    else:
        reason = "no such module"
    if spec is None:
        raise EntryPointError(
            f"Training entry point {entry_point!r}: cannot import module {module_name!r} ({reason})"
        )
    origin = spec.origin or ""
    if not origin.endswith(".py"):
        return
    try:
        tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        raise EntryPointError(f"Training entry point {entry_point!r}: cannot read {origin}: {err}") from err
    names = _top_level_names(tree)
    if "*" in names or "__getattr__" in names:
        return
    if attr.split(".")[0] not in names:
        raise EntryPointError(
            f"Training entry point {entry_point!r}: {module_name} has no attribute {attr!r}"
        )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try):
            body = [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
            names |= _top_level_names(ast.Module(body=body, type_ignores=[]))
    return names


def resolve_entry_point(entry_point: str) -> Callable[[Any], Any]:
    """Import the module and return the callable, or raise :class:`EntryPointError`."""
    module_name, attr = check_entry_point_syntax(entry_point)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise EntryPointError(
            f"Training entry point {entry_point!r}: cannot import module {module_name!r} ({err})"
        ) from err
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise EntryPointError(
                f"Training entry point {entry_point!r}: {module_name} has no attribute {attr!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise EntryPointError(
            f"Training entry point {entry_point!r} is not callable ({type(target).__name__})"
        )
    return cast(Callable[[Any], Any], target)
