"""Helpers for the evaluation/promotion tests: data, real TabularModels, logged runs, a fault proxy.

Models are real :class:`TabularModel` instances fitted in-process (a few dozen Adam steps) and
logged with ``model_io.log_model`` to the real MLflow server. ``quality`` controls how good a
model is: labels are flipped for that share of the training rows, so a lower ``noise`` gives a
strictly better model on the clean held-out split.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from airflow_mlops_provider.core.model_io import log_model
from airflow_mlops_provider.core.snapshot import write_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment
from tests.support.services import background_process, free_port, postgres_database


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """Binary classification: ``y`` depends on ``x1``, ``x2`` and the ``region`` slice column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=rows),
            "x2": rng.normal(size=rows),
            "region": rng.choice(["eu", "us", "apac"], rows),
        }
    )
    shift = frame["region"].map({"eu": 0.3, "us": -0.3, "apac": 0.0})
    frame["y"] = (frame["x1"] + 0.7 * frame["x2"] + shift > 0).astype(int)
    return frame


def fit_model(train: pd.DataFrame, noise: float, seed: int = 0, steps: int = 60) -> TabularModel:
    """A classifier trained on ``train`` with a share ``noise`` of its labels flipped."""
    rng = np.random.default_rng(seed + 1000)
    noisy = train.copy()
    flip = rng.random(len(noisy)) < noise
    noisy.loc[flip, "y"] = 1 - noisy.loc[flip, "y"]
    model = TabularModel.fit_preprocessing(noisy, "y", hidden=(8,))
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.network.parameters(), lr=0.05)
    features, target = model.encode_features(noisy), model.encode_target(noisy)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model.network(features), target).backward()
        optimiser.step()
    return model


def log_run(
    settings: TrackingSettings,
    experiment: str,
    model: TabularModel,
    example: pd.DataFrame,
    tags: dict[str, str] | None = None,
) -> str:
    """Log ``model`` in a new run (as the training task would); returns the run id."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    client = settings.client()
    experiment_id = ensure_experiment(client, experiment)
    run = client.create_run(experiment_id, tags=tags or {})
    # Scoped, so no later test inherits a global tracking URI (a stopped server's, say).
    with _use_tracking_uri(settings.tracking_uri), mlflow.start_run(run_id=run.info.run_id):
        log_model(model, example.drop(columns=["y"]))
    return run.info.run_id


def write_eval_snapshot(root: Path, test: pd.DataFrame, train: pd.DataFrame | None = None) -> dict[str, Any]:
    """A split snapshot (``train``/``test``) under ``root``; returns its reference dict."""
    tables = {"test": pa.Table.from_pandas(test, preserve_index=False)}
    if train is not None:
        tables["train"] = pa.Table.from_pandas(train, preserve_index=False)
    return write_snapshot(tables, Location(root.as_uri()), "promo").to_dict()


@dataclass
class Models:
    """Logged runs of one pipeline; best to worst on the held-out split: better, baseline, worse, weak."""

    settings: TrackingSettings
    snapshot: dict[str, Any]
    baseline: str
    better: str
    worse: str
    weak: str = ""

    def challenger(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "model_uri": f"runs:/{run_id}/model"}


def log_models(settings: TrackingSettings, root: Path) -> Models:
    """Fit and log the three models once; the held-out split goes into a snapshot under ``root``."""
    train, test = make_frame(400, seed=1), make_frame(300, seed=2)
    experiment = f"promotion-{uuid.uuid4().hex[:8]}"
    tags = {
        "mlops.pipeline": "promo",
        "mlops.snapshot_sha256": "feed" * 16,
        "mlops.snapshot_uri": "file:///x",
    }
    noise = {"baseline": 0.25, "better": 0.0, "worse": 0.42, "weak": 0.48}
    runs = {
        name: log_run(settings, experiment, fit_model(train, share, seed=i), train, tags)
        for i, (name, share) in enumerate(noise.items())
    }
    return Models(settings, write_eval_snapshot(root, test, train), **runs)


def new_model_name(prefix: str = "promo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- a fault-injecting HTTP proxy in front of the MLflow server -----------------------------------
Rule = Callable[[str, str, bytes], str | None]
After = Callable[[str, str, bytes], None]
"""Called with (method, path, body) per request; returns None (forward), "drop" (forward, then
close the connection without answering: a lost response) or "refuse" (close without forwarding)."""


class FaultProxy:
    """Forwards HTTP to ``upstream`` (host, port); ``rule`` decides which responses are lost."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rule: Rule = lambda method, path, body: None
        self.after: After = lambda method, path, body: None  # runs once upstream answered
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, self.path))
                action = proxy.rule(self.command, self.path, body)
                if action == "refuse":
                    self.close_connection = True
                    return
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                    }
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                except OSError:
                    self.close_connection = True
                    return
                proxy.after(self.command, self.path, body)
                if action == "drop":
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def fault_proxy(upstream_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(int(upstream_url.rsplit(":", 1)[1]))
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()


_LOGGED: dict[str, Models] = {}


def shared_models(tracking_uri: str, root: Path) -> Models:
    """:func:`log_models` once per tracking server and test session (test modules share the runs)."""
    if tracking_uri not in _LOGGED:
        _LOGGED[tracking_uri] = log_models(TrackingSettings(tracking_uri=tracking_uri), root)
    return _LOGGED[tracking_uri]


class RestartableMlflow:
    """An ``mlflow server`` (PostgreSQL backend, local artifacts) that a test can stop and start again.

    The database, artifact folder and port survive restarts, as they would for a real server that
    crashes or is redeployed mid-promotion.
    """

    def __init__(self, work_dir: Path, db_url: str) -> None:
        import sys

        self.port = free_port()
        self.work_dir = work_dir
        self.args = [
            Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", db_url.replace("postgresql://", "postgresql+psycopg2://"),
            "--artifacts-destination", (work_dir / "artifacts").as_uri(),
        ]  # fmt: skip
        self._running: Any = None
        self.proc: Any = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._running = background_process(self.args, self.port, self.work_dir / "mlflow.log", timeout_s=180)
        self.proc = self._running.__enter__()

    def stop(self) -> None:
        """Kill the server at once (a crash, not a graceful shutdown); safe from any thread."""
        with self._lock:
            if self.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                # The uvicorn worker dies with the group but may hold the port a moment longer;
                # a restart before it is gone would find the port taken.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not _port_free(self.port):
                    time.sleep(0.05)
                self._running.__exit__(None, None, None)
                self.proc = self._running = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def restartable_mlflow(work_dir: Path) -> Iterator[RestartableMlflow]:
    with postgres_database("mlflow_flaky") as db_url:
        server = RestartableMlflow(work_dir, db_url)
        server.start()
        try:
            yield server
        finally:
            server.stop()
