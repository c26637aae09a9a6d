"""Sharded, streamed training reads: the fitted preprocessing equals the whole-frame fit, every rank
runs the same number of steps, the shuffle is deterministic, and snapshots are written balanced."""

from __future__ import annotations

import io
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from airflow_mlops_provider.core.snapshot import SnapshotWriter, balanced_row_groups, open_snapshot
from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.tabular_fit import TabularFit, merged
from airflow_mlops_provider.core.tabular_model import TabularModel
from airflow_mlops_provider.core.training.context import MetricsLogger, MissingTargetError, TrainingContext
from airflow_mlops_provider.core.training.shards import ShardReader, open_shard
from tests.unit.messy_data import messy_csv

ROWS = 1500


def messy_table(rows: int = ROWS, seed: int = 3) -> pa.Table:
    """messy_csv's customers (blank cities and incomes, ISO dates) plus the types whose pandas form
    depends on the whole split: integers and booleans with nulls, a time-zone-aware timestamp, an
    all-missing text column, a constant, and unlabelled rows."""
    table = pacsv.read_csv(io.BytesIO(messy_csv(rows, seed=seed)))
    rng = np.random.default_rng(seed)
    visits = pa.array([None if v < 0.05 else int(v * 40) for v in rng.random(rows)], pa.int64())
    member = pa.array([None if v < 0.02 else bool(v > 0.5) for v in rng.random(rows)], pa.bool_())
    start = datetime(2021, 3, 1, tzinfo=UTC)
    seen = pa.array(
        [start + timedelta(hours=int(h)) for h in rng.integers(0, 20_000, rows)], pa.timestamp("us", "UTC")
    )
    spend = table.column("spend").to_numpy().copy()
    spend[rng.random(rows) < 0.04] = np.nan  # unlabelled rows: null in Parquet
    plan_code = pa.array([int(v) for v in rng.integers(0, 3, rows)], pa.int64())
    return (
        table.set_column(table.schema.get_field_index("spend"), "spend", pa.array(spend, from_pandas=True))
        .append_column("visits", visits)
        .append_column("member", member)
        .append_column("seen", seen)
        .append_column("note", pa.nulls(rows, pa.string()))
        .append_column("constant", pa.array(np.full(rows, 0.1)))
        .append_column("plan_code", plan_code)
    )


def write(tmp_path: Path, splits: dict[str, pa.Table], row_group_rows: int) -> dict:
    with SnapshotWriter(Location((tmp_path / "art").as_uri()), "p", row_group_rows=row_group_rows) as writer:
        for name, table in splits.items():
            writer.write(table, name)
        return writer.commit().to_dict()


def context(
    snapshot: dict, tmp_path: Path, *, target: str = "spend", task: str = "regression", **kw
) -> TrainingContext:
    return TrainingContext(
        rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo", snapshot=snapshot,
        splits={"train": ""}, target=target, task=task, hyperparameters={}, checkpoint_dir=str(tmp_path),
        checkpoint_every=1, seed=0, metrics=MetricsLogger(0, None, None), **kw,
    )  # fmt: skip


def streamed_fit(snapshot: dict, world: int, target: str, task: str, **options) -> TabularModel:
    """The built-in trainer's fit, every rank simulated here: its share, then the merge over ranks."""
    fits = []
    for rank in range(world):
        shard = open_shard(snapshot, "train", target, rank=rank, world_size=world)
        fit = TabularFit.start(shard.columns, target, task, **options)
        for frame in shard.static_frames(fit.features.feature_columns):
            fit.add(frame)
        fits.append(fit)
    return merged(fits).model()


def assert_same_fit(ours: TabularModel, theirs: TabularModel) -> None:
    a, b = ours.spec.preprocessor, theirs.spec.preprocessor
    assert a.categorical == b.categorical
    assert list(a.numeric) == list(b.numeric) and list(a.dates) == list(b.dates)
    pairs = [(a.numeric[c], b.numeric[c]) for c in a.numeric]
    pairs += [(a.dates[c][p], b.dates[c][p]) for c in a.dates for p in a.dates[c]]
    pairs += [
        ((ours.spec.target_mean, ours.spec.target_std), (theirs.spec.target_mean, theirs.spec.target_std))
    ]
    for got, expected in pairs:
        assert got == pytest.approx(expected, rel=1e-12, abs=0)
    assert ours.classes == theirs.classes


