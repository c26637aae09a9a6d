"""The MLflow registry as the Models page reads it: batched, and kept for a few seconds.

One refresh of any number of registered models costs a fixed handful of calls, never one per
model or per cell: per 50 names, one ``search_registered_models(name IN (...))`` (the aliases)
and one ``search_model_versions(name IN (...))`` (every version with its tags); then the metrics
of every champion's run in one ``search_runs(run_id IN (...))`` over the experiments. Results are kept
per model for :data:`TTL_S` seconds, so users who open the page at once share one refresh.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.names import (
    CHAMPION,
    TAG_LAST_DRIFT,
    TAG_RECORD_URI,
    TAG_ROLLED_BACK,
    TAG_STATUS,
    TAG_VERDICT,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

TTL_S = 10.0
NAMES_PER_CALL = 50
KEY_METRICS = 4


@dataclass(frozen=True)
class VersionView:
    """One registered model version, with what the page shows of it."""

    version: str
    run_id: str | None
    created_ms: int
    aliases: tuple[str, ...]
    tags: Mapping[str, str]

    @property
    def decision(self) -> str | None:
        """pass, fail, rejected or rolled back (None: the gate never decided on it)."""
        if self.tags.get(TAG_ROLLED_BACK):
            return "rolled back"
        if self.tags.get(TAG_STATUS) == "rejected" and self.tags.get(TAG_VERDICT) == "pass":
            return "rejected"
        return self.tags.get(TAG_VERDICT)

    @property
    def status(self) -> str | None:
        return self.tags.get(TAG_STATUS)

    @property
    def record_uri(self) -> str | None:
        return self.tags.get(TAG_RECORD_URI)

    @property
    def last_drift(self) -> dict[str, Any] | None:
        """The latest drift check on live data while this version was champion (its summary)."""
        try:
            value = json.loads(self.tags.get(TAG_LAST_DRIFT) or "null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ModelView:
    """One registered model: its versions (newest first), aliases and the champion's key metrics."""

    name: str
    versions: tuple[VersionView, ...] = ()
    champion_metrics: Mapping[str, float] = field(default_factory=dict)

    def alias(self, name: str) -> VersionView | None:
        return next((v for v in self.versions if name in v.aliases), None)

    @property
    def champion(self) -> VersionView | None:
        return self.alias(CHAMPION)

    @property
    def last_decision(self) -> VersionView | None:
        return next((v for v in self.versions if v.decision is not None), None)


def read_models(client: MlflowClient, names: Iterable[str]) -> dict[str, ModelView]:
    """Every model in ``names`` (an unknown one has no versions), in a few batched calls."""
    from airflow_mlops_provider.core.registry import filter_value

    wanted = sorted(set(names))
    versions: dict[str, list[VersionView]] = {name: [] for name in wanted}
    for start in range(0, len(wanted), NAMES_PER_CALL):
        query = f"name IN ({', '.join(filter_value(n) for n in wanted[start : start + NAMES_PER_CALL])})"
        # search_model_versions leaves aliases out: the registered models carry them
        aliases = {
            model.name: _by_version(model.aliases or {})
            for model in _all_pages(partial(client.search_registered_models, query))
        }
        for found in _all_pages(partial(client.search_model_versions, query)):
            shown = aliases.get(found.name, {}).get(str(found.version), ())
            versions[found.name].append(_version(found, shown))
    for items in versions.values():
        items.sort(key=lambda v: int(v.version), reverse=True)
    champions = {n: c for n, items in versions.items() if (c := _champion(items)) and c.run_id}
    metrics = _run_metrics(client, [c.run_id for c in champions.values() if c.run_id])
    return {
        name: ModelView(
            name,
            tuple(items),
            _key_metrics(metrics.get(champions[name].run_id or "", {}) if name in champions else {}),
        )
        for name, items in versions.items()
    }


def _by_version(aliases: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for alias, version in sorted(aliases.items()):
        out[str(version)] = (*out.get(str(version), ()), alias)
    return out


def _champion(items: list[VersionView]) -> VersionView | None:
    return next((v for v in items if CHAMPION in v.aliases), None)


def _version(found: Any, aliases: tuple[str, ...]) -> VersionView:
    return VersionView(
        version=str(found.version),
        run_id=found.run_id or None,
        created_ms=int(found.creation_timestamp or 0),
        aliases=aliases,
        tags=dict(found.tags or {}),
    )


def _all_pages(search: Callable[..., Any]) -> Iterable[Any]:
    """Every item of a paged MLflow search (``search`` takes the ``page_token`` keyword)."""
    token: str | None = None
    while True:
        page = search(page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _run_metrics(client: MlflowClient, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """The latest metrics of ``run_ids``: one search over the experiments that hold runs at all."""
    if not run_ids:
        return {}
    from mlflow.entities import ViewType

    from airflow_mlops_provider.core.registry import filter_value

    experiments = [e.experiment_id for e in _all_pages(partial(client.search_experiments, ViewType.ALL))]
    out: dict[str, dict[str, float]] = {}
    for start in range(0, len(run_ids), NAMES_PER_CALL):
        chunk = run_ids[start : start + NAMES_PER_CALL]
        query = f"attributes.run_id IN ({', '.join(filter_value(r) for r in chunk)})"
        runs = _all_pages(partial(client.search_runs, experiments, query, ViewType.ALL, 1000))
        out.update({run.info.run_id: dict(run.data.metrics) for run in runs})
    return out


def _key_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a reader looks at first: held-out ones (``test_``, then ``val_``), else any."""
    for prefix in ("test_", "val_", ""):
        picked = {k: v for k, v in sorted(metrics.items()) if k.startswith(prefix) and "loss" not in k}
        if picked:
            return dict(list(picked.items())[:KEY_METRICS])
    return {}


class RegistryCache:
    """:func:`read_models` results per model name, kept for ``ttl_s``; stale names are read together."""

    def __init__(self, reader: Callable[[list[str]], dict[str, ModelView]], ttl_s: float = TTL_S) -> None:
        self._reader = reader
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ModelView]] = {}

    def get(self, names: Iterable[str]) -> dict[str, ModelView]:
        wanted = set(names)
        with self._lock:  # one refresh at a time: concurrent page loads wait for it and share it
            now = time.monotonic()
            stale = sorted(n for n in wanted if now - self._entries.get(n, (-1e18, None))[0] > self._ttl_s)
            if stale:
                fresh = self._reader(stale)
                for name in stale:
                    self._entries[name] = (now, fresh.get(name, ModelView(name)))
            return {n: self._entries[n][1] for n in wanted}
