"""Reference statistics are stored beside the reference snapshot, reused, and safe to load."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.drift import DriftError, run_drift_check
from airflow_mlops_provider.core.snapshot import open_snapshot, write_snapshot
from airflow_mlops_provider.core.storage import Location


@pytest.fixture
def snapshots(tmp_path):
    rng = np.random.default_rng(8)
    root = Location(tmp_path.as_uri())

    def frame(shift: float) -> pa.Table:
        return pa.table(
            {
                "x": rng.normal(shift, 1, 5000),
                "y": rng.exponential(1, 5000),
                "c": rng.choice(["a", "b", "c"], 5000),
            }
        )

    train = write_snapshot({"train": frame(0), "test": frame(0)}, root, "p")
    same = write_snapshot(frame(0), root, "p", kind="live")
    moved = write_snapshot(frame(0.6), root, "p", kind="live")
    return {"root": Location(tmp_path.as_uri()), "train": train, "same": same, "moved": moved}


def _check(snapshots, current: str, **kwargs):
    return run_drift_check(
        snapshots[current].to_dict(),
        snapshots["train"].to_dict(),
        artifact_root=snapshots["root"],
        pipeline="p",
        **kwargs,
    )


def test_statistics_are_stored_beside_the_reference_and_reused(snapshots):
    manifest_before = open_snapshot(snapshots["train"].uri).manifest
    first = _check(snapshots, "moved")
    assert first.reference_reused is False
    store = Location(snapshots["train"].uri).join("drift-reference", "train")
    (fingerprint_dir,) = store.fs.ls(store.path)
    files = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(fingerprint_dir))
    assert files == ["00000.npy", "00001.npy", "stats.json"]
    second = _check(snapshots, "moved")
    assert second.reference_reused is True
    assert second.result.to_dict(plots=False)["columns"] == first.result.to_dict(plots=False)["columns"]
    assert second.result.drifted_columns == ["x"]
    # the snapshot itself is untouched: same manifest, same hash
    assert open_snapshot(snapshots["train"].uri).manifest == manifest_before
    # a different current window reuses the same statistics too
    assert _check(snapshots, "same").reference_reused is True


def test_a_change_of_binning_gets_its_own_statistics(snapshots):
    _check(snapshots, "same")
    other = _check(snapshots, "same", config={"psi_bins": 20})
    assert other.reference_reused is False


def test_a_tampered_statistics_file_cannot_run_code(snapshots):
    _check(snapshots, "same")
    store = Location(snapshots["train"].uri).join("drift-reference", "train")
    (fingerprint_dir,) = store.fs.ls(store.path)
    target = Location(f"file://{fingerprint_dir}").join("00000.npy")
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    target.write_bytes_atomic(buffer.getvalue())
    with pytest.raises(DriftError, match=r"00000.npy are unreadable: .*(allow_pickle=False|Python objects)"):
        _check(snapshots, "same")
    # a buffer of the wrong length (truncated or swapped) is refused too
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3, dtype=np.float64))
    target.write_bytes_atomic(buffer.getvalue())
    with pytest.raises(
        DriftError, match=r"00000.npy are unreadable: expected 5000 float64 values, found \(3,\)"
    ):
        _check(snapshots, "same")


def test_reports_are_written_next_to_the_pipeline(snapshots):
    check = _check(snapshots, "moved")
    assert check.report_uri.startswith(f"{snapshots['root'].uri}/p/reports/drift/")
    html = Location(check.report_uri).read_bytes().decode()
    assert "DRIFT: 1 of 3 columns drifted" in html
    assert html.count("<svg") == 3
    payload = json.loads(Location(check.json_uri).read_bytes())
    assert payload["drifted_columns"] == ["x"]
    assert payload["reference"]["split"] == "train"
    assert payload["current"]["sha256"] == snapshots["moved"].sha256
    x = next(c for c in payload["columns"] if c["name"] == "x")
    assert set(x) >= {
        "statistic",
        "p_value",
        "p_adjusted",
        "effect_size",
        "threshold",
        "verdict",
        "n_current",
    }
    summary = check.summary()
    assert summary["drift"] is True and summary["report_uri"] == check.report_uri
    assert summary["reference_sha256"] == snapshots["train"].sha256


def test_a_reference_without_a_train_or_data_split_needs_a_split(snapshots, tmp_path):
    ref = write_snapshot({"validation": pa.table({"x": [1.0, 2.0]})}, Location(tmp_path.as_uri()), "q")
    with pytest.raises(DriftError, match="has no 'train' or 'data' split"):
        run_drift_check(
            snapshots["same"].to_dict(), ref.to_dict(), artifact_root=snapshots["root"], pipeline="p"
        )


def test_no_reference_and_no_model_is_a_clear_error(snapshots):
    with pytest.raises(DriftError, match="No reference: pass reference="):
        run_drift_check(snapshots["same"].to_dict(), artifact_root=snapshots["root"], pipeline="p")
