"""Pipeline config schema: every error names the file, the field path and what was expected."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from airflow_mlops_provider.factory import loader
from airflow_mlops_provider.factory.loader import ConfigError, load_pipeline, parse_pipeline

PIPELINES = sorted((Path(__file__).resolve().parents[2] / "dags" / "pipelines").glob("*.yaml"))

MINIMAL = {
    "name": "churn",
    "artifact_root": "s3://ml-artifacts",
    "data": {"source": {"bucket": "raw-data", "prefix": "churn/", "glob": "*.parquet", "format": "parquet"}},
    "training": {"target": "churned", "task": "classification"},
}


def _errors(data: dict, tmp_path: Path, name: str = "churn.yaml") -> ConfigError:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert str(info.value).startswith(f"{path}: invalid pipeline config")
    return info.value


def _with(**changes: object) -> dict:
    data = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_example_pipelines_are_valid(path: Path):
    config = load_pipeline(path)
    assert path.stem == config.name


def test_minimal_config_gets_documented_defaults():
    config = parse_pipeline(MINIMAL)
    assert config.data.source.resolved == "s3://raw-data/churn/*.parquet"
    assert config.data.source.base_uri == "s3://raw-data/churn/"
    assert config.primary_metric == "roc_auc"
    assert config.training.grid_points() == [{}]
    assert config.triggers.schedule is None and not config.triggers.new_data.enabled
    assert config.registered_model_name == "churn"


def test_grid_fans_out_merged_with_base_hyperparameters():
    config = parse_pipeline(
        _with(training__hyperparameters={"epochs": 5}, training__grid={"lr": [1, 2], "hidden": [[8]]})
    )
    assert config.training.grid_points() == [
        {"epochs": 5, "lr": 1, "hidden": [8]},
        {"epochs": 5, "lr": 2, "hidden": [8]},
    ]


def test_builtin_trainer_hyperparameters_are_checked_with_a_suggestion(tmp_path: Path):
    hyperparameters = {"feature_column": ["a"], "epochs": "ten", "hidden": [16, 0]}
    problems = dict(
        _errors(
            _with(training__hyperparameters=hyperparameters, training__grid={"lrr": [0.1]}), tmp_path
        ).problems
    )
    assert "did you mean 'feature_columns'?" in problems["training.hyperparameters.feature_column"], problems
    assert "valid integer" in problems["training.hyperparameters.epochs"]
    assert "greater than 0" in problems["training.hyperparameters.hidden.1"]
    assert "did you mean 'lr'?" in problems["training.grid.lrr"]
    bad_point = _with(training__grid={"epochs": [5, -1]})
    assert "greater than 0" in dict(_errors(bad_point, tmp_path).problems)["training.grid.epochs"]


def test_custom_entry_point_hyperparameters_pass_as_they_are_unless_it_declares_a_schema(tmp_path: Path):
    custom = {"training__entry_point": "tests.unit.test_training_fns:slow_tabular"}
    free = parse_pipeline(_with(**custom, training__hyperparameters={"anything": {"goes": 1}}))
    assert free.training.grid_points() == [{"anything": {"goes": 1}}]

    declared = {**custom, "training__hyperparameters_schema": "tests.unit.test_training_fns:SlowParams"}
    assert parse_pipeline(_with(**declared, training__hyperparameters={"pause_s": 0.1, "epochs": 2}))
    problems = dict(_errors(_with(**declared, training__hyperparameters={"pause": 0.1}), tmp_path).problems)
    assert "did you mean 'pause_s'?" in problems["training.hyperparameters.pause"], problems

    missing = {**custom, "training__hyperparameters_schema": "tests.unit.test_training_fns:NoSuchModel"}
    problems = dict(_errors(_with(**missing), tmp_path).problems)
    assert "cannot import hyperparameter schema" in problems["training.hyperparameters_schema"], problems


def test_missing_target_settings_reach_the_validation_checks(tmp_path: Path):
    default = parse_pipeline(MINIMAL)
    assert (default.training.missing_target, default.training.max_missing_target_share) == ("drop", 0.05)
    assert default.plan().validation.builtin_checks == {
        "target": "churned",
        "max_target_null_fraction": 0.05,
    }
    strict = parse_pipeline(_with(training__missing_target="fail"))
    assert strict.builtin_checks() == {"target": "churned", "max_target_null_fraction": 0.0}
    assert parse_pipeline(_with(validation={"builtin_checks": False})).builtin_checks() is False
    problems = dict(_errors(_with(training__max_missing_target_share=1.5), tmp_path).problems)
    assert "less than or equal to 1" in problems["training.max_missing_target_share"]


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path):
    error = _errors(_with(training__grdi={"lr": [1]}, data__source__bukcet="x", colour="red"), tmp_path)
    problems = dict(error.problems)
    assert "did you mean 'grid'?" in problems["training.grdi"]
    assert "unknown key" in problems["data.source.bukcet"]
    assert problems["colour"].startswith("unknown key (expected one of: name, description")


def test_missing_fields_and_wrong_types_name_the_path(tmp_path: Path):
    data = _with(training__timeout="soon", training__workers=0, triggers__schedule="every day")
    del data["training"]["target"]
    problems = dict(_errors(data, tmp_path).problems)
    assert problems["training.target"] == "required field is missing"
    assert "expected a duration such as 30m" in problems["training.timeout"]
    assert problems["training.workers"] == "input should be greater than or equal to 1, got 0"
    assert "expected a 5-field cron expression" in problems["triggers.schedule"]


@pytest.mark.parametrize(
    ("changes", "path", "expected"),
    [
        ({"artifact_root": "/local/path"}, "artifact_root", "expected a URI starting with one of s3://"),
        ({"name": "Bad-Name"}, "name", "string should match pattern"),
        ({"data__source__uri": "s3://b/k"}, "data.source", "expected exactly one of 'uri' or 'bucket'"),
        ({"data__split": {"fractions": {"train": 0.5, "test": 0.2}}}, "data.split.fractions", "summing to 1"),
        ({"evaluation": {"split": "validation"}, "data__split": {"fractions": {"train": 0.8, "test": 0.2}}},
         "", "evaluation.split 'validation' is not produced by data.split"),
        ({"triggers": {"drift": True}}, "", "triggers.drift needs a 'monitoring' section"),
        ({"training__grid": {"a": list(range(9)), "b": list(range(9))}}, "training.grid",
         "at most 64 grid points"),
        ({"training__grid": {"lr": [1]}, "training__hyperparameters": {"lr": 2}}, "training",
         "appear in both 'hyperparameters' and 'grid'"),
        ({"notifications": {"on_promotion": [{"type": "webhook"}]}}, "notifications.on_promotion[0]",
         "the webhook notifier needs 'url'"),
        ({"approval": "yes please"}, "approval", "input should be a valid dictionary"),
        ({"triggers": {"schedule": "99 * * * *"}}, "triggers.schedule", "expected a valid cron expression"),
        ({"gate": {"min": {"accuracy": 0.8}}}, "gate.min", "unknown key (expected one of: thresholds,"),
        ({"gate": {"thresholds": {"rmse": 3.0}}}, "", "['rmse'] are not computed for a classification task"),
        ({"gate": {"max_regression": {"accuracy": -1}}}, "gate.max_regression", "must be >= 0"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "drift": {"alpha": 2}}}, "monitoring.drift.alpha",
         "less than 1"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "window": {"by": "partition"}}},
         "monitoring.window", "a partition window needs 'partition'"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "window": {"by": "column"}}},
         "monitoring.window", "a column window needs 'column'"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "performance": {"rule": "floor"}}},
         "monitoring.performance", "rule 'floor' needs 'floor'"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "performance": {"min_label": 5}}},
         "monitoring.performance.min_label", "did you mean 'min_labels'?"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "performance": {"metric": "rmse"}}}, "",
         "monitoring.performance metric(s) ['rmse'] are not computed for a classification task"),
        ({"monitoring": {"source": {"uri": "file:///l/"}}, "triggers": {"performance": True}}, "",
         "triggers.performance needs monitoring.labels"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "score": False, "performance": {"min_labels": 5}}},
         "", "monitoring.performance needs monitoring.score: true"),
        ({"monitoring": {"source": {"uri": "file:///l/"}, "labels": {"source": {"uri": "file:///y/"},
          "max_delay": "soon"}}}, "monitoring.labels.max_delay", "expected a duration"),
    ],
)  # fmt: skip
def test_field_errors(tmp_path: Path, changes: dict, path: str, expected: str):
    problems = dict(_errors(_with(**changes), tmp_path).problems)
    assert expected in problems[path], problems


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: churn\ntraining:\n  target: [unclosed\n")
    with pytest.raises(
        ConfigError, match=r"broken.yaml: invalid pipeline config .*\n  <root>: invalid YAML at line"
    ):
        load_pipeline(path)


def test_empty_file_and_non_mapping(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="expected a mapping of pipeline fields, got an empty file"):
        load_pipeline(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="got list"):
        load_pipeline(path)


def test_yaml_is_loaded_safely_with_the_c_loader(tmp_path: Path):
    assert loader._Loader is yaml.CSafeLoader
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_pipeline(path)


def test_environment_variables_are_expanded_or_reported():
    data = _with(artifact_root="${MLOPS_ROOT}", data__source={"uri": "${MLOPS_DATA:-file:///tmp/d}/x/"})
    config = parse_pipeline(data, env={"MLOPS_ROOT": "s3://from-env"})
    assert config.artifact_root == "s3://from-env"
    assert config.data.source.resolved == "file:///tmp/d/x/"
    with pytest.raises(ConfigError) as info:
        parse_pipeline(data, source="p.yaml", env={})
    assert info.value.problems == [
        ("artifact_root", "environment variable MLOPS_ROOT is not set (use ${MLOPS_ROOT:-default})")
    ]


def test_only_allow_listed_environment_variables_are_expanded():
    """A YAML author named ``${AWS_SECRET_ACCESS_KEY}`` and the dag-processor's secret reached the UI."""
    env = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "TEAM_ROOT": "s3://team-root",
        "MLOPS_CONFIG_ENV_ALLOW": "OTHER, TEAM_ROOT",
    }
    data = _with(
        description="${AWS_SECRET_ACCESS_KEY}",
        owner="${AWS_SECRET_ACCESS_KEY:-anyone}",
        artifact_root="${TEAM_ROOT}",
    )
    with pytest.raises(ConfigError) as info:
        parse_pipeline(data, source="p.yaml", env=env)
    allowed = "only MLOPS_* and the names listed in MLOPS_CONFIG_ENV_ALLOW are expanded"
    assert info.value.problems == [
        ("description", f"environment variable AWS_SECRET_ACCESS_KEY is not allowed here ({allowed})"),
        ("owner", f"environment variable AWS_SECRET_ACCESS_KEY is not allowed here ({allowed})"),
    ]
    assert "aws-secret-value" not in str(info.value)
    config = parse_pipeline(_with(artifact_root="${TEAM_ROOT}"), env=env)
    assert config.artifact_root == "s3://team-root"


