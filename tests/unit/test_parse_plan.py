"""The plan cache: an unchanged config re-parses without the schema; changes and broken files re-validate."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops_provider.core.training.job import TrainingJob
from airflow_mlops_provider.factory import plan as plans
from airflow_mlops_provider.factory.loader import ConfigError, load_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "cancer.yaml"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MLOPS_PLAN_CACHE", str(folder))
    return folder


def _config(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "cancer.yaml"
    path.write_text(text if text is not None else EXAMPLE.read_text())
    return path


def test_plan_is_cached_and_equals_the_validated_config(tmp_path: Path, cache: Path):
    path = _config(tmp_path)
    first = plans.load_plan(path)
    (stored,) = cache.glob("*.json")
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert plans.PipelinePlan.from_json(json.loads(stored.read_text())) == first == load_pipeline(path).plan()
    assert plans.load_plan(path) == first
    points = first.training.grid_points
    assert [(p["lr"], p["epochs"], p["hidden"]) for p in points] == [
        (0.003, 25, [32, 16]),
        (0.01, 25, [32, 16]),
    ]


def test_a_cached_plan_builds_without_importing_the_schema(tmp_path: Path, cache: Path):
    path = _config(tmp_path)
    plans.load_plan(path)
    code = (
        "import sys\n"
        "from airflow_mlops_provider.factory.plan import load_plan\n"
        f"plan = load_plan({str(path)!r})\n"
        "print(plan.registered_model_name, 'airflow_mlops_provider.factory.config' in sys.modules, "
        "'pydantic' in sys.modules and 'yaml' in sys.modules)\n"
    )
    env = {**os.environ, "MLOPS_PLAN_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[:2] == ["cancer_diagnosis", "False"]


def test_edits_and_referenced_environment_change_the_key(tmp_path: Path, cache: Path):
    raw = EXAMPLE.read_bytes()
    env = {"MLOPS_DATA_ROOT": "file:///a", "UNRELATED": "x"}
    key = plans.plan_key(raw, env)
    assert plans.plan_key(raw, {**env, "UNRELATED": "y"}) == key
    assert plans.plan_key(raw, {**env, "MLOPS_DATA_ROOT": "file:///b"}) != key
    assert plans.plan_key(raw + b"\n# comment\n", env) != key
    path = _config(tmp_path)
    assert plans.load_plan(path).training.timeout == 900
    path.write_text(EXAMPLE.read_text().replace("timeout: 15m", "timeout: 20m"))
    assert plans.load_plan(path).training.timeout == 1200


def test_broken_configs_are_never_cached(tmp_path: Path, cache: Path):
    path = _config(
        tmp_path, EXAMPLE.read_text().replace("target: diagnosis", "target: diagnosis\n  epochz: 3")
    )
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"training\.epochz: unknown key"):
            plans.load_plan(path)
    assert not list(cache.glob("*.json"))


def test_unsafe_or_disabled_cache_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("MLOPS_PLAN_CACHE", str(shared))
    assert plans.cache_dir() is None
    monkeypatch.setenv("MLOPS_PLAN_CACHE", "off")
    assert plans.cache_dir() is None
    assert plans.load_plan(_config(tmp_path)).name == "cancer"


def test_plan_is_read_only(tmp_path: Path, cache: Path):
    plan = plans.load_plan(_config(tmp_path))
    with pytest.raises(AttributeError, match="read-only"):
        plan.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        plan.training.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        _ = plan.no_such_field  # type: ignore[attr-defined]


def test_training_jobs_are_training_job_arguments(tmp_path: Path, cache: Path):
    """The builder's training parameters come from TrainingJob's fields; each grid point is a valid job."""
    from airflow_mlops_provider.factory.builder import training_jobs

    plan = plans.load_plan(_config(tmp_path))
    names = {f.name for f in dataclasses.fields(TrainingJob)}
    jobs = training_jobs(plan)
    assert len(jobs) == len(plan.training.grid_points) == 2
    for job in jobs:
        assert set(job) <= names, set(job) - names
        assert job["missing_target"] == "drop"
        TrainingJob(snapshot={"sha256": "0" * 64}, **job).validate()


def test_key_follows_the_allow_list_not_other_variables(tmp_path: Path):
    """A variable a config may not expand must not reach the key; allowing it must change the key."""
    raw = b"description: ${AWS_SECRET_ACCESS_KEY}\n"
    key = plans.plan_key(raw, {"AWS_SECRET_ACCESS_KEY": "a"})
    assert plans.plan_key(raw, {"AWS_SECRET_ACCESS_KEY": "b"}) == key
    allowed = {"MLOPS_CONFIG_ENV_ALLOW": "AWS_SECRET_ACCESS_KEY"}
    assert plans.plan_key(raw, {**allowed, "AWS_SECRET_ACCESS_KEY": "a"}) != key


def test_a_plan_that_expanded_a_secret_is_not_written_to_disk(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLOPS_TEAM_TOKEN", "token-value-123")
    text = EXAMPLE.read_text()
    path = _config(tmp_path, re.sub(r"(?m)^description: .*$", "description: team ${MLOPS_TEAM_TOKEN}", text))
    for _ in range(2):
        assert plans.load_plan(path).description == "team token-value-123"
    assert not list(cache.glob("*.json"))
