"""Sphinx extension: the reference pages generated from the code at every build.

* ``generated/config.rst``: the pipeline config reference, walked from the pydantic schema
  (:class:`~airflow_mlops_provider.factory.config.PipelineConfig` and every model it nests or
  borrows). Each field's path, type, constraints, default and description come from the
  schema; a field without a description stops the build, so the schema cannot grow an
  undocumented key.
* ``generated/api/<package>.rst``: one ``automodule`` per module of the Airflow-facing packages
  (operators, hooks, links, notifications), discovered on disk, so a new or renamed module
  appears without editing the docs.

The module also runs without Sphinx (``python docs/_ext/mlops_docs.py`` prints the config
reference); the unit tests import :func:`config_fields` and :func:`render_config` from it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
ROOT_MODEL = "airflow_mlops_provider.factory.config:PipelineConfig"

# Sections validated by another module's schema while the pipeline config keeps them as plain
# mappings: their keys are that schema's fields. A path here that no longer exists in the schema,
# or that became a typed model, stops the build (see ``_borrowed``), so this table cannot go stale.
BORROWED: dict[str, str] = {
    "gate": "airflow_mlops_provider.core.gate:GateConfig",
    "monitoring.drift": "airflow_mlops_provider.core.drift.config:DriftConfig",
    "rollout": "airflow_mlops_provider.core.rollout.config:RolloutConfig",
    "training.hyperparameters": "airflow_mlops_provider.core.training.hyperparameters:TabularHyperparameters",
}
# Keys a borrowed section accepts on top of the borrowed schema (checked by the pipeline config's
# own validator): path -> (type, default, description).
BORROWED_EXTRA: dict[str, dict[str, tuple[str, str, str]]] = {
    "gate": {
        "on_fail": (
            '"fail" | "skip"',
            '"skip"',
            "A rejected challenger: skip: the gate succeeds and skips everything downstream; "
            "fail: the gate task fails (no retry) naming the reasons. The champion never moves.",
        )
    },
}
BORROWED_NOTE = {
    "training.hyperparameters": "The built-in trainer's hyperparameters (also the keys of "
    "``training.grid``). A custom ``entry_point`` declares its own schema with "
    "``training.hyperparameters_schema``; without one its hyperparameters are passed as they are.",
}
# Validators that give a plain type its meaning in the config.
VALIDATOR_TYPES = {"_seconds": "duration", "_cron": "cron", "_uri": "URI", "check_model_name": "model name"}
PACKAGE = "airflow_mlops_provider"
API_PACKAGES = {
    "operators": "Operators",
    "hooks": "Hooks",
    "links": "Extra links",
    "notifications": "Notifications",
    "triggers": "Triggers",
}


class UndocumentedField(Exception):
    """A schema field has no description."""


@dataclass(frozen=True)
class FieldDoc:
    path: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    path: str
    model: type[BaseModel]
    note: str
    fields: list[FieldDoc]


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """Nested models of an annotation, with the path suffix of their keys ('', '[]', '.<key>')."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
    elif origin is typing.Annotated:
        yield from _models(typing.get_args(annotation)[0])
    elif origin in (list, tuple, set, frozenset):
        for suffix, model in _models(typing.get_args(annotation)[0]):
            yield "[]" + suffix, model
    elif origin is dict:
        for suffix, model in _models(typing.get_args(annotation)[1]):
            yield ".<key>" + suffix, model
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models(arg)


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "None"
    if annotation is Any:
        return "any"
    if origin is typing.Annotated:
        named = [_validator_type(m) for m in args[1:]]
        return next((n for n in named if n), None) or _type(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type(a) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _validator_type(meta: Any) -> str | None:
    func = getattr(meta, "func", None)
    return VALIDATOR_TYPES.get(getattr(func, "__name__", ""))


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    for meta in metadata:
        for attr, symbol in symbols.items():
            value = getattr(meta, attr, None)
            if value is not None and isinstance(meta, annotated_types.BaseMetadata):
                out.append(f"{symbol} {value}")
        if isinstance(meta, annotated_types.MinLen):
            out.append(f"at least {meta.min_length} item(s)")
        if isinstance(meta, annotated_types.MaxLen):
            out.append(f"at most {meta.max_length} item(s)")
        if getattr(meta, "pattern", None):
            out.append(f"matches {meta.pattern}")
    return out


def _field_type(field: FieldInfo) -> str:
    named = [_validator_type(m) for m in field.metadata]
    base = next((n for n in named if n), None) or _type(field.annotation)
    return "; ".join([base, *_constraints(field.metadata)])


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "None"
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _describe(path: str, field: FieldInfo) -> str:
    text = field.description
    if not text:
        models = [m for suffix, m in _models(field.annotation) if suffix == ""]
        text = inspect.getdoc(models[0]) if len(models) == 1 and models[0].__doc__ else ""
        text = text.split("\n\n")[0] if text else ""
    if not text:
        raise UndocumentedField(
            f"config field {path!r} has no description: add Field(..., description=...) in the schema"
        )
    return " ".join(text.split())


def _walk(path: str, model: type[BaseModel], note: str = "") -> Iterator[Section]:
    fields = []
    nested: list[tuple[str, type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        full = f"{path}.{name}" if path else name
        fields.append(FieldDoc(full, _field_type(field), _default(field), _describe(full, field)))
        for suffix, sub in _models(field.annotation):
            nested.append((full + suffix, sub, ""))
        if full in BORROWED:
            nested.append((full, _borrowed(full, field), BORROWED_NOTE.get(full, "")))
    for extra, (kind, default, text) in BORROWED_EXTRA.get(path, {}).items():
        fields.append(FieldDoc(f"{path}.{extra}", kind, default, text))
    yield Section(path, model, note, fields)
    for sub_path, sub, sub_note in nested:
        yield from _walk(sub_path, sub, sub_note)


def _borrowed(path: str, field: FieldInfo) -> type[BaseModel]:
    if any(True for _ in _models(field.annotation)):
        raise UndocumentedField(
            f"config field {path!r} is now a typed model: remove it from BORROWED in {__file__}"
        )
    return _load(BORROWED[path])


def sections(root: str = ROOT_MODEL) -> list[Section]:
    """Every section of the config, depth first; raises :class:`UndocumentedField`."""
    model = _load(root)
    walked = list(_walk("", model))
    missing = sorted(set(BORROWED) - {s.path for s in walked})
    if missing:
        raise UndocumentedField(f"BORROWED names config paths that do not exist: {missing}")
    return walked


def config_fields(root: str = ROOT_MODEL) -> list[FieldDoc]:
    return [f for s in sections(root) for f in s.fields]


_INLINE = re.compile(r"([\\*`_|])")


def _text(value: str) -> str:
    """Plain text safe inside reST (no accidental emphasis, references or substitutions)."""
    return _INLINE.sub(r"\\\1", value)


PLAIN_DEFAULTS = ("required", "see below")


def _literal(value: str) -> str:
    return f"``{value}``" if "`" not in value else _text(value)


def _anchor(path: str) -> str:
    return "config-" + (re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root")


def render_config(root: str = ROOT_MODEL) -> str:
    """The config reference as reST."""
    out = [
        ".. This page is generated from the pydantic schema by docs/_ext/mlops_docs.py; do not edit.",
        "",
        "Pipeline config reference",
        "=========================",
        "",
        "Every key of a pipeline file, generated from the schema "
        f"(:class:`{root.replace(':', '.')}`) at each docs build. Types: a *duration* is a number of "
        "seconds or ``1d2h3m4s`` (any subset, in that order); a *cron* is a 5-field cron expression "
        "or a preset such as ``@daily``; a *URI* starts with a scheme such as ``s3://`` or "
        "``file://``; a *mapping* is a section of its own, listed below. In paths, ``[]`` stands "
        "for any item of a list and ``<key>`` for any key of a mapping.",
        "",
    ]
    for section in sections(root):
        title = f"``{section.path}``" if section.path else "Top level"
        doc = inspect.getdoc(section.model) or ""
        out += [f".. _{_anchor(section.path)}:", "", title, "-" * max(len(title), 3), ""]
        out += [f"*{section.model.__name__}* (``{section.model.__module__}``)", ""]
        if section.note:
            out += [section.note, ""]
        if doc:
            out += [doc, ""]
        out += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 25 20 12 43",
            "",
            "   * - Key",
            "     - Type",
            "     - Default",
            "     - Description",
        ]
        for f in section.fields:
            out += [
                f"   * - ``{f.path}``",
                f"     - {_literal(f.type)}",
                f"     - {_literal(f.default) if f.default not in PLAIN_DEFAULTS else f'*{f.default}*'}",
                f"     - {_text(f.description)}",
            ]
        out.append("")
    return "\n".join(out)


def render_api(package: str, title: str) -> str | None:
    """One page per package: its docstring, then every public module with its members."""
    try:
        pkg = importlib.import_module(f"airflow_mlops_provider.{package}")
    except ModuleNotFoundError:
        return None
    name = pkg.__name__
    out = [
        ".. This page is generated by docs/_ext/mlops_docs.py (one automodule per module); do not edit.",
        "",
        title,
        "=" * len(title),
        "",
        f".. automodule:: {name}",
        "",
    ]
    modules = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    for module in modules:
        full = f"{name}.{module}"
        out += [
            full,
            "-" * len(full),
            "",
            f".. automodule:: {full}",
            "   :members:",
            "   :show-inheritance:",
            "",
        ]
    return "\n".join(out)


def _import_target(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """What an import statement reaches: ``core``-style layer names inside the package, else the
    top-level package (stdlib left out)."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: -node.level]
            names = [".".join([*base, node.module] if node.module else base)]
        else:
            names = [node.module or ""]
        if names == [PACKAGE]:
            names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
    else:
        names = [alias.name for alias in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        if parts[0] == PACKAGE and len(parts) > 1:
            here = ROOT / PACKAGE / parts[1]
            out.append(
                f"{parts[1]}/"
                if here.is_dir()
                else here.name + ".py"
                if here.with_suffix(".py").exists()
                else "__init__.py"
            )
        elif parts[0] == "airflow":
            out.append(".".join(parts[:2]))
        elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
            out.append(parts[0])
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _scan(tree: ast.Module, module: str) -> tuple[set[str], set[str]]:
    """(imports run when the module is imported, imports run only inside functions)."""
    top: set[str] = set()
    deferred: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            (deferred if in_function else top).update(_import_target(node, module))
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return top, deferred


def render_imports() -> str:
    """Per folder of the package: what its modules import at import time and inside functions."""
    rows = [
        "| folder | imported when a module is imported | imported only inside functions |",
        "|---|---|---|",
    ]
    root = ROOT / PACKAGE
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.rglob("*.py")))
    for folder in [*folders, None]:
        files = sorted(folder.rglob("*.py")) if folder else sorted(root.glob("*.py"))
        top: set[str] = set()
        deferred: set[str] = set()
        for file in files:
            module = ".".join(file.relative_to(ROOT).with_suffix("").parts)
            if file.name == "__init__.py":
                module += ".__init__"
            t, d = _scan(ast.parse(file.read_text()), module)
            top |= t
            deferred |= d
        label = f"{folder.name}/" if folder else "top-level modules"
        own = {label} if folder else {f.name for f in files}
        top -= own
        deferred -= top | own
        rows.append(f"| `{label}` | {_names(top)} | {_names(deferred)} |")
    return "\n".join(rows) + "\n"


def _names(names: set[str]) -> str:
    return (
        ", ".join(f"`{n}`" for n in sorted(names, key=lambda n: (not n.endswith(("/", ".py")), n)))
        or "(none)"
    )


def _write(path: Path, text: str) -> None:
    """Write only on change, so Sphinx rebuilds only pages whose source moved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(srcdir: Path) -> None:
    out = srcdir / "generated"
    _write(out / "config.rst", render_config())
    _write(out / "imports.md.inc", render_imports())
    pages = []
    for package, title in API_PACKAGES.items():
        text = render_api(package, title)
        if text is not None:
            _write(out / "api" / f"{package}.rst", text)
            pages.append(package)
        else:
            (out / "api" / f"{package}.rst").unlink(missing_ok=True)
    toc = ["Python API", "==========", "", ".. toctree::", "   :maxdepth: 2", ""]
    _write(out / "api" / "index.rst", "\n".join([*toc, *(f"   {p}" for p in pages), ""]))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", lambda app: generate(Path(app.srcdir)))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    print(render_config())
