"""Launch torchrun for one training job, supervise it, and report the MLflow run it produced.

The launcher (running in the Airflow task process) does everything that must happen before a
GPU-second is spent: it checks the entry point, the snapshot and that MLflow answers, then
creates the MLflow run (tags, params, the snapshot as dataset input). It starts
``python -m torch.distributed.run`` through a tiny wrapper that sets a parent-death signal, in a
session of its own, with a free rendezvous port, explicit thread counts and the tracking
settings in the environment. Worker output is streamed line by line to ``log``. Rank 0 logs
metrics and the model into the run; the launcher closes the run as FINISHED or FAILED.

Retries: a job with an ``attempt_key`` (the Airflow task instance, the same for all its tries)
tags its run with it. A later launch with that key and the same training config hash finds the
run, reopens it and trains on in it: workers resume after the newest checkpoint, so metrics go on
at the next epoch's step. A run whose result is already written (the model is logged; the task
failed after that) is reused without training. Multi-node jobs find their run the same way by
the rendezvous id their nodes share.

Stopping: :meth:`TorchrunLauncher.terminate` sends SIGTERM to torchrun's process group, waits
up to ``grace_s`` (3 s) and then sends SIGKILL to the group and to every worker it saw (torchrun
puts workers in sessions of their own). Should the task process itself be SIGKILLed, the
parent-death signals take torchrun and then its workers down with it. The parent-death signal
fires when the *thread* that started torchrun exits, so :meth:`run` must be called from a
thread that lives as long as the training (Airflow's task thread does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from airflow_mlops_provider.core.names import (
    TAG_ATTEMPT_KEY,
    TAG_PIPELINE,
    TAG_RDZV_ID,
    TAG_RESUMED,
    TAG_SNAPSHOT_SHA,
    TAG_SNAPSHOT_URI,
    TAG_TRAINING_CONFIG,
)
from airflow_mlops_provider.core.payloads import TrainingResult
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.entrypoint import check_entry_point_static
from airflow_mlops_provider.core.training.errors import TrainingError
from airflow_mlops_provider.core.training.job import TrainingJob
from airflow_mlops_provider.core.training.launch import Launch
from airflow_mlops_provider.core.training.procutil import free_port, signal_group
from airflow_mlops_provider.core.training.rendezvous import JOB_SUCCEEDED, NodeRendezvous, node_address
from airflow_mlops_provider.core.training.worker import STORAGE_OPTIONS_ENV

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tracking import TrackingSettings


class TorchrunLauncher:
    """Runs one :class:`TrainingJob` under torchrun; :meth:`terminate` may be called from a signal handler."""

    def __init__(
        self,
        job: TrainingJob,
        settings: TrackingSettings,
        storage_options: Mapping[str, Any] | None = None,
        log: Callable[[str], None] = print,
        grace_s: float = 3.0,
    ) -> None:
        self.job = job
        self.settings = settings
        self.storage_options = dict(storage_options or {})
        self.log = log
        self.grace_s = grace_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped_by: str | None = None
        self.port: int | None = None
        self.endpoint: str | None = None  # the c10d rendezvous of a multi-node job
        self._workers: dict[int, Any] = {}  # pid -> psutil.Process (identity-checked before a kill)

    # --- the whole job --------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        """Preflight, create the MLflow run, train under torchrun and return the result dict."""
        launch = self.prepare()
        job = self.job
        leads = launch.node is None or not job.node_rank
        status = "FAILED"
        try:
            trained = self.take_over(launch) if leads else launch.earlier == JOB_SUCCEEDED
            if not trained:
                self._train(launch.spec, launch.threads)
            result = launch.result()
            status = "FINISHED"
        finally:
            if leads:  # node 0 owns the run and the rendezvous record
                launch.close(status)
        return result

    def prepare(self) -> Launch:
        """Everything before the first GPU-second: check the job, the snapshot and MLflow, open the
        run (created, or an earlier launch's found) and write the workers' job spec.

        A multi-node follower waits here for node 0's record and joins its run instead.
        """
        from airflow_mlops_provider.core.snapshot import SnapshotError, open_snapshot
        from airflow_mlops_provider.core.tracking import check_reachable, ensure_experiment

        job = self.job
        job.validate()
        check_entry_point_static(job.entry_point)
        snap = open_snapshot(job.snapshot, self.storage_options)
        if "train" not in snap.manifest["splits"]:
            raise SnapshotError(
                f"Snapshot {snap.location.uri} has no 'train' split (has {sorted(snap.manifest['splits'])}): "
                "ingest it with a split"
            )
        splits = {name: snap.split_uri(name) for name in snap.manifest["splits"]}
        snapshot = {
            **snap.ref.to_dict(),
            **{k: v for k, v in job.snapshot.items() if k not in ("uri", "sha256")},
        }
        self.log(check_reachable(self.settings))
        client = self.settings.client()
        experiment_id = ensure_experiment(client, job.experiment_name or job.pipeline, job.artifact_root)
        backend = job.backend  # None: each worker picks NCCL when it sees a GPU, else gloo
        threads = job.threads_per_proc or max(1, (os.cpu_count() or 1) // job.nproc_per_node)
        config_hash = job.config_hash()
        params = {
            **{str(k): v for k, v in job.hyperparameters.items()},
            "entry_point": job.entry_point,
            "target": job.target,
            "task": job.task,
            "seed": job.seed,
            "nproc_per_node": job.nproc_per_node,
            "nnodes": job.nnodes,
            "world_size": job.world_size,
            "max_restarts": job.max_restarts,
            "backend": backend or "auto",
            "threads_per_proc": threads,
            "checkpoint_every": job.checkpoint_every,
            "missing_target": job.missing_target,
        }
        tags = {
            **{str(k): str(v) for k, v in job.run_tags.items()},
            TAG_PIPELINE: job.pipeline,
            TAG_SNAPSHOT_URI: snap.location.uri,
            TAG_SNAPSHOT_SHA: snap.ref.sha256,
            TAG_TRAINING_CONFIG: config_hash,
        }
        node = self._rendezvous()
        earlier: str | None
        if node is not None and job.node_rank:  # a follower: node 0 made the run and the rendezvous
            record = node.wait(job.join_timeout, int(job.node_rank))
            run_id, experiment_id = record["run_id"], record["experiment_id"]
            self.endpoint, earlier = record["endpoint"], record["finished"] or "node"
            if earlier == JOB_SUCCEEDED:
                self.log(f"Node {job.node_rank}: the job already succeeded in MLflow run {run_id}")
            else:
                node.join(int(job.node_rank), record)
                self.log(f"Node {job.node_rank} of {job.nnodes} joins {self.endpoint} for run {run_id}")
        else:
            run_id, earlier = self._open_run(client, experiment_id, tags, params, snap)
            if node is not None:
                self.endpoint = job.rdzv_endpoint or f"{node_address()}:{free_port()}"
                node.join(0, node.publish(self.endpoint, run_id, experiment_id))
                self.log(f"Node 0 of {job.nnodes} hosts the rendezvous at {self.endpoint}")
        self.log(f"MLflow run {run_id} in experiment {experiment_id} ({self.settings.display_uri})")

        checkpoint_dir = Location(job.artifact_root, self.storage_options).join(
            job.pipeline, "checkpoints", run_id
        )
        spec = {
            "entry_point": job.entry_point,
            "snapshot": snapshot,
            "splits": splits,
            "target": job.target,
            "task": job.task,
            "hyperparameters": dict(job.hyperparameters),
            "seed": job.seed,
            "missing_target": job.missing_target,
            "backend": backend,
            "threads_per_proc": threads,
            "checkpoint_dir": checkpoint_dir.uri,
            "checkpoint_every": job.checkpoint_every,
            "run_id": run_id,
            "tags": tags,
            "result_uri": checkpoint_dir.join("result.json").uri,
        }
        return Launch(
            run_id=run_id,
            experiment_id=experiment_id,
            earlier=earlier,
            spec=spec,
            params=params,
            snapshot_sha256=snap.ref.sha256,
            config_hash=config_hash,
            checkpoint_dir=checkpoint_dir,
            threads=threads,
            client=client,
            node=node,
        )

    def _rendezvous(self) -> NodeRendezvous | None:
        """The rendezvous record of a multi-node job whose node tasks find each other; else None."""
        job = self.job
        if job.nnodes == 1 or job.node_rank is None:
            return None
        root = Location(job.artifact_root, self.storage_options)
        return NodeRendezvous(root, job.pipeline, str(job.rdzv_id), job.nnodes)

    def _train(self, spec: dict[str, Any], threads: int) -> None:
        """Run torchrun on ``spec`` (the workers' job file) in a scratch folder of its own."""
        workdir = Path(tempfile.mkdtemp(prefix="torchrun-job-"))
        try:
            job_file = workdir / "job.json"
            job_file.write_text(json.dumps({**spec, "workdir": str(workdir)}, default=str))
            self._supervise(self.command(job_file, spec["run_id"]), self.environment(threads), workdir)
        finally:
            self.terminate()
            shutil.rmtree(workdir, ignore_errors=True)

    def _open_run(
        self, client: Any, experiment_id: str, tags: dict[str, str], params: dict[str, Any], snap: Any
    ) -> tuple[str, str | None]:
        """The run to train in, and the status an earlier launch left it in (None: created now).

        A job with a run key (the rendezvous id its nodes share, else the task instance's attempt
        key) continues the run carrying that key and the same training config hash; a changed
        config (new data after an upstream clear, say) gets a run of its own.
        """
        from airflow_mlops_provider.core.registry import filter_value

        key = _run_key(self.job)
        if key is not None:
            tags = {**tags, **key}
            query = " and ".join(
                f"tags.`{name}` = {filter_value(tags[name])}" for name in (*key, TAG_TRAINING_CONFIG)
            )
            found = client.search_runs([experiment_id], query, max_results=1)
            if found:  # mlflow's RunInfo properties are untyped
                return cast(str, found[0].info.run_id), cast(str, found[0].info.status)
        return self._create_run(client, experiment_id, tags, params, snap), None

    def take_over(self, launch: Launch) -> bool:
        """Take over the run an earlier launch left; True when its result is there (nothing to train).

        A run whose rank 0 wrote its result (the model is logged) is reused as it is, even when
        its attempt failed after that. Any other is reopened (RUNNING again, with this launch's
        run tags) and its workers resume after the newest checkpoint in its checkpoint folder.
        """
        from mlflow.entities import RunTag

        from airflow_mlops_provider.core.training.checkpoints import list_checkpoints

        client, run_id, earlier = launch.client, launch.run_id, launch.earlier
        checkpoint_dir = launch.checkpoint_dir
        if earlier is None:
            return False
        if checkpoint_dir.join("result.json").exists():
            self.log(f"MLflow run {run_id} ({earlier}) already holds the trained model: reused, no training")
            return True
        found = list_checkpoints(checkpoint_dir)
        resumed = str(found[-1][0]) if found else "none"
        client.update_run(run_id, status="RUNNING")
        tags = {**{str(k): str(v) for k, v in self.job.run_tags.items()}, TAG_RESUMED: resumed}
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
        where = f"after the checkpoint of epoch {resumed}" if found else "from the start (no checkpoint)"
        self.log(f"Continuing MLflow run {run_id}, left {earlier} by an earlier launch: resuming {where}")
        return False

    def _create_run(
        self, client: Any, experiment_id: str, tags: dict[str, str], params: dict[str, Any], snap: Any
    ) -> str:
        from mlflow.entities import Dataset, DatasetInput, InputTag, Param, RunTag

        run = client.create_run(experiment_id, tags=tags, run_name=self.job.run_name)
        run_id: str = run.info.run_id
        client.log_batch(
            run_id,
            params=[Param(k, _param_value(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
            synchronous=True,
        )
        datasets = []
        for split, rows in snap.manifest["splits"].items():
            dataset = Dataset(
                name=f"{self.job.pipeline}/{split}",
                digest=snap.ref.sha256[:36],
                source_type="snapshot",
                source=json.dumps({"uri": snap.split_uri(split), "sha256": snap.ref.sha256, "rows": rows}),
                schema=json.dumps({"mlflow_colspec": [
                    {"name": c["name"], "type": c["type"]} for c in snap.manifest.get("schema", [])
                ]}),
                profile=json.dumps({"num_rows": rows}),
            )  # fmt: skip
            context = "training" if split == "train" else split
            datasets.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
        client.log_inputs(run_id, datasets=datasets)
        return run_id

    # --- the torchrun process -------------------------------------------------------------------
    def command(self, job_file: Path, run_id: str) -> list[str]:
        job = self.job
        conf = ""
        if job.nnodes > 1:
            endpoint, rdzv_id = str(self.endpoint or job.rdzv_endpoint), str(job.rdzv_id)
            conf = f"join_timeout={job.join_timeout}"
            if job.node_rank is not None:  # node 0 hosts the store; the others never try to
                conf += f",is_host={'true' if int(job.node_rank) == 0 else 'false'}"
        else:
            self.port = free_port()
            endpoint, rdzv_id = f"127.0.0.1:{self.port}", run_id
        return [
            sys.executable, "-m", "airflow_mlops_provider.core.training.procutil",
            sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={job.nnodes}", f"--nproc-per-node={job.nproc_per_node}",
            f"--max-restarts={job.max_restarts}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={rdzv_id}", "--monitor-interval=0.1",
            *([f"--rdzv-conf={conf}"] if conf else []),
            "-m", "airflow_mlops_provider.core.training.worker", str(job_file),
        ]  # fmt: skip

    def environment(self, threads: int) -> dict[str, str]:
        env = self.settings.environ(os.environ)
        env.pop("MLFLOW_RUN_ID", None)
        env.update(
            {
                "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads),
                "PYTHONUNBUFFERED": "1",
                "MLOPS_LAUNCHER_PID": str(os.getpid()),
                STORAGE_OPTIONS_ENV: json.dumps(self.storage_options, default=str),
            }
        )
        return env

    def _supervise(self, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.log(f"Starting torchrun: {' '.join(argv[3:])}")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        tail: deque[str] = deque(maxlen=200)
        fatal: dict[str, Any] | None = None
        stdout = cast(IO[bytes], self.proc.stdout)  # stdout=PIPE: never None
        selector = selectors.DefaultSelector()
        selector.register(stdout, selectors.EVENT_READ)
        pending = b""
        last_scan = 0.0
        try:
            while True:
                for _key, _ in selector.select(timeout=0.5):
                    chunk = os.read(stdout.fileno(), 65536)
                    if not chunk:
                        selector.unregister(stdout)
                        break
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace").rstrip()
                        tail.append(text)
                        self.log(text)
                if not selector.get_map():
                    break
                now = time.monotonic()
                if now - last_scan > 0.5:
                    last_scan = now
                    self._remember_workers()
                    fatal = fatal or _fatal_error(workdir)
                    if fatal and self.stopped_by is None:
                        self.log(
                            f"Rank {fatal['rank']} failed with {fatal['type']}; "
                            "a restart cannot fix it: stopping torchrun"
                        )
                        self.terminate("fatal worker error")
            if pending:
                self.log(pending.decode(errors="replace"))
            returncode = self.proc.wait()
        finally:
            selector.close()
        if returncode == 0 and self.stopped_by is None:
            return
        raise TrainingError(self._failure_message(returncode, fatal, list(tail), workdir))

    def _failure_message(
        self, returncode: int, fatal: dict[str, Any] | None, tail: list[str], workdir: Path
    ) -> str:
        """Name the root cause: a fatal worker error, a worker killed by a signal, or a worker's exception."""
        restarts = f"max_restarts={self.job.max_restarts}"
        if fatal is not None:
            return _describe(fatal)
        node = self._rendezvous()
        if node is not None and any("RendezvousTimeoutError" in line for line in tail):
            return f"Training failed: {node.missing_message(self.job.join_timeout)}"
        if self.stopped_by is not None:
            return f"Training was stopped ({self.stopped_by}); torchrun exited with code {returncode}"
        errors = _worker_errors(workdir)
        cause = _root_cause(tail)
        if cause and cause["exitcode"] < 0:
            return (
                f"Training failed: worker rank {cause['rank']} was killed by {cause['signal']} "
                f"(exit code {cause['exitcode']}) and no restart was left ({restarts})"
            )
        if cause:
            mine = [e for e in errors if e["rank"] == cause["rank"]]
            errors = mine + [e for e in errors if e not in mine]
        if errors:
            return f"{_describe(errors[0])} ({restarts})"
        return (
            f"torchrun exited with code {returncode} ({restarts}): a worker died without reporting an "
            "error (killed by a signal or out of memory?)"
        )

    def _remember_workers(self) -> None:
        """Note torchrun's descendants: they live in sessions of their own, out of reach of a group kill."""
        import psutil

        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._workers.setdefault(child.pid, child)

    def terminate(self, reason: str = "stopped") -> None:
        """Stop torchrun and its workers: SIGTERM to the group, SIGKILL after ``grace_s``. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._kill_workers()
            return
        self.stopped_by = self.stopped_by or reason
        self._remember_workers()
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group
        self._kill_workers()

    def _kill_workers(self) -> None:
        import psutil

        for worker in list(self._workers.values()):
            # psutil refuses to signal a process whose pid was reused since we saw it.
            with contextlib.suppress(psutil.Error):
                if worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
                    worker.kill()
        self._workers.clear()


def run_training(
    job: TrainingJob,
    settings: TrackingSettings,
    storage_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Convenience wrapper: run ``job`` to completion and return the result dict."""
    return TorchrunLauncher(job, settings, storage_options, log).run()


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def _worker_errors(workdir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(workdir.glob("error-rank*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue

    # Latest attempt first, then errors of the worker's own making before collateral
    # communication failures of its peers.
    def order(e: dict[str, Any]) -> tuple[int, bool, bool, int]:
        collateral = any(word in str(e.get("message", "")).lower() for word in _COLLATERAL)
        return (-int(e.get("restart", 0)), not e.get("fatal"), collateral, int(e.get("rank", 0)))

    return sorted(found, key=order)


def _describe(error: Mapping[str, Any]) -> str:
    return (
        f"Training failed on rank {error['rank']}: {error['type']}: {error['message']} "
        "(the worker's traceback is in the task log above)"
    )


_COLLATERAL = ("gloo", "nccl", "connection reset", "connection closed", "connectfullmesh", "timed out")


def _root_cause(tail: list[str]) -> dict[str, Any] | None:
    """The first failed worker as torchrun's summary names it (``Root Cause`` block)."""
    start = max((i for i, line in enumerate(tail) if "Root Cause" in line), default=None)
    if start is None:
        return None
    block = "\n".join(tail[start : start + 12])
    rank = re.search(r"rank\s*:\s*(\d+)", block)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", block)
    if not (rank and code):
        return None
    sig = re.search(r"\((SIG[A-Z]+)\)", block)
    exitcode = int(code.group(1))
    name = sig.group(1) if sig else (signal.Signals(-exitcode).name if exitcode < 0 else "")
    return {"rank": int(rank.group(1)), "exitcode": exitcode, "signal": name}


def _fatal_error(workdir: Path) -> dict[str, Any] | None:
    return next((e for e in _worker_errors(workdir) if e.get("fatal")), None)


def _run_key(job: TrainingJob) -> dict[str, str] | None:
    """The tag that names ``job``'s run across launches: the rendezvous id every node of a
    multi-node job shares, else the attempt key all tries of one task instance share."""
    if job.nnodes > 1:
        return {TAG_RDZV_ID: str(job.rdzv_id)}
    return {TAG_ATTEMPT_KEY: job.attempt_key} if job.attempt_key else None


def new_rdzv_id() -> str:
    return uuid.uuid4().hex
