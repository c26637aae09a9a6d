"""Drift benchmark: our engine vs Evidently, NannyML, a scipy ks_2samp loop and the NumPy sort floor.

Data: a reference and a current window of ROWS rows x (20 numeric + 3 categorical) columns,
three numeric columns shifted by 0.5 sigma in the current window, as Parquet under
``bench/.work/drift/``. Every contender runs in its own child process that loads both windows
first (untimed) and then times only the drift computation; peak RSS is the child's.

Timings: the machine is shared, so floor, ours and the scipy loop run interleaved REPEATS (5) times
and the fastest of each is kept (every sample is in ``<name>_all_s``); Evidently and NannyML
run once (their margins are large).

- ``ours``: cold run, reference statistics fitted inside the timed section (default 2 workers);
- ``ours_1thread``: the same with one worker;
- ``ours_stored``: a monitoring run that loads stored reference statistics (fitted before);
- ``scipy_loop``: ``scipy.stats.ks_2samp`` per numeric column (its default method);
- ``sort_floor``: ``np.sort`` of every numeric column of both windows, once;
- ``evidently``: ``Report([DataDriftPreset()])`` (Evidently 0.7, in ``bench/.envs/evidently``);
- ``nannyml``: ``UnivariateDriftCalculator`` with KS and chi-square, one chunk (fit + calculate,
  in ``bench/.envs/nannyml``).
- ``stream``: STREAM_ROWS rows per window, both read column by column from Parquet.

The baselines need pandas < 3, so each gets a virtualenv made here with pip from the package
registry; when that is impossible the figure is null and the reason is recorded.

Memory: ``*_peak_rss_mb`` is the peak RSS while detecting drift with both windows resident
(imports and data included; the kernel's peak mark is reset after loading and Arrow's pool
has returned what Parquet decoding left over); ``*_process_peak_rss_mb`` is the whole child's
peak, Parquet loading included. ``input_mb`` is both windows' in-memory Arrow size. The stream
run's peak is its whole process (it never loads a window).

Mixed shape (``mixed_*`` keys): ROWS rows x 46 columns, 10 each of normal, lognormal,
Poisson-like int64 (thousands of ties per value) and exponential with 5% nulls, plus 6 string
categoricals of 3 to 2,000 levels (one with 3% nulls); seven columns drift (a shift, a scale
change, a missing share from 5% to 12%, reversed level shares, levels present in one window
only). Ours (2 and 1 workers), the sort floor, the scipy loop (NaN dropped first) and NannyML
run interleaved REPEATS times, fastest kept; ``mixed_ours_ms_per_column`` is our one-worker time
per column of each kind.

Usage: ``python bench/drift.py`` (full), ``python bench/drift.py --mixed-only`` (the mixed shape,
merged into the recorded figures) or ``--quick`` (smoke, either way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, WORK, print_table, quick_flag, run_measured, write_results

ENVS = Path(__file__).resolve().parent / ".envs"
REPEATS = 5
DATA = WORK / "drift"
NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = ["colour", "region", "segment"]
SHIFTED = ["x03", "x08", "x15"]
BASELINES = {
    "evidently": ["evidently==0.7.23", "pandas<3", "pyarrow"],
    "nannyml": ["nannyml==0.13.1", "statsmodels", "pandas<3", "pyarrow"],
}


# --- data -----------------------------------------------------------------------------------------
def make_window(rows: int, seed: int, shifted: bool, path: Path) -> None:
    """Write one window as Parquet in row groups of 1M rows (bounded memory at 10M rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    writer = None
    step = 1_000_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        cols: dict[str, Any] = {}
        for i, name in enumerate(NUMERIC):
            shift = 0.5 if shifted and name in SHIFTED else 0.0
            scale = 1.0 + (i % 5)
            cols[name] = (
                rng.normal(shift * scale, scale, n)
                if i % 2 == 0
                else rng.gamma(2.0, scale, n) + shift * scale * 2**0.5
            )
        cols["colour"] = rng.choice(["red", "green", "blue", "grey"], n, p=[0.4, 0.3, 0.2, 0.1])
        cols["region"] = rng.choice(["eu", "us", "apac", "latam", "mea"], n)
        cols["segment"] = rng.choice([f"s{k:02d}" for k in range(30)], n)
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=step)
    writer.close()
    tmp.rename(path)


