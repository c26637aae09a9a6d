"""Serving benchmark: our prediction service vs ``mlflow models serve`` of the same model version.

One run starts an MLflow tracking server (SQLite store in a temporary directory), registers two
versions of a classifier trained on scikit-learn's breast-cancer data through our own code
(``TabularModel`` + ``model_io.log_model``, 30 numeric features), then serves version 1 twice: our
service (``python -m airflow_mlops_provider.serving``, following ``champion``) and ``mlflow models
serve --env-manager local`` (the baseline), one uvicorn process each. The same load generator
(CLIENTS keep-alive ``http.client`` threads) sends ``{"dataframe_records": [...]}`` bodies of 1 and
of 100 rows to each, after a warm-up, the servers taking turns; p50/p99 latency and requests per
second are measured. Ours answers with class probabilities besides the labels (MLflow: labels
only); both must return the same labels. Then, under the same single-row load on our service,
``champion`` moves between the two versions SWAPS times, each move awaited until responses carry
the new ``X-Model-Version``; every failed request is counted (target: 0).

Ratios: ``mlflow_over_ours_p50_ratio`` = mlflow's p50 / ours (2 means half mlflow's latency),
likewise p99; ``ours_over_mlflow_rps_ratio`` = our throughput / mlflow's.

Usage: ``python bench/serve.py`` (full) or ``python bench/serve.py --quick`` (smoke).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, quick_flag, write_results
from tests.support.services import background_process, free_port

BIN = Path(sys.executable).parent
MLFLOW = str(BIN / "mlflow")
CLIENTS = 4
SWAPS = 10
PIPELINE = "bench"


# --- model ----------------------------------------------------------------------------------------
def register_versions(tracking_uri: str) -> tuple[str, list[dict[str, Any]]]:
    """Two trained versions of a breast-cancer classifier, version 1 as ``champion``; and sample rows."""
    import mlflow
    import torch
    from sklearn.datasets import load_breast_cancer

    from airflow_mlops_provider.core.model_io import log_model
    from airflow_mlops_provider.core.tabular_model import TabularModel
    from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment

    data = load_breast_cancer(as_frame=True).frame
    settings = TrackingSettings(tracking_uri)
    client = settings.client()
    experiment_id = ensure_experiment(client, "bench-serve")
    name = "bench_cancer"
    for seed in (0, 1):
        model = TabularModel.fit_preprocessing(data, "target", hidden=(64, 32))
        torch.manual_seed(seed)
        optimiser = torch.optim.Adam(model.network.parameters(), lr=0.01)
        features, target = model.encode_features(data), model.encode_target(data)
        for _ in range(60):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model.network(features), target).backward()
            optimiser.step()
        run = client.create_run(experiment_id)
        with settings.environment():
            mlflow.set_tracking_uri(tracking_uri)
            with mlflow.start_run(run_id=run.info.run_id):
                log_model(model, data.drop(columns=["target"]))
            mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    client.set_registered_model_alias(name, "champion", "1")
    rows: list[dict[str, Any]] = json.loads(data.drop(columns=["target"]).to_json(orient="records"))
    return name, rows


# --- servers --------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    path: str


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_until(check: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s}s")
        time.sleep(0.1)


@dataclass
class Setup:
    tracking_uri: str
    model_name: str
    rows: list[dict[str, Any]]
    ours: Server
    mlflow: Server


@contextmanager
def servers(work: Path) -> Iterator[Setup]:
    """The tracking server, the registered model, our service and ``mlflow models serve``; all
    stopped (process groups) on exit, also on error."""
    with ExitStack() as stack:
        port = free_port()
        tracking = [
            MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination", (work / "artifacts").as_uri(),
        ]  # fmt: skip
        stack.enter_context(background_process(tracking, port, work / "mlflow.log", timeout_s=180))
        tracking_uri = f"http://127.0.0.1:{port}"
        name, rows = register_versions(tracking_uri)
        ours = Server("ours", free_port(), f"/v1/{PIPELINE}/predict")
        serve = [
            sys.executable, "-m", "airflow_mlops_provider.serving", "--tracking-uri", tracking_uri,
            "--pipeline", f"{PIPELINE}={name}@champion", "--port", str(ours.port), "--poll", "0.2",
        ]  # fmt: skip
        stack.enter_context(background_process(serve, ours.port, work / "ours.log"))
        wait_until(lambda: call(ours.port, "GET", "/ready")[0] == 200, "our service ready")
        mlflow = Server("mlflow", free_port(), "/invocations")
        baseline = [
            MLFLOW, "models", "serve", "-m", f"models:/{name}/1", "--env-manager", "local",
            "-p", str(mlflow.port), "-h", "127.0.0.1",
        ]  # fmt: skip
        env = {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        stack.enter_context(background_process(baseline, mlflow.port, work / "mlflow-serve.log", env, 180))
        wait_until(lambda: call(mlflow.port, "GET", "/ping")[0] == 200, "mlflow models serve ready")
        yield Setup(tracking_uri, name, rows, ours, mlflow)


# --- load -----------------------------------------------------------------------------------------
@dataclass
class Load:
    """CLIENTS threads posting ``body`` over keep-alive connections until stopped."""

    server: Server
    body: bytes
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    recording: threading.Event = field(default_factory=threading.Event)

    def run(self, warmup_s: float, seconds: float) -> float:
        """Warm up, then record for ``seconds``; returns the seconds actually recorded."""
        threads = self.start()
        time.sleep(warmup_s)
        self.recording.set()
        started = time.perf_counter()
        time.sleep(seconds)
        self.finish(threads)
        return time.perf_counter() - started

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads

    def finish(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        for thread in threads:
            thread.join(60)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("POST", self.server.path, self.body, headers)
                response = conn.getresponse()
                response.read()
                ok, detail = response.status == 200, f"HTTP {response.status}"
                version = response.getheader("X-Model-Version")
            except (OSError, http.client.HTTPException) as err:
                ok, detail, version = False, f"{type(err).__name__}: {err}", None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            if not self.recording.is_set():
                continue
            if ok:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.failures.append(detail)
            if version:
                self.versions.append(version)
        conn.close()


def body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"dataframe_records": rows}).encode()


def measure(server: Server, rows: list[dict[str, Any]], warmup_s: float, seconds: float) -> dict[str, Any]:
    load = Load(server, body(rows))
    elapsed = load.run(warmup_s, seconds)
    if load.failures or not load.latencies:
        raise RuntimeError(f"{server.name}: {len(load.failures)} failed requests, e.g. {load.failures[:3]}")
    ms = sorted(1000 * s for s in load.latencies)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
        "rps": round(len(ms) / elapsed, 1),
        "requests": len(ms),
    }


def same_labels(ours: Server, mlflow: Server, rows: list[dict[str, Any]]) -> bool:
    """Both servers give the same labels for ``rows`` (the same model version behind both)."""
    answers = [json.loads(call(s.port, "POST", s.path, body(rows))[2])["predictions"] for s in (ours, mlflow)]
    return bool(answers[0] == answers[1])


def swaps_under_load(
    tracking_uri: str, name: str, ours: Server, rows: list[dict[str, Any]], timeout_s: float = 60
) -> dict[str, Any]:
    """Move ``champion`` SWAPS times while single-row load runs; count failed requests."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    load = Load(ours, body(rows))
    load.recording.set()
    threads = load.start()
    seconds = []
    try:
        for i in range(SWAPS):
            version = "2" if i % 2 == 0 else "1"
            seen = len(load.versions)
            started = time.perf_counter()
            client.set_registered_model_alias(name, "champion", version)
            wait_until(
                lambda v=version, n=seen: v in load.versions[n:], f"swap {i + 1} to v{version}", timeout_s
            )
            seconds.append(time.perf_counter() - started)
    finally:
        load.finish(threads)
    return {
        "swaps": len(seconds),
        "failed_during_swaps": len(load.failures),
        "requests_during_swaps": len(load.latencies) + len(load.failures),
        "swap_visible_median_s": round(statistics.median(seconds), 3),
        "failures_sample": load.failures[:5],
    }


