"""Arrow type families shared by validation (suite inference) and drift (test choice)."""

from __future__ import annotations

import pyarrow as pa


def is_numeric_type(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_floating(dtype) or pa.types.is_integer(dtype) or pa.types.is_decimal(dtype))


def is_temporal_type(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_duration(dtype))


def is_categorical_type(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_dictionary(dtype)
    )