def windows(rows: int) -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    ref, cur = DATA / f"ref-{rows}.parquet", DATA / f"cur-{rows}.parquet"
    if not ref.exists():
        make_window(rows, 1, False, ref)
    if not cur.exists():
        make_window(rows, 2, True, cur)
    return ref, cur


MIXED_KINDS = {"n": "normal", "l": "lognormal", "p": "poisson", "e": "exponential_missing"}
MIXED_NUMERIC = [f"{kind}{i:02d}" for kind in MIXED_KINDS for i in range(10)]
MIXED_LEVELS = {"c3": 3, "c12": 12, "c50": 50, "c200": 200, "c1000": 1000, "c2000": 2000}
MIXED_SHIFTED = ["n03", "l05", "p02", "e04", "e07", "c200", "c2000"]


def _mixed_numeric(rng: Any, name: str, n: int, drifted: bool) -> Any:
    """normal; lognormal (heavy right tail); Poisson counts as int64 (lambda 25-115: a few hundred
    distinct values, thousands of ties each); exponential with 5% nulls (12% in e04 when drifted)."""
    import pyarrow as pa

    kind, i = name[0], int(name[1:])
    if kind == "n":
        return rng.normal(i + (0.3 * (1 + i) if drifted else 0.0), 1.0 + i, n)
    if kind == "l":
        return rng.lognormal(0.2 if drifted else 0.0, 0.5 + 0.1 * i, n)
    if kind == "p":
        return rng.poisson((25 + 10 * i) * (1.1 if drifted else 1.0), n)
    missing = rng.random(n) < (0.12 if drifted and i == 4 else 0.05)
    return pa.array(rng.exponential((1.0 + i) * (1.3 if drifted and i == 7 else 1.0), n), mask=missing)


def _mixed_categorical(rng: Any, name: str, n: int, drifted: bool) -> Any:
    """Strings over Zipf-like shares; c200 drifted reverses them, c2000 drifted shifts 5% of its
    levels (levels only in one window), c1000 has 3% nulls."""
    import numpy as np
    import pyarrow as pa

    levels = MIXED_LEVELS[name]
    weights = 1.0 / np.arange(1, levels + 1) ** 0.8
    if drifted and name == "c200":
        weights = weights[::-1]
    codes = rng.choice(levels, n, p=weights / weights.sum()).astype(np.int32)
    offset = levels // 20 if drifted and name == "c2000" else 0
    labels = pa.array([f"{name}-{k}" for k in range(offset, levels + offset)])
    nulls = rng.random(n) < 0.03 if name == "c1000" else None
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=nulls), labels).cast(pa.string())


def make_mixed_window(rows: int, seed: int, shifted: bool, path: Path) -> None:
    """Write one mixed-shape window (40 numeric + 6 string columns) as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols = {
        name: _mixed_numeric(rng, name, rows, shifted and name in MIXED_SHIFTED) for name in MIXED_NUMERIC
    }
    for name in MIXED_LEVELS:
        cols[name] = _mixed_categorical(rng, name, rows, shifted and name in MIXED_SHIFTED)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp, compression="zstd", row_group_size=1_000_000)
    tmp.rename(path)


def mixed_windows(rows: int) -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    ref, cur = DATA / f"mixed-ref-{rows}.parquet", DATA / f"mixed-cur-{rows}.parquet"
    if not ref.exists():
        make_mixed_window(rows, 1, False, ref)
    if not cur.exists():
        make_mixed_window(rows, 2, True, cur)
    return ref, cur


# --- children -----------------------------------------------------------------------------------
# Peak memory of the drift computation itself: after the windows are loaded, Arrow's pool gives
# back what Parquet decoding left over and the kernel's peak-RSS mark is reset, so the figure is
# the peak while detecting drift with both windows resident (imports and data included).
PEAK = r"""
def _status():
    with open("/proc/self/status") as f:
        d = {l.split(":")[0]: l.split()[1] for l in f if len(l.split()) > 1}
    return int(d["VmRSS"]) / 1024, int(d["VmHWM"]) / 1024

