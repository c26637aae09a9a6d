"""A model that follows a registry alias: loaded in the background, swapped atomically.

A request takes :meth:`ModelSlot.current` once and keeps that immutable ``(version, model)`` pair,
so a swap never touches work in flight. :meth:`ModelSlot.refresh` loads a new version completely
before it replaces the reference; a failed load keeps the old version serving and is counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from airflow_mlops_provider.core.tabular_model import TabularModel
    from airflow_mlops_provider.core.tracking import TrackingSettings

log = logging.getLogger(__name__)
DEFAULT_POLL_S = 5.0


@dataclass(frozen=True)
class Served:
    """One loaded model version; never changes once made."""

    version: str
    model: TabularModel


class ModelSlot:
    """The model currently behind ``model_name@alias``.

    When the alias disappears, a slot that ``keeps`` its model serves on (the champion: better the
    last version than none); one that does not drops it (a canary whose rollout ended).
    """

    def __init__(self, model_name: str, alias: str, *, keeps: bool = True) -> None:
        self.model_name = model_name
        self.alias = alias
        self.keeps = keeps
        self.load_failures = 0
        self.last_error: str | None = None
        self._served: Served | None = None

    def current(self) -> Served | None:
        """The pair to answer with (``None`` until a first version is loaded)."""
        return self._served

    def refresh(self, settings: TrackingSettings) -> bool:
        """Resolve the alias and load a new version if it moved; ``True`` when a swap happened.

        Any failure (registry unreachable, damaged model) is logged and counted; the old version
        keeps serving.
        """
        try:
            return self._refresh(settings)
        except Exception as err:
            self.load_failures += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("Following %s@%s failed: %s", self.model_name, self.alias, self.last_error)
            return False

    def _refresh(self, settings: TrackingSettings) -> bool:
        from airflow_mlops_provider.core.model_io import load_model
        from airflow_mlops_provider.core.registry import alias_number

        version = alias_number(settings.client(), self.model_name, self.alias)
        if version is None:
            self.last_error = f"model {self.model_name!r} has no alias {self.alias!r}"
            dropped = not self.keeps and self._served is not None
            if dropped:
                self._served = None
                log.info("%s@%s is gone: no longer serving it", self.model_name, self.alias)
            return dropped
        served = self._served
        if served is not None and served.version == version:
            return False
        model = load_model(f"models:/{self.model_name}/{version}", settings)
        self._served = Served(version, model)  # one reference assignment: atomic for readers
        self.last_error = None
        log.info("Serving %s version %s as %s", self.model_name, version, self.alias)
        return True


class Refreshable(Protocol):
    """Something the follower keeps up to date with the registry (a slot, a pipeline's traffic)."""

    def refresh(self, settings: TrackingSettings) -> object: ...


class Follower:
    """A daemon thread refreshing slots every ``poll_s`` seconds until :meth:`stop`."""

    def __init__(
        self, slots: Sequence[Refreshable], settings: TrackingSettings, poll_s: float = DEFAULT_POLL_S
    ) -> None:
        self.slots = list(slots)
        self.settings = settings
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (a load in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            for slot in self.slots:
                slot.refresh(self.settings)
            self._stop.wait(self.poll_s)
