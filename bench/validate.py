"""Validation benchmark: 1,000,000 rows x 20 columns, 40 expectations, ours vs Great Expectations direct.

Setup (not timed): a synthetic table (id, 9 floats, 5 ints, 5 categories) written as a snapshot.

* ``gx_direct``: what a user would write by hand: load the snapshot's data file into pandas
  (``pyarrow.parquet.read_table(...).to_pandas()``, the same conversion ours uses, so both
  validate identically typed DataFrames), then an ephemeral context, pandas data source,
  whole-DataFrame batch, an ``ExpectationSuite`` of the 40 expectations and
  ``batch.validate(result_format="SUMMARY")``.
* ``ours``: ``validate_snapshot`` on the snapshot: suite checks, reading the Parquet snapshot
  into pandas, the builtin row-count / schema / null-rate checks (21 more results), the same GX
  validation, and writing the JSON result and HTML report.
* also reported: ``gx_in_memory``, GX alone on a DataFrame already in memory, and ``read``, the
  Parquet-to-pandas load both sides need (so the reader can compare either way).

All run in this process, alternately, ``repeats`` times; the fastest run of each is compared,
by wall time and by CPU time of this process (the machine is shared with other jobs: the
minimum, and CPU time, are the least noisy estimates). Target: overhead at most 15%.
Run: ``python bench/validate.py`` (``--quick``: 100k rows, one repeat, not committed).

Large mode (issue 18), ``python bench/validate.py --large [--rows N]`` (default 20,000,000 rows):
the same table and suite written chunk by chunk as a snapshot, then validated streaming in a
child process whose peak RSS is recorded, against the split's in-memory (Arrow) size. On a size
that still fits (``--fit-rows``, default 2,000,000) both paths run in child processes, for time
and peak RSS. Its keys are merged into ``bench/results/validate.json``, keeping the others.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, merge_results, print_table, quick_flag, run_measured, write_results

CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def make_table(rows: int, seed: int = 0, first_id: int = 0):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns = {"id": np.arange(first_id, first_id + rows)}
    for i in range(9):
        columns[f"f{i}"] = rng.normal(100 * i, 5 + i, rows)
    for i in range(5):
        columns[f"n{i}"] = rng.integers(0, 1000 * (i + 1), rows)
    for i in range(5):
        columns[f"c{i}"] = rng.choice(CATEGORIES[: 3 + i % 4], rows)
    return pa.table(columns)


def suite(rows: int) -> list[dict]:
    out: list[dict] = []
    for i in range(9):
        out.append({"expectation": "expect_column_values_to_be_between", "column": f"f{i}",
                    "min_value": 100 * i - 20 * (5 + i), "max_value": 100 * i + 20 * (5 + i)})  # fmt: skip
        out.append({"expectation": "expect_column_values_to_not_be_null", "column": f"f{i}"})
    for i in range(5):
        out.append({"expectation": "expect_column_values_to_be_between", "column": f"n{i}", "min_value": 0,
                    "max_value": 1000 * (i + 1)})  # fmt: skip
        out.append(
            {"expectation": "expect_column_values_to_be_in_set", "column": f"c{i}", "value_set": CATEGORIES}
        )
    for i in range(5):
        out.append({"expectation": "expect_column_mean_to_be_between", "column": f"f{i}",
                    "min_value": 100 * i - 1, "max_value": 100 * i + 1})  # fmt: skip
    for i in range(3):
        out.append({"expectation": "expect_column_stdev_to_be_between", "column": f"f{i}",
                    "min_value": 4 + i, "max_value": 6 + i})  # fmt: skip
    names = ["id", *(f"f{i}" for i in range(9)), *(f"n{i}" for i in range(5)), *(f"c{i}" for i in range(5))]
    out += [
        {"expectation": "expect_column_values_to_be_unique", "column": "id"},
        {"expectation": "expect_table_row_count_to_be_between", "min_value": rows, "max_value": rows},
        {"expectation": "expect_table_columns_to_match_set", "column_set": names},
        {"expectation": "expect_column_median_to_be_between", "column": "n0", "min_value": 400,
         "max_value": 600},
    ]  # fmt: skip
    return out


def gx_direct(df, expectations: list[dict]) -> bool:
    """The hand-written GX 1.x equivalent, on a DataFrame."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.registry import get_expectation_impl

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("direct")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": df})
    )
    objects = []
    for item in expectations:
        kwargs = {k: v for k, v in item.items() if k != "expectation"}
        objects.append(get_expectation_impl(item["expectation"])(**kwargs))
    result = batch.validate(gx.ExpectationSuite(name="direct", expectations=objects), result_format="SUMMARY")
    return bool(result.success)


