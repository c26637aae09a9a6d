"""The process torchrun starts on every rank: ``python -m airflow_mlops_provider.core.training.worker JOB``.

It binds itself to torchrun's agent with a parent-death signal (so a SIGKILLed agent leaves no
workers: torchrun starts workers in sessions of their own, out of reach of a group kill), sets
thread counts and seeds, joins the process group, calls the training entry point and, on rank
0 only, logs the model to MLflow and writes the result file. Any failure prints its traceback
(which the operator streams into the task log) and leaves ``error-rank<N>.json`` for the
launcher; errors that a restart cannot fix are marked ``fatal`` so the launcher stops torchrun
instead of letting it restart the group in vain.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from airflow_mlops_provider.core.names import TAG_BACKEND
from airflow_mlops_provider.core.training.procutil import set_parent_death_signal

AGENT_PID_ENV = "MLOPS_TORCHRUN_PID"
STORAGE_OPTIONS_ENV = "MLOPS_STORAGE_OPTIONS"


def main(argv: list[str]) -> int:
    _bind_to_agent()
    job = json.loads(Path(argv[0]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    try:
        run(job, rank)
    except BaseException as err:  # report every failure, then let torchrun see a non-zero exit
        _report(job, rank, err)
        return 1
    return 0


def run(job: dict[str, Any], rank: int) -> None:
    """Train on this rank according to ``job`` (the launcher's JSON job description)."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from airflow_mlops_provider.core.training.context import MetricsLogger, TrainingContext
    from airflow_mlops_provider.core.training.entrypoint import resolve_entry_point

    threads = int(job["threads_per_proc"])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(max(1, min(threads, 4)))
    seed = int(job["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    backend = job.get("backend") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    fn = resolve_entry_point(job["entry_point"])
    _init_process_group(backend, rank, world_size)
    try:
        dist.barrier()  # the mesh is complete before any rank can fail on its own

        client = None
        if rank == 0 and job.get("run_id"):
            from mlflow import MlflowClient

            client = MlflowClient()
            client.set_tag(job["run_id"], TAG_BACKEND, backend)
        storage_options = json.loads(os.environ.get(STORAGE_OPTIONS_ENV) or "{}")
        ctx = TrainingContext(
            rank=rank,
            local_rank=local_rank,
            world_size=world_size,
            device=device,
            backend=backend,
            snapshot=job["snapshot"],
            splits=job["splits"],
            target=job["target"],
            task=job["task"],
            hyperparameters=job["hyperparameters"],
            missing_target=job.get("missing_target", "drop"),
            checkpoint_dir=job["checkpoint_dir"],
            checkpoint_every=int(job["checkpoint_every"]),
            seed=seed,
            metrics=MetricsLogger(rank, job.get("run_id"), client),
            restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            storage_options=storage_options,
        )
        if rank == 0:
            print(
                f"[worker] world_size={world_size} backend={backend} device={device} threads={threads} "
                f"restart={ctx.restart_count} entry_point={job['entry_point']}",
                flush=True,
            )
        model = fn(ctx)
        if rank == 0:
            _finish(job, ctx, model)
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _init_process_group(backend: str, rank: int, world_size: int) -> None:
    """Join the process group in a store namespace of this attempt.

    torchrun hands every worker group the agent's store; after a restart the previous group's
    keys are still in it, and a fast rank can read a dead peer's address from them. A prefix
    per restart keeps attempts apart.
    """
    from datetime import timedelta

    import torch.distributed as dist

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        dist.init_process_group(backend=backend)
        return
    # torch.distributed re-exports its stores from torch._C without declaring them
    store = dist.TCPStore(  # type: ignore[attr-defined]
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=timedelta(minutes=5),
    )
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefixed = dist.PrefixStore(f"mlops/attempt-{restart}/", store)  # type: ignore[attr-defined]
    dist.init_process_group(backend=backend, store=prefixed, rank=rank, world_size=world_size)


def _finish(job: dict[str, Any], ctx: Any, model: Any) -> None:
    """Rank 0: log the model to the run and write the result file for the launcher."""
    from airflow_mlops_provider.core.storage import Location
    from airflow_mlops_provider.core.tabular_model import TabularModel

    model_uri = None
    if job.get("run_id"):
        import mlflow

        with mlflow.start_run(run_id=job["run_id"]):
            if isinstance(model, TabularModel):
                from airflow_mlops_provider.core.model_io import log_model
                from airflow_mlops_provider.core.training.tabular import input_example

                log_model(model, input_example(ctx, model), tags=job.get("tags") or None)
            else:
                _log_module(model)
            model_uri = f"runs:/{job['run_id']}/model"
    result = {"metrics": ctx.metrics.last, "model_uri": model_uri, "epochs_logged": len(ctx.metrics.history)}
    Location(job["result_uri"], ctx.storage_options).write_bytes_atomic(json.dumps(result).encode())


def _log_module(model: Any) -> None:
    """A plain ``torch.nn.Module``: its state dict as safetensors under ``model/`` (no pickle)."""
    import tempfile

    import mlflow
    import torch
    from safetensors.torch import save_file

    module = getattr(model, "module", model)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"The training function returned {type(model).__name__}: "
            "return a TabularModel or a torch.nn.Module"
        )
    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, f"{tmp}/model.safetensors")
        mlflow.log_artifact(f"{tmp}/model.safetensors", artifact_path="model")


def _bind_to_agent() -> None:
    """Die with the torchrun agent: SIGKILL on its death, and exit now if it is already gone."""
    set_parent_death_signal(signal.SIGKILL)
    expected = os.environ.get(AGENT_PID_ENV)
    if expected and os.getppid() != int(expected):
        os._exit(1)


def _report(job: dict[str, Any], rank: int, err: BaseException) -> None:
    from airflow_mlops_provider.core.training.errors import is_fatal

    text = "".join(traceback.format_exception(err))
    print(f"[worker rank {rank}] training failed:\n{text}", file=sys.stderr, flush=True)
    record = {
        "rank": rank,
        "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
        "type": type(err).__name__,
        "message": str(err)[:2000],
        "fatal": is_fatal(err),
        "traceback": text[-8000:],
    }
    path = Path(job["workdir"]) / f"error-rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