# --- report ---------------------------------------------------------------------------------------
def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("nan")


def compare(figures: dict[str, Any], prefix: str, ours: dict[str, Any], mlflow: dict[str, Any]) -> None:
    for side, found in (("ours", ours), ("mlflow", mlflow)):
        for key in ("p50_ms", "p99_ms", "rps", "requests"):
            figures[f"{side}{prefix}_{key}"] = found[key]
    figures[f"mlflow_over_ours{prefix}_p50_ratio"] = _ratio(mlflow["p50_ms"], ours["p50_ms"])
    figures[f"mlflow_over_ours{prefix}_p99_ratio"] = _ratio(mlflow["p99_ms"], ours["p99_ms"])
    figures[f"ours_over_mlflow{prefix}_rps_ratio"] = _ratio(ours["rps"], mlflow["rps"])


def report(figures: dict[str, Any]) -> None:
    table = []
    for prefix, label in (("", "1 row"), ("_100rows", "100 rows")):
        for key, unit in (("p50_ms", "ms"), ("p99_ms", "ms"), ("rps", "req/s")):
            ratio_key = (
                f"ours_over_mlflow{prefix}_rps_ratio"
                if key == "rps"
                else f"mlflow_over_ours{prefix}_{key[:3]}_ratio"
            )
            better = "ours/mlflow" if key == "rps" else "mlflow/ours"
            table += [
                (f"{label} mlflow {key} (baseline)", figures[f"mlflow{prefix}_{key}"], unit),
                (
                    f"{label} ours {key}",
                    figures[f"ours{prefix}_{key}"],
                    f"{unit}; {better} = {figures[ratio_key]}x",
                ),
            ]
    table.append(
        ("failed_during_swaps", figures["failed_during_swaps"], f"in {figures['swaps']} alias swaps")
    )
    print_table(
        f"Our service vs mlflow models serve, {CLIENTS} keep-alive clients each "
        f"(load avg {figures['load_average_1m']:.1f}; ratios > 1: ours better)",
        table,
    )