def test_errors_show_the_variable_not_its_value():
    env = {"MLOPS_RETRIES": "not-a-number-but-a-secret"}
    with pytest.raises(ConfigError) as info:
        parse_pipeline(_with(defaults={"retries": "${MLOPS_RETRIES}"}), env=env)
    assert "not-a-number-but-a-secret" not in str(info.value)
    assert "${MLOPS_RETRIES}" in str(info.value)


def test_null_markers_of_each_source_reach_its_ingest_task():
    from airflow_mlops_provider.factory.builder import build_pipeline

    config = parse_pipeline(
        _with(data__source__null_values=["", "-"], monitoring={"source": {"uri": "file:///live/"}})
    )
    dags = build_pipeline(config)
    assert dags["retrain_churn"].get_task("ingest").csv_options == {"null_values": ["", "-"]}
    assert dags["monitor_churn"].get_task("ingest_live").csv_options is None  # the reader's default markers


def test_monitoring_windows_labels_and_performance_are_resolved_in_the_plan():
    config = parse_pipeline(
        _with(
            monitoring={
                "schedule": "0 */2 * * *",
                "source": {"uri": "s3://live/churn/", "glob": "*.parquet"},
                "window": {"by": "partition", "partition": "dt={{ ds }}/"},
                "labels": {"source": {"bucket": "labels", "prefix": "churn/"}, "id_column": "customer"},
            },
            triggers={"performance": True},
        )
    )
    monitoring = config.plan().monitoring
    assert monitoring is not None and monitoring.labels is not None
    assert monitoring.window.length == 7200  # the schedule's period
    assert monitoring.windowed_source == "s3://live/churn/dt={{ ds }}/*.parquet"
    assert monitoring.labels.windowed_source == "s3://labels/churn/"  # by mtime: the source itself
    assert (monitoring.labels.target, monitoring.labels.id_column) == ("churned", "customer")
    assert monitoring.performance == {"metric": "roc_auc", "metrics": None}  # defaults, metric resolved
    assert config.plan().triggers.performance is True
    plain = parse_pipeline(
        _with(monitoring={"source": {"uri": "s3://live/churn/"}, "window": {"length": "30m"}})
    )
    assert plain.plan().monitoring.performance is None  # no labels, no settings: not measured
    assert plain.plan().monitoring.window.length == 1800


