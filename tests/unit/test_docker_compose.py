"""docker-compose.yaml is valid against the Compose spec and in step with the code and constraints."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN)$")
REQUIRED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")  # the whole value is ${NAME:?message}
AIRFLOW_IMAGE = "airflow-mlops-provider/airflow:0.1.0"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME:?error}`` interpolation (``$$`` left as it is)."""

    def sub(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if env.get(name):
            return env[name]
        assert kind != "?", f"{name} is required: {arg}"
        return arg if kind == "-" else ""

    return REFERENCE.sub(sub, value)


def _published(compose: dict, service: str) -> set[str]:
    """``host:container`` of each port a service publishes, without the host IP."""
    return {_interpolate(port, {}).split(":", 1)[1] for port in compose["services"][service].get("ports", [])}


def _airflow_services(compose: dict) -> dict[str, dict]:
    """The Airflow components (the prediction service runs the same image but is not one)."""
    return {
        name: s
        for name, s in compose["services"].items()
        if s.get("image") == AIRFLOW_IMAGE and "AIRFLOW__CORE__EXECUTOR" in s.get("environment", {})
    }


def _strings(node: Any) -> list[str]:
    """Every string in a parsed YAML tree (keys included)."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [node] if isinstance(node, str) else []


def _pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert match, f"{package} is not pinned in constraints.txt"
    return match.group(1)


def test_compose_file_validates_against_the_compose_spec():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", COMPOSE], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_airflow_component_and_its_backing_services(compose):
    services = set(compose["services"])
    airflow = {"airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor"}
    assert airflow | {"airflow-triggerer", "postgres", "mlflow", "minio", "minio-init"} <= services
    for name in services:
        for dependency in compose["services"][name].get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_images_match_the_pinned_versions():
    airflow_dockerfile = (REPO / "docker/airflow.Dockerfile").read_text()
    mlflow_dockerfile = (REPO / "docker/mlflow.Dockerfile").read_text()
    assert f"apache/airflow:{_pinned('apache-airflow')}-python3.11" in airflow_dockerfile
    assert f"torch=={_pinned('torch')}" in airflow_dockerfile
    assert f"ghcr.io/mlflow/mlflow:v{_pinned('mlflow')}" in mlflow_dockerfile
    assert f"psycopg2-binary=={_pinned('psycopg2-binary')}" in mlflow_dockerfile
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", airflow_dockerfile, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"


def test_connections_point_at_services_of_the_stack(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    mlflow_conn = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    aws_conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert mlflow_conn["conn_type"] == "mlflow" and mlflow_conn["host"] == "http://mlflow:5000"
    assert aws_conn["extra"]["endpoint_url"] == "http://minio:9000"
    assert "--port 5000" in compose["services"]["mlflow"]["command"]
    assert _published(compose, "minio") == {"9000:9000", "9001:9001"}
    api_url = env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert api_url.startswith("http://airflow-api-server:8080/")
    assert _published(compose, "airflow-api-server") == {"8080:8080"}
    bucket = env["MLOPS_ARTIFACT_ROOT"].split("/")[2]
    assert f"local/{bucket}" in compose["services"]["minio-init"]["entrypoint"]


def test_mlflow_database_is_created_for_the_backend_store(compose):
    init_script = (REPO / "docker/postgres-init.sh").read_text()
    assert "CREATE DATABASE mlflow" in init_script
    assert "PASSWORD :'mlflow_password'" in init_script  # from .env via a psql variable
    assert "docker/postgres-init.sh" in " ".join(compose["services"]["postgres"]["volumes"])
    assert "@postgres/mlflow" in compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]


def test_every_boto3_client_in_the_stack_sends_checksums_only_when_required(compose):
    for name in ("airflow-scheduler", "airflow-api-server", "mlflow", "predict"):
        env = compose["services"][name]["environment"]
        assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required", name
        assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required", name


def test_the_init_job_creates_the_promotion_pools(compose):
    command = " ".join(compose["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in command
    assert "python -m airflow_mlops_provider.factory.pools /opt/airflow/dags/pipelines" in command
    assert "airflow pools import" in command


def test_api_server_and_mlflow_have_healthchecks(compose):
    from airflow.api_fastapi.core_api.routes.public import public_router

    api = compose["services"]["airflow-api-server"]["healthcheck"]["test"]
    assert api[:2] == ["CMD", "curl"] and "--fail" in api
    path = api[-1].removeprefix("http://localhost:8080")
    assert path in {route.path for route in public_router.routes}, path
    mlflow = " ".join(compose["services"]["mlflow"]["healthcheck"]["test"])
    assert "http://localhost:5000/health" in mlflow  # the route MLflow's auth app leaves open
    assert "localhost:5000" in compose["services"]["mlflow"]["command"]  # --allowed-hosts


def test_services_wait_for_what_they_use(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") in (None, "no"), f"{dependency} is a one-shot job"
    for name in set(_airflow_services(compose)) - {"airflow-init", "seed"}:
        needs = services[name]["depends_on"]
        assert needs["airflow-init"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == "service_healthy", name
    # The scheduler's task processes call the execution API, MLflow and MinIO.
    scheduler = services["airflow-scheduler"]["depends_on"]
    for dependency in ("airflow-api-server", "mlflow", "minio"):
        assert scheduler[dependency]["condition"] == "service_healthy", dependency
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_ports_listen_on_localhost_unless_the_user_opts_out(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert _interpolate(port, {}).count(":") == 2, f"{name}: {port} has no host IP"
            assert _interpolate(port, {}).startswith("127.0.0.1:"), f"{name}: {port}"
            assert _interpolate(port, {"MLOPS_BIND": "0.0.0.0"}).startswith("0.0.0.0:"), f"{name}: {port}"


def test_no_secret_is_written_in_the_compose_files(compose):
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            if SECRET_NAME.search(variable):
                assert REQUIRED.match(str(value)), f"{name}: {variable} must be ${{NAME:?...}} from .env"
            if variable.startswith("AIRFLOW_CONN_"):
                conn = json.loads(value)
                assert REQUIRED.match(conn.get("password", "${X:?}")), f"{name}: {variable} password"
    for text in _strings(compose):
        for user_info in re.findall(r"://([^/@\s]+)@", text):
            assert REQUIRED.match(user_info.split(":", 1)[1]), f"literal password in {text}"
    assert not re.search(r"PASSWORD\s+'", (REPO / "docker/postgres-init.sh").read_text())
    assert "admin_password" not in (REPO / "docker/mlflow-basic-auth.ini").read_text()
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_every_airflow_service_shares_the_logs_volume(compose):
    assert "airflow-logs" in compose["volumes"]
    for name, service in _airflow_services(compose).items():
        assert "airflow-logs:/opt/airflow/logs" in service["volumes"], name


def test_mlflow_requires_a_login_and_the_airflow_connection_carries_it(compose):
    import configparser
    from importlib.metadata import entry_points, requires

    from mlflow import environment_variables

    mlflow = compose["services"]["mlflow"]
    assert "--app-name basic-auth" in mlflow["command"]
    assert "basic-auth" in {e.name for e in entry_points(group="mlflow.app")}
    env = mlflow["environment"]
    for variable in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert getattr(environment_variables, variable).name in env, variable
    conn = json.loads(compose["services"]["airflow-scheduler"]["environment"]["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert conn["login"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert conn["password"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    # The mounted config: the user store lies on the mlflow-auth volume, so users survive restarts.
    mounts = {target: source for source, target, *_ in (v.split(":") for v in mlflow["volumes"])}
    config = configparser.ConfigParser()
    config.read(REPO / mounts[env["MLFLOW_AUTH_CONFIG_PATH"]])
    store = Path(config["mlflow"]["database_uri"].removeprefix("sqlite:///"))
    assert mounts[str(store.parent)] == "mlflow-auth"
    # The auth app needs what MLflow's `auth` extra adds; the image installs it.
    requirement = next(r for r in requires("mlflow") if 'extra == "auth"' in r)
    package = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    assert f'"{package}==' in (REPO / "docker/mlflow.Dockerfile").read_text()


def test_generated_env_holds_every_variable_the_compose_file_requires(tmp_path):
    required = {m.group(1) for m in REFERENCE.finditer(COMPOSE.read_text()) if m.group(2) == "?"}
    env_file = tmp_path / ".env"
    script = REPO / "scripts" / "compose_env.py"
    subprocess.run([sys.executable, script, env_file], check=True, capture_output=True)
    values = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#")
    )
    assert required <= set(values), required - set(values)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secrets = [value for name, value in values.items() if SECRET_NAME.search(name)]
    assert len(set(secrets)) == len(secrets) and all(len(s) >= 32 for s in secrets)
    from cryptography.fernet import Fernet

    Fernet(values["AIRFLOW_FERNET_KEY"])
    # Never overwritten: a second run keeps every value; a variable removed is added back alone.
    kept = env_file.read_text().replace(f"POSTGRES_PASSWORD={values['POSTGRES_PASSWORD']}\n", "")
    env_file.write_text(kept)
    subprocess.run([sys.executable, script, env_file], check=True, capture_output=True)
    again = env_file.read_text()
    assert again.startswith(kept) and again.count("POSTGRES_PASSWORD=") == 1
    compose_env = os.environ | dict(line.split("=", 1) for line in again.splitlines() if "=" in line)
    assert "${" not in _interpolate(COMPOSE.read_text(), compose_env)


def test_the_seed_profile_starts_the_loop_once_the_stack_is_up(compose):
    seed = compose["services"]["seed"]
    assert seed["profiles"] == ["seed"] and seed["restart"] == "no"
    script = seed["command"][-1]
    assert f"scripts/seed_stack.py {script}" in (REPO / "docker/airflow.Dockerfile").read_text()
    assert seed["depends_on"]["airflow-api-server"]["condition"] == "service_healthy"
    assert seed["environment"]["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")
    assert "docker compose --profile seed up" in (REPO / "Makefile").read_text()


SERIES_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
PROVISIONING = REPO / "docker/grafana/provisioning"


def _exported_series() -> set[str]:
    """Every series name the prediction service's /metrics can expose, read from its registry."""
    from airflow_mlops_provider.serving.metrics import ServingMetrics

    series = set()
    for family in ServingMetrics({}).registry.collect():
        series |= {family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",))}
    return series


def _predict_args(compose: dict[str, Any]) -> Any:
    from airflow_mlops_provider.serving.__main__ import parse_args

    return parse_args(compose["services"]["predict"]["command"])


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((PROVISIONING / "dashboards/serving.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return queries + [variable["query"]["query"] for variable in dashboard["templating"]["list"]]


def test_the_prediction_service_runs_the_console_entry_point_for_every_pipeline(
    compose: dict[str, Any],
) -> None:
    import tomllib

    from airflow_mlops_provider.factory import pipeline_files
    from airflow_mlops_provider.factory.plan import load_plan
    from airflow_mlops_provider.serving.app import PipelineTarget

    predict = compose["services"]["predict"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[predict["entrypoint"][-1]] == "airflow_mlops_provider.serving.__main__:main"
    assert predict["image"] == AIRFLOW_IMAGE and predict["build"] == compose["x-airflow"]["build"]
    plans = [load_plan(path) for path in pipeline_files(REPO / "dags/pipelines")]
    expected = {(plan.name, PipelineTarget(plan.registered_model_name, "champion")) for plan in plans}
    assert len(expected) >= 2 and set(_predict_args(compose).pipeline) == expected


def test_the_prediction_service_uses_services_of_the_stack(compose: dict[str, Any]) -> None:
    predict, args = compose["services"]["predict"], _predict_args(compose)
    assert args.tracking_uri == "http://mlflow:5000"
    assert "--port 5000" in compose["services"]["mlflow"]["command"]
    assert predict["depends_on"]["mlflow"]["condition"] == "service_healthy"
    env, mlflow_env = predict["environment"], compose["services"]["mlflow"]["environment"]
    assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert env["MLFLOW_TRACKING_PASSWORD"] == mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    airflow_env = compose["services"]["airflow-scheduler"]["environment"]
    aws_conn = json.loads(airflow_env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert env["MLOPS_ARTIFACT_ROOT"] == airflow_env["MLOPS_ARTIFACT_ROOT"]
    assert args.log_root == airflow_env["MLOPS_ARTIFACT_ROOT"]  # requests land where monitoring reads
    assert env["AWS_ENDPOINT_URL_S3"] == aws_conn["extra"]["endpoint_url"]
    assert env["AWS_ACCESS_KEY_ID"] == aws_conn["login"]
    assert env["AWS_SECRET_ACCESS_KEY"] == aws_conn["password"]
    assert args.host == "0.0.0.0" and _published(compose, "predict") == {f"{args.port}:{args.port}"}


def test_rollouts_read_the_metrics_of_the_stacks_prediction_service(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mlops_provider.factory.loader import load_pipeline

    args, airflow_env = _predict_args(compose), compose["services"]["airflow-scheduler"]["environment"]
    assert airflow_env["MLOPS_PREDICT_URL"] == f"http://predict:{args.port}"
    monkeypatch.setenv("MLOPS_PREDICT_URL", airflow_env["MLOPS_PREDICT_URL"])
    plan = load_pipeline(REPO / "dags/pipelines/cancer.yaml").plan()
    assert plan.rollout["service_urls"] == [airflow_env["MLOPS_PREDICT_URL"]]
    monkeypatch.delenv("MLOPS_PREDICT_URL")
    plan = load_pipeline(REPO / "dags/pipelines/cancer.yaml").plan()
    assert plan.rollout["service_urls"] == [airflow_env["MLOPS_PREDICT_URL"]]  # the default is the same


def test_the_prediction_service_is_healthy_once_ready(compose: dict[str, Any]) -> None:
    from airflow_mlops_provider.serving.app import ServingConfig, create_app

    args = _predict_args(compose)
    check = compose["services"]["predict"]["healthcheck"]
    assert check["test"][:2] == ["CMD", "curl"] and "--fail" in check["test"]
    assert check["test"][-1] == f"http://localhost:{args.port}/ready"
    app = create_app(ServingConfig(dict(args.pipeline), args.tracking_uri, args.poll))
    assert {"/ready", "/health", "/metrics"} <= {route.path for route in app.routes}  # type: ignore[attr-defined]
    assert check["start_period"].endswith("h")  # a model exists only after the first retrain


def test_prometheus_scrapes_the_prediction_service(compose: dict[str, Any]) -> None:
    args = _predict_args(compose)
    config = yaml.safe_load((REPO / "docker/prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "predict"]
    assert job["static_configs"][0]["targets"] == [f"predict:{args.port}"]
    assert job["metrics_path"] == "/metrics" and job["scrape_interval"] == "5s"
    mount = "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in compose["services"]["prometheus"]["volumes"]


def test_grafana_is_provisioned_with_prometheus_and_the_serving_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "./docker/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    (source,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yaml").read_text())["datasources"]
    assert source["url"] == f"http://prometheus:{_published(compose, 'prometheus').pop().split(':')[1]}"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards/dashboards.yaml").read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    dashboard = json.loads((PROVISIONING / "dashboards/serving.json").read_text())
    for panel in dashboard["panels"]:
        uids = {target["datasource"]["uid"] for target in panel["targets"]}
        assert uids == {source["uid"]}, panel["title"]
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Requests/s", "Latency p50", "Latency p99", "Error share", "Canary weight"} <= titles
    assert {"Drift share per window", "Realized and estimated performance"} <= titles


def test_every_dashboard_query_reads_a_metric_the_service_exports_or_the_statsd_mapping_makes() -> None:
    exported = _exported_series() | _mapped_series()
    for query in _dashboard_queries():
        names = set(re.findall(r"\bmlops_\w+", query))
        assert names and names <= exported, (query, names - exported)
    used = {name for query in _dashboard_queries() for name in re.findall(r"\bmlops_\w+", query)}
    assert {
        "mlops_serving_requests_total",
        "mlops_serving_latency_seconds_bucket",
        "mlops_serving_canary_weight",
        "mlops_drift_share",
        "mlops_performance_realized",
        "mlops_performance_estimated",
    } <= used


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{name}: {image!r} has no pinned tag"


STATSD_MAPPING = REPO / "docker/statsd-mapping.yml"
EXPORTER = "statsd-exporter"
# statsd_exporter's check of a mapping's `match` (pkg/mapper/mapper.go metricLineRE) and of a name.
MATCH_LINE = re.compile(r"^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$")
PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
EXPORTER_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")  # Go's client has no _created series


def _statsd_mappings() -> list[dict[str, Any]]:
    config = yaml.safe_load(STATSD_MAPPING.read_text())
    assert config["defaults"]["match_type"] == "glob"
    return config["mappings"]


def _glob(match: str) -> re.Pattern[str]:
    """statsd_exporter's glob: each ``*`` stands for (part of) one dot-separated component."""
    return re.compile("^" + re.escape(match).replace(r"\*", "([^.]*)") + "$")


def _mapping_for(name: str) -> dict[str, Any] | None:
    """The mapping statsd_exporter applies to a StatsD name: the first that matches, in file order."""
    return next((m for m in _statsd_mappings() if _glob(m["match"]).match(name)), None)


def _mapped_series() -> set[str]:
    """Every series name the exporter's mappings make (a timer mapped to a histogram has three)."""
    return {
        mapping["name"] + suffix
        for mapping in _statsd_mappings()
        for suffix in (EXPORTER_HISTOGRAM_SUFFIXES if "observer_type" in mapping else ("",))
    }


def _metrics_env(compose: dict[str, Any]) -> dict[str, str]:
    """Airflow's ``[metrics]`` settings that every Airflow component of the stack shares."""
    env = compose["x-airflow"]["environment"]
    return {name: value for name, value in env.items() if name.startswith("AIRFLOW__METRICS__")}


def _emitted_stats(compose: dict[str, Any]) -> list[str]:
    """The StatsD names the monitoring checks send: names.STAT_* behind Airflow's statsd_prefix."""
    from airflow_mlops_provider.core import names

    prefix = _metrics_env(compose)["AIRFLOW__METRICS__STATSD_PREFIX"]
    return [f"{prefix}.{value}" for attr, value in vars(names).items() if attr.startswith("STAT_")]


def _exporter_flags(compose: dict[str, Any]) -> dict[str, str]:
    return dict(flag.split("=", 1) for flag in compose["services"][EXPORTER]["command"])


def test_airflow_sends_its_statsd_metrics_with_tags_to_the_exporter(compose: dict[str, Any]) -> None:
    from airflow.configuration import retrieve_configuration_description

    env, flags = _metrics_env(compose), _exporter_flags(compose)
    options = retrieve_configuration_description(include_providers=False)["metrics"]["options"]
    assert {name.removeprefix("AIRFLOW__METRICS__").lower() for name in env} <= set(options)
    for name, service in _airflow_services(compose).items():
        assert env.items() <= service["environment"].items(), name
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    # Plain StatsD sends tags only InfluxDB-style (name,tag=value), a style the exporter parses.
    assert env["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"
    assert "--no-statsd.parse-influxdb-tags" not in flags
    host, port = env["AIRFLOW__METRICS__STATSD_HOST"], env["AIRFLOW__METRICS__STATSD_PORT"]
    assert host == EXPORTER and flags["--statsd.listen-udp"] == f":{port}"
    # The exporter's name resolves when a component's StatsD client starts.
    for name in set(_airflow_services(compose)) - {"airflow-init", "seed"}:
        assert compose["services"][name]["depends_on"][EXPORTER]["condition"] == "service_started", name
    mount = f"./{STATSD_MAPPING.relative_to(REPO)}:{flags['--statsd.mapping-config']}:ro"
    assert mount in compose["services"][EXPORTER]["volumes"]
    config = yaml.safe_load((REPO / "docker/prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "statsd"]
    assert job["static_configs"][0]["targets"] == [f"{EXPORTER}{flags['--web.listen-address']}"]
    assert compose["services"]["prometheus"]["depends_on"][EXPORTER]["condition"] == "service_started"


def test_the_statsd_mapping_names_every_metric_the_monitoring_checks_send(compose: dict[str, Any]) -> None:
    mappings = _statsd_mappings()
    for mapping in mappings:
        assert MATCH_LINE.match(mapping["match"]), mapping
        assert PROMETHEUS_NAME.match(mapping["name"]) and mapping["name"].startswith("mlops_"), mapping
        assert mapping["help"], mapping
    found = {stat: _mapping_for(stat) for stat in _emitted_stats(compose)}
    assert None not in found.values(), [stat for stat, mapping in found.items() if mapping is None]
    used = [mapping["name"] for mapping in found.values() if mapping]
    assert len(set(used)) == len(used) == len(mappings)  # one name per metric, no mapping unused


class _Exporter:
    """statsd_exporter's reading of StatsD lines (InfluxDB tags, glob mappings), kept as the last
    value of each series: a gauge is set, or moved by a signed value; a timer is observed in seconds."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.series: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.unmapped: set[str] = set()

    def read(self, datagram: bytes) -> None:
        for line in datagram.decode().splitlines():
            head, _, sample = line.partition(":")
            name, *tags = head.split(",")
            value, kind = sample.split("|")[:2]
            mapping = _mapping_for(name)
            if mapping is None:  # Airflow's own metrics keep the exporter's default names
                self.unmapped |= {name} if name.startswith(f"{self.prefix}.mlops.") else set()
                continue
            key = (mapping["name"], frozenset(tuple(tag.split("=", 1)) for tag in tags))
            assert kind == ("ms" if "observer_type" in mapping else "g"), line
            if kind == "ms":
                self.series[key] = float(value) / 1000.0
            else:
                relative = value[0] in "+-"
                self.series[key] = (self.series.get(key, 0.0) if relative else 0.0) + float(value)


@pytest.fixture
def statsd_listener(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 that Airflow's StatsD client sends to, configured as in the stack."""
    import statsd  # noqa: F401  the client of Airflow's statsd_on: apache-airflow-task-sdk[statsd]
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(30)
        env = _metrics_env(compose) | {
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        legacy = conf.getboolean("metrics", "legacy_names_on")
        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=legacy)
        yield listener
        stats.initialize(factory=NoStatsLogger, export_legacy_names=True)


def test_the_monitoring_checks_gauges_reach_prometheus_names_and_labels_through_airflows_statsd_client(
    compose: dict[str, Any], statsd_listener: socket.socket
) -> None:
    from types import SimpleNamespace

    from airflow_mlops_provider.operators import drift, performance

    result = SimpleNamespace(share=0.25, drift=True, drifted_columns=["age", "bmi"], unknown_columns=["bp"])
    drift._emit_stats("cancer", SimpleNamespace(result=result, timings={"features_s": 1.5}))
    performance._emit_stats(
        "diabetes",
        {
            "degraded": True,
            "estimated": {"roc_auc": {"value": 0.8125}},
            "windows": [
                {"labels": {"labelled": 120}, "realized": {"roc_auc": {"value": 0.75}, "r2": {"value": -0.5}}}
            ],
        },
    )
    cancer, diabetes = {("pipeline", "cancer")}, {("pipeline", "diabetes")}
    expected = {
        ("mlops_drift_share", frozenset(cancer)): 0.25,
        ("mlops_drift_detected", frozenset(cancer)): 1.0,
        ("mlops_drift_columns", frozenset(cancer)): 2.0,
        ("mlops_drift_unknown_columns", frozenset(cancer)): 1.0,
        ("mlops_drift_duration_seconds", frozenset(cancer)): 1.5,
        ("mlops_performance_degraded", frozenset(diabetes)): 1.0,
        ("mlops_performance_labelled_rows", frozenset(diabetes)): 120.0,
        ("mlops_performance_estimated", frozenset(diabetes | {("metric", "roc_auc")})): 0.8125,
        ("mlops_performance_realized", frozenset(diabetes | {("metric", "roc_auc")})): 0.75,
        # StatsD cannot set a gauge below zero in one line: the client sends 0, then -0.5 as a move.
        ("mlops_performance_realized", frozenset(diabetes | {("metric", "r2")})): -0.5,
    }
    exporter = _Exporter(_metrics_env(compose)["AIRFLOW__METRICS__STATSD_PREFIX"])
    while exporter.series != expected:
        try:
            exporter.read(statsd_listener.recv(65535))
        except TimeoutError:
            break
    assert exporter.series == expected and not exporter.unmapped
