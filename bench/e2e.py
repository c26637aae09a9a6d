"""End-to-end latency on the live stack: new-data asset event -> champion alias moved in MLflow.

Split into the work the tasks did (sum of task run times along the chain) and orchestration
(everything else: event handling, scheduling, queueing, process start-up). Baseline: the work
itself, so the ratio says how much Airflow adds around it.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, quick_flag, write_results
from bench.live_stack import LiveStack, live_stack


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def measure_promotion(stack: LiveStack, pipeline: str, model: str) -> dict[str, float]:
    """Post the new-data event, wait for ``champion`` on ``model``; return the split timings."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(stack.mlflow_url)
    dag_id = f"retrain_{pipeline}"
    known = {r["dag_run_id"] for r in stack.airflow.runs(dag_id)}
    start = time.time()
    stack.airflow.post_asset_event(f"mlops.{pipeline}.new_data", {"bench": "e2e"})
    while True:
        try:
            client.get_model_version_by_alias(model, "champion")
            break
        except MlflowException:
            if time.time() - start > 900:
                raise TimeoutError(f"champion of {model} never appeared") from None
            time.sleep(0.25)
    event_to_champion = time.time() - start
    (run,) = [r for r in stack.airflow.runs(dag_id) if r["dag_run_id"] not in known]
    done = stack.airflow.wait_for_run(dag_id, run["dag_run_id"], timeout_s=600)
    if done["state"] != "success":
        raise RuntimeError(
            f"{dag_id} ended {done['state']}: {stack.airflow.task_states(dag_id, run['dag_run_id'])}"
        )
    tis = stack.airflow.task_instances(dag_id, run["dag_run_id"])
    work = sum(
        _ts(ti["end_date"]) - _ts(ti["start_date"]) for ti in tis if ti["start_date"] and ti["end_date"]
    )
    return {
        "event_to_champion_s": event_to_champion,
        "work_s": work,
        "orchestration_s": event_to_champion - work,
    }


def main() -> int:
    quick = quick_flag()
    repeats = 1 if quick else 3
    with live_stack() as stack:
        from airflow_mlops_provider import datasets

        stack.upload_csv("cancer/train/batch-000.csv", datasets.batch("cancer", 0, 2))
        names = [f"e2e_{i}" for i in range(repeats + 1)]
        for name in names:
            stack.add_pipeline(name, model=f"{name}_model", epochs=4 if quick else 8)
        for name in names:
            stack.airflow.wait_for_dag(f"retrain_{name}", timeout_s=300)
        measure_promotion(stack, names[0], f"{names[0]}_model")  # warm-up: first imports, first torchrun
        samples = [measure_promotion(stack, name, f"{name}_model") for name in names[1:]]
    figures = {key: round(statistics.median(s[key] for s in samples), 3) for key in samples[0]}
    figures["runs"] = len(samples)
    figures["orchestration_share"] = round(figures["orchestration_s"] / figures["event_to_champion_s"], 3)
    print_table(
        "New-data event -> champion alias (median of measured runs, live LocalExecutor on PostgreSQL)",
        [
            ("event_to_champion_s", figures["event_to_champion_s"], "wall time seen by a user"),
            ("work_s (baseline)", figures["work_s"], "sum of task run times"),
            (
                "orchestration_s",
                figures["orchestration_s"],
                f"{figures['orchestration_share']:.0%} of the total",
            ),
        ],
    )
    write_results("e2e", figures, quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
