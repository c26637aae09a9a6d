"""Small value types shared by the monitoring modules: a window, a metric with its interval, a verdict."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

_KEY_FORMAT = "%Y%m%dT%H%M%SZ"

Status = Literal["degraded", "ok", "not_enough_labels", "no_reference"]


@dataclass(frozen=True)
class Window:
    """The half-open time interval ``[start, end)`` one monitoring run stands for.

    Bounds are kept in UTC to the whole second, both rounded up (a manual run is due at an
    instant with microseconds; an object stored in that second before it belongs to it). Rounding
    both bounds the same way keeps consecutive windows tiling time: the next run's window starts
    where this one ends, so no object falls into two windows. A window and its :attr:`key` name
    the same interval.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"window {name} must be a timezone-aware datetime, got {value!r}")
            whole = value.astimezone(UTC).replace(microsecond=0)
            if whole < value:  # round up: nothing due before the end is left out
                whole += timedelta(seconds=1)
            object.__setattr__(self, name, whole)
        if self.end < self.start:
            raise ValueError(
                f"window ends before it starts: {self.start.isoformat()} > {self.end.isoformat()}"
            )

    @property
    def key(self) -> str:
        """A name safe in object keys and paths, sortable by time: ``20261201T000000Z--20261201T010000Z``."""
        start, end = (moment.astimezone(UTC).strftime(_KEY_FORMAT) for moment in (self.start, self.end))
        return f"{start}--{end}"

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls in ``[start, end)``."""
        return self.start <= moment < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.astimezone(UTC).isoformat(), "end": self.end.astimezone(UTC).isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(parse_time(data["start"]), parse_time(data["end"]))

    @classmethod
    def from_key(cls, key: str) -> Window:
        start, _, end = key.partition("--")
        return cls(
            datetime.strptime(start, _KEY_FORMAT).replace(tzinfo=UTC),
            datetime.strptime(end, _KEY_FORMAT).replace(tzinfo=UTC),
        )


def parse_time(value: Any) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO-8601 string (naive values are UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class MetricInterval:
    """A metric's value with a ``(low, high)`` interval at ``confidence`` over ``rows`` rows.

    ``value`` is None when the metric is undefined on those rows (one class only, no rows).
    """

    value: float | None
    low: float | None
    high: float | None
    rows: int
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricInterval:
        return cls(
            value=data.get("value"),
            low=data.get("low"),
            high=data.get("high"),
            rows=int(data.get("rows") or 0),
            confidence=float(data.get("confidence") or 0.95),
        )


@dataclass(frozen=True)
class Verdict:
    """What the degradation rule decided for one metric of one window, and why (readable)."""

    status: Status
    metric: str
    rule: str  # floor, relative_drop or significant
    reason: str
    value: MetricInterval | None = None
    reference: float | None = None
    source: Literal["realized", "estimated"] = "realized"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metric": self.metric,
            "rule": self.rule,
            "reason": self.reason,
            "value": None if self.value is None else self.value.to_dict(),
            "reference": self.reference,
            "source": self.source,
            "details": dict(self.details),
        }


def _finite(value: Any) -> Any:
    """``value``, with a NaN or infinite float as None (JSON has neither)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
