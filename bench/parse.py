"""Parse-time benchmark: Airflow's own DagBag parse of our pipeline loader vs astronomer dag-factory 1.1.

The dag-processor parses each DAG file in a fresh process that has already imported
``airflow``; so does this benchmark: every measurement is a new Python process that imports
Airflow's ``DagBag`` first (not timed), then times ``DagBag(<folder>)``: importing the DAG file,
our package or dag-factory, reading the YAML and building the DAGs, bagging and validating them.

Each figure is the minimum over N fresh processes (as ``timeit`` reports: other processes on
the machine only ever add time; medians and CPU times are recorded too). Cases:

* ``empty``: one DAG file defining one DAG with no tasks (the floor).
* ``one``: ``dags/pipelines_loader.py`` with one pipeline config (the example ``cancer.yaml``).
* ``ours``: the same loader with ``PIPELINES`` configs (3 DAGs each: retrain, monitor, rollback).
  Both also once "cold": the first parse after an edit, which validates every config with the
  pydantic schema and caches its plan; the repeats then parse as the dag-processor does all day
  (see ``airflow_mlops_provider.factory.plan``).
* ``dag_factory``: dag-factory 1.1's ``load_yaml_dags`` on ``PIPELINES`` YAML files describing
  the same DAGs, tasks, dependencies, schedules and default args, as plain ``EmptyOperator``s.
  It is installed from the package registry into ``bench/.envs/`` on first use (not into the
  project's virtualenv: it registers an Airflow plugin wherever it is installed).

Also records which heavy modules (torch, mlflow, great_expectations, pandas, scipy, boto3,
sklearn, pyarrow, numpy) the parse of ``ours`` imported.

Run: ``python bench/parse.py`` (``--quick``: 10 pipelines, 3 repeats, not committed).
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, print_table, quick_flag, write_results

REPO = Path(__file__).resolve().parent.parent
# dag-factory registers an Airflow plugin (a telemetry listener) wherever it is installed, so it
# lives in its own folder, on the path of the dag-factory measurements only.
DAG_FACTORY_DIR = Path(__file__).resolve().parent / ".envs" / "dag-factory-1.1.0"
HEAVY = ["torch", "mlflow", "great_expectations", "pandas", "scipy", "boto3", "sklearn", "pyarrow", "numpy"]
EXAMPLE = REPO / "dags" / "pipelines" / "cancer.yaml"

PROBE = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
start, cpu = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=sys.argv[1])
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
heavy = sorted(h for h in json.loads(sys.argv[2]) if h in sys.modules and h not in before)
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(json.dumps({"s": elapsed, "cpu_s": cpu, "dags": len(bag.dags), "tasks": tasks,
                  "errors": bag.import_errors, "heavy": heavy}))
"""

EMPTY_DAG = 'from airflow.sdk import DAG\n\nDAG("empty", schedule=None)\n'
DAG_FACTORY_FILE = (
    "# Airflow DAG file: dag-factory builds every YAML pipeline next to it.\nfrom pathlib import Path\n\n"
    "from dagfactory import load_yaml_dags\n\n"
    'load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent / "pipelines"))\n'
)
EMPTY_OP = "airflow.providers.standard.operators.empty.EmptyOperator"
# The DAGs one pipeline config produces (cancer.yaml: a 2-point grid), task by task, with their upstreams.
SHAPES = {
    "retrain": (
        "0 3 * * 1",
        [
            ("record_trigger_cause", []),
            ("ingest", ["record_trigger_cause"]),
            ("check_unchanged", ["ingest"]),
            ("validate", ["check_unchanged"]),
            ("train", ["validate"]),
            ("select_best", ["train"]),
            ("evaluate", ["select_best"]),
            ("gate", ["evaluate", "validate", "record_trigger_cause"]),
            ("promote", ["gate"]),
        ],
    ),
    "monitor": (
        "@hourly",
        [
            ("require_champion", []),
            ("ingest_live", ["require_champion"]),
            ("score", ["ingest_live"]),
            ("detect_drift", ["score", "ingest_live"]),
        ],
    ),
    "rollback": (None, [("rollback", [])]),
}


