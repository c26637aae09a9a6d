"""Pick the best of several training results by one metric (a grid search's winner)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MODES = ("max", "min")


def select_best(results: Iterable[Mapping[str, Any]], metric: str, mode: str = "max") -> dict[str, Any]:
    """The result with the best finite ``metrics[metric]`` (``mode`` ``"max"`` or ``"min"``).

    Results whose metric is missing or not finite are skipped; ties go to the earliest result
    (lowest map index), so the choice is stable across retries. Raises ``ValueError`` naming the
    metric and the metrics seen when no result qualifies.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    candidates = [dict(r) for r in results if r]
    scored = [
        (float(r["metrics"][metric]), i, r)
        for i, r in enumerate(candidates)
        if isinstance(r.get("metrics"), Mapping)
        and isinstance(r["metrics"].get(metric), int | float)
        and math.isfinite(r["metrics"][metric])
    ]
    if not scored:
        seen = sorted({k for r in candidates for k in (r.get("metrics") or {})})
        raise ValueError(
            f"No training result has a finite metric {metric!r} "
            f"({len(candidates)} results; metrics seen: {seen})"
        )
    pick = max if mode == "max" else min
    return pick(scored, key=lambda item: (item[0], -item[1]) if mode == "max" else (item[0], item[1]))[2]