@pytest.mark.parametrize("row_group_rows", [97, 1000])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_streamed_fit_equals_the_whole_frame_fit_on_messy_data(tmp_path, row_group_rows, world):
    snapshot = write(tmp_path, {"train": messy_table()}, row_group_rows)
    frame = context(snapshot, tmp_path).read_split("train")  # today's path: the whole split in pandas
    options = {"categorical_columns": ["plan_code", "visits"], "max_categories": 3}
    whole = TabularModel.fit_preprocessing(frame, "spend", "regression", **options)
    assert_same_fit(streamed_fit(snapshot, world, "spend", "regression", **options), whole)
    pre = whole.spec.preprocessor
    assert list(pre.dates) == ["signup", "seen"] and "member" in pre.categorical  # booleans with nulls
    assert pre.numeric["constant"] == (0.1, 1.0)
    assert pre.categorical["note"] == [] and pre.categorical["visits"][0].endswith(".0")  # ints with nulls


def test_the_whole_frame_fit_is_the_plain_statistics(tmp_path):
    """An independent reference: NumPy moments of finite values, value counts ranked by count then value."""
    snapshot = write(tmp_path, {"train": messy_table()}, 97)
    frame = context(snapshot, tmp_path).read_split("train")
    model = streamed_fit(snapshot, 2, "spend", "regression", max_categories=2)
    pre = model.spec.preprocessor
    income = frame["income"].to_numpy(dtype=float)
    income = income[np.isfinite(income)]
    assert pre.numeric["income"] == pytest.approx((income.mean(), income.std()), rel=1e-12)
    counts = Counter(frame["city"].dropna().astype(str))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    assert pre.categorical["city"] == sorted(v for v, _ in ranked)
    spend = frame["spend"].to_numpy()
    assert (model.spec.target_mean, model.spec.target_std) == pytest.approx(
        (spend.mean(), spend.std()), rel=1e-12
    )


def test_classes_of_an_integer_target_with_nulls_are_the_whole_frames_floats(tmp_path):
    table = messy_table().append_column(
        "churn", pa.array([None if i % 17 == 0 else i % 2 for i in range(ROWS)])
    )
    snapshot = write(tmp_path, {"train": table.drop(["spend"])}, 97)
    frame = context(snapshot, tmp_path, target="churn", task="classification").read_split("train")
    whole = TabularModel.fit_preprocessing(frame, "churn", "classification")
    streamed = streamed_fit(snapshot, 2, "churn", "classification")
    assert_same_fit(streamed, whole)
    assert streamed.classes == [0.0, 1.0]


def uneven_table() -> pa.Table:
    """Labels missing in runs, so that some row groups have few labelled rows."""
    rows = 1000
    label = [None if 100 <= i < 400 or i % 7 == 0 else float(i % 3) for i in range(rows)]
    return pa.table({"x": np.arange(rows, dtype=float), "y": pa.array(label, pa.float64())})


def readers(path: Path, world: int, seed: int = 5) -> list[ShardReader]:
    return [ShardReader(pq.ParquetFile(path), "y", rank=r, world_size=world, seed=seed) for r in range(world)]


@pytest.fixture
def uneven(tmp_path) -> Path:
    path = tmp_path / "uneven.parquet"
    pq.write_table(uneven_table(), path, row_group_size=130)  # 8 groups of 130, one of 90
    return path


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
def test_every_rank_runs_the_same_steps_and_an_epoch_covers_the_split_once(uneven, world):
    shards = readers(uneven, world)
    labelled = sum(shards[0].labelled)
    assert labelled == sum(1 for v in uneven_table().column("y").to_pylist() if v is not None)
    for epoch in (0, 1):
        batches = [list(s.iter_batches(32, epoch, buffer_rows=100)) for s in shards]
        assert {len(b) for b in batches} == {shards[0].steps(32, epoch)}
        rows = [pd.concat(b)["x"].tolist() for b in batches]
        assert {len(r) for r in rows} == {labelled // world}  # the tail dropped, at most one row per rank
        seen = [x for r in rows for x in r]
        assert len(set(seen)) == len(seen) and pd.concat([b for bs in batches for b in bs])["y"].notna().all()
    everything = [x for s in shards for b in s.iter_batches(50, None) for x in b["x"]]
    assert sorted(everything) == sorted(uneven_table().to_pandas().dropna()["x"])  # evaluation: each row once


def test_the_shuffle_is_deterministic_per_epoch_and_the_group_order_ignores_the_world_size(uneven):
    def order(world: int, epoch: int) -> list[int]:
        groups = [p.group for s in readers(uneven, world) for p in s.plan(epoch)]
        return list(dict.fromkeys(groups))

    assert order(1, 0) == order(2, 0) == order(4, 0)
    assert order(1, 0) != order(1, 1)
    (one,) = readers(uneven, 1)
    first = [b["x"].tolist() for b in one.iter_batches(32, 3, buffer_rows=100)]
    again = [b["x"].tolist() for b in readers(uneven, 1)[0].iter_batches(32, 3, buffer_rows=100)]
    assert first == again and first != [b["x"].tolist() for b in one.iter_batches(32, 4, buffer_rows=100)]
    assert sorted(x for b in first for x in b) != [x for b in first for x in b]  # rows shuffled too


def _rank_loop(rank: int, world: int, path: str, init: str, out: str) -> None:
    """A DDP-like loop: one all-reduce per batch; a rank with fewer batches would leave the other waiting."""
    import datetime as dt

    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=init, rank=rank, world_size=world, timeout=dt.timedelta(seconds=60)
    )
    shard = ShardReader(pq.ParquetFile(path), "y", rank=rank, world_size=world, seed=1)
    steps = 0
    for epoch in range(2):
        for batch in shard.iter_batches(16, epoch, buffer_rows=64):
            value = torch.tensor([float(len(batch))])
            dist.all_reduce(value)
            steps += 1
    dist.barrier()
    dist.destroy_process_group()
    Path(out, f"rank{rank}").write_text(str(steps))


