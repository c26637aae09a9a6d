"""Train / validation / test splits that stay stable as data grows.

* ``hash``: each row goes by a seeded SipHash of its key column (or of the whole row when no
  key is named): a row keeps its split whatever else is ingested with it, so yesterday's test
  rows never leak into today's training set, and duplicate rows land together.
* ``random``: seeded, by row position; reproducible for the same input, not stable as it grows.
* ``time``: cut on an ordered column (timestamp, date, number) at fixed boundaries
  (``validation_from`` / ``test_from``), or at the quantiles that give ``fractions`` (found in a
  first pass over that one column, see :meth:`SplitSpec.resolve`).

All work batch by batch, so they stream with the snapshot writer.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.names import DEFAULT_FRACTIONS
from airflow_mlops_provider.core.paths import safe_component
from airflow_mlops_provider.core.snapshot import split_order

_MIX = np.uint64(0x9E3779B97F4A7C15)


class SplitError(PermanentError, ValueError):
    """A split configuration that cannot apply to the data (bad option, missing column, nulls)."""


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split configuration (see :func:`parse_split`).

    Rows are assigned by the splits' meaning, never by the order a dict happens to list them in
    (a YAML file, a cached plan and a JSON round trip all order keys differently): ``fractions``
    and ``boundaries`` are kept in :func:`~airflow_mlops_provider.core.snapshot.split_order`,
    train, validation, test, so a hash or random split's buckets and a time split's ranges
    (oldest rows to train, newest to test) are the same whatever order they were given in.
    """

    by: str
    column: str | None = None
    seed: int = 0
    fractions: dict[str, float] = field(default_factory=dict)
    boundaries: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("fractions", "boundaries"):
            given = getattr(self, name)
            object.__setattr__(self, name, {k: given[k] for k in sorted(given, key=split_order)})

    @property
    def names(self) -> list[str]:
        if self.by == "time" and self.boundaries:
            return [next(iter(self.fractions), "train"), *self.boundaries]
        return list(self.fractions)

    @property
    def needs_first_pass(self) -> bool:
        """A time split by fractions must see the whole time column before it can cut."""
        return self.by == "time" and not self.boundaries

    def resolve(self, times: pa.ChunkedArray) -> SplitSpec:
        """Turn fractions into boundaries at the quantiles of ``times`` (rows at a boundary go later)."""
        ordered = pc.sort_indices(times)
        count = len(times)
        names = list(self.fractions)
        boundaries: dict[str, Any] = {}
        cumulative = 0.0
        for name, following in itertools.pairwise(names):
            cumulative += self.fractions[name]
            position = min(round(cumulative * count), count - 1)
            boundaries[following] = times[ordered[position].as_py()]
        return replace(self, boundaries=boundaries)

    def assign(self, table: pa.Table, offset: int = 0) -> dict[str, pa.Table]:
        """Split one batch of rows (``offset``: rows seen before it); empty splits are left out."""
        if self.by == "random":
            index = self._bucket(_mix(np.arange(offset, offset + table.num_rows, dtype=np.uint64), self.seed))
        else:
            columns = [self.column] if self.column else table.column_names
            missing = [c for c in columns if c not in table.column_names]
            if missing:
                raise SplitError(
                    f"Split column {missing[0]!r} is not in the data (columns: {table.column_names})"
                )
            if self.column and table.column(self.column).null_count:
                nulls = table.column(self.column).null_count
                raise SplitError(f"Split column {self.column!r} has {nulls} null values")
            if self.by == "hash":
                index = self._bucket(self._row_hash(table, columns))
            else:
                index = self._time_index(table.column(self.column))
        out = {}
        for number, name in enumerate(self.names):
            mask = index == number
            if mask.any():
                out[name] = table.filter(pa.array(mask))
        return out

    def _row_hash(self, table: pa.Table, columns: list[str]) -> np.ndarray:
        import pandas as pd

        key = hashlib.sha256(f"mlops-split-{self.seed}".encode()).hexdigest()[:16]
        combined = np.zeros(table.num_rows, dtype=np.uint64)
        for name in columns:
            values = pc.fill_null(pc.cast(table.column(name), pa.string()), "\x00null")
            hashed = pd.util.hash_array(values.to_numpy(zero_copy_only=False).astype(object), hash_key=key)
            combined = (combined * _MIX) ^ hashed if len(columns) > 1 else hashed
        return combined

    def _bucket(self, hashes: np.ndarray) -> np.ndarray:
        unit = (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        edges = np.cumsum(list(self.fractions.values()))[:-1]
        return np.searchsorted(edges, unit, side="right")

    def _time_index(self, column: pa.ChunkedArray) -> np.ndarray:
        index = np.zeros(len(column), dtype=np.int64)
        for number, bound in enumerate(self.boundaries.values(), start=1):
            try:
                scalar = bound if isinstance(bound, pa.Scalar) else pa.scalar(bound)
                scalar = scalar.cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                raise SplitError(
                    f"Split boundary {bound!r} cannot be compared with column {self.column!r} "
                    f"of type {column.type}: {err}"
                ) from err
            index[pc.greater_equal(column, scalar).to_numpy(zero_copy_only=False)] = number
        return index

    def describe(self) -> dict[str, Any]:
        """JSON-friendly form for the manifest (resolved boundaries included)."""
        return {
            "by": self.by,
            "column": self.column,
            "seed": self.seed,
            "fractions": self.fractions,
            "boundaries": {
                k: (v.as_py() if isinstance(v, pa.Scalar) else v) for k, v in self.boundaries.items()
            },
        }


def parse_split(config: Mapping[str, Any] | None) -> SplitSpec | None:
    """Validate a split config; ``None`` means no split (one ``data`` split).

    ``{"by": "hash", "key": "id", "seed": 0, "fractions": {"train": .8, "validation": .1, "test": .1}}``
    (no key: hash the whole row), ``{"by": "random", "seed": 0, "fractions": ...}``,
    ``{"by": "time", "column": "ts", "validation_from": "2024-03-01", "test_from": "2024-04-01"}``
    or ``{"by": "time", "column": "ts", "fractions": ...}`` (cut at the time column's quantiles).
    """
    if not config:
        return None
    config = {k: v for k, v in dict(config).items() if v is not None}
    by = config.pop("by", "hash")
    if by not in ("hash", "random", "time"):
        raise SplitError(f"split.by must be 'hash', 'random' or 'time', got {by!r}")
    key = config.pop("key", None)
    column = config.pop("column", None) or key
    seed = int(config.pop("seed", 0))
    boundaries = {
        name: config.pop(f"{name}_from") for name in ("validation", "test") if f"{name}_from" in config
    }
    raw = config.pop("fractions", None)
    if config:
        raise SplitError(f"Unknown split option(s) {sorted(config)} for a {by} split")
    fractions = _fractions(raw or DEFAULT_FRACTIONS)
    if by == "time":
        return _time_split(column, fractions, boundaries, bool(raw))
    if boundaries:
        raise SplitError(f"validation_from/test_from only apply to a time split, not {by!r}")
    return SplitSpec(
        by=by, column=str(column) if column and by == "hash" else None, seed=seed, fractions=fractions
    )


def _fractions(raw: Mapping[Any, Any]) -> dict[str, float]:
    """Split name -> fraction of the rows; names are path-safe, fractions non-negative and sum to 1."""
    fractions = {str(k): float(v) for k, v in raw.items()}
    for name in fractions:
        safe_component(name, "split name")
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise SplitError(f"split.fractions must be non-negative and sum to 1, got {fractions}")
    return fractions


def _time_split(
    column: Any, fractions: dict[str, float], boundaries: dict[str, Any], fractions_given: bool
) -> SplitSpec:
    """A split on the time ``column``: at the given boundaries, or at its quantiles by ``fractions``."""
    if not column:
        raise SplitError("split.column is required for a time split (the timestamp column)")
    if boundaries and fractions_given:
        raise SplitError("a time split takes either fractions or validation_from/test_from, not both")
    if len(boundaries) == 2 and _later(boundaries["validation"], boundaries["test"]):
        raise SplitError("split.validation_from must not be later than split.test_from")
    return SplitSpec(by="time", column=str(column), fractions=fractions, boundaries=boundaries)


def _mix(values: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of ``values`` xor a seed-derived constant: a cheap, well-spread 64-bit hash."""
    with np.errstate(over="ignore"):
        z = values ^ np.uint64(int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little"))
        z = z + _MIX
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _later(first: Any, second: Any) -> bool:
    try:
        return bool(first > second)
    except TypeError:
        return False
