"""The one name check every stage uses: path components, URIs under the root, registry model names."""

from __future__ import annotations

import pytest

from airflow_mlops_provider.core.paths import UnsafeNameError, check_model_name, ensure_within, safe_component


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a..b", "x" * 129])
def test_unsafe_path_components_are_refused(name):
    with pytest.raises(UnsafeNameError, match="is not a safe name"):
        safe_component(name, "pipeline")


def test_uris_outside_the_root_are_refused_after_normalising():
    root = "file:///data/art"
    assert ensure_within(root, "file:///data/art/p/snapshots/ab", "snapshot")
    for uri in ("file:///data/art/../elsewhere", "file:///data/artx/p", "s3://data/art/p", "/etc/passwd"):
        with pytest.raises(UnsafeNameError, match="lies outside the artifact root"):
            ensure_within(root, uri, "snapshot")


@pytest.mark.parametrize("name", ["churn", "Churn Model-2", "o'brien", 'say "hi"', "a.b_c", "x" * 256])
def test_model_names_mlflow_accepts_pass(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../escape", "'/'"),
        ("team:churn", "':'"),
        ("a%b", "'%'"),
        ("a\\b", "'\\\\'"),
        ("", "empty"),
        ("   ", "empty"),
        (".", "relative path"),
        ("..x", "relative path"),
        ("x" * 257, "longer than 256"),
        ('it\'s "quoted"', "both"),
    ],
)
def test_model_names_mlflow_or_its_filters_refuse_fail_with_the_reason(name, why):
    with pytest.raises(UnsafeNameError, match="not valid in the MLflow registry") as err:
        check_model_name(name)
    assert why.replace("\\\\", "\\") in str(err.value)


def test_mlflow_itself_refuses_what_we_refuse():
    """Our rules are MLflow's plus the quote rule: what we refuse for MLflow's reasons, MLflow refuses."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.file_store import _validate_model_name

    for name in ("../../escape", "team:churn", "a%b", ".", "..x", "   "):
        with pytest.raises(MlflowException):
            _validate_model_name(name)
    for name in ("churn", "o'brien", "Churn Model-2"):
        _validate_model_name(name)
