"""Resolve ``"package.module:function"`` training entry points with errors that name the problem."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from airflow_mlops_provider.core.training.errors import EntryPointError

_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
DEFAULT_ENTRY_POINT = "airflow_mlops_provider.core.training.tabular:train"


def check_entry_point_syntax(entry_point: str) -> tuple[str, str]:
    """Split ``"module:attr"``; raise :class:`EntryPointError` when it is not of that form."""
    if not isinstance(entry_point, str) or not _PATTERN.match(entry_point.strip()):
        raise EntryPointError(
            f"Malformed training entry point {entry_point!r}: expected 'package.module:function'"
        )
    module, attr = entry_point.strip().split(":", 1)
    return module, attr


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
    return target
