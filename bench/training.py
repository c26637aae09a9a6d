"""Training benchmark: the operator's overhead over plain torchrun, and throughput for 1 and 2 processes.

Baselines measured in the same run:

* ``torchrun_s``: ``python -m torch.distributed.run --standalone`` starting our DDP worker on a
  prepared job (the same training script, the same data, the same MLflow run logging);
* ``operator_s``: ``TrainModelOperator`` inside ``dag.test()`` doing the same job (wall time
  of the ``dag.test()`` call in a child process: preflight, MLflow run creation, launch,
  streaming, closing the run), ratio ``operator_s / torchrun_s`` (target < 1.10);
* ``samples_per_s_1proc`` / ``samples_per_s_2proc``: steady-state training samples per second,
  from the MLflow timestamps of the first and last epoch of plain-torchrun runs with 1 process
  and 2 processes, each with the same thread count (cores // 2).

Data: scikit-learn's bundled digits (1,797 x 64) replicated with a little noise, split 80/20.
Tracking goes to an ``mlflow server`` on loopback (SQLite backend, started before any timing),
as a deployment would use a tracking server.
``python -m bench.training`` (full) or ``--quick`` (smoke size).

Large mode, ``python -m bench.training --large [--rows N]`` (20,000,000 rows by default): a
generated snapshot (numbers with gaps, categories, dates, unlabelled rows; 80/20 train and
validation) trained for one epoch by 2 processes under plain torchrun, each rank reading its
shard. Recorded: peak RSS per rank (``VmHWM`` of each worker, polled), the train split's size in
pandas (what ``ctx.read_split`` held on every rank before: the deep memory of its frames, summed
over row groups) and Arrow's, and the wall time against the former in-memory trainer (the
``tabular.py`` of commit ``IN_MEMORY_COMMIT``, run from that commit's text) on a size that fits.
Merged into ``bench/results/training.json`` (other keys kept).

Two-node mode, ``python -m bench.training --nodes [--quick]``: 2 nodes x 1 process against 1 node
x 2 processes as the generated DAG's node tasks on two Celery workers on loopback
(:mod:`bench.training_nodes`); also merged into ``bench/results/training.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import WORK, merge_results, print_table, quick_flag, write_results

REPO = Path(__file__).resolve().parent.parent
PIPELINE = "bench_training"


def build_snapshot(root: Path, copies: int) -> dict[str, Any]:
    from sklearn.datasets import load_digits

    from airflow_mlops_provider.core.snapshot import write_snapshot
    from airflow_mlops_provider.core.storage import Location

    digits = load_digits(as_frame=True).frame
    rng = np.random.default_rng(0)
    frame = digits.loc[np.tile(np.arange(len(digits)), copies)].reset_index(drop=True)
    features = [c for c in frame.columns if c != "target"]
    frame[features] = frame[features].to_numpy() + rng.normal(0, 0.5, (len(frame), len(features)))
    order = rng.permutation(len(frame))
    cut = int(len(frame) * 0.8)
    splits = {
        "train": pa.Table.from_pandas(frame.iloc[order[:cut]], preserve_index=False),
        "validation": pa.Table.from_pandas(frame.iloc[order[cut:]], preserve_index=False),
    }
    return write_snapshot(splits, Location(root.as_uri()), PIPELINE).to_dict()


def plain_torchrun(work: Path, snapshot: dict, hp: dict, nproc: int, threads: int, tracking: str) -> dict:
    """Our worker under bare torchrun, on a job prepared here (MLflow run created beforehand)."""
    from airflow_mlops_provider.core.snapshot import open_snapshot
    from airflow_mlops_provider.core.tracking import TrackingSettings, ensure_experiment

    client = TrackingSettings(tracking).client()
    experiment = ensure_experiment(client, "bench-torchrun", (work / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    snap = open_snapshot(snapshot["uri"])
    job_dir = Path(tempfile.mkdtemp(dir=work))
    checkpoints = (work / "artifacts" / PIPELINE / "checkpoints" / run_id).as_uri()
    spec = {
        "entry_point": "airflow_mlops_provider.core.training.tabular:train",
        "snapshot": snapshot, "splits": {s: snap.split_uri(s) for s in snap.manifest["splits"]},
        "target": "target", "task": "classification", "hyperparameters": hp, "seed": 0,
        "backend": "gloo", "threads_per_proc": threads, "checkpoint_dir": checkpoints,
        "checkpoint_every": 1, "run_id": run_id, "tags": {}, "workdir": str(job_dir),
        "result_uri": f"{checkpoints}/result.json",
    }  # fmt: skip
    (job_dir / "job.json").write_text(json.dumps(spec))
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "airflow_mlops_provider.core.training.worker", str(job_dir / "job.json")]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    client.set_terminated(run_id)
    return {"wall_s": wall, "run_id": run_id, **_throughput(client, run_id, snapshot, hp)}


def _throughput(client: Any, run_id: str, snapshot: dict, hp: dict) -> dict[str, float]:
    history = sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    if len(history) < 2:
        return {"samples_per_s": float("nan")}
    seconds = (history[-1].timestamp - history[0].timestamp) / 1000
    samples = snapshot["splits"]["train"] * (len(history) - 1)
    return {"samples_per_s": samples / seconds, "epoch_s": seconds / (len(history) - 1)}


DAG_RUNNER = """
import json, sys, time
from pathlib import Path
import importlib.util
path = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("bench_training_dag", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
start = time.perf_counter()
module.warmup.test()  # Airflow's one-time in-process setup (execution API app, DB), as on a running worker
warmup = time.perf_counter() - start
start = time.perf_counter()
run = module.dag.test()
wall = time.perf_counter() - start
print("BENCH_RESULT " + json.dumps({"wall_s": wall, "warmup_s": warmup, "state": str(run.state)}))
"""


def operator_in_dag_test(
    work: Path, snapshot: dict, hp: dict, nproc: int, threads: int, tracking: str
) -> dict:
    """TrainModelOperator in ``dag.test()`` in a fresh child process (timed around ``dag.test()``)."""
    home = work / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": tracking}),
        "PYTHONPATH": str(REPO),
    }
    if not (home / "airflow.db").exists():
        subprocess.run([Path(sys.executable).parent / "airflow", "db", "migrate"], env=env, check=True,
                       capture_output=True)  # fmt: skip
    dag_file = dags / "bench_training.py"
    dag_file.write_text(
        textwrap.dedent(f"""
        from airflow.sdk import DAG, task
        from airflow_mlops_provider.operators.train import TrainModelOperator

        with DAG("bench_warmup", schedule=None) as warmup:
            task(lambda: None, task_id="noop")()

        with DAG("bench_training", schedule=None) as dag:
            TrainModelOperator(
                task_id="train", snapshot={snapshot!r}, target="target", pipeline={PIPELINE!r},
                artifact_root={(work / "artifacts").as_uri()!r}, experiment_name="bench-operator",
                hyperparameters={hp!r}, nproc_per_node={nproc}, threads_per_proc={threads},
                backend="gloo", aws_conn_id=None,
            )
    """)
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", DAG_RUNNER, str(dag_file)], env=env, cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    process_wall = time.perf_counter() - start
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"dag.test() failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    result = json.loads(line.split(" ", 1)[1])
    if "success" not in result["state"]:
        raise RuntimeError(f"dag.test() ended {result['state']}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return {"wall_s": result["wall_s"], "warmup_s": result["warmup_s"], "process_s": process_wall}


def main() -> None:
    if "--nodes" in sys.argv[1:]:
        from bench import training_nodes

        training_nodes.main()
        return
    if "--large" in sys.argv[1:]:
        main_large(_rows_flag(LARGE_ROWS))
        return
    quick = quick_flag()
    work = WORK / "training"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copies, epochs, repeats = (10, 3, 1) if quick else (40, 40, 2)
    hp = {"epochs": epochs, "batch_size": 256, "lr": 0.003, "hidden": [256, 128]}
    snapshot = build_snapshot(work / "data", copies)
    with mlflow_server(work) as tracking:
        figures = measure(work, snapshot, hp, repeats, tracking)
    write_results("training", figures, quick)


@contextmanager
def mlflow_server(work: Path) -> Iterator[str]:
    from tests.support.services import background_process, free_port

    port = free_port()
    args = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
            "--artifacts-destination", (work / "mlartifacts").as_uri()]  # fmt: skip
    with background_process(args, port, work / "mlflow.log", timeout_s=180):
        yield f"http://127.0.0.1:{port}"


def measure(work: Path, snapshot: dict, hp: dict, repeats: int, tracking: str) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    epochs = hp["epochs"]
    print(f"train rows: {snapshot['splits']['train']}, epochs: {epochs}, cores: {cores}")

    threads2 = max(1, cores // 2)
    plain, operator = [], []
    for _ in range(repeats):  # interleaved, so that background load hits both alike
        plain.append(plain_torchrun(work, snapshot, hp, 2, threads2, tracking))
        operator.append(operator_in_dag_test(work, snapshot, hp, 2, threads2, tracking))
    one = plain_torchrun(work, snapshot, hp, 1, threads2, tracking)
    torchrun_s = min(r["wall_s"] for r in plain)
    operator_s = min(r["wall_s"] for r in operator)
    cold = min(r["wall_s"] + r["warmup_s"] for r in operator)
    two = min(plain, key=lambda r: r["wall_s"])
    figures = {
        "torchrun_s": round(torchrun_s, 3),
        "operator_s": round(operator_s, 3),
        "operator_process_s": round(min(r["process_s"] for r in operator), 3),
        "dag_test_first_call_s": round(min(r["warmup_s"] for r in operator), 3),
        "operator_cold_s": round(cold, 3),
        "operator_cold_over_torchrun_ratio": round(cold / torchrun_s, 4),
        "operator_over_torchrun_ratio": round(operator_s / torchrun_s, 4),
        "torchrun_runs_s": [round(r["wall_s"], 3) for r in plain],
        "operator_runs_s": [round(r["wall_s"], 3) for r in operator],
        "samples_per_s_1proc": round(one["samples_per_s"], 1),
        "samples_per_s_2proc": round(two["samples_per_s"], 1),
        "speedup_2proc_over_1proc": round(two["samples_per_s"] / one["samples_per_s"], 3),
        "train_rows": snapshot["splits"]["train"],
        "epochs": epochs,
        "device": "cpu",
        "backend": "gloo",
        "notes": (
            "CPU only: the GPU device tool was not lent to this task, so the NCCL path has no recorded run. "
            f"Every process uses {threads2} thread(s) (1 and 2 processes alike). "
            "Walls are the minimum of interleaved repeats on a machine shared with other jobs. "
            "operator_s times dag.test() of the training DAG after a trivial DAG ran in the same process "
            "(Airflow's one-time in-process setup, dag_test_first_call_s, is paid once per worker process, "
            "not per task); operator_cold_s adds it back."
        ),
    }
    print_table(
        "Training (wall seconds; samples/s)",
        [
            ("plain torchrun, 2 procs", torchrun_s, "baseline"),
            (
                "operator in dag.test(), 2 procs",
                operator_s,
                f"ratio {operator_s / torchrun_s:.3f} (target < 1.10)",
            ),
            ("samples/s, 1 proc", one["samples_per_s"], f"{threads2} thread(s)"),
            (
                "samples/s, 2 procs",
                two["samples_per_s"],
                f"x{two['samples_per_s'] / one['samples_per_s']:.2f}",
            ),
        ],
    )
    return figures


# --- large mode: sharded reads ------------------------------------------------------------------
LARGE_ROWS = 20_000_000
FITS_ROWS = 1_000_000  # the comparison with the in-memory trainer
IN_MEMORY_COMMIT = "e668e2c"  # the last commit whose built-in trainer read whole splits
LARGE_HP = {"epochs": 1, "batch_size": 4096, "lr": 0.003, "hidden": [64, 32]}


def _rows_flag(default: int) -> int:
    args = sys.argv[1:]
    return int(args[args.index("--rows") + 1]) if "--rows" in args else default


def generate_large(root: Path, rows: int, chunk: int = 1_000_000) -> dict[str, Any]:
    """A snapshot of ``rows`` generated rows, written chunk by chunk (80% train, 20% validation)."""
    from airflow_mlops_provider.core.snapshot import SnapshotWriter
    from airflow_mlops_provider.core.storage import Location

    rng = np.random.default_rng(0)
    with SnapshotWriter(Location(root.as_uri()), PIPELINE) as writer:
        for start in range(0, rows, chunk):
            table = _large_chunk(rng, min(chunk, rows - start))
            cut = int(table.num_rows * 0.8)
            writer.write(table.slice(0, cut), "train")
            writer.write(table.slice(cut), "validation")
        return writer.commit().to_dict()


def _large_chunk(rng: np.random.Generator, n: int) -> pa.Table:
    x = rng.normal(size=(n, 6))
    x[rng.random((n, 6)) < 0.03] = np.nan
    city = rng.choice(np.array(["berlin", "paris", "rome", "oslo", "lima"]), n)
    day = np.datetime64("2020-01-01") + rng.integers(0, 1500, n)
    score = np.nan_to_num(x[:, 0]) + (city == "rome") * 1.5 - np.nan_to_num(x[:, 1])
    label = pa.array(np.where(score > 0, "yes", "no"), mask=rng.random(n) < 0.01)
    columns = {f"x{i}": x[:, i] for i in range(6)}
    return pa.table({**columns, "city": city, "day": day, "visits": rng.integers(0, 50, n), "label": label})


def split_sizes_mb(snapshot: dict[str, Any]) -> tuple[float, float]:
    """The train split's size in pandas (deep, summed over row groups) and in Arrow, in MB."""
    from airflow_mlops_provider.core.snapshot import open_snapshot
    from airflow_mlops_provider.core.training.shards import frame_of

    source = open_snapshot(snapshot["uri"]).parquet_file("train")
    pandas_bytes = arrow_bytes = 0
    for group in range(source.metadata.num_row_groups):
        table = source.read_row_group(group)
        arrow_bytes += table.nbytes
        pandas_bytes += int(frame_of(table).memory_usage(deep=True, index=False).sum())
    return pandas_bytes / 2**20, arrow_bytes / 2**20


def run_sharded_job(work: Path, snapshot: dict[str, Any], entry_point: str) -> dict[str, Any]:
    """Plain torchrun, 2 processes of 1 thread, no MLflow run; wall time and each worker's peak RSS."""
    import psutil

    from airflow_mlops_provider.core.snapshot import open_snapshot

    snap = open_snapshot(snapshot["uri"])
    job_dir = Path(tempfile.mkdtemp(dir=work))
    spec = {
        "entry_point": entry_point, "snapshot": snapshot,
        "splits": {s: snap.split_uri(s) for s in snap.manifest["splits"]}, "target": "label",
        "task": "classification", "hyperparameters": LARGE_HP, "seed": 0, "backend": "gloo",
        "threads_per_proc": 1, "checkpoint_dir": (job_dir / "checkpoints").as_uri(), "checkpoint_every": 0,
        "run_id": None, "tags": {}, "workdir": str(job_dir), "result_uri": (job_dir / "result.json").as_uri(),
    }  # fmt: skip
    (job_dir / "job.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(work)])}  # fmt: skip
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "airflow_mlops_provider.core.training.worker", str(job_dir / "job.json")]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            peaks[child.pid] = max(peaks.get(child.pid, 0.0), _peak_rss_mb(child.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed with status {proc.returncode}")
    ranks = sorted(peaks.values(), reverse=True)[:2]  # the two workers (the agent stays smaller)
    return {"wall_s": wall, "peak_rss_mb": ranks, "result": json.loads((job_dir / "result.json").read_text())}


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(x for x in status if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 1024


def in_memory_trainer(work: Path) -> str:
    """The built-in trainer as of ``IN_MEMORY_COMMIT`` (whole splits in pandas), importable from ``work``."""
    text = subprocess.run(
        ["git", "show", f"{IN_MEMORY_COMMIT}:airflow_mlops_provider/core/training/tabular.py"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (work / "in_memory_tabular.py").write_text(text)
    return "in_memory_tabular:train"


def main_large(rows: int) -> None:
    work = WORK / "training_large"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sharded = "airflow_mlops_provider.core.training.tabular:train"
    fits = min(rows, FITS_ROWS)
    small = generate_large(work / "fits", fits)
    in_memory = run_sharded_job(work, small, in_memory_trainer(work))
    streamed = run_sharded_job(work, small, sharded)
    shutil.rmtree(work / "fits")
    snapshot = generate_large(work / "large", rows)
    pandas_mb, arrow_mb = split_sizes_mb(snapshot)
    large = run_sharded_job(work, snapshot, sharded)
    figures = {
        "rows_large": rows,
        "train_rows_large": snapshot["splits"]["train"],
        "peak_rss_mb_per_rank_large": [round(v, 1) for v in large["peak_rss_mb"]],
        "split_in_memory_mb_large": round(pandas_mb, 1),
        "split_arrow_mb_large": round(arrow_mb, 1),
        "wall_s_large": round(large["wall_s"], 2),
        "val_accuracy_large": large["result"]["metrics"].get("val_accuracy"),
        "rows_fits": fits,
        "wall_s_fits_sharded": round(streamed["wall_s"], 2),
        "wall_s_fits_in_memory": round(in_memory["wall_s"], 2),
        "sharded_over_in_memory_ratio_fits": round(streamed["wall_s"] / in_memory["wall_s"], 3),
        "peak_rss_mb_per_rank_fits_sharded": [round(v, 1) for v in streamed["peak_rss_mb"]],
        "peak_rss_mb_per_rank_fits_in_memory": [round(v, 1) for v in in_memory["peak_rss_mb"]],
        "notes_large": (
            f"2 processes x 1 thread, gloo, CPU, 1 epoch, batch {LARGE_HP['batch_size']}, no MLflow run; "
            f"in-memory baseline: the built-in trainer of commit {IN_MEMORY_COMMIT} on the same data."
        ),
    }
    print_table(
        "Sharded training (2 processes)",
        [
            (f"peak RSS MB, rank max, {rows} rows", max(large["peak_rss_mb"]), f"split {pandas_mb:.0f} MB"),
            (f"wall s, sharded, {fits} rows", streamed["wall_s"], "ours"),
            (f"wall s, in-memory, {fits} rows", in_memory["wall_s"], "baseline"),
        ],
    )
    merge_results("training", figures)


if __name__ == "__main__":
    main()