def environment() -> dict[str, str]:
    home = WORK / "parse" / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(WORK / "parse"),
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "True",
        "MLOPS_ARTIFACT_ROOT": "file:///tmp/mlops-bench/artifacts",
        "MLOPS_DATA_ROOT": "file:///tmp/mlops-bench/data",
    }


def make_ours(folder: Path, pipelines: int) -> None:
    (folder / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "pipelines_loader.py", folder / "pipelines_loader.py")
    text = EXAMPLE.read_text()
    for i in range(pipelines):
        name = f"p{i:03d}"
        config = text.replace("name: cancer", f"name: {name}").replace("/cancer/", f"/{name}/")
        config = config.replace("model_name: cancer_diagnosis", f"model_name: {name}_model")
        (folder / "pipelines" / f"{name}.yaml").write_text(config)


def make_dag_factory(folder: Path, pipelines: int) -> None:
    import yaml

    (folder / "pipelines").mkdir(parents=True)
    (folder / "dag_factory_loader.py").write_text(DAG_FACTORY_FILE)
    for i in range(pipelines):
        name = f"p{i:03d}"
        document = {}
        for kind, (schedule, tasks) in SHAPES.items():
            document[f"{kind}_{name}"] = {
                "default_args": {"owner": "ml-team", "retries": 2, "start_date": "2024-01-01"},
                "schedule": schedule,
                "catchup": False,
                "max_active_runs": 1,
                "tags": ["mlops", kind, f"pipeline:{name}"],
                "doc_md": f"{kind} DAG of pipeline {name}",
                "tasks": [
                    {"task_id": task, "operator": EMPTY_OP, **({"dependencies": ups} if ups else {})}
                    for task, ups in tasks
                ],
            }
        (folder / "pipelines" / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def install_dag_factory() -> Path:
    """dag-factory 1.1.0 from the package registry into ``bench/.envs`` (once), pinned by constraints.txt."""
    if not (DAG_FACTORY_DIR / "dagfactory").is_dir():
        args = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(DAG_FACTORY_DIR),
        ]
        subprocess.run([*args, "-c", str(REPO / "constraints.txt"), "dag-factory==1.1.0"], check=True)
    return DAG_FACTORY_DIR


def measure(folder: Path, repeats: int, extra_path: Path | None = None, cold: bool = False) -> dict:
    env = {**os.environ, **environment()}
    if cold:  # no plan cache: every config is validated, as on the first parse after an edit
        env["MLOPS_PLAN_CACHE"] = "off"
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PYTHONPATH")) if p)
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(folder), json.dumps(HEAVY)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs[0]
    if first["errors"]:
        raise RuntimeError(f"import errors parsing {folder}: {first['errors']}")
    walls = [r["s"] for r in runs]
    return {
        **first,
        "s": min(walls),
        "median_s": statistics.median(walls),
        "cpu_median_s": statistics.median(r["cpu_s"] for r in runs),
        "all_s": walls,
    }