def reset_peak():
    try:
        import pyarrow as pa
        pa.default_memory_pool().release_unused()
    except ImportError:
        pass
    import gc
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status()[0]

def peak_mb():
    return _status()[1]
"""
exec(PEAK)


def child(mode: str, ref: str, cur: str, out: str, store: str) -> None:
    """Run one contender in this (child) process and write its timed figures to ``out``."""
    import numpy as np
    import pyarrow.parquet as pq
    import scipy.stats  # noqa: F401  (imports are not part of anyone's timing)

    from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
    from airflow_mlops_provider.core.drift.columns import ParquetSource, TableSource
    from airflow_mlops_provider.core.drift.reference import load_reference
    from airflow_mlops_provider.core.storage import Location

    figures: dict[str, Any] = {}
    if mode == "stream":
        cfg = DriftConfig()
        start = time.perf_counter()
        stats = reference_from_source(ParquetSource(pq.ParquetFile(ref)), cfg, store=Location(store))
        result = compare(stats, ParquetSource(pq.ParquetFile(cur)), cfg)
        figures["seconds"] = time.perf_counter() - start
        figures["drifted"] = sorted(result.drifted_columns)
        Path(out).write_text(json.dumps(figures))
        return
    ref_t, cur_t = _read_columnwise(ref), _read_columnwise(cur)
    figures["input_mb"] = (ref_t.nbytes + cur_t.nbytes) / 2**20
    figures["rss_before_mb"] = reset_peak()  # noqa: F821  (defined by exec(PEAK))
    if mode in ("ours", "ours_1thread"):
        cfg = DriftConfig(workers=1 if mode == "ours_1thread" else 2)
        start = time.perf_counter()
        result = compare(reference_from_source(TableSource(ref_t), cfg), TableSource(cur_t), cfg)
        figures["seconds"] = time.perf_counter() - start
        figures["drifted"] = sorted(result.drifted_columns)
    elif mode == "ours_fit_store":
        cfg = DriftConfig()
        start = time.perf_counter()
        reference_from_source(TableSource(ref_t), cfg, store=Location(store)).fit_all().commit()
        figures["seconds"] = time.perf_counter() - start
    elif mode == "ours_stored":
        cfg = DriftConfig()
        start = time.perf_counter()
        stats = load_reference(Location(store), cfg)
        assert stats is not None, "no stored reference statistics"
        result = compare(stats, TableSource(cur_t), cfg)
        figures["seconds"] = time.perf_counter() - start
        figures["drifted"] = sorted(result.drifted_columns)
    elif mode == "ours_kinds":
        figures["ms_per_column"] = _ms_per_column(ref_t, cur_t)
    elif mode == "scipy_loop":
        from scipy import stats as st

        numeric = _numeric_names(ref_t)
        cols = [(ref_t.column(c).to_numpy(), cur_t.column(c).to_numpy()) for c in numeric]
        start = time.perf_counter()
        pvalues = [st.ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)]).pvalue for a, b in cols]
        figures["seconds"] = time.perf_counter() - start
        figures["drifted"] = sorted(
            c for c, p in zip(numeric, pvalues, strict=True) if p < 0.05 / len(numeric)
        )
    elif mode == "sort_floor":
        cols = [(ref_t.column(c).to_numpy(), cur_t.column(c).to_numpy()) for c in _numeric_names(ref_t)]
        start = time.perf_counter()
        for a, b in cols:
            np.sort(a)
            np.sort(b)
        figures["seconds"] = time.perf_counter() - start
    else:
        raise SystemExit(f"unknown mode {mode}")
    figures["peak_rss_mb"] = peak_mb()  # noqa: F821
    Path(out).write_text(json.dumps(figures))


def _numeric_names(table: Any) -> list[str]:
    """The integer and float columns: what the scipy loop tests and the sort floor sorts."""
    import pyarrow as pa

    return [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def _ms_per_column(ref_t: Any, cur_t: Any) -> dict[str, float]:
    """Our cold comparison per column kind, one worker, in ms per column (best of three): where the
    time goes on the mixed shape. The kind is a column name's leading letter (MIXED_KINDS, c: strings)."""
    from airflow_mlops_provider.core.drift import DriftConfig, compare, reference_from_source
    from airflow_mlops_provider.core.drift.columns import TableSource

    kinds = {**MIXED_KINDS, "c": "categorical"}
    out = {}
    for letter, kind in kinds.items():
        names = [n for n in ref_t.column_names if n.startswith(letter)]
        cfg = DriftConfig(workers=1, include=names)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            compare(reference_from_source(TableSource(ref_t), cfg), TableSource(cur_t), cfg)
            best = min(best, time.perf_counter() - start)
        out[kind] = round(best * 1000 / len(names), 1)
    return out


