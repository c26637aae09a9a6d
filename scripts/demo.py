"""Run the whole retraining loop on the embedded default: SQLite Airflow DB and MLflow store, local files.

Steps, on the example pipeline ``dags/pipelines/cancer.yaml`` (scikit-learn's breast-cancer
table, bundled with scikit-learn, nothing downloaded):

1. first data lands; ``retrain_cancer`` trains a small grid, evaluates, gates and promotes the
   first champion;
2. a second batch lands and posts the pipeline's new-data asset event; the asset-triggered
   retrain trains on both batches and the gate decides against the champion;
3. a live window whose features moved lands; ``monitor_cancer`` reads that hour's window, scores
   it with the champion, estimates its accuracy before any label exists, finds drift and emits
   the drift asset event;
4. an hour later the confirmed diagnoses of that window arrive: the next monitoring run has no
   live rows of its own (an empty window, skipped), joins the labels to the earlier window,
   measures the champion's accuracy there with a bootstrap interval, finds it significantly
   below the accuracy it was promoted on, and emits the performance asset event;
5. both events trigger ``retrain_cancer`` (labelled rows from the new distribution have landed
   meanwhile); the decision record names both causes with their numbers;
6. nothing new: the retrain skips training and promotion, and says why;
7. the prediction service (``mlops-serve``) serves the champion and answers a request;
8. more data lands; the retrain, with the pipeline's ``rollout`` set to ``canary``, sends 25% and
   then all of the service's requests to the challenger while callers keep asking, reads the
   guardrails from the service's metrics at each step, and moves ``champion`` after the last one.

Everything lands under ``.demo/`` in the repository (``$MLOPS_DEMO_DIR`` to move it), which is
wiped at the start (``--keep`` keeps it). Asset-triggered runs are executed with ``dag.test()``
after consuming the pending events the way the scheduler does (``testing.local_runs``).

A successful loop prints no error line: the demo runs in a child process whose output it
echoes, and fails when a run that otherwise succeeded printed one.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("MLOPS_DEMO_DIR") or REPO / ".demo").resolve()
PIPELINE = "cancer"
LINEAGE = DEMO / "openlineage.jsonl"
NEW_DATA = f"mlops.{PIPELINE}.new_data"
DRIFT = f"mlops.{PIPELINE}.drift"
PERFORMANCE = f"mlops.{PIPELINE}.performance"
MODEL = "cancer_diagnosis"
STEPS = 8
# Set in the child process that runs the loop (see ``watch``).
CHILD = "MLOPS_DEMO_CHILD"
# An error or critical record as Airflow's structlog and Python's logging print it.
ERROR_LINE = re.compile(r"\[(error|critical)\s*\]| (ERROR|CRITICAL) ")


def lineage_summary(path: Path) -> str:
    """The newest model version's lineage rebuilt from the OpenLineage events in ``path``: each hop
    back to the source objects (a dataset's upstream is what the jobs that wrote it read)."""
    if not path.exists():
        return f"no OpenLineage events at {path}"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    upstream: dict[str, set[str]] = {}
    for event in events:
        if event.get("eventType") == "COMPLETE":
            inputs = {d["name"] for d in event.get("inputs", [])}
            for output in event.get("outputs", []):
                upstream.setdefault(output["name"], set()).update(inputs - {output["name"]})
    versions = sorted((n for n in upstream if "/versions/" in n), key=lambda n: int(n.rsplit("/", 1)[1]))
    if not versions:
        return f"{len(events)} events in {path}, no model version among their outputs"
    hops, frontier, seen = [versions[-1]], {versions[-1]}, {versions[-1]}
    while frontier := {u for name in frontier for u in upstream.get(name, ()) if u not in seen}:
        seen |= frontier
        hops.append(
            _short(sorted(frontier)[0], 40) + (f" (+{len(frontier) - 1})" if len(frontier) > 1 else "")
        )
    return f"{' <- '.join(hops)}; {len(events)} events in {path}"


def embedded_environment() -> dict[str, str]:
    """Environment of the embedded default stack; set before Airflow is imported."""
    airflow_home = DEMO / "airflow"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "mlflow", "host": f"sqlite:///{DEMO}/mlflow.db"}
        ),
        "MLFLOW_ARTIFACTS_DESTINATION": (DEMO / "mlartifacts").as_uri(),
        "MLOPS_ARTIFACT_ROOT": (DEMO / "artifacts").as_uri(),
        "MLOPS_DATA_ROOT": (DEMO / "data").as_uri(),
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # every task's OpenLineage events, one JSON line each (the closing summary reads them)
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(LINEAGE), "append": True}
        ),
        # in a thread of the demo's own process: forking a process that holds torch and MLflow threads
        # can leave the child stuck on a lock it copied (the events were then lost at the timeout)
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "60",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep .demo/ from an earlier run")
    parser.add_argument("--verbose", action="store_true", help="show the task logs")
    args = parser.parse_args(argv)
    if os.environ.get(CHILD) != "1":
        return watch(
            [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
        )
    if not args.keep:
        shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "airflow").mkdir(parents=True, exist_ok=True)
    os.environ.update(embedded_environment())
    if not args.verbose:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    demo = Demo()
    try:
        demo.run()
    except StepFailed as failure:
        print(f"\nDEMO FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


def watch(command: list[str]) -> int:
    """Run the demo ``command`` in a child process, echo its output, and fail on an error line.

    Airflow, MLflow and the tasks log through handlers of their own, so the child's merged
    output is the one place every line passes.
    """
    env = {**os.environ, CHILD: "1", "PYTHONUNBUFFERED": "1"}
    errors: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace"
    ) as child:
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if ERROR_LINE.search(line):
                errors.append(line.rstrip())
    if child.returncode == 0 and errors:
        shown = "\n  ".join(_short(e) for e in errors)
        print(
            f"\nDEMO FAILED: the loop succeeded but printed {len(errors)} error line(s):\n  {shown}",
            file=sys.stderr,
        )
        return 1
    return child.returncode