def test_rollout_settings_reach_the_plan_and_the_retrain_dag(tmp_path: Path):
    from airflow_mlops_provider.factory.builder import build_pipeline

    direct = build_pipeline(parse_pipeline(MINIMAL))["retrain_churn"]
    assert "promote" in direct.task_dict and "rollout" not in direct.task_dict
    config = parse_pipeline(
        _with(rollout={"strategy": "canary", "service_urls": ["http://predict:8080"], "hold": "5m"})
    )
    plan = config.plan()
    assert plan.rollout["hold"] == 300 and plan.rollout["steps"] == [5, 25, 50, 100]
    assert plan.rollout_s == 4 * (3600 + 15)
    rollout = build_pipeline(config)["retrain_churn"].get_task("rollout")
    assert rollout.rollout == plan.rollout and rollout.upstream_task_ids == {"gate"}
    assert rollout.execution_timeout.total_seconds() == plan.rollout_s + 1800  # every step's longest wait
    assert rollout.pool == "mlops_promote_churn"
    problems = _errors(_with(rollout={"strategy": "shadow", "hold": "soon"}), tmp_path).problems
    assert [field for field, _ in problems] == ["rollout"]
    assert "expected a duration" in problems[0][1]
    problems = _errors(_with(rollout={"strategy": "shadow"}), tmp_path).problems
    assert problems == [
        (
            "rollout",
            "rollout strategy 'shadow' needs service_urls (the service's /metrics), "
            "got {'strategy': 'shadow'}",
        )
    ]


