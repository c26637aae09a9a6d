"""The training container's command: ``python -m airflow_mlops_provider.core.training.kubernetes.entry``.

The Kubeflow controller starts it on every node with ``PET_NNODES``, ``PET_NODE_RANK``,
``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` set, which torchrun reads as
its flags. It writes the job spec from :data:`~.manifests.SPEC_ENV` to a job file in a scratch
folder (as the local launcher does), fills in the threads per worker when the config left them
open, and replaces itself with torchrun running :mod:`airflow_mlops_provider.core.training.worker`
on that file, so the pod's exit status is torchrun's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_mlops_provider.core.training.kubernetes.manifests import SPEC_ENV
from airflow_mlops_provider.core.training.procutil import exec_with_parent_death_signal


def torchrun_argv(job_file: Path, max_restarts: int) -> list[str]:
    """torchrun on ``job_file``; the node layout comes from the controller's ``PET_*`` variables."""
    return [
        sys.executable, "-m", "torch.distributed.run", f"--max-restarts={max_restarts}",
        "--monitor-interval=1", "-m", "airflow_mlops_provider.core.training.worker", str(job_file),
    ]  # fmt: skip


def write_job_file(environ: Mapping[str, str], folder: Path) -> tuple[Path, int]:
    """The job file the workers read, from the spec in ``environ``; and torchrun's restarts."""
    raw = environ.get(SPEC_ENV)
    if not raw:
        raise SystemExit(f"{SPEC_ENV} is not set: this container is started by a Kubeflow training job")
    spec: dict[str, Any] = json.loads(raw)
    procs = int(environ.get("PET_NPROC_PER_NODE") or 1)
    threads = spec.get("threads_per_proc") or max(1, (os.cpu_count() or 1) // procs)
    job_file = folder / "job.json"
    job_file.write_text(json.dumps({**spec, "threads_per_proc": int(threads), "workdir": str(folder)}))
    return job_file, int(spec.get("max_restarts") or 0)


def main() -> None:
    job_file, restarts = write_job_file(os.environ, Path(tempfile.mkdtemp(prefix="torchrun-job-")))
    threads = json.loads(job_file.read_text())["threads_per_proc"]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    exec_with_parent_death_signal(torchrun_argv(job_file, restarts))


if __name__ == "__main__":
    main()