class StepFailed(RuntimeError):
    """A step did not end the way the loop needs."""


class Demo:
    """The loop, step by step, with a short summary of each."""

    def __init__(self) -> None:
        from airflow.dag_processing.dagbag import DagBag

        from airflow_mlops_provider import datasets

        self.datasets = datasets
        self.data = DEMO / "data" / PIPELINE
        bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            raise SystemExit(
                "Import errors:\n" + "\n".join(f"{p}:\n{e}" for p, e in bag.import_errors.items())
            )
        self.retrain = bag.dags[f"retrain_{PIPELINE}"]
        self.monitor = bag.dags[f"monitor_{PIPELINE}"]
        print(f"Parsed {len(bag.dags)} DAGs from dags/pipelines/*.yaml: {', '.join(sorted(bag.dags))}")
        from airflow_mlops_provider.testing.local_runs import ensure_pools

        for pool in ensure_pools(*bag.dags.values()):
            print(f"Created the one-slot pool {pool} (promotions of one model never overlap)")

    def run(self) -> None:
        started = time.monotonic()
        self.step(1, "first data lands; the first retrain makes a champion")
        files = [self._write_batch(0)]
        run = self.retrain.test()
        self.expect(run, "success")
        self.summarise_retrain(run)

        self.step(2, "a second batch lands and posts the new-data asset event")
        files = [self._write_batch(1)]
        self._post(NEW_DATA, {"files": files})
        run = self._asset_triggered(self.retrain, [NEW_DATA])
        self.expect(run, "success")
        self.summarise_retrain(run)

        self.step(3, "a drifted live window lands; monitoring scores it and looks for drift")
        window = self.datasets.live_window(PIPELINE, rows=200, drift=1.0, seed=3, labelled=True)
        target = self.datasets.target_of(PIPELINE)
        live = self.datasets.write(window.drop(columns=[target]), self.data / "live", "window-003")
        print(f"  live window: {live} (200 rows, numeric features shifted by 1 std)")
        first = self.monitor.test()
        self.expect(first, "success")
        run = first
        estimated = (self.xcom(run, "measure_performance") or {}).get("estimated") or {}
        print(f"  estimated before any label (CBPE): {_intervals(estimated)}")
        drift = self.xcom(run, "detect_drift") or {}
        events = self._events(DRIFT)
        columns = drift.get("drifted_columns") or []
        listed = _short(", ".join(columns), 90)
        print(f"  drift: {drift.get('drift')}; {len(columns)} drifted column(s): {listed}")
        print(f"  report: {drift.get('report_uri')}")
        print(f"  drift asset events so far: {len(events)}")
        if not drift.get("drift") or not events:
            raise StepFailed("monitoring found no drift in a window shifted by 1 std")

        self.step(4, "an hour later the window's diagnoses arrive; monitoring measures the accuracy")
        labels = self.datasets.write(
            self.datasets.labels_of(PIPELINE, window), self.data / "labels", "labels-003"
        )
        print(f"  labels: {labels} (id, {target}) for the 200 rows of step 3")
        run = self.monitor.test(logical_date=first.data_interval_end + timedelta(hours=1))
        self.expect(run, "success")
        states = self.states(run)
        print(f"  this hour's own window: ingest_live {states.get('ingest_live')} (no live rows in it)")
        self.summarise_performance(run, estimated)

        self.step(5, "both events trigger a retrain on labelled rows from the new distribution")
        shifted = self.datasets.drifted_batch(PIPELINE, drift=1.0, seed=3)
        self.datasets.write(shifted, self.data / "train", "drifted-000")
        run = self._asset_triggered(self.retrain, [DRIFT, PERFORMANCE])
        self.expect(run, "success")
        self.summarise_retrain(run)

        self.step(6, "nothing new since: a rerun checks the data version and skips training")
        run = self.retrain.test()
        self.expect(run, "success")
        check = self.xcom(run, "check_unchanged") or {}
        print(f"  {check.get('reason')}")

        self.step(7, "the prediction service follows the champion alias and answers a request")
        rows = window.drop(columns=[target])
        with self.service() as url:
            self.ask(url, rows.head(2))
            self.step(
                8, "more data; the retrain rolls the challenger out as a canary while callers keep asking"
            )
            self.canary(url, rows.head(8))
        print(
            f"  requests logged for monitoring under {DEMO / 'artifacts' / PIPELINE / 'serving' / 'requests'}"
        )
        self.finish(time.monotonic() - started)

    # -- steps ---------------------------------------------------------------------------------

    def summarise_retrain(self, run: Any) -> None:
        states = self.states(run)
        cause = self.xcom(run, "record_trigger_cause") or {}
        snapshot = self.xcom(run, "ingest") or {}
        kind = cause.get("run_type", "").replace("_", "-")
        print(f"  {kind} run {run.run_id}: {run.state}; trigger cause: {cause.get('cause')}")
        if cause.get("events"):
            from airflow_mlops_provider.core.decision_record import Link, trigger_lines

            for line in trigger_lines(cause)[1:]:  # what the decision record says of each event
                print("    " + "".join(part.uri if isinstance(part, Link) else part for part in line))
        sha = str(snapshot.get("sha256"))[:12]
        print(f"  snapshot {sha}: {snapshot.get('rows')} rows {snapshot.get('splits')}")
        check = self.xcom(run, "check_unchanged") or {}
        if check.get("skip"):
            print(f"  {check.get('reason')}")
            return
        trained = sorted(k for k, v in states.items() if k.startswith("train") and v == "success")
        best = self.xcom(run, "select_best") or self.xcom(run, "train") or {}
        best_metrics = _metrics(best.get("metrics"))
        print(f"  trained {len(trained)} grid point(s); best run {best.get('run_id')} {best_metrics}")
        evaluation = self.xcom(run, "evaluate") or {}
        challenger = (evaluation.get("challenger") or {}).get("metrics")
        champion = evaluation.get("champion") or {}
        print(f"  challenger on the test split: {_metrics(challenger)}")
        if champion:
            old = _metrics(champion.get("metrics"))
            print(f"  champion v{champion.get('version')} on the same split: {old}")
        decision = self.xcom(run, "gate") or {}
        reasons = _short(decision.get("reasons"))
        print(f"  gate: {decision.get('verdict')} -> version {decision.get('version')}: {reasons}")
        print(f"  decision record: {decision.get('record_uri')}")
        print(f"  promote: {states.get('promote')}; champion now: {self._champion()}")

    @contextlib.contextmanager
    def service(self) -> Iterator[str]:
        """``mlops-serve`` on the demo's registry, until the block ends; yields its URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [
            sys.executable, "-m", "airflow_mlops_provider.serving", "--pipeline", f"{PIPELINE}={MODEL}",
            "--tracking-uri", f"sqlite:///{DEMO}/mlflow.db", "--port", str(port), "--poll", "1",
            "--log-root", (DEMO / "artifacts").as_uri(),
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with (DEMO / "serve.log").open("wb") as log:
            service = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                self._wait_ready(url, service)
                print(f"  mlops-serve --pipeline {PIPELINE}={MODEL} ... on {url}")
                yield url
            finally:
                service.terminate()
                service.wait(30)

    def ask(self, url: str, rows: Any) -> None:
        """Send ``rows`` and print the answer."""
        answer = _predict(url, rows, caller="demo")
        print(f"  POST /v1/{PIPELINE}/predict with {len(rows)} rows -> {answer['predictions']} from version "
              f"{answer['model_version']} ({answer['alias']})")  # fmt: skip

    def canary(self, url: str, rows: Any) -> None:
        """Retrain with the pipeline's rollout set to canary, while a caller thread keeps asking."""
        from airflow_mlops_provider.core.decision_record import load_record
        from airflow_mlops_provider.factory.builder import build_pipeline
        from airflow_mlops_provider.factory.loader import load_pipeline, parse_pipeline
        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        shipped = load_pipeline(REPO / "dags" / "pipelines" / f"{PIPELINE}.yaml")
        config = shipped.model_dump(mode="json", exclude_unset=True)
        config["rollout"] = {
            **config.get("rollout", {}), "strategy": "canary", "service_urls": [url], "steps": [25, 100],
            "hold": 2, "min_requests": 10, "poll": 1, "max_step_wait": 120,
            "guardrails": {"max_error_rate": 0.01, "max_p99_ms": 250, "max_p99_ratio": None},
        }  # fmt: skip
        config["gate"] = {"thresholds": config["gate"]["thresholds"], "min_gain": -1.0}
        print("  the same pipeline with rollout.strategy: canary, steps [25, 100], each step at least 2 s")
        print("  and 10 requests; guardrails: error rate <= 1%, p99 <= 250 ms, prediction distance <= 0.2")
        print(f"  (its gate asks only for the thresholds here, {config['gate']['thresholds']}, so that an")
        print("  equally good challenger goes out and the rollout has something to roll)")
        dag = build_pipeline(parse_pipeline(config))[f"retrain_{PIPELINE}"]
        self.datasets.write(
            self.datasets.drifted_batch(PIPELINE, drift=1.0, seed=4), self.data / "train", "drifted-001"
        )
        with Callers(url, rows) as callers:
            run = dag.test()
        self.expect(run, "success")
        if self.states(run).get("rollout") != "success":
            raise StepFailed(f"the rollout did not run: {self.states(run)}")
        decision = self.xcom(run, "gate") or {}
        record = load_record(MlflowHook().client, decision["run_artifact_uri"], MODEL)
        for entry in record.rollout if record else []:
            print(f"    {_short(entry['text'], 150)}")
        versions = ", ".join(f"v{v}: {n}" for v, n in sorted(callers.by_version.items()))
        print(f"  callers: {callers.sent} requests, {callers.failed} failed; answered by {versions}")
        print(f"  champion now: {self._champion()}")
        if callers.failed:
            raise StepFailed(f"{callers.failed} requests failed during the canary rollout")

    @staticmethod
    def _wait_ready(url: str, service: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if service.poll() is not None:
                raise StepFailed(f"the prediction service exited (see {DEMO / 'serve.log'})")
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise StepFailed(f"the prediction service was not ready within 120 s (see {DEMO / 'serve.log'})")

    def summarise_performance(self, run: Any, estimated: dict[str, Any]) -> None:
        summary = self.xcom(run, "measure_performance") or {}
        for window in summary.get("windows") or []:
            labels = window.get("labels") or {}
            print(
                f"  window {window['window']['start'][:16]}: {labels.get('labelled')} labelled, "
                f"{labels.get('pending')} pending; realized {_intervals(window.get('realized') or {})}"
            )
            print(f"  verdict: {window.get('status')}: {window.get('reason')}")
        if "accuracy" in estimated:
            print(
                f"  the estimate before labels said {_intervals({'accuracy': estimated['accuracy']})}: "
                "CBPE trusts the "
                "model's confidence, which does not hold where inputs moved outside the reference "
                "(the drift of step 3); labels are the final word"
            )
        fired = summary.get("fired")
        events = self._events(PERFORMANCE)
        print(f"  performance asset events so far: {len(events)}; trend report: {summary.get('report_uri')}")
        if not fired or not events:
            raise StepFailed("monitoring did not find the accuracy drop the labels show")

    def finish(self, seconds: float) -> None:
        print(f"\nLoop done in {seconds:.0f} s. Where to look:")
        print(
            f"  MLflow UI:     {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri sqlite:///{DEMO}/mlflow.db"
        )
        print(f"  snapshots and reports: {DEMO / 'artifacts' / PIPELINE}")
        print(f"  MLflow runs, models, decision records: {DEMO / 'artifacts' / 'mlflow'}")
        print(f"  example data:  {self.data}")
        home = f"AIRFLOW_HOME={DEMO / 'airflow'} AIRFLOW__CORE__DAGS_FOLDER={REPO / 'dags'}"
        print(f"  Airflow UI:    {home} airflow standalone")
        print(
            '  Models page:   then click "Models" in its navigation (http://localhost:8080/plugin/mlops-models):'
        )
        print("                 champion, last decision, drift, approvals and next runs per pipeline; each")
        print('                 pipeline DAG has a "Model" tab with its history (docs/ui.md)')
        print(f"  lineage:       {lineage_summary(LINEAGE)} (docs/lineage.md)")

    def step(self, number: int, title: str) -> None:
        print(f"\n[{number}/{STEPS}] {title}")

    def expect(self, run: Any, state: str) -> None:
        if str(run.state) != state:
            failed = {k: v for k, v in self.states(run).items() if v not in ("success", "skipped")}
            raise StepFailed(f"{run.dag_id} run {run.run_id} ended {run.state}; tasks: {failed}")

    # -- helpers -------------------------------------------------------------------------------

    def _write_batch(self, index: int) -> str:
        path = self.datasets.write(
            self.datasets.batch(PIPELINE, index, 2), self.data / "train", f"batch-{index:03d}"
        )
        print(f"  new data: {path}")
        return path.as_uri()

    def _post(self, asset: str, extra: dict[str, Any]) -> None:
        from airflow_mlops_provider.testing.local_runs import post_asset_event

        post_asset_event(asset, extra)
        print(f"  posted an asset event for {asset}")

    def _asset_triggered(self, dag: Any, assets: list[str]) -> Any:
        from airflow_mlops_provider.testing.local_runs import run_asset_triggered

        return run_asset_triggered(dag, assets)

    def _events(self, asset: str) -> list[Any]:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = session.query(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            return [e.id for e in query.filter(AssetModel.name == asset)]

    def _champion(self) -> str:
        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        client = MlflowHook().client
        try:
            version = client.get_model_version_by_alias(MODEL, "champion")
        except Exception:
            return "none"
        return f"version {version.version}"

    def states(self, run: Any) -> dict[str, str]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
            return {
                ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
                for ti in tis
            }

    def xcom(self, run: Any, task_id: str) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
                .first()
            )
            return None if row is None else XComModel.deserialize_value(row)


def _predict(url: str, rows: Any, caller: str) -> dict[str, Any]:
    body = json.dumps({"rows": json.loads(rows.to_json(orient="records"))}).encode()
    request = urllib.request.Request(
        f"{url}/v1/{PIPELINE}/predict",
        data=body,
        headers={"Content-Type": "application/json", "X-Caller-Key": caller},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


class Callers:
    """A thread of callers (a new key each time) asking for ``rows`` every 50 ms until the block ends."""

    def __init__(self, url: str, rows: Any) -> None:
        self.url, self.rows = url, rows
        self.sent, self.failed, self.by_version = 0, 0, collections.Counter[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sent += 1
            try:
                self.by_version[_predict(self.url, self.rows, uuid.uuid4().hex)["model_version"]] += 1
            except (urllib.error.URLError, OSError):
                self.failed += 1

    def __enter__(self) -> Callers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "{}"
    return (
        "{"
        + ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
        + "}"
    )


def _intervals(metrics: dict[str, Any]) -> str:
    """``accuracy 0.812 [0.79, 0.83]`` per metric that has a value."""
    shown = [
        f"{name} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
        for name, v in metrics.items()
        if v.get("value") is not None and v.get("low") is not None and v.get("high") is not None
    ]
    return ", ".join(shown) or "n/a"


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
