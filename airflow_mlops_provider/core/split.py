"""Train / validation / test splits that stay stable as data grows.

``hash`` splits assign each row by a seeded SipHash of its key column: a row keeps its split
whatever else is ingested with it, so yesterday's test rows never leak into today's training
set. ``time`` splits cut on a timestamp (or any ordered) column at fixed boundaries. Both work
batch by batch, so they stream with the snapshot writer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.ingest.errors import IngestError
from airflow_mlops_provider.core.ingest.safety import safe_component

DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split configuration (see :func:`parse_split`)."""

    by: str
    column: str
    seed: int = 0
    fractions: dict[str, float] = field(default_factory=dict)
    boundaries: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        if self.by == "hash":
            return list(self.fractions)
        return ["train", *self.boundaries]

    def assign(self, table: pa.Table) -> dict[str, pa.Table]:
        """Split one batch of rows; splits with no rows in this batch are left out."""
        if self.column not in table.column_names:
            raise IngestError(
                f"Split column {self.column!r} is not in the data (columns: {table.column_names})"
            )
        column = table.column(self.column)
        if column.null_count:
            raise IngestError(f"Split column {self.column!r} has {column.null_count} null values")
        index = self._hash_index(column) if self.by == "hash" else self._time_index(column)
        out = {}
        for number, name in enumerate(self.names):
            mask = index == number
            if mask.any():
                out[name] = table.filter(pa.array(mask))
        return out

    def _hash_index(self, column: pa.ChunkedArray) -> np.ndarray:
        import pandas as pd

        values = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
        key = hashlib.sha256(f"mlops-split-{self.seed}".encode()).hexdigest()[:16]
        hashed = pd.util.hash_array(values.astype(object), hash_key=key, categorize=True)
        unit = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        edges = np.cumsum(list(self.fractions.values()))[:-1]
        return np.searchsorted(edges, unit, side="right")

    def _time_index(self, column: pa.ChunkedArray) -> np.ndarray:
        index = np.zeros(len(column), dtype=np.int64)
        for number, bound in enumerate(self.boundaries.values(), start=1):
            try:
                scalar = pa.scalar(bound).cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                raise IngestError(
                    f"Split boundary {bound!r} cannot be compared with column {self.column!r} "
                    f"of type {column.type}: {err}"
                ) from err
            index[pc.greater_equal(column, scalar).to_numpy(zero_copy_only=False)] = number
        return index


def parse_split(config: Mapping[str, Any] | None) -> SplitSpec | None:
    """Validate a split config; ``None`` means no split (one ``data`` split).

    ``{"by": "hash", "key": "id", "seed": 0, "fractions": {"train": .8, "validation": .1, "test": .1}}``
    or ``{"by": "time", "column": "ts", "validation_from": "2024-03-01", "test_from": "2024-04-01"}``.
    """
    if not config:
        return None
    config = dict(config)
    by = config.pop("by", "hash")
    if by == "hash":
        column = config.pop("key", None) or config.pop("column", None)
        if not column:
            raise IngestError(
                "split.key is required for a hash split (the column whose value picks the split)"
            )
        fractions = {
            str(k): float(v) for k, v in (config.pop("fractions", None) or DEFAULT_FRACTIONS).items()
        }
        for name in fractions:
            safe_component(name, "split name")
        if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
            raise IngestError(f"split.fractions must be non-negative and sum to 1, got {fractions}")
        spec = SplitSpec(by="hash", column=str(column), seed=int(config.pop("seed", 0)), fractions=fractions)
    elif by == "time":
        column = config.pop("column", None)
        if not column:
            raise IngestError("split.column is required for a time split")
        boundaries = {
            name: config.pop(f"{name}_from") for name in ("validation", "test") if f"{name}_from" in config
        }
        if not boundaries:
            raise IngestError("a time split needs split.validation_from and/or split.test_from")
        if len(boundaries) == 2 and _later(boundaries["validation"], boundaries["test"]):
            raise IngestError("split.validation_from must not be later than split.test_from")
        spec = SplitSpec(by="time", column=str(column), boundaries=boundaries)
    else:
        raise IngestError(f"split.by must be 'hash' or 'time', got {by!r}")
    if config:
        raise IngestError(f"Unknown split option(s) {sorted(config)} for a {by} split")
    return spec


def _later(first: Any, second: Any) -> bool:
    try:
        return bool(first > second)
    except TypeError:
        return False
