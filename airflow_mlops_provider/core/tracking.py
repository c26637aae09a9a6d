"""MLflow tracking settings, independent of Airflow.

The Airflow hook turns a connection into :class:`TrackingSettings`; core code, training
subprocesses and tests use the settings to build clients or environments. Settings never write
into the process environment for longer than one MLflow call, so two settings objects in one
process do not affect each other (:meth:`TrackingSettings.environment`). Secrets never
appear in ``repr()``, :attr:`TrackingSettings.display_uri` or reachability errors: URIs are shown
through :func:`strip_userinfo`, and :meth:`TrackingSettings.secrets` lists what the Airflow hook
registers with the secrets masker.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True, repr=False)
class TrackingSettings:
    """Where MLflow lives and how to authenticate against it."""

    tracking_uri: str
    registry_uri: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    insecure_tls: bool = False
    request_timeout_s: int = 30
    max_retries: int = 3
    ui_url: str | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return strip_userinfo(f"{type(self).__name__}({shown})")

    def secrets(self) -> Iterator[str]:
        """Every secret of these settings: token, password and passwords inside the URIs (as written
        and decoded), for a log masker."""
        for uri in (self.tracking_uri, self.registry_uri, self.ui_url):
            password = urlsplit(uri).password if uri else None
            if password:
                yield from dict.fromkeys((password, unquote(password)))
        yield from (secret for secret in (self.token, self.password) if secret)

    @property
    def display_uri(self) -> str:
        """The tracking URI with any user info removed, safe for logs."""
        return strip_userinfo(self.tracking_uri)

    @property
    def browser_url(self) -> str | None:
        """Base URL of the MLflow UI, when there is one (http(s) servers or an explicit ``ui_url``)."""
        if self.ui_url:
            return strip_userinfo(self.ui_url).rstrip("/")
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.display_uri.rstrip("/")
        return None

    def env(self) -> dict[str, str]:
        """Environment variables that make any MLflow client (or subprocess) use these settings."""
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.request_timeout_s),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            # its tqdm bar goes to stderr, which a task log shows as an error line per download
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        if self.registry_uri:
            env["MLFLOW_REGISTRY_URI"] = self.registry_uri
        if self.token:
            env["MLFLOW_TRACKING_TOKEN"] = self.token
        elif self.password:
            env["MLFLOW_TRACKING_USERNAME"] = self.username or ""
            env["MLFLOW_TRACKING_PASSWORD"] = self.password
        if self.insecure_tls:
            env["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        return env

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """A copy of ``base`` (say ``os.environ``, for a subprocess) with every MLflow variable these
        settings govern taken from them: nothing of other settings (a registry URI, a token) is left."""
        env = {name: value for name, value in base.items() if name not in _EXPORTED}
        env.update(self.env())
        return env

    @contextmanager
    def environment(self) -> Iterator[None]:
        """These settings in ``os.environ`` inside the block only, the previous values restored after.

        MLflow reads credentials, timeouts and retry counts from the environment when it sends a
        request, so in-process MLflow calls run inside this block (:meth:`client` does it per
        call). A process-wide lock keeps threads with other settings out meanwhile; it is
        re-entrant, so nested blocks of the same thread are fine.
        """
        with _ENVIRONMENT_LOCK:
            saved = {name: os.environ[name] for name in _EXPORTED if name in os.environ}
            for name in _EXPORTED:
                os.environ.pop(name, None)
            os.environ.update(self.env())
            try:
                yield
            finally:
                for name in _EXPORTED:
                    os.environ.pop(name, None)
                os.environ.update(saved)

    def client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to these settings: each of its public methods runs inside
        :meth:`environment`, so it never sees another settings object's credentials or retries.

        A SQLite store is initialised first (:func:`initialise_sqlite_store`), so that tasks and
        subprocesses that open a brand-new store at the same time do not race its schema migration.
        """
        for uri in dict.fromkeys((self.tracking_uri, self.registry_uri)):
            initialise_sqlite_store(uri)
        return _settings_client_class()(self)