def main() -> int:
    import mlflow
    import uvicorn

    quick = quick_flag()
    warmup_s, seconds = (1.0, 3.0) if quick else (3.0, 12.0)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    figures: dict[str, Any] = {
        "clients": CLIENTS,
        "model": "TabularModel MLP (64, 32) on breast cancer, 30 numeric features, 2 classes",
        "mlflow_version": mlflow.__version__,
        "uvicorn_version": uvicorn.__version__,
        "measured_s": seconds,
        "answers": "ours: labels, class probabilities, version, request and row ids; mlflow: labels",
        "load_average_1m_start": os.getloadavg()[0],
    }
    try:
        with servers(work) as setup:
            one, hundred = setup.rows[:1], setup.rows[:100]
            figures["same_labels"] = same_labels(setup.ours, setup.mlflow, hundred)
            for prefix, rows in (("", one), ("_100rows", hundred)):
                ours = measure(setup.ours, rows, warmup_s, seconds)  # the servers take turns
                theirs = measure(setup.mlflow, rows, warmup_s, seconds)
                compare(figures, prefix, ours, theirs)
            figures.update(swaps_under_load(setup.tracking_uri, setup.model_name, setup.ours, one))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["load_average_1m"] = os.getloadavg()[0]
    report(figures)
    write_results("serve", figures, quick)
    return 0 if figures["failed_during_swaps"] == 0 and figures["same_labels"] else 1


if __name__ == "__main__":
    sys.exit(main())