def test_a_multi_node_job_becomes_one_node_task_per_node_and_grid_point():
    from airflow_mlops_provider.factory.builder import build_pipeline

    config = parse_pipeline(
        _with(
            training__nodes=2,
            training__join_timeout="2m",
            training__grid={"lr": [0.01, 0.1]},
            training__max_parallel=1,
        )
    )
    dag = build_pipeline(config)["retrain_churn"]
    train = dag.get_task("train")
    assert train.partial_kwargs["nnodes"] == 2 and train.partial_kwargs["join_timeout"] == 120
    assert train.partial_kwargs["max_active_tis_per_dagrun"] == 2  # one grid point's nodes at once
    tasks = train.expand_input.value
    assert [(t["hyperparameters"]["lr"], t["node_rank"]) for t in tasks] == [
        (0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)
    ]  # fmt: skip
    assert [t["rdzv_id"] for t in tasks] == ["mlops-{{ run_id }}-0"] * 2 + ["mlops-{{ run_id }}-1"] * 2
    assert dag.get_task("select_best").upstream_task_ids == {"train"}
    single = build_pipeline(parse_pipeline(_with(training__nodes=2)))["retrain_churn"].get_task("train")
    assert [t["node_rank"] for t in single.expand_input.value] == [0, 1]  # mapped even for one point


def test_validation_streaming_settings_reach_the_validate_task(tmp_path: Path):
    from airflow_mlops_provider.factory.builder import build_pipeline

    default = build_pipeline(parse_pipeline(MINIMAL))["retrain_churn"].get_task("validate")
    assert default.streaming == {"stream_above_mb": 1024.0, "batch_rows": 500_000}
    always = parse_pipeline(_with(validation={"stream_above_mb": 0, "batch_rows": 10_000}))
    assert build_pipeline(always)["retrain_churn"].get_task("validate").streaming == {
        "stream_above_mb": 0,
        "batch_rows": 10_000,
    }
    never = parse_pipeline(_with(validation={"stream_above_mb": None}))
    assert never.plan().validation.stream_above_mb is None
    problems = dict(_errors(_with(validation={"batch_rows": 0}), tmp_path).problems)
    assert "greater than 0" in problems["validation.batch_rows"]