def main() -> int:
    quick = quick_flag()
    pipelines, repeats = (10, 3) if quick else (50, 9)
    root = WORK / "parse"
    shutil.rmtree(root, ignore_errors=True)
    cases = {"empty": root / "empty", "one": root / "one", "ours": root / "ours", "dag_factory": root / "df"}
    cases["empty"].mkdir(parents=True)
    (cases["empty"] / "empty_dag.py").write_text(EMPTY_DAG)
    make_ours(cases["one"], 1)
    (cases["one"] / "pipelines" / "p000.yaml").write_text(EXAMPLE.read_text())
    make_ours(cases["ours"], pipelines)
    make_dag_factory(cases["dag_factory"], pipelines)

    dag_factory = install_dag_factory()
    # An installed package parses from bytecode (pip compiles it at install time; dag-factory and
    # Airflow here were). This tree may run with PYTHONDONTWRITEBYTECODE, so compile ours too.
    compileall.compile_dir(str(REPO / "airflow_mlops_provider"), quiet=1)
    results = {}
    for name, folder in cases.items():
        if name in ("one", "ours"):  # first parse after an edit: validates every config
            results[f"{name}_cold"] = measure(folder, 1 if quick else 3, cold=True)
        small = name in ("empty", "one")  # cheap to repeat, and the 20 ms budget needs a steady figure
        n = repeats * 3 if small else repeats
        results[name] = measure(folder, n, dag_factory if name == "dag_factory" else None)
    ours, df = results["ours"], results["dag_factory"]
    if (df["dags"], df["tasks"]) != (ours["dags"], ours["tasks"]):
        raise RuntimeError(
            f"not equivalent: ours {ours['dags']}/{ours['tasks']}, dag-factory {df['dags']}/{df['tasks']}"
        )
    per_pipeline_ms = (results["one"]["s"] - results["empty"]["s"]) * 1000
    figures = {
        "pipelines": pipelines,
        "dags": ours["dags"],
        "tasks": ours["tasks"],
        "repeats": repeats,
        "total_parse_s": round(ours["s"], 4),
        "empty_dag_parse_s": round(results["empty"]["s"], 4),
        "one_pipeline_parse_s": round(results["one"]["s"], 4),
        "per_pipeline_ms": round(per_pipeline_ms, 2),
        "ours_per_extra_pipeline_ms": round((ours["s"] - results["one"]["s"]) / (pipelines - 1) * 1000, 2),
        "dag_factory_parse_s": round(df["s"], 4),
        "dag_factory_vs_ours_ratio": round(df["s"] / ours["s"], 2),
        "dag_factory_version": _version("dag-factory", dag_factory),
        "one_pipeline_cold_parse_s": round(results["one_cold"]["s"], 4),
        "ours_cold_parse_s": round(results["ours_cold"]["s"], 4),
        "dag_factory_vs_ours_cold_ratio": round(df["s"] / results["ours_cold"]["s"], 2),
        "heavy_modules_imported": sorted(set(ours["heavy"]) | set(results["ours_cold"]["heavy"])),
        "per_pipeline_median_ms": round(
            (results["one"]["median_s"] - results["empty"]["median_s"]) * 1000, 2
        ),
        "per_pipeline_cpu_median_ms": round(
            (results["one"]["cpu_median_s"] - results["empty"]["cpu_median_s"]) * 1000, 2
        ),
        "total_parse_median_s": round(ours["median_s"], 4),
        "dag_factory_parse_median_s": round(df["median_s"], 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "all_runs_s": {name: [round(s, 4) for s in r["all_s"]] for name, r in results.items()},
    }
    print_table(
        f"DagBag parse, best of {repeats}+ fresh processes ({pipelines} pipelines = {ours['dags']} DAGs, "
        f"{ours['tasks']} tasks)",
        [
            ("empty DAG file (s)", results["empty"]["s"], ""),
            ("one pipeline (s)", results["one"]["s"], f"+{per_pipeline_ms:.1f} ms over empty (limit 20 ms)"),
            ("one pipeline, first parse (s)", results["one_cold"]["s"], "config validated, plan cached"),
            (f"ours, {pipelines} pipelines (s)", ours["s"], "limit 1.0 s"),
            (
                f"ours, {pipelines} pipelines, first parse (s)",
                results["ours_cold"]["s"],
                "all configs validated",
            ),
            (
                f"dag-factory {figures['dag_factory_version']} (s)",
                df["s"],
                f"{df['s'] / ours['s']:.2f}x ours, {figures['dag_factory_vs_ours_cold_ratio']:.2f}x cold",
            ),
        ],
    )
    print(
        f"  medians: one pipeline +{figures['per_pipeline_median_ms']:.1f} ms wall, "
        f"+{figures['per_pipeline_cpu_median_ms']:.1f} ms CPU; ours {ours['median_s']:.3f} s, "
        f"dag-factory {df['median_s']:.3f} s; load {figures['load_average_1m']} on {os.cpu_count()} cores"
    )
    print(f"  heavy modules imported while parsing ours: {figures['heavy_modules_imported'] or 'none'}")
    write_results("parse", figures, quick)
    return 0


def _version(dist: str, path: Path) -> str:
    from importlib.metadata import distributions

    return next(d.version for d in distributions(path=[str(path)]) if d.metadata["Name"] == dist)


if __name__ == "__main__":
    sys.exit(main())
