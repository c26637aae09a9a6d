"""Load on one LocalExecutor: N pipelines run their monitoring DAGs at the same time.

Reports scheduler throughput (tasks finished per second of wall time) and the per-task
overhead: the time from a task becoming runnable (its upstream finished, or the run started)
to the task running, against the task's own run time as the baseline.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, quick_flag, write_results
from bench.live_stack import live_stack

MODEL = "load_model"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def main() -> int:
    quick = quick_flag()
    pipelines = 4 if quick else 20
    with live_stack(parallelism=8) as stack:
        from airflow_mlops_provider import datasets

        stack.upload_csv("cancer/train/batch-000.csv", datasets.batch("cancer", 0, 1))
        stack.upload_csv("cancer/live/window-000.csv", datasets.live_window("cancer", 300, seed=1))
        names = [f"load_{i:02d}" for i in range(pipelines)]
        for name in names:
            stack.add_pipeline(name, model=MODEL, epochs=4)
        air = stack.airflow
        air.wait_for_dag(f"retrain_{names[0]}", timeout_s=300)
        first = air.trigger(f"retrain_{names[0]}")
        if air.wait_for_run(f"retrain_{names[0]}", first, timeout_s=900)["state"] != "success":
            raise RuntimeError(
                f"the champion-producing retrain failed: {air.task_states(f'retrain_{names[0]}', first)}"
            )
        for name in names:
            air.wait_for_dag(f"monitor_{name}", timeout_s=300)
        start = time.time()
        runs = {f"monitor_{name}": air.trigger(f"monitor_{name}") for name in names}
        finished = {
            dag_id: air.wait_for_run(dag_id, run_id, timeout_s=1200) for dag_id, run_id in runs.items()
        }
        tasks, overheads, durations = 0, [], []
        last_end = start
        for dag_id, run_id in runs.items():
            run_start = _ts(finished[dag_id]["start_date"])
            tis = sorted(
                (ti for ti in air.task_instances(dag_id, run_id) if ti["start_date"]),
                key=lambda t: t["start_date"],
            )
            ready = run_start
            for ti in tis:
                tasks += 1
                began, ended = _ts(ti["start_date"]), _ts(ti["end_date"])
                overheads.append(began - ready)
                durations.append(ended - began)
                ready = ended
                last_end = max(last_end, ended)
        succeeded = sum(1 for run in finished.values() if run["state"] == "success")
    wall = last_end - start
    figures = {
        "pipelines": pipelines,
        "tasks": tasks,
        "succeeded": succeeded,
        "wall_s": round(wall, 3),
        "tasks_per_s": round(tasks / wall, 3),
        "median_task_overhead_s": round(statistics.median(overheads), 3),
        "median_task_run_s": round(statistics.median(durations), 3),
        "executor": "LocalExecutor",
        "parallelism": 8,
    }
    print_table(
        f"{pipelines} monitoring DAGs at once on one LocalExecutor (parallelism 8, PostgreSQL)",
        [
            ("wall_s", figures["wall_s"], f"{succeeded}/{pipelines} runs succeeded, {tasks} tasks"),
            ("tasks_per_s", figures["tasks_per_s"], "scheduler throughput"),
            ("median_task_overhead_s", figures["median_task_overhead_s"], "runnable -> running"),
            ("median_task_run_s (baseline)", figures["median_task_run_s"], "the task's own work"),
        ],
    )
    write_results("load", figures, quick)
    return 0 if succeeded == pipelines else 1


if __name__ == "__main__":
    sys.exit(main())