def _read_columnwise(path: str) -> Any:
    """Read a window column by column: whole-file reads leave ~200 MB of decoder buffers behind
    in Arrow's pool, which would be counted against the engine's peak."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    return pa.table({n: parquet.read(columns=[n], use_threads=False).column(0) for n in names})


EVIDENTLY = (
    PEAK
    + r"""
import json, sys, time
import pandas as pd
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
rss_before = reset_peak()
from evidently import Report
from evidently.presets import DataDriftPreset
start = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
payload = snapshot.dict()
seconds = time.perf_counter() - start
drifted, count = [], None
for metric in payload.get("metrics", []):
    config = metric.get("config", {})
    if config.get("type", "").endswith("DriftedColumnsCount"):
        count = metric["value"]["count"]
    elif config.get("type", "").endswith("ValueDrift"):
        method, value, threshold = config.get("method", "").lower(), metric["value"], config["threshold"]
        is_p_value = "p_value" in method or "p-value" in method
        if (value < threshold) if is_p_value else (value >= threshold):
            drifted.append(config["column"])
json.dump({"seconds": seconds, "drifted": sorted(drifted), "drifted_count": count,
           "peak_rss_mb": peak_mb(), "rss_before_mb": rss_before}, open(sys.argv[3], "w"))
"""
)

NANNYML = (
    PEAK
    + r"""
import json, sys, time
import pandas as pd
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
rss_before = reset_peak()
import nannyml as nml
cols = list(ref.columns)
start = time.perf_counter()
calc = nml.UnivariateDriftCalculator(
    column_names=cols, continuous_methods=["kolmogorov_smirnov"], categorical_methods=["chi2"], chunk_number=1
)
calc.fit(ref)
fitted = time.perf_counter()
result = calc.calculate(cur)
seconds = time.perf_counter() - start
frame = result.filter(period="analysis").to_df()
alerts = {k[0] for k in frame.columns if k[0] in cols and k[-1] == "alert" and bool(frame[k].any())}
json.dump({"seconds": seconds, "fit_s": fitted - start, "calculate_s": seconds - (fitted - start),
           "drifted": sorted(alerts), "peak_rss_mb": peak_mb(), "rss_before_mb": rss_before},
          open(sys.argv[3], "w"), default=str)
"""
)


def ensure_env(name: str) -> tuple[Path | None, str | None]:
    """A virtualenv with the baseline installed (made on first use); (python, None) or (None, reason)."""
    env = ENVS / name
    python = env / "bin" / "python"
    probe = [str(python), "-c", f"import {name}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, None
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
        pip = [str(python), "-m", "pip", "install", "-q", *BASELINES[name]]
        proc = subprocess.run(pip, capture_output=True, text=True, timeout=1800)
    except (subprocess.SubprocessError, OSError) as err:
        return None, f"could not create the {name} virtualenv: {err}"
    if proc.returncode != 0:
        return None, f"pip install {' '.join(BASELINES[name])} failed: {proc.stderr.strip()[-400:]}"
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return None, f"{name} installed but does not import"
    return python, None


# usage telemetry off: NannyML otherwise retries an analytics upload inside fit/calculate
NO_TELEMETRY = {"NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}


def measure(args: list[str]) -> dict[str, Any]:
    """Run a child, return its figures plus wall time and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    wall, rss = run_measured([*args, out], env=NO_TELEMETRY)
    figures = json.loads(Path(out).read_text())
    os.unlink(out)
    return {"peak_rss_mb": rss, **figures, "wall_s": wall, "process_peak_rss_mb": rss}


