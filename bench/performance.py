"""Performance-estimation benchmark: our CBPE vs NannyML's CBPE on the same data, same run.

Data (``core.monitoring.synthetic``): a binary and a 3-class problem with a known ``P(y|x)``,
the champion stand-in an under-confident logistic regression. Both sides fit on the same scored
reference (REFERENCE_ROWS rows, with labels) and estimate accuracy on the same WINDOWS windows
of WINDOW_ROWS rows each (1,000,000 scored rows in all), each under a different covariate shift
(hurting, harmless, helping). The realized accuracy of each window is computed from its labels
with ``core.evaluation.compute_metrics``; ``*_abs_error`` is the mean absolute error of the
estimates against it over the windows. The binary figures are the headline (``ours_s``, ...);
the 3-class ones carry a ``multiclass_`` prefix.

Each side runs in its own child process that loads the Parquet inputs first (untimed) and
then times fit + estimate; the two run interleaved REPEATS times and the fastest of each is
kept (every sample is in ``<name>_all_s``; ``--quick``: once). Peak RSS is measured as in
``bench/drift.py`` (the kernel's peak mark reset after loading). NannyML 0.13.1 runs in
``bench/.envs/nannyml`` (made with pip on first use, by ``bench/drift.py``'s ``ensure_env``);
when that is impossible its figures are null and the reason is recorded. ``window_cost_s``
comes from ``bench/window_cost.py``: seconds to ingest the latest window of a history of 1, 10
and 100 windows.

Usage: ``python bench/performance.py`` (full) or ``python bench/performance.py --quick`` (smoke).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import drift as drift_bench
from bench.common import WORK, print_table, quick_flag, write_results

DATA = WORK / "performance"
REFERENCE_ROWS = 50_000
REPEATS = 3
WINDOWS = (  # (shift, strength): hurting, harmless and helping covariate shifts
    ("boundary", 0.3),
    ("boundary", 0.5),
    ("boundary", 0.7),
    ("mean", 0.5),
    ("mean", 1.0),
    ("mean", -1.0),
    ("irrelevant", 1.0),
    ("away", 0.3),
    ("away", 0.6),
    ("none", 0.0),
)


# --- data -----------------------------------------------------------------------------------------
def make_data(n_classes: int, window_rows: int) -> tuple[Path, Path, list[float]]:
    """Reference and analysis Parquet files (``prediction``, ``proba_<k>``; ``y_true`` in the
    reference) and the realized accuracy of each window."""
    import pandas as pd

    from airflow_mlops_provider.core.evaluation import compute_metrics
    from airflow_mlops_provider.core.monitoring.synthetic import Sample, classification_scenario

    scenario = classification_scenario(n_classes, reference_rows=REFERENCE_ROWS)
    DATA.mkdir(parents=True, exist_ok=True)

    def frame(sample: Sample) -> pd.DataFrame:
        assert sample.proba is not None
        columns = {f"proba_{k}": sample.proba[:, k] for k in range(n_classes)}
        return pd.DataFrame({"prediction": sample.y_pred, **columns})

    frames, realized = [], []
    for index, (shift, strength) in enumerate(WINDOWS):
        window = scenario.window(shift, window_rows, seed=100 + index, strength=strength)
        frames.append(frame(window))
        truth = compute_metrics("classification", window.y_true, window.y_pred, None, scenario.classes)
        realized.append(float(truth["accuracy"] or "nan"))
    ref_path = DATA / f"reference-{n_classes}.parquet"
    ana_path = DATA / f"analysis-{n_classes}-{window_rows}.parquet"
    frame(scenario.reference).assign(y_true=scenario.reference.y_true).to_parquet(ref_path)
    pd.concat(frames, ignore_index=True).to_parquet(ana_path)
    return ref_path, ana_path, realized


# --- children -------------------------------------------------------------------------------------
def child(ref: str, ana: str, window_rows: int, out: str) -> None:
    """Our estimator, in this child process: fit on the reference, estimate every window."""
    import pandas as pd
    from scipy import optimize, stats  # noqa: F401  (imports are not part of anyone's timing)
    from sklearn import isotonic  # noqa: F401

    from airflow_mlops_provider.core.monitoring.estimation import ClassifierEstimator

    reference, analysis = pd.read_parquet(ref), pd.read_parquet(ana)
    columns = [c for c in reference.columns if c.startswith("proba_")]
    ref_proba, ana_proba = reference[columns].to_numpy(), analysis[columns].to_numpy()
    rss_before = drift_bench.reset_peak()  # type: ignore[attr-defined]  # defined by exec(PEAK)
    start = time.perf_counter()
    estimator = ClassifierEstimator.fit(reference["y_true"].to_numpy(), ref_proba, list(range(len(columns))))
    fitted = time.perf_counter()
    estimates = [
        estimator.estimate(ana_proba[i : i + window_rows], metrics=["accuracy"])["accuracy"].value
        for i in range(0, len(ana_proba), window_rows)
    ]
    seconds = time.perf_counter() - start
    figures = {
        "seconds": seconds,
        "fit_s": fitted - start,
        "estimates": estimates,
        "peak_rss_mb": drift_bench.peak_mb(),  # type: ignore[attr-defined]
        "rss_before_mb": rss_before,
    }
    Path(out).write_text(json.dumps(figures))


NANNYML = (
    drift_bench.PEAK
    + r"""