def test_ranks_with_uneven_shards_never_hang(uneven, tmp_path):
    import torch.multiprocessing as mp

    first = readers(uneven, 2)
    assert first[0].plan(0) != first[1].plan(0)
    groups = [sum(p.stop - p.start for p in s.plan(None)) for s in first]
    assert groups[0] == groups[1]
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(
        _rank_loop, args=(2, str(uneven), init, str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    expected = first[0].steps(16, 0) + first[0].steps(16, 1)
    assert [int((tmp_path / f"rank{r}").read_text()) for r in range(2)] == [expected, expected]


def test_context_shard_drops_and_counts_unlabelled_rows_once_or_fails(tmp_path, capsys):
    table = messy_table()
    unlabelled = table.column("spend").null_count
    snapshot = write(tmp_path, {"train": table}, 97)
    ctx = context(snapshot, tmp_path)
    shard = ctx.shard("train")
    assert ctx.shard("train") is shard and ctx.dropped_unlabelled == {"train": unlabelled}
    assert sum(len(b) for b in ctx.iter_batches("train", 100, 0)) == ROWS - unlabelled
    assert capsys.readouterr().out.count(f"[data] missing_target_dropped_train={unlabelled}") == 1
    with pytest.raises(
        MissingTargetError, match=rf"'spend' has {unlabelled} missing values in split 'train'"
    ):
        context(snapshot, tmp_path, missing_target="fail").shard("train")


def test_head_reads_the_first_labelled_rows(tmp_path):
    snapshot = write(tmp_path, {"train": messy_table()}, 97)
    head = open_shard(snapshot, "train", "spend").head(5, ["city"])
    expected = context(snapshot, tmp_path).read_split("train").head(5)
    assert head["city"].tolist() == expected["city"].tolist() and head["spend"].notna().all()


@pytest.mark.parametrize("rows", [65_536, 100_003, 800_001])
def test_large_splits_are_written_as_balanced_multiples_of_8_row_groups(rows):
    sizes = balanced_row_groups(rows, 100_000)
    assert len(sizes) % 8 == 0 and sum(sizes) == rows and max(sizes) - min(sizes) <= 1
    assert max(sizes) <= 100_000 and len(sizes) == 8 * math.ceil(rows / 800_000)


def test_small_splits_keep_row_groups_of_chunk_rows():
    assert balanced_row_groups(2500, 1000) == [1000, 1000, 500] and balanced_row_groups(0, 10) == []


@pytest.mark.parametrize("world", [2, 4, 8])
def test_ranks_read_balanced_shards_of_whole_row_groups_from_a_written_snapshot(tmp_path, world):
    rows = 70_001
    table = pa.table({"x": np.arange(rows, dtype=float), "y": np.ones(rows)})
    snapshot = write(tmp_path, {"train": table}, 5000)
    snap = open_snapshot(snapshot["uri"])
    meta = snap.parquet_file("train").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == balanced_row_groups(rows, 5000) and len(sizes) == 16
    assert snap.read("train").equals(table)  # regrouped, not changed
    shards = [open_shard(snapshot, "train", "y", rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 1):
        plans = [s.plan(epoch) for s in shards]
        assert {sum(p.stop - p.start for p in plan) for plan in plans} == {rows // world}
        whole = [sum(p.start == 0 and p.stop == sizes[p.group] for p in plan) for plan in plans]
        assert min(whole) >= 16 // world - 1 and max(len(plan) for plan in plans) <= 16 // world + 1
