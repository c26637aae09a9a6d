"""The generated config reference (docs/) covers every field of the pipeline schema, described.

`make test` builds the docs with warnings as errors; this test checks the content: every dotted
path of :class:`PipelineConfig` and of the models it nests or borrows appears in the generated
reference text, and a field without a description cannot be rendered.
"""

from __future__ import annotations

import importlib.util
import sys
import typing
from pathlib import Path
from types import ModuleType, UnionType

import pytest
from pydantic import BaseModel, Field, create_model

from airflow_mlops_provider.factory.config import PipelineConfig

EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext" / "mlops_docs.py"


@pytest.fixture(scope="module")
def docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlops_docs_under_test", EXT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _nested(annotation: typing.Any) -> list[tuple[str, type[BaseModel]]]:
    """Models inside an annotation, with the path suffix the reference uses for them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin is typing.Annotated:
        return _nested(args[0])
    if origin is list:
        return [("[]" + s, m) for s, m in _nested(args[0])]
    if origin is dict:
        return [(".<key>" + s, m) for s, m in _nested(args[1])]
    if origin in (typing.Union, UnionType):
        return [pair for arg in args for pair in _nested(arg)]
    return []


def _paths(model: type[BaseModel], prefix: str, borrowed: dict[str, type[BaseModel]]) -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        for suffix, sub in _nested(field.annotation):
            paths += _paths(sub, path + suffix, borrowed)
        if path in borrowed:
            paths += _paths(borrowed[path], path, borrowed)
    return paths


def test_reference_names_every_schema_field(docs: ModuleType) -> None:
    borrowed = {path: docs._load(ref) for path, ref in docs.BORROWED.items()}
    paths = _paths(PipelineConfig, "", borrowed)
    text = docs.render_config()
    missing = [p for p in paths if f"``{p}``" not in text]
    assert not missing, f"fields missing from the generated config reference: {missing}"
    # the sections borrowed from core schemas are really there (gate, drift, hyperparameters)
    assert {"gate.min_gain", "monitoring.drift.alpha", "training.hyperparameters.epochs"} <= set(paths)
    assert "monitoring.drift.columns.<key>.threshold" in paths


def test_every_field_has_a_description(docs: ModuleType) -> None:
    fields = docs.config_fields()
    assert all(f.description.strip() for f in fields)
    assert {f.path for f in fields} >= {"name", "data.source.uri", "gate.on_fail"}


def test_an_undescribed_field_fails_the_build(docs: ModuleType) -> None:
    described = create_model("Described", ok=(int, Field(default=1, description="fine")))
    assert docs._walk("", described)
    bare = create_model("Bare", ok=(int, Field(default=1, description="fine")), bare=(int, 2))
    with pytest.raises(docs.UndocumentedField, match="'bare' has no description"):
        list(docs._walk("", bare))


def test_field_types_and_defaults_are_rendered(docs: ModuleType) -> None:
    by_path = {f.path: f for f in docs.config_fields()}
    assert by_path["training.timeout"].type == "duration; > 0"
    assert by_path["training.timeout"].default == "3600"
    assert by_path["name"].default == "required"
    assert by_path["data.split.by"].type == '"hash" | "time" | "random"'