def ours(mode: str, ref: Path, cur: Path, store: Path) -> dict[str, Any]:
    return measure([sys.executable, __file__, "--child", mode, str(ref), str(cur), str(store)])


def clean_figures(quick: bool) -> dict[str, Any]:
    """Every contender on the clean shape (and the stream run); prints its table."""
    rows = 100_000 if quick else 1_000_000
    stream_rows = 1_000_000 if quick else 10_000_000
    ref, cur = windows(rows)
    store = Path(tempfile.mkdtemp(prefix="drift-store-"))
    figures: dict[str, Any] = {"rows": rows, "columns": len(NUMERIC) + len(CATEGORICAL)}
    notes: dict[str, str] = {}

    # the machine is shared: the fast contenders run interleaved REPEATS times, best kept
    ours("ours_fit_store", ref, cur, store)  # fit and store the reference statistics once
    samples: dict[str, list[dict[str, Any]]] = {}
    for _ in range(1 if quick else REPEATS):
        for mode in ("sort_floor", "ours", "ours_1thread", "ours_stored", "scipy_loop"):
            samples.setdefault(mode, []).append(ours(mode, ref, cur, store))
    runs = {mode: min(found, key=lambda r: r["seconds"]) for mode, found in samples.items()}
    for mode, found in samples.items():
        figures[f"{mode}_all_s"] = [round(r["seconds"], 4) for r in found]
    for name, script in (("evidently", EVIDENTLY), ("nannyml", NANNYML)):
        python, reason = ensure_env(name)
        if python is None:
            runs[name] = None
            notes[name] = reason or "unavailable"
            continue
        try:
            runs[name] = measure([str(python), "-c", script, str(ref), str(cur)])
        except (RuntimeError, json.JSONDecodeError, FileNotFoundError) as err:
            runs[name] = None
            notes[name] = f"run failed: {err}"

    stream_ref, stream_cur = windows(stream_rows)
    stream_store = Path(tempfile.mkdtemp(prefix="drift-stream-store-"))
    runs["stream"] = ours("stream", stream_ref, stream_cur, stream_store)

    figures.update(
        ours_s=runs["ours"]["seconds"],
        ours_1thread_s=runs["ours_1thread"]["seconds"],
        ours_stored_reference_s=runs["ours_stored"]["seconds"],
        scipy_loop_s=runs["scipy_loop"]["seconds"],
        sort_floor_s=runs["sort_floor"]["seconds"],
        evidently_s=runs["evidently"]["seconds"] if runs["evidently"] else None,
        nannyml_s=runs["nannyml"]["seconds"] if runs["nannyml"] else None,
        ours_peak_rss_mb=runs["ours"]["peak_rss_mb"],
        ours_rss_before_mb=runs["ours"]["rss_before_mb"],
        ours_process_peak_rss_mb=runs["ours"]["process_peak_rss_mb"],
        ours_1thread_peak_rss_mb=runs["ours_1thread"]["peak_rss_mb"],
        evidently_peak_rss_mb=runs["evidently"]["peak_rss_mb"] if runs["evidently"] else None,
        evidently_process_peak_rss_mb=runs["evidently"]["process_peak_rss_mb"] if runs["evidently"] else None,
        nannyml_process_peak_rss_mb=runs["nannyml"]["process_peak_rss_mb"] if runs["nannyml"] else None,
        nannyml_peak_rss_mb=runs["nannyml"]["peak_rss_mb"] if runs["nannyml"] else None,
        input_mb=runs["ours"]["input_mb"],
        ours_drifted=runs["ours"]["drifted"],
        scipy_loop_drifted=runs["scipy_loop"]["drifted"],
        evidently_drifted=runs["evidently"]["drifted"] if runs["evidently"] else None,
        nannyml_drifted=runs["nannyml"]["drifted"] if runs["nannyml"] else None,
        nannyml_fit_s=runs["nannyml"]["fit_s"] if runs["nannyml"] else None,
        nannyml_calculate_s=runs["nannyml"]["calculate_s"] if runs["nannyml"] else None,
        stream_rows=stream_rows,
        stream_s=runs["stream"]["seconds"],
        stream_peak_rss_mb=runs["stream"]["peak_rss_mb"],
        stream_window_mb=_window_mb(stream_rows),
        stream_drifted=runs["stream"]["drifted"],
        load_average_1m=os.getloadavg()[0],
        notes=notes or None,
    )
    ratios = {
        "evidently_over_ours": _ratio(figures["evidently_s"], figures["ours_s"]),
        "nannyml_over_ours": _ratio(figures["nannyml_s"], figures["ours_s"]),
        "scipy_loop_over_ours": _ratio(figures["scipy_loop_s"], figures["ours_s"]),
        "ours_over_sort_floor": _ratio(figures["ours_s"], figures["sort_floor_s"]),
        "ours_1thread_over_sort_floor": _ratio(figures["ours_1thread_s"], figures["sort_floor_s"]),
        "ours_over_stored_reference": _ratio(figures["ours_s"], figures["ours_stored_reference_s"]),
        "peak_rss_over_input": _ratio(figures["ours_peak_rss_mb"], figures["input_mb"]),
        "stream_peak_rss_over_window": _ratio(figures["stream_peak_rss_mb"], figures["stream_window_mb"]),
    }
    figures.update({f"{k}_ratio": v for k, v in ratios.items()})
    rows_out = [
        ("ours (cold, 2 workers) s", figures["ours_s"], f"drifted {figures['ours_drifted']}"),
        ("ours (cold, 1 worker) s", figures["ours_1thread_s"], ""),
        ("ours (stored reference) s", figures["ours_stored_reference_s"], ""),
        ("sort floor s", figures["sort_floor_s"], f"ours / floor = {ratios['ours_over_sort_floor']}"),
        ("scipy ks_2samp loop s", figures["scipy_loop_s"], f"{ratios['scipy_loop_over_ours']}x ours"),
        (
            "evidently DataDriftPreset s",
            figures["evidently_s"] or float("nan"),
            _note("evidently", ratios, notes),
        ),
        ("nannyml univariate s", figures["nannyml_s"] or float("nan"), _note("nannyml", ratios, notes)),
        ("ours peak RSS MB", figures["ours_peak_rss_mb"], f"input {figures['input_mb']:.0f} MB"),
        (
            f"stream {stream_rows:,} rows s",
            figures["stream_s"],
            f"peak RSS {figures['stream_peak_rss_mb']:.0f} MB",
        ),
    ]
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(stream_store, ignore_errors=True)
    print_table(
        f"Drift, {rows:,} rows x {figures['columns']} columns (load avg {figures['load_average_1m']:.1f})",
        rows_out,
    )
    return figures


