"""The streamed statistics against NumPy and pandas: exact order statistics and quantiles (heavy ties,
refinement), merged moments, value counts across spill partitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_mlops_provider.core.validation.stream_stats import (
    Moments,
    ValueCounts,
    order_statistics,
    quantile_ranks,
    quantile_value,
)


def _chunks(values: np.ndarray, size: int = 333):
    return lambda: (values[i : i + size] for i in range(0, len(values), size))


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(0, 1, 5000),
        np.random.default_rng(1).integers(0, 4, 5000),  # heavy ties: one bucket over the cap
        np.concatenate([np.zeros(3000), np.random.default_rng(2).exponential(1e6, 2000)]),
        np.array([7.5]),
    ],
    ids=["normal", "ties", "skewed", "single"],
)
def test_order_statistics_are_exact_even_when_a_bucket_holds_more_than_the_cap(values):
    ranks = sorted({0, len(values) // 3, len(values) // 2, len(values) - 1})
    found = order_statistics(_chunks(values), ranks, values.min(), values.max(), collect_cap=100)
    ordered = np.sort(values)
    assert found == {r: ordered[r].item() for r in ranks}


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
@pytest.mark.parametrize("count", [1, 2, 5, 10, 101])
def test_quantile_value_is_numpys(method, count):
    ordered = np.sort(np.random.default_rng(count).integers(0, 50, count)).astype(np.float64)
    for q in (0.0, 0.05, 0.125, 0.25, 0.5, 0.75, 0.9, 1.0):
        assert all(0 <= r < count for r in quantile_ranks(count, q))
        mine = quantile_value(lambda rank: ordered[rank].item(), count, q, method)
        assert mine == pytest.approx(np.quantile(ordered, q, method=method), abs=1e-12)


def test_moments_merged_over_batches_match_pandas():
    values = np.random.default_rng(3).normal(1e6, 250.0, 10_001)
    moments = Moments()
    for start in range(0, len(values), 777):
        moments.add(pa.array(values[start : start + 777]))
    metrics, series = moments.metrics(), pd.Series(values)
    assert metrics["column.mean"] == pytest.approx(series.mean(), rel=1e-12)
    assert metrics["column.standard_deviation"] == pytest.approx(series.std(), rel=1e-9)
    assert (moments.low, moments.high, moments.count) == (values.min(), values.max(), len(values))
    assert Moments().metrics()["column.mean"] is None


@pytest.mark.parametrize("dtype", [pa.int64(), pa.string(), pa.dictionary(pa.int32(), pa.string())])
def test_value_counts_across_partitions_are_exact(tmp_path, dtype):
    raw = np.random.default_rng(4).integers(0, 3000, 20_000)
    values = pa.array(raw if pa.types.is_integer(dtype) else raw.astype(str)).cast(dtype)
    counts = ValueCounts(dtype, partitions=7, workdir=tmp_path)
    for start in range(0, len(values), 1999):
        counts.add(values.slice(start, 1999))
    parts = list(counts.merged())
    assert len(parts) == 7
    merged = pa.concat_tables(parts).to_pandas().set_index("values")["counts"].sort_index()
    expected = pd.Series(values.to_pandas()).astype(object).value_counts().sort_index()
    assert merged.to_dict() == expected.to_dict()
