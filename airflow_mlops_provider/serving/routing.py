"""Traffic split between registry aliases: weighted, sticky per caller key, with an optional shadow.

A :class:`Router` is immutable; the app swaps in the one :meth:`Router.with_weights` returns, so a
weight change is one atomic reference assignment. Aliases are laid out on ``[0, 1)`` in sorted name
order, whatever the order of the mapping given, so a caller key keeps its alias across equal weights,
and with two aliases raising one's weight only moves callers towards it, never back.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Mapping

from airflow_mlops_provider.core.errors import PermanentError

_HASH_SPACE = float(1 << 64)


class RoutingError(PermanentError, ValueError):
    """Bad routing weights or shadow alias; the message names the offending value."""


class Router:
    """Choose the alias that answers a request, by weight (``{"champion": 95, "canary": 5}``).

    ``shadow``: an alias that scores a copy of every request; its answers are never returned.
    ``seed`` seeds the generator that routes requests without a caller key.
    """

    def __init__(
        self, weights: Mapping[str, float], *, shadow: str | None = None, seed: int | None = None
    ) -> None:
        self._weights = _validated(weights)
        self._shadow = _validated_shadow(shadow)
        self._seed = seed
        self._rng = random.Random(seed)
        total = sum(self._weights.values())
        live = [alias for alias in sorted(self._weights) if self._weights[alias] > 0]
        bounds, running = [], 0.0
        for alias in live:
            running += self._weights[alias]
            bounds.append(running / total)
        bounds[-1] = 1.0  # no key falls past the last live alias through rounding
        self._aliases, self._bounds = live, bounds

    @property
    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    @property
    def shadow(self) -> str | None:
        return self._shadow

    def choose(self, caller_key: str | None = None) -> str:
        """The alias that answers: the same one for the same key and weights; random without a key."""
        point = self._rng.random() if caller_key is None else key_point(caller_key)
        return self._aliases[bisect_right(self._bounds, point)]

    def shadow_for(self, primary: str) -> str | None:
        """The alias that scores a copy of a request ``primary`` answers (none when it is ``primary``)."""
        return None if self._shadow == primary else self._shadow

    def with_weights(self, weights: Mapping[str, float]) -> Router:
        """A new router with these weights and the same shadow and seed."""
        return Router(weights, shadow=self._shadow, seed=self._seed)

    def with_shadow(self, shadow: str | None) -> Router:
        """A new router with this shadow alias (``None``: no shadow) and the same weights and seed."""
        return Router(self._weights, shadow=shadow, seed=self._seed)

    def __repr__(self) -> str:
        return f"Router(weights={self._weights!r}, shadow={self._shadow!r})"


def key_point(caller_key: str) -> float:
    """A caller key's stable place in ``[0, 1)`` (BLAKE2b, the same in every process and run)."""
    digest = hashlib.blake2b(caller_key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


def _validated(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise RoutingError(f"Routing weights must be a non-empty mapping of alias to weight, got {weights!r}")
    out = {}
    for alias, weight in weights.items():
        if not isinstance(alias, str) or not alias:
            raise RoutingError(f"Routing alias {alias!r} must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise RoutingError(f"Weight of alias {alias!r} must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise RoutingError(f"Weight of alias {alias!r} must be finite and >= 0, got {weight!r}")
        out[alias] = float(weight)
    if not any(out.values()):
        raise RoutingError(f"At least one routing weight must be above 0, got {dict(weights)!r}")
    return out


def _validated_shadow(shadow: str | None) -> str | None:
    if shadow is not None and (not isinstance(shadow, str) or not shadow):
        raise RoutingError(f"Shadow alias must be a non-empty string or None, got {shadow!r}")
    return shadow