def mixed_figures(quick: bool) -> dict[str, Any]:
    """Ours (2 and 1 workers), the sort floor, the scipy loop and NannyML on the mixed shape, interleaved
    REPEATS times with the fastest of each kept; then our time per column kind. Prints its table."""
    rows = 100_000 if quick else 1_000_000
    ref, cur = mixed_windows(rows)
    python, reason = ensure_env("nannyml")
    modes = ["sort_floor", "ours", "ours_1thread", "scipy_loop"] + (["nannyml"] if python else [])
    samples: dict[str, list[dict[str, Any]]] = {}
    for _ in range(1 if quick else REPEATS):
        for mode in modes:
            if mode == "nannyml":
                run = measure([str(python), "-c", NANNYML, str(ref), str(cur)])
            else:
                run = ours(mode, ref, cur, DATA)
            samples.setdefault(mode, []).append(run)
    best = {mode: min(found, key=lambda r: r["seconds"]) for mode, found in samples.items()}
    names = {"ours_1thread": "ours_1worker"}
    figures: dict[str, Any] = {"mixed_rows": rows, "mixed_columns": len(MIXED_NUMERIC) + len(MIXED_LEVELS)}
    for mode, run in best.items():
        key = f"mixed_{names.get(mode, mode)}"
        figures[f"{key}_s"] = run["seconds"]
        figures[f"{key}_all_s"] = [round(r["seconds"], 4) for r in samples[mode]]
        if "drifted" in run:
            figures[f"{key}_drifted"] = run["drifted"]
    figures.update(
        mixed_nannyml_s=figures.get("mixed_nannyml_s"),
        mixed_ours_peak_rss_mb=best["ours"]["peak_rss_mb"],
        mixed_ours_rss_before_mb=best["ours"]["rss_before_mb"],
        mixed_input_mb=best["ours"]["input_mb"],
        mixed_ours_ms_per_column=ours("ours_kinds", ref, cur, DATA)["ms_per_column"],
        mixed_sort_floor_ms_per_sort=round(best["sort_floor"]["seconds"] * 1000 / len(MIXED_NUMERIC) / 2, 1),
        mixed_notes={"nannyml": reason} if reason else None,
        mixed_load_average_1m=os.getloadavg()[0],
    )
    ratios = {
        "ours_over_sort_floor": _ratio(figures["mixed_ours_s"], figures["mixed_sort_floor_s"]),
        "nannyml_over_ours": _ratio(figures["mixed_nannyml_s"], figures["mixed_ours_s"]),
        "scipy_loop_over_ours": _ratio(figures["mixed_scipy_loop_s"], figures["mixed_ours_s"]),
        "ours_1worker_over_ours": _ratio(figures["mixed_ours_1worker_s"], figures["mixed_ours_s"]),
        "peak_rss_over_input": _ratio(figures["mixed_ours_peak_rss_mb"], figures["mixed_input_mb"]),
    }
    figures.update({f"mixed_{k}_ratio": v for k, v in ratios.items()})
    print_table(
        f"Drift, mixed shape: {rows:,} rows x {figures['mixed_columns']} columns",
        [
            ("ours (cold, 2 workers) s", figures["mixed_ours_s"], f"drifted {figures['mixed_ours_drifted']}"),
            (
                "ours (cold, 1 worker) s",
                figures["mixed_ours_1worker_s"],
                f"{ratios['ours_1worker_over_ours']}x",
            ),
            (
                "sort floor s",
                figures["mixed_sort_floor_s"],
                f"ours / floor = {ratios['ours_over_sort_floor']}",
            ),
            (
                "scipy ks_2samp loop s",
                figures["mixed_scipy_loop_s"],
                f"{ratios['scipy_loop_over_ours']}x ours",
            ),
            (
                "nannyml univariate s",
                figures["mixed_nannyml_s"] or float("nan"),
                f"{ratios['nannyml_over_ours']}x ours",
            ),
            (
                "ours peak RSS MB",
                figures["mixed_ours_peak_rss_mb"],
                f"input {figures['mixed_input_mb']:.0f} MB",
            ),
        ],
    )
    print(f"  ours ms per column by kind: {figures['mixed_ours_ms_per_column']}")
    return figures


