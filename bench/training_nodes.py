"""Two-node training on Airflow's own workers: 2 nodes x 1 process vs 1 node x 2 processes.

Both jobs run as the generated retrain DAG on a live Airflow with the CeleryExecutor and two Celery
workers of one slot each (two "machines" on loopback), on the same data (scikit-learn's digits,
replicated with noise, read from moto S3) and the same hyperparameters:

* ``samples_per_s_2nodes`` / ``samples_per_s_1node_2proc``: steady-state training samples per
  second, from the MLflow timestamps of the job's first and last epoch;
* ``two_node_startup_s`` / ``single_node_startup_s``: from the first train task's start to the
  first batch (the first epoch's metric time less one steady-state epoch): task start, preflight,
  the MLflow run, the rendezvous (node 0 publishes it, node 1 waits for it and joins) and torchrun.

Two "nodes" on one 2-core machine share its cores and talk over loopback, so they cannot be
faster than two processes of one node; the figure that matters is the overhead.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import numpy as np
import yaml

from bench.live_stack import LiveStack
from tests.support.pipelines import cancer_pipeline_yaml

PREFIX = "digits/train/"


def upload_digits(stack: LiveStack, copies: int, seed: int = 0) -> int:
    """Digits replicated ``copies`` times with noise and an ``id`` column, as one CSV on S3; rows.

    Each ``seed`` gives new noise: a new snapshot, so that a rerun trains instead of skipping."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame
    rng = np.random.default_rng(seed)
    frame = frame.loc[np.tile(np.arange(len(frame)), copies)].reset_index(drop=True)
    features = [c for c in frame.columns if c != "target"]
    frame[features] = frame[features].to_numpy() + rng.normal(0, 0.5, (len(frame), len(features)))
    frame.insert(0, "id", np.arange(len(frame)))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.4f")
    stack.s3.put_object(Bucket=stack.bucket, Key=f"{PREFIX}digits.csv", Body=buffer.getvalue().encode())
    return len(frame)


def add_pipeline(stack: LiveStack, name: str, hp: dict[str, Any], nodes: int, workers: int) -> str:
    """A digits classifier trained as ``nodes`` x ``workers``; returns its retrain DAG's id."""
    text = cancer_pipeline_yaml(name, model=name, bucket=stack.bucket, artifact_root=stack.artifact_root)
    config = yaml.safe_load(text)
    config["data"] = {
        "source": {"bucket": stack.bucket, "prefix": PREFIX, "glob": "*.csv", "format": "csv"},
        "split": {"by": "hash", "key": "id", "fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}},
    }
    config["training"] |= {"target": "target", "hyperparameters": hp, "workers": workers, "nodes": nodes,
                           "timeout": "30m", "resources": {"cpus": 1}}  # fmt: skip
    config["evaluation"] = {"split": "test", "primary_metric": "accuracy"}
    config["gate"] = {"thresholds": {"accuracy": 0.5}}
    config.pop("monitoring")
    config["triggers"] = {"schedule": None}
    (stack.dags_folder / "pipelines" / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    from airflow_mlops_provider.operators.promote import promotion_pool

    stack.airflow.ensure_pool(promotion_pool(name), 1, "serialise promotions")
    stack.airflow.wait_for_dag(f"retrain_{name}", timeout_s=300)
    return f"retrain_{name}"


def train_once(stack: LiveStack, dag_id: str) -> dict[str, float]:
    """Run the retrain DAG once; throughput and startup of its training job."""
    from mlflow import MlflowClient

    airflow = stack.airflow
    run_id = airflow.trigger(dag_id)
    airflow.wait_for_run(dag_id, run_id, timeout_s=1800)  # its gate may refuse an equal challenger
    nodes = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "train"]
    if any(ti["state"] != "success" for ti in nodes):
        raise RuntimeError(f"{dag_id} did not train: {airflow.task_states(dag_id, run_id)}")
    started = min(datetime.fromisoformat(ti["start_date"]).timestamp() for ti in nodes)
    entries = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train/xcomEntries/return_value"
    params = {"map_index": nodes[0]["map_index"]} if nodes[0]["map_index"] >= 0 else {}
    result = airflow.api("GET", entries, params=params)["value"]
    snapshot = airflow.api("GET", entries.replace("/train/", "/ingest/"))["value"]
    rows = int(snapshot["splits"]["train"])
    history = MlflowClient(stack.mlflow_url).get_metric_history(result["run_id"], "train_loss")
    history = sorted(history, key=lambda m: m.step)
    epoch_s = (history[-1].timestamp - history[0].timestamp) / 1000 / (len(history) - 1)
    return {
        "samples_per_s": rows / epoch_s,
        "startup_s": history[0].timestamp / 1000 - epoch_s - started,
        "epoch_s": epoch_s,
        "world_size": result["params"]["world_size"],
    }


def measure_nodes(stack: LiveStack, copies: int, epochs: int, repeats: int) -> dict[str, Any]:
    """Both layouts, interleaved ``repeats`` times (the best of each), on one live Celery stack."""
    hp = {"epochs": epochs, "batch_size": 256, "lr": 0.003, "hidden": [256, 128]}
    two = add_pipeline(stack, "bench_two_nodes", hp, nodes=2, workers=1)
    one = add_pipeline(stack, "bench_one_node", hp, nodes=1, workers=2)
    runs: dict[str, list[dict[str, float]]] = {two: [], one: []}
    rows = 0
    for repeat in range(repeats):
        for index, dag_id in enumerate((two, one)):
            rows = upload_digits(stack, copies, seed=2 * repeat + index)  # new data: each run trains
            runs[dag_id].append(train_once(stack, dag_id))
    best_two = max(runs[two], key=lambda r: r["samples_per_s"])
    best_one = max(runs[one], key=lambda r: r["samples_per_s"])
    return {
        "nodes_rows": rows,
        "nodes_epochs": epochs,
        "samples_per_s_2nodes": round(best_two["samples_per_s"], 1),
        "samples_per_s_1node_2proc": round(best_one["samples_per_s"], 1),
        "two_node_startup_s": round(min(r["startup_s"] for r in runs[two]), 3),
        "single_node_startup_s": round(min(r["startup_s"] for r in runs[one]), 3),
        "two_node_runs": [{k: round(v, 3) for k, v in r.items()} for r in runs[two]],
        "single_node_runs": [{k: round(v, 3) for k, v in r.items()} for r in runs[one]],
    }


def main() -> None:
    """``python -m bench.training_nodes`` (or ``--quick``): merged into ``bench/results/training.json``."""
    from bench.common import merge_results, quick_flag
    from bench.live_stack import live_stack

    quick = quick_flag()
    copies, epochs, repeats = (5, 3, 1) if quick else (40, 8, 2)
    with live_stack(celery_workers=2) as stack:
        figures = measure_nodes(stack, copies, epochs, repeats)
    figures["notes_nodes"] = (
        "Two Celery workers of one slot on this 2-core machine, the generated retrain DAG: 2 nodes x 1 "
        "process (c10d over loopback) vs 1 node x 2 processes, 1 thread each, gloo. Two nodes on one "
        "machine share its cores, so they do not scale here; the startup figures are the overhead "
        "(first train task start to the first batch)."
    )
    merge_results("training.quick" if quick else "training", figures)


if __name__ == "__main__":
    main()
