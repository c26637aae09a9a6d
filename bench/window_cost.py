"""Monitoring window cost: one window's ingest stays flat as history grows, the unwindowed one grows with it.

Setup (not timed): for each history length N (1, 10, 100 windows), a local folder holding N hourly
windows, each one Parquet object of ``rows`` rows (id, time, 4 floats, a category) under
``hour=<window key>/``, its modification time set inside its window.

Timed in this process (after an untimed warm-up ingest; best of five), each into a fresh artifact root:

* ``windowed``: ``ingest_snapshot`` of the whole folder with an ``mtime`` window on the latest hour
  (lists N objects, reads one);
* ``partition``: ``ingest_snapshot`` of the latest window's ``hour=<key>/`` path, ``partition`` window;
* ``unwindowed`` (the baseline, the monitoring ingest before windows): the whole folder, no window.

The mtime window still lists the whole history (metadata only: about a millisecond an object
here), so its time creeps up with N; the partition window lists its own path only.

Target (issue 15): windowed and partition times flat in N (``*_growth`` = time at N=100 / time at
N=1 close to 1), the baseline growing with N. Run: ``python bench/window_cost.py`` (``--quick``:
2,000 rows a window, one repeat; not committed). ``measure_window_cost`` is also called by
``bench/performance.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, print_table, quick_flag, write_results

HOUR = timedelta(hours=1)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def write_history(folder: Path, windows: int, rows: int) -> list[Any]:
    """``windows`` hourly windows of ``rows`` rows under ``folder``; their ``Window``s, oldest first."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops_provider.core.monitoring.types import Window

    rng = np.random.default_rng(windows)
    out = []
    for number in range(windows):
        window = Window(EPOCH + number * HOUR, EPOCH + (number + 1) * HOUR)
        offsets = np.sort(rng.integers(0, 3_600_000_000, rows))
        table = pa.table(
            {
                "id": np.arange(number * rows, (number + 1) * rows),
                "ts": pa.array(
                    np.datetime64(window.start.replace(tzinfo=None), "us") + offsets,
                    pa.timestamp("us", "UTC"),
                ),
                **{f"f{i}": rng.normal(10 * i, 1 + i, rows) for i in range(4)},
                "segment": rng.choice(["retail", "business", "public"], rows),
            }
        )
        path = folder / f"hour={window.key}" / "part.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(table, path)
        modified = (window.start + HOUR / 2).timestamp()
        os.utime(path, (modified, modified))
        out.append(window)
    return out


def _best_of(repeats: int, work: Path, ingest: Callable[[Any], Any], expected_rows: int) -> float:
    """Best wall time of ``repeats`` runs of ``ingest(artifact_root)``, each into a fresh root."""
    from airflow_mlops_provider.core.storage import Location

    best = float("inf")
    for _ in range(repeats):
        root = Path(tempfile.mkdtemp(dir=work, prefix="art-"))
        start = time.perf_counter()
        ref = ingest(Location(root.as_uri()))
        best = min(best, time.perf_counter() - start)
        assert ref.rows == expected_rows, (ref.rows, expected_rows)
        shutil.rmtree(root)
    return best


def _measure_one(work: Path, windows: int, rows: int, repeats: int) -> tuple[float, float, float]:
    """(windowed, partition, unwindowed) seconds for a history of ``windows`` windows."""
    from airflow_mlops_provider.core.ingest import ingest_snapshot
    from airflow_mlops_provider.core.monitoring.window import WindowFilter

    history = work / f"history-{windows}"
    latest = write_history(history, windows, rows)[-1]
    bounds = {"start": latest.start, "end": latest.end}
    by_mtime, by_partition = (WindowFilter.from_dict({"by": by, **bounds}) for by in ("mtime", "partition"))
    everything, partition = f"file://{history}/", f"file://{history}/hour={latest.key}/"  # '=' unquoted
    windowed = _best_of(
        repeats, work, lambda root: ingest_snapshot(everything, root, "bench", window=by_mtime), rows
    )
    partitioned = _best_of(
        repeats, work, lambda root: ingest_snapshot(partition, root, "bench", window=by_partition), rows
    )
    unwindowed = _best_of(
        repeats, work, lambda root: ingest_snapshot(everything, root, "bench"), windows * rows
    )
    return windowed, partitioned, unwindowed


def measure_window_cost(
    counts: Sequence[int] = (1, 10, 100), rows: int = 20_000, quick: bool = False
) -> dict[str, list[float]]:
    """Seconds to ingest the latest window of a history of each of ``counts`` windows of ``rows`` rows:
    ``{"windowed_s": [...], "partition_s": [...], "unwindowed_s": [...]}``, one value per count.

    ``quick``: a tenth of the rows (at least 100) and one repeat instead of the best of five.
    """
    rows, repeats = (max(rows // 10, 100), 1) if quick else (rows, 5)
    WORK.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=WORK, prefix="window-cost-"))
    figures: dict[str, list[float]] = {"windowed_s": [], "partition_s": [], "unwindowed_s": []}
    try:
        _measure_one(work / "warm-up", 1, 100, 1)  # imports and first-call costs, not timed
        for windows in counts:
            for key, seconds in zip(figures, _measure_one(work, windows, rows, repeats), strict=True):
                figures[key].append(round(seconds, 4))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> None:
    quick = quick_flag()
    logging.basicConfig(level=logging.WARNING)
    counts, rows = (1, 10, 100), 20_000
    figures = measure_window_cost(counts, rows, quick)
    rows_used = max(rows // 10, 100) if quick else rows
    table: list[tuple[str, float, str]] = []
    flat: dict[str, Any] = {"rows_per_window": rows_used}
    for index, windows in enumerate(counts):
        windowed, partition, unwindowed = (
            figures[k][index] for k in ("windowed_s", "partition_s", "unwindowed_s")
        )
        table += [
            (f"windowed_s_{windows}", windowed, f"mtime window, {windows} window(s) of history listed"),
            (f"partition_s_{windows}", partition, "partition window"),
            (f"unwindowed_s_{windows}", unwindowed, f"baseline: all {windows * rows_used:,} rows"),
            (f"speedup_{windows}", unwindowed / windowed, "unwindowed_s / windowed_s"),
        ]
        flat |= {
            f"windowed_s_{windows}": windowed,
            f"partition_s_{windows}": partition,
            f"unwindowed_s_{windows}": unwindowed,
            f"speedup_{windows}": round(unwindowed / windowed, 3),
        }
    for key in ("windowed", "partition", "unwindowed"):
        growth = figures[f"{key}_s"][-1] / figures[f"{key}_s"][0]
        note = "baseline: grows with history" if key == "unwindowed" else "target: close to 1 (flat)"
        table.append((f"{key}_growth", growth, f"time at {counts[-1]} windows / time at {counts[0]}; {note}"))
        flat[f"{key}_growth"] = round(growth, 3)
    print_table(f"Ingest of the latest window ({rows_used:,} rows a window) as history grows", table)
    write_results("window_cost", flat, quick)


if __name__ == "__main__":
    main()
