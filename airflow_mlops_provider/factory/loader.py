"""Load pipeline configs from YAML with errors that name the file, the field and the expectation."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_mlops_provider.factory import env as env_rules
from airflow_mlops_provider.factory.config import PipelineConfig

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(ValueError):
    """A pipeline config is invalid; ``problems`` lists ``(field path, expectation)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} error{'s' if len(problems) != 1 else ''}"
        lines = [f"{source}: invalid pipeline config ({count})"]
        lines += [f"  {path or '<root>'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def load_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML file with the C safe loader; syntax errors become a ConfigError with the line."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_Loader)  # CSafeLoader: the safe loader, in C
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(str(path), [("", f"invalid YAML at {where}: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [("", f"invalid YAML: {exc}")]) from None


def load_pipeline(path: str | os.PathLike[str]) -> PipelineConfig:
    """Load and validate one pipeline YAML file."""
    return parse_pipeline(load_yaml(path), source=str(path))


def parse_pipeline(
    data: Any, source: str = "<config>", env: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Validate a mapping (already parsed YAML or a Python dict) as a pipeline config.

    ``${NAME}`` references are expanded from ``env`` (default: the process environment) as far
    as :mod:`~airflow_mlops_provider.factory.env` allows; errors show ``${NAME}``, not the value.
    """
    if not isinstance(data, Mapping):
        kind = "an empty file" if data is None else type(data).__name__
        raise ConfigError(source, [("", f"expected a mapping of pipeline fields, got {kind}")])
    problems: list[tuple[str, str]] = []
    used: dict[str, str] = {}
    expanded = _expand(data, (), os.environ if env is None else env, problems, used)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = PipelineConfig.model_validate(expanded)
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in _describe(err)]
        raise ConfigError(source, [(path, env_rules.shown(text, used)) for path, text in problems]) from None
    config._env = used
    return config


def _expand(
    value: Any,
    path: tuple[Any, ...],
    env: Mapping[str, str],
    problems: list[tuple[str, str]],
    used: dict[str, str],
) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; record values taken from ``env``
    in ``used``, and variables that are not allowed or not set in ``problems``."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if not env_rules.allowed(name, env):
                problems.append(
                    (_dotted(path), f"environment variable {name} is not allowed here ({env_rules.RULE})")
                )
                return match.group(0)
            if name in env:
                used[name] = env[name]
                return env[name]
            if default is not None:
                return default
            problems.append(
                (_dotted(path), f"environment variable {name} is not set (use ${{{name}:-default}})")
            )
            return match.group(0)

        return _ENV.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, (*path, k), env, problems, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, problems, used) for i, v in enumerate(value)]
    return value


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(err: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One pydantic error as ``(field path, expectation)`` pairs; drops pydantic's internal loc parts."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    kind = err["type"]
    given = err.get("input")
    if kind == "nested_config":  # a section validated by its component's own schema (gate, drift)
        return [(_dotted((*loc, *sub)), message) for sub, message in err["ctx"]["problems"]]
    if kind == "extra_forbidden":
        return [(_dotted(loc), f"unknown key{_allowed(loc)}")]
    if kind == "missing":
        return [(_dotted(loc), "required field is missing")]
    message = err["msg"].removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error") or " got " in message:
        return [(_dotted(loc), message)]
    return [(_dotted(loc), f"{_lower(message)}, got {_short(given)}")]


def _allowed(loc: tuple[Any, ...]) -> str:
    """Suggest the closest allowed key and list all keys allowed where an unknown key was found."""
    model: Any = PipelineConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = _model_of(field.annotation)
        if model is None:
            return ""
    fields = list(getattr(model, "model_fields", None) or ())
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f" (expected one of: {', '.join(fields)}{hint})"


def _model_of(annotation: Any) -> Any:
    from pydantic import BaseModel

    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        for inner in getattr(candidate, "__args__", ()) or ():
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _lower(message: str) -> str:
    return message[:1].lower() + message[1:]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
