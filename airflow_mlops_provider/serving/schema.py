"""JSON rows in, checked against the model's feature schema, out as the table batch scoring reads.

The request body holds ``{"rows": [{column: value, ...}, ...]}`` (or ``dataframe_records``, as
``mlflow models serve`` takes it). Each feature column must be present in every row (``null`` is a
missing value, as in a snapshot); numeric columns take numbers, booleans or ``null``; other
columns take scalars. Extra columns are ignored. The table goes through
:meth:`~airflow_mlops_provider.core.tabular_model.TabularModel.score_table`, the path batch scoring
(:func:`~airflow_mlops_provider.core.scoring.predict_table`) takes, so answers equal batch scoring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from airflow_mlops_provider.core.errors import PermanentError

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tabular_model import TabularModel

ROW_KEYS = ("rows", "dataframe_records")
MAX_ROWS = 10_000


class InputError(PermanentError, ValueError):
    """The request does not fit the model; ``field`` names the offending column or key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def request_rows(payload: Any) -> list[dict[str, Any]]:
    """The rows of a request body, or :class:`InputError` saying what is wrong with it."""
    if not isinstance(payload, dict):
        raise InputError("body", "The body must be a JSON object with 'rows' (or 'dataframe_records')")
    keys = [k for k in ROW_KEYS if k in payload]
    if len(keys) != 1:
        raise InputError("body", f"The body must hold exactly one of {list(ROW_KEYS)}, not {sorted(payload)}")
    rows = payload[keys[0]]
    if not isinstance(rows, list) or not rows:
        raise InputError(keys[0], f"'{keys[0]}' must be a non-empty list of objects")
    if len(rows) > MAX_ROWS:
        raise InputError(keys[0], f"'{keys[0]}' holds {len(rows)} rows; at most {MAX_ROWS} per request")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{keys[0]}[{i}]", f"Row {i} is not a JSON object")
    return rows


def rows_to_table(model: TabularModel, rows: list[dict[str, Any]]) -> pa.Table:
    """The feature columns of ``rows`` as an Arrow table, checked against the model's schema."""
    numeric = set(model.spec.preprocessor.numeric)
    columns: dict[str, pa.Array] = {}
    for column in model.feature_columns:
        values = _column(rows, column)
        columns[column] = _numeric(column, values) if column in numeric else _scalars(column, values)
    return pa.table(columns)


def _column(rows: list[dict[str, Any]], column: str) -> list[Any]:
    try:
        return [row[column] for row in rows]
    except KeyError:
        missing = [i for i, row in enumerate(rows) if column not in row]
        raise InputError(column, f"Feature column {column!r} is missing from row(s) {missing[:10]}") from None


def _numeric(column: str, values: list[Any]) -> pa.Array:
    try:  # Arrow converts numbers and nulls in one call; anything else takes the checks below
        return pa.array(values, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is not None and (isinstance(value, str) or not isinstance(value, int | float)):
            raise InputError(column, f"Column {column!r} is numeric; row {i} holds {value!r}")
        try:
            out.append(None if value is None else float(value))
        except OverflowError:
            raise InputError(column, f"Column {column!r}: row {i} holds a number too large") from None
    return pa.array(out, type=pa.float64())


def _scalars(column: str, values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is None or pa.types.is_nested(array.type):
        for i, value in enumerate(values):
            if isinstance(value, dict | list):
                raise InputError(column, f"Column {column!r} takes a single value; row {i} holds {value!r}")
    if array is None:
        array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return array