def main() -> None:
    quick = quick_flag()
    rows, repeats = (100_000, 1) if quick else (1_000_000, 5)
    logging.basicConfig(level=logging.WARNING)
    import great_expectations  # noqa: F401  (import cost is not part of either side)

    from airflow_mlops_provider.core.snapshot import write_snapshot
    from airflow_mlops_provider.core.storage import Location
    from airflow_mlops_provider.core.validation import validate_snapshot

    work = WORK / "validate"
    shutil.rmtree(work, ignore_errors=True)
    table = make_table(rows)
    ref = write_snapshot(table, Location(work.as_uri()), "bench").to_dict()
    import pyarrow.parquet as pq

    data_file = ref["uri"].removeprefix("file://") + "/data.parquet"
    df = table.to_pandas()
    del table
    expectations = suite(rows)
    # warm-up both paths once (GX registers metrics lazily on first use)
    validate_snapshot(ref, suite=expectations)
    assert gx_direct(df, expectations)

    ours_runs, gx_runs, memory_runs, read_runs = [], [], [], []
    ours_cpu, gx_cpu = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        loaded = pq.read_table(data_file).to_pandas()
        read_runs.append(time.perf_counter() - start)
        assert gx_direct(loaded, expectations)
        gx_runs.append(time.perf_counter() - start)
        gx_cpu.append(time.process_time() - cpu)
        del loaded
        start, cpu = time.perf_counter(), time.process_time()
        outcome = validate_snapshot(ref, suite=expectations)
        ours_runs.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
        assert outcome["success"], outcome
        start = time.perf_counter()
        assert gx_direct(df, expectations)
        memory_runs.append(time.perf_counter() - start)
    ours_s, gx_s, memory_s, read_s = min(ours_runs), min(gx_runs), min(memory_runs), min(read_runs)
    overhead = ours_s / gx_s - 1
    cpu_overhead = min(ours_cpu) / min(gx_cpu) - 1
    print_table(
        f"Validate {rows:,} rows x {df.shape[1]} columns, {len(expectations)} expectations "
        f"(ours adds {outcome['evaluated'] - len(expectations)} builtin checks)",
        [
            ("ours_s", ours_s, f"min of {repeats}; median {statistics.median(ours_runs):.3f}"),
            ("gx_direct_s", gx_s, f"min of {repeats}; median {statistics.median(gx_runs):.3f}"),
            ("overhead", overhead, "ours_s / gx_direct_s - 1 (target <= 0.15)"),
            ("ours_cpu_s", min(ours_cpu), "CPU time of this process, min"),
            ("gx_direct_cpu_s", min(gx_cpu), "CPU time of this process, min"),
            ("cpu_overhead", cpu_overhead, "ours_cpu_s / gx_direct_cpu_s - 1"),
            ("gx_in_memory_s", memory_s, "GX alone on a DataFrame already in memory"),
            ("read_s", read_s, "Parquet to pandas load of the snapshot (inside gx_direct_s)"),
            ("overhead_vs_in_memory", ours_s / memory_s - 1, "ours_s / gx_in_memory_s - 1 (load included)"),
        ],
    )
    write_results(
        "validate",
        {
            "ours_s": round(ours_s, 3),
            "gx_direct_s": round(gx_s, 3),
            "overhead": round(overhead, 4),
            "ours_cpu_s": round(min(ours_cpu), 3),
            "gx_direct_cpu_s": round(min(gx_cpu), 3),
            "cpu_overhead": round(cpu_overhead, 4),
            "gx_in_memory_s": round(memory_s, 3),
            "read_s": round(read_s, 3),
            "overhead_vs_in_memory": round(ours_s / memory_s - 1, 4),
            "ours_median_s": round(statistics.median(ours_runs), 3),
            "gx_direct_median_s": round(statistics.median(gx_runs), 3),
            "rows": rows,
            "columns": df.shape[1],
            "expectations": len(expectations),
            "builtin_checks": outcome["evaluated"] - len(expectations),
            "repeats": repeats,
        },
        quick,
    )
    shutil.rmtree(work, ignore_errors=True)