import json, sys, time
import pandas as pd
ref, ana = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
window_rows = int(sys.argv[3])
columns = [c for c in ref.columns if c.startswith("proba_")]
rss_before = reset_peak()
import nannyml as nml
start = time.perf_counter()
binary = len(columns) == 2
cbpe = nml.CBPE(
    y_pred_proba="proba_1" if binary else {int(c.split("_")[1]): c for c in columns},
    y_pred="prediction", y_true="y_true", metrics=["accuracy"], chunk_size=window_rows,
    problem_type="classification_binary" if binary else "classification_multiclass",
)
cbpe.fit(ref)
fitted = time.perf_counter()
frame = cbpe.estimate(ana).filter(period="analysis").to_df()
seconds = time.perf_counter() - start
json.dump({"seconds": seconds, "fit_s": fitted - start, "estimates": frame[("accuracy", "value")].tolist(),
           "peak_rss_mb": peak_mb(), "rss_before_mb": rss_before}, open(sys.argv[4], "w"))
"""
)


def _abs_error(estimates: list[float], realized: list[float]) -> float:
    if len(estimates) != len(realized):
        raise RuntimeError(f"{len(estimates)} estimates for {len(realized)} windows")
    return sum(abs(e - r) for e, r in zip(estimates, realized, strict=True)) / len(realized)


def _nannyml(args: list[str], notes: dict[str, str]) -> dict[str, Any] | None:
    python, reason = drift_bench.ensure_env("nannyml")
    if python is None:
        notes["nannyml"] = reason or "unavailable"
        return None
    try:
        return drift_bench.measure([str(python), "-c", NANNYML, *args])
    except (RuntimeError, json.JSONDecodeError, FileNotFoundError) as err:
        notes["nannyml"] = f"run failed: {err}"
        return None


def compare(n_classes: int, window_rows: int, repeats: int, notes: dict[str, str]) -> dict[str, Any]:
    """Both sides on one problem: ``{ours,nannyml}_{s,all_s,fit_s,peak_rss_mb,estimates,abs_error}``."""
    ref, ana, realized = make_data(n_classes, window_rows)
    args = [str(ref), str(ana), str(window_rows)]
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "nannyml": []}
    for _ in range(repeats):  # the machine is shared: interleaved, fastest kept
        samples["ours"].append(drift_bench.measure([sys.executable, __file__, "--child", *args]))
        found = _nannyml(args, notes)
        if found is not None:
            samples["nannyml"].append(found)
    figures: dict[str, Any] = {"realized_accuracy": realized}
    for name, runs in samples.items():
        best = min(runs, key=lambda r: r["seconds"]) if runs else None
        figures[f"{name}_all_s"] = [round(r["seconds"], 4) for r in runs]
        for key in ("s", "fit_s", "peak_rss_mb", "estimates", "abs_error"):
            figures[f"{name}_{key}"] = None
        if best is not None:
            figures.update(
                {
                    f"{name}_s": best["seconds"],
                    f"{name}_fit_s": best["fit_s"],
                    f"{name}_peak_rss_mb": best["peak_rss_mb"],
                    f"{name}_estimates": best["estimates"],
                    f"{name}_abs_error": _abs_error(best["estimates"], realized),
                }
            )
    figures["nannyml_over_ours_ratio"] = drift_bench._ratio(figures["nannyml_s"], figures["ours_s"])
    return figures


def _window_cost(quick: bool, notes: dict[str, str]) -> list[float] | None:
    try:
        from bench.window_cost import measure_window_cost
    except ImportError as err:
        notes["window_cost"] = f"bench/window_cost.py unavailable: {err}"
        return None
    return measure_window_cost(quick=quick)["windowed_s"]


def main() -> None:
    quick = quick_flag()
    window_rows = 10_000 if quick else 100_000
    repeats = 1 if quick else REPEATS
    notes: dict[str, str] = {}
    figures: dict[str, Any] = {
        "rows": window_rows * len(WINDOWS),
        "reference_rows": REFERENCE_ROWS,
        "window_rows": window_rows,
        "windows": [f"{shift}:{strength}" for shift, strength in WINDOWS],
        **compare(2, window_rows, repeats, notes),
        **{f"multiclass_{k}": v for k, v in compare(3, window_rows, repeats, notes).items()},
        "window_cost_s": _window_cost(quick, notes),
        "load_average_1m": os.getloadavg()[0],
        "notes": notes or None,
    }
    table = []
    for prefix, label in (("", "binary"), ("multiclass_", "3-class")):
        ratio = figures[f"{prefix}nannyml_over_ours_ratio"]
        table += [
            (
                f"{label} ours s",
                figures[f"{prefix}ours_s"],
                f"abs error {figures[f'{prefix}ours_abs_error']:.4f}",
            ),
            (
                f"{label} nannyml s",
                figures[f"{prefix}nannyml_s"] or float("nan"),
                _note(figures, prefix, ratio),
            ),
            (f"{label} ours peak RSS MB", figures[f"{prefix}ours_peak_rss_mb"], ""),
            (f"{label} nannyml peak RSS MB", figures[f"{prefix}nannyml_peak_rss_mb"] or float("nan"), ""),
        ]
    print_table(
        f"Estimated accuracy (CBPE), {figures['rows']:,} rows in {len(WINDOWS)} windows "
        f"(load avg {figures['load_average_1m']:.1f})",
        table,
    )
    write_results("performance", figures, quick)


def _note(figures: dict[str, Any], prefix: str, ratio: float | None) -> str:
    error = figures[f"{prefix}nannyml_abs_error"]
    if error is None:
        return f"null: {(figures['notes'] or {}).get('nannyml', 'unavailable')[:80]}"
    return f"{ratio}x ours, abs error {error:.4f}"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        # --child REF ANA WINDOW_ROWS OUT
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
