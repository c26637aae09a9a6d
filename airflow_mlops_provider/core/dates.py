"""Dates as numbers: the one treatment the built-in trainer, the scorer and the drift engine share.

A ``date`` or ``timestamp`` value means its **day number**: days since 1970-01-01 as a float,
whatever its Arrow type (date32, date64, timestamp in s, ms, us or ns). A timestamp keeps its
time of day as the fraction, and a time-zone-aware one is read in UTC.

* The drift engine compares day numbers, so the same dates stored as dates in one window and
  as timestamps in another are the same values, and a shift by a year is a shift of ~365.
* The built-in trainer encodes a date column as the numeric features :data:`DATE_PARTS`, each
  standardised with its training mean and deviation like any numeric column:

  - ``days``: the day number (the trend: a later date lies further along, never "unseen");
  - ``month``: 1 to 12 (the season);
  - ``day_of_week``: 0 (Monday) to 6 (Sunday).

  The saved model lists its date columns, so the scorer derives the same parts again.

Missing dates are NaN in every part. Strings are not parsed as dates here: a CSV column of ISO
dates is read by Arrow as ``date32`` (or ``timestamp``) already.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DATE_PARTS = ("days", "month", "day_of_week")
_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}

Column: TypeAlias = pa.Array | pa.ChunkedArray


def is_date_type(dtype: pa.DataType) -> bool:
    """Dates and timestamps (not durations or times of day)."""
    return bool(pa.types.is_date(dtype) or pa.types.is_timestamp(dtype))


def day_numbers(column: Column) -> Column:
    """Days since 1970-01-01 as float64; nulls stay null."""
    dtype = column.type
    if pa.types.is_date32(dtype):
        return pc.cast(pc.cast(column, pa.int32()), pa.float64())
    if pa.types.is_date64(dtype):
        per_day = 86_400_000
    elif pa.types.is_timestamp(dtype):
        per_day = 86_400 * _TICKS_PER_SECOND[dtype.unit]
    else:
        raise TypeError(f"expected a date or timestamp column, got {dtype}")
    # nanoseconds since 1970 exceed 2**53: float64 rounds them (to < 1 us), which days can afford
    ticks = pc.cast(pc.cast(column, pa.int64()), pa.float64(), safe=False)
    return pc.divide(ticks, float(per_day))


def date_parts(column: Column) -> dict[str, np.ndarray]:
    """The trainer's features of a date column: :data:`DATE_PARTS` -> float64 arrays, NaN where missing."""
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = pc.cast(column, pa.timestamp(column.type.unit))  # the same instants, in UTC
    parts = {
        "days": day_numbers(column),
        "month": pc.month(column),
        "day_of_week": pc.day_of_week(column),
    }
    return {name: _floats(values) for name, values in parts.items()}


def _floats(values: Column) -> np.ndarray:
    return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