def write_large(rows: int, chunk: int = 1_000_000) -> dict:
    """The bench table, ``rows`` rows written ``chunk`` at a time (never all in memory)."""
    from airflow_mlops_provider.core.snapshot import SnapshotWriter
    from airflow_mlops_provider.core.storage import Location

    with SnapshotWriter(Location((WORK / "validate-large").as_uri()), "bench") as writer:
        for number, start in enumerate(range(0, rows, chunk)):
            writer.write(make_table(min(chunk, rows - start), seed=number, first_id=start))
        return writer.commit().to_dict()


def child(uri: str, rows: int, stream_above_mb: str) -> None:
    """Validate once in this (child) process; print the engine and the in-memory estimate."""
    import json

    from airflow_mlops_provider.core.validation import validate_snapshot

    threshold = None if stream_above_mb == "never" else float(stream_above_mb)
    outcome = validate_snapshot(uri, suite=suite(rows), stream_above_mb=threshold)
    assert outcome["success"], outcome
    document = json.loads(Path(outcome["result_uri"].removeprefix("file://")).read_text())
    print(json.dumps({"engine": document["engine"], "mb": document["in_memory_estimate_mb"]}))


def measure(uri: str, rows: int, stream_above_mb: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of validating in a fresh process."""
    return run_measured([sys.executable, __file__, "--child", uri, str(rows), stream_above_mb])


def in_memory_mb(uri: str) -> float:
    from airflow_mlops_provider.core.snapshot import open_snapshot
    from airflow_mlops_provider.core.validation.run import split_in_memory_mb

    return split_in_memory_mb(open_snapshot(uri), None)


def large(rows: int, fit_rows: int) -> None:

    shutil.rmtree(WORK / "validate-large", ignore_errors=True)
    started = time.perf_counter()
    fit = write_large(fit_rows)["uri"]
    fit_memory_s, fit_memory_rss = measure(fit, fit_rows, "never")
    fit_stream_s, fit_stream_rss = measure(fit, fit_rows, "0")
    big = write_large(rows)["uri"]
    write_s = time.perf_counter() - started
    big_s, big_rss = measure(big, rows, "1024")
    big_mb = in_memory_mb(big)
    figures = {
        "large_rows": rows,
        "large_peak_rss_mb": round(big_rss, 1),
        "large_in_memory_mb": round(big_mb, 1),
        "large_stream_s": round(big_s, 2),
        "large_fit_rows": fit_rows,
        "large_fit_in_memory_mb": round(in_memory_mb(fit), 1),
        "large_fit_memory_path_s": round(fit_memory_s, 2),
        "large_fit_memory_path_peak_rss_mb": round(fit_memory_rss, 1),
        "large_fit_stream_s": round(fit_stream_s, 2),
        "large_fit_stream_peak_rss_mb": round(fit_stream_rss, 1),
    }
    print_table(
        f"Streaming validation: {rows:,} rows, {len(suite(rows))} expectations (setup {write_s:.0f} s)",
        [
            ("large_peak_rss_mb", big_rss, "peak RSS of the validating process"),
            ("large_in_memory_mb", big_mb, "the split in memory (Arrow; pandas for GX adds more)"),
            ("large_stream_s", big_s, "wall time, process start included"),
            ("large_fit_memory_path_s", fit_memory_s, f"{fit_rows:,} rows, today's in-memory path"),
            ("large_fit_stream_s", fit_stream_s, f"{fit_rows:,} rows, streamed"),
            ("large_fit_memory_path_peak_rss_mb", fit_memory_rss, "peak RSS, in-memory path"),
            ("large_fit_stream_peak_rss_mb", fit_stream_rss, "peak RSS, streamed"),
        ],
    )
    merge_results("validate", figures)
    shutil.rmtree(WORK / "validate-large", ignore_errors=True)


def _option(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif "--large" in sys.argv:
        large(_option("--rows", 20_000_000), _option("--fit-rows", 2_000_000))
    else:
        main()