def main() -> None:
    """Both shapes; with ``--mixed-only`` the mixed shape alone, merged into the recorded clean figures."""
    quick = quick_flag()
    if "--mixed-only" in sys.argv[1:]:
        recorded = RESULTS / ("drift.quick.json" if quick else "drift.json")
        kept = json.loads(recorded.read_text()) if recorded.exists() else {}
        figures = {k: v for k, v in kept.items() if not k.startswith("mixed_")}
    else:
        figures = clean_figures(quick)
    figures.update(mixed_figures(quick))
    write_results("drift", figures, quick)


def _window_mb(rows: int) -> float:
    """In-memory Arrow size of one window of ``rows`` rows (numeric float64 + three string columns)."""
    import pyarrow.parquet as pq

    ref, _ = windows(rows)
    meta = pq.ParquetFile(ref).metadata
    sample = pq.ParquetFile(ref).read_row_group(0)
    return sample.nbytes / sample.num_rows * meta.num_rows / 2**20


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _note(name: str, ratios: dict[str, float | None], notes: dict[str, str]) -> str:
    if name in notes:
        return f"null: {notes[name][:80]}"
    return f"{ratios[f'{name}_over_ours']}x ours"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        # --child MODE REF CUR STORE OUT
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6], sys.argv[5])
    else:
        main()