_ENVIRONMENT_LOCK = threading.RLock()
_F = TypeVar("_F", bound=Callable[..., Any])


def _in_environment(method: _F) -> _F:
    @functools.wraps(method)
    def call(client: Any, *args: Any, **kwargs: Any) -> Any:
        with client.mlops_settings.environment():
            return method(client, *args, **kwargs)

    return call  # type: ignore[return-value]


@functools.cache
def _settings_client_class() -> Callable[[TrackingSettings], MlflowClient]:
    """``MlflowClient`` whose public methods run inside :meth:`TrackingSettings.environment`."""
    from mlflow import MlflowClient

    class SettingsClient(MlflowClient):
        def __init__(self, settings: TrackingSettings) -> None:
            self.mlops_settings = settings
            with settings.environment():
                super().__init__(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)

    for name, member in vars(MlflowClient).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            setattr(SettingsClient, name, _in_environment(member))
    return SettingsClient


_INITIALISED_SQLITE: set[Path] = set()


def sqlite_database(uri: str | None) -> Path | None:
    """The database file of a ``sqlite://`` store URI; None for other stores and in-memory SQLite."""
    if not uri or not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database).resolve() if database and database != ":memory:" else None


def initialise_sqlite_store(uri: str | None) -> None:
    """Create and migrate the MLflow schema of a SQLite store once, under a file lock.

    MLflow creates and migrates a SQLite schema on the first connection without any lock, so
    processes opening a brand-new file at once run the migration concurrently and fail
    ("duplicate column name: step"). Here the first process migrates while holding an exclusive
    ``flock`` on ``<database>.lock``; the others wait, then find the schema current. Each process
    does this once per database; any other store is left alone.
    """
    path = sqlite_database(uri)
    if path is None or path in _INITIALISED_SQLITE:
        return
    import fcntl

    from mlflow import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        # Tracking and registry stores share one schema: opening either one migrates it.
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    _INITIALISED_SQLITE.add(path)


_EXPORTED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
)
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#'\"<>]*@")


def strip_userinfo(text: str) -> str:
    """Remove ``user:password@`` from a URI, or from every URI in a message, so it can be shown.

    Works on text, not on parsed URIs: a malformed URI (a bad port, an unescaped ``@`` in the
    password) loses its user info too instead of raising or leaking it.
    """
    return _USERINFO.sub(r"\1", text)


def looks_unreachable(err: BaseException) -> bool:
    """Whether an MLflow error, or any error in its cause chain, means the server could not be
    reached (connection refused or reset, timeout, retries exhausted, a 5xx answer)."""
    import requests

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        text = str(seen)
        markers = ("Max retries exceeded", "Connection refused", "Connection aborted", "RemoteDisconnected")
        if any(marker in text for marker in markers) or "status code 5" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_reachable(settings: TrackingSettings) -> str:
    """Ask the tracking server for one experiment; return a short description or raise ``ConnectionError``."""
    from mlflow.exceptions import MlflowException

    try:
        settings.client().search_experiments(max_results=1)
    except (MlflowException, OSError) as err:
        # MLflow quotes the request URL, user info included; strip it before cutting the line.
        reason = strip_userinfo((str(err).splitlines() or [type(err).__name__])[0])[:300]
        raise ConnectionError(f"Cannot reach MLflow at {settings.display_uri}: {reason}") from err
    return f"MLflow at {settings.display_uri} is reachable"


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None = None) -> str:
    """Return the id of experiment ``name``, creating it if needed.

    A tracking server stores artifacts where it was told to; a local store (SQLite, files) would
    default to ``./mlruns`` in whatever directory the worker runs, so new experiments there get
    ``<artifact_root>/mlflow/<name>`` instead.
    """
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    served = client.tracking_uri.startswith(("http://", "https://", "databricks"))
    location = None if served or not artifact_root else f"{artifact_root.rstrip('/')}/mlflow/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another task created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
