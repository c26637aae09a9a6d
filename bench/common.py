"""Shared benchmark plumbing: machine facts, timing in child processes, result files, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / ".work"


def machine() -> dict[str, Any]:
    """Cores, memory and GPU of this machine, for the ``machine`` key of every result file."""
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    gpu = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        probe = subprocess.run(query, capture_output=True)
        gpu = probe.stdout.decode().strip() or None
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(total_kb / 1024**2, 1),
        "gpu": gpu,
        "python": platform.python_version(),
    }


def run_measured(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB of its largest descendant)."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(args), env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args!r} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, rows: Sequence[tuple[str, float, str]]) -> None:
    """Print ``(name, value, note)`` rows under a title."""
    print(f"\n{title}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>12.3f}  {note}")


def write_results(name: str, figures: dict[str, Any], quick: bool) -> Path:
    """Write ``bench/results/<name>.json`` (``<name>.quick.json`` for smoke runs, which are not committed)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    payload = {**figures, "machine": machine(), "quick": quick}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


def merge_results(name: str, figures: dict[str, Any]) -> Path:
    """Merge ``figures`` into ``bench/results/<name>.json``, keeping its other keys (a benchmark that
    records a part of a result file, such as the large-data or two-node runs)."""
    path = RESULTS / f"{name}.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**current, **figures}, indent=2, sort_keys=True) + "\n")
    print(f"\nmerged into {path}")
    return path


def quick_flag(argv: Sequence[str] | None = None) -> bool:
    return "--quick" in (sys.argv[1:] if argv is None else argv)
