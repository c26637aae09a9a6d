"""The MLflow model registry, used safely under retries, lost responses and concurrent promotions.

What MLflow does not give us, and how this module makes up for it:

* **No idempotent create.** The client retries POSTs, so a lost response can register a version
  twice. :func:`register_version` first looks for a version tagged ``mlops.source_run_id=<run>``
  and only creates one (with that tag in the same request) when none exists.
* **READY means nothing about artifacts.** The open-source registry marks a version READY
  without looking at its files. :func:`verify_artifacts` downloads and loads the model before
  any alias is pointed at it.
* **Aliases are last-writer-wins.** There is no compare-and-set. Promotions of one model are
  serialised by the caller (an Airflow pool with one slot per registered model, see
  :mod:`airflow_mlops_provider.operators.promote`); inside that critical section
  :func:`move_champion` checks that the champion is still the one the decision was made
  against, moves the aliases and re-reads them, failing loudly if someone else wrote in between.

Every MLflow call runs inside :func:`_step`, which turns transport and server errors into a
:class:`RegistryUnavailable` naming the step, the model and the server, and a request MLflow
refuses (an invalid name, say) into a :class:`RegistryRejected` that retrying cannot fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops_provider.core.errors import MlopsError, PermanentError, TransientError
from airflow_mlops_provider.core.names import (
    CHAMPION,
    METRIC_MISSING_TARGET,
    PREVIOUS_CHAMPION,
    TAG_LAST_ROLLBACK,
    TAG_PIPELINE,
    TAG_PREVIOUS,
    TAG_ROLLED_BACK,
    TAG_SNAPSHOT_SHA,
    TAG_SNAPSHOT_URI,
    TAG_SOURCE_RUN,
    TAG_TRAINING_CONFIG,
)
from airflow_mlops_provider.core.paths import UnsafeNameError
from airflow_mlops_provider.core.tracking import looks_unreachable

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

RUN_TAGS_COPIED = (TAG_PIPELINE, TAG_SNAPSHOT_URI, TAG_SNAPSHOT_SHA, TAG_TRAINING_CONFIG)
MAX_TAG_VALUE = 4000


def missing_target_dropped(run_metrics: dict[str, float]) -> dict[str, int]:
    """Rows a training run dropped for lack of a label, per split, read back from its metrics."""
    return {
        name.removeprefix(METRIC_MISSING_TARGET): int(value)
        for name, value in sorted(run_metrics.items())
        if name.startswith(METRIC_MISSING_TARGET)
    }


class RegistryError(MlopsError, RuntimeError):
    """A registry operation cannot go on; the message says what and why."""


class RegistryUnavailable(TransientError, RegistryError):
    """MLflow did not answer or failed; a retry of the same task can complete the work."""


class RegistryRejected(PermanentError, RegistryError):
    """MLflow refused the request itself (an invalid name or value): retrying the task cannot fix it."""


# MLflow error codes that say the request, not the server, is at fault.
_REJECTED_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)
MAX_REASON = 400


class ArtifactVerificationError(TransientError, RegistryError):
    """A model version's artifacts are missing or do not load; no alias was pointed at it.

    Transient: the artifact store may be catching up or briefly down, and a retry verifies again.
    """


class ChampionChanged(TransientError, RegistryError):
    """The champion moved since the decision was made; the decision must be re-made."""

    def __init__(self, model_name: str, expected: str | None, current: str | None) -> None:
        self.expected, self.current = expected, current
        super().__init__(
            f"champion of {model_name!r} changed since evaluation: it was "
            f"{_v(expected)} and is now {_v(current)}"
        )


class AliasConflict(TransientError, RegistryError):
    """An alias read back differently right after we set it: another writer raced us."""


class RollbackRefused(PermanentError, RegistryError, ValueError):
    """Nothing to roll back to (no champion, no previous one) or no reason given: retrying cannot help.

    Also a ``ValueError``, which a missing reason raised before the hierarchy.
    """


def _v(version: str | None) -> str:
    return "none" if version is None else f"version {version}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def _step(what: str, client: MlflowClient) -> Iterator[None]:
    """Name the step when MLflow fails: a refused request is final, an outage (down, 5xx) retryable."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RegistryError:
        raise
    except (MlflowException, OSError) as err:
        reason = _reason(err)
        if getattr(err, "error_code", "") in _REJECTED_CODES and not looks_unreachable(err):
            raise RegistryRejected(
                f"MLflow at {_display(client)} refused {what}: {reason}. Retrying cannot fix this; "
                "nothing after this step was changed."
            ) from err
        raise RegistryUnavailable(
            f"MLflow at {_display(client)} failed while {what}: {reason}. Nothing after this step was "
            "changed; retrying the task completes it."
        ) from err


def _display(client: MlflowClient) -> str:
    from airflow_mlops_provider.core.tracking import strip_userinfo

    return strip_userinfo(str(getattr(client, "_registry_uri", None) or client.tracking_uri))


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


# --- reading -----------------------------------------------------------------------------------------
def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias`` (``None`` when the alias or the model does not exist)."""
    from mlflow.exceptions import MlflowException

    with _step(f"reading alias {alias!r} of {model_name!r}", client):
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException as err:
            text = str(err).lower()
            if _not_found(err) or ("alias" in text and "not found" in text):
                return None
            raise


def alias_number(client: MlflowClient, model_name: str, alias: str) -> str | None:
    version = alias_version(client, model_name, alias)
    return None if version is None else str(version.version)


def aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """Every alias of the model and the version it points at."""
    from mlflow.exceptions import MlflowException

    with _step(f"reading aliases of {model_name!r}", client):
        try:
            model = client.get_registered_model(model_name)
        except MlflowException as err:
            if _not_found(err):
                return {}
            raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def get_version(client: MlflowClient, model_name: str, version: str | int) -> ModelVersion:
    with _step(f"reading {model_name!r} version {version}", client):
        return client.get_model_version(model_name, str(version))


def find_version_by_source_run(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """The (lowest-numbered) version registered from ``run_id``, found by its source-run tag."""
    query = f"name = {filter_value(model_name)} and tag.`{TAG_SOURCE_RUN}` = {filter_value(run_id)}"
    with _step(f"looking up the version of {model_name!r} registered from run {run_id}", client):
        found = client.search_model_versions(query)
    matching = [v for v in found if v.tags.get(TAG_SOURCE_RUN) == run_id]
    return min(matching, key=lambda v: int(v.version)) if matching else None


def filter_value(text: str) -> str:
    """``text`` as a string literal for an MLflow search filter.

    MLflow strips the outer quotes and takes the rest verbatim (no escape character), so the
    literal is quoted with whichever quote ``text`` does not contain.
    """
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    raise UnsafeNameError(f"{text!r} contains both ' and \", which no MLflow search filter can quote")


# --- registering -----------------------------------------------------------------------------------
@dataclass
class Registration:
    """The outcome of :func:`register_version`."""

    model_name: str
    version: str
    source_run_id: str
    created: bool
    source: str | None  # the model's artifact location, as MLflow records it
    tags: dict[str, str] = field(default_factory=dict)


def ensure_registered_model(client: MlflowClient, model_name: str, description: str | None = None) -> None:
    from mlflow.exceptions import MlflowException

    with _step(f"creating registered model {model_name!r}", client):
        try:
            client.create_registered_model(model_name, description=description)
        except MlflowException as err:
            if getattr(err, "error_code", "") not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise


def _model_source(client: MlflowClient, run: Any, artifact_path: str) -> tuple[str, str | None]:
    """The artifact source of ``runs:/<run_id>/<artifact_path>`` and its MLflow 3 logged-model id."""
    run_id = run.info.run_id
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"name = {filter_value(artifact_path)} AND source_run_id = {filter_value(run_id)}",
    )
    if models:
        newest = max(models, key=lambda m: m.creation_timestamp or 0)
        return f"models:/{newest.model_id}", newest.model_id
    return f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}", None


def get_run(client: MlflowClient, run_id: str) -> Any:
    with _step(f"reading run {run_id}", client):
        return client.get_run(run_id)


def register_version(
    client: MlflowClient,
    model_name: str,
    run_id: str,
    *,
    artifact_path: str = "model",
    tags: dict[str, Any] | None = None,
    run: Any = None,
    ready_timeout_s: float = 300,
) -> Registration:
    """Register the model of run ``run_id`` once: an existing version with its source-run tag is reused.

    The run's ``mlops.*`` tags (pipeline, training snapshot, training config hash) are copied onto
    the version along with ``tags``, in the create request itself. On reuse only tags the version
    lacks are added; nothing else changes. ``run`` (the run entity) saves a lookup when known.
    """
    existing = find_version_by_source_run(client, model_name, run_id)
    run = run if run is not None else get_run(client, run_id)
    all_tags = {k: run.data.tags[k] for k in RUN_TAGS_COPIED if run.data.tags.get(k)}
    all_tags.update({k: _clip(v) for k, v in (tags or {}).items() if v is not None})
    all_tags[TAG_SOURCE_RUN] = run_id
    if existing is not None:
        missing = {k: v for k, v in all_tags.items() if k not in existing.tags}
        set_version_tags(client, model_name, existing.version, missing)
        if existing.status != "READY":
            wait_until_ready(client, model_name, existing.version, ready_timeout_s)
        current = {**existing.tags, **missing}
        return Registration(model_name, str(existing.version), run_id, False, existing.source, current)
    ensure_registered_model(client, model_name)
    with _step(f"resolving the model artifacts of run {run_id}", client):
        source, model_id = _model_source(client, run, artifact_path)
    with _step(f"registering run {run_id} as a new version of {model_name!r}", client):
        created = client.create_model_version(
            model_name, source, run_id=run_id, tags=all_tags, model_id=model_id, await_creation_for=0
        )
    # A lost response makes MLflow's client POST again: settle on the lowest version with our tag.
    winner = _drop_duplicates(client, model_name, run_id) or created
    if winner.status != "READY":
        wait_until_ready(client, model_name, winner.version, ready_timeout_s)
    return Registration(model_name, str(winner.version), run_id, True, winner.source, dict(winner.tags))


def _drop_duplicates(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """Keep the lowest version registered from ``run_id``; delete later copies no alias points at."""
    query = f"name = {filter_value(model_name)} and tag.`{TAG_SOURCE_RUN}` = {filter_value(run_id)}"
    with _step(f"looking up versions of {model_name!r} registered from run {run_id}", client):
        found = sorted(
            (v for v in client.search_model_versions(query) if v.tags.get(TAG_SOURCE_RUN) == run_id),
            key=lambda v: int(v.version),
        )
    if len(found) < 2:
        return found[0] if found else None
    aliased = set(aliases(client, model_name).values())
    for duplicate in found[1:]:
        if str(duplicate.version) not in aliased:
            with _step(f"deleting duplicate {model_name!r} version {duplicate.version}", client):
                client.delete_model_version(model_name, duplicate.version)
    return found[0]


def wait_until_ready(client: MlflowClient, model_name: str, version: str | int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = get_version(client, model_name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise RegistryError(f"{model_name!r} version {version} failed registration in MLflow")
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{model_name!r} version {version} not READY after {timeout_s:.0f}s ({status})"
            )
        time.sleep(0.5)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 3] + "..."


def set_version_tags(client: MlflowClient, model_name: str, version: str, tags: dict[str, Any]) -> None:
    with _step(f"tagging {model_name!r} version {version}", client):
        for key, value in tags.items():
            if value is not None:
                client.set_model_version_tag(model_name, version, key, _clip(value))


# --- verification --------------------------------------------------------------------------------
Verifier = Callable[[str], Any]


def verify_artifacts(client: MlflowClient, model_name: str, version: str, load: Verifier) -> None:
    """Load ``models:/<name>/<version>`` with ``load``; raise :class:`ArtifactVerificationError` if it fails.

    ``load`` takes a model URI (for tabular models: ``model_io.load_model`` bound to the settings).
    A server outage during the download is reported as :class:`RegistryUnavailable` instead, so
    the task is retried rather than the version blamed.
    """
    from mlflow.exceptions import MlflowException

    uri = f"models:/{model_name}/{version}"
    try:
        load(uri)
    except (MlflowException, OSError) as err:
        if looks_unreachable(err):
            with _step(f"downloading the artifacts of {uri}", client):
                raise
        raise ArtifactVerificationError(
            f"{uri}: the model's artifacts are missing or unreadable ({_reason(err)}); "
            "no alias was pointed at it"
        ) from err
    except Exception as err:
        raise ArtifactVerificationError(
            f"{uri}: the model's artifacts do not load ({_reason(err)}); no alias was pointed at it"
        ) from err


def _reason(err: BaseException) -> str:
    """The innermost cause first, then the error itself, within :data:`MAX_REASON` characters.

    Outer messages repeat long URLs; the root cause ("Connection refused") is what a reader needs.
    """
    chain = [err]
    while (inner := _inner(chain[-1])) is not None and inner not in chain:
        chain.append(inner)
    from airflow_mlops_provider.core.tracking import strip_userinfo

    root = chain[-1]
    text = _first_line(err)
    if root is not err:
        text = f"{type(root).__name__}: {_first_line(root)} (from {text})"
    text = strip_userinfo(text)  # MLflow quotes request URLs, user:password@ included
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _inner(err: BaseException) -> BaseException | None:
    return err.__cause__ or (None if err.__suppress_context__ else err.__context__)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


# --- aliases -----------------------------------------------------------------------------------------
def set_alias(client: MlflowClient, model_name: str, alias: str, version: str, attempts: int = 5) -> None:
    """Point ``alias`` at ``version`` (last writer wins).

    MLflow's SQL store implements the alias upsert as read-then-insert, so two writers setting
    the same alias at once can hit the primary key ("already exists"); that write is retried.
    """
    from mlflow.exceptions import MlflowException

    with _step(f"setting alias {alias!r} of {model_name!r} to version {version}", client):
        for attempt in range(attempts):
            try:
                client.set_registered_model_alias(model_name, alias, str(version))
                return
            except MlflowException as err:
                clash = "UniqueViolation" in str(err) or "already exists" in str(err)
                if not clash or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))


def set_alias_verified(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` and read it back; :class:`AliasConflict` when it reads differently."""
    set_alias(client, model_name, alias, version)
    seen = alias_number(client, model_name, alias)
    if seen != str(version):
        raise AliasConflict(
            f"alias {alias!r} of {model_name!r} reads {_v(seen)} right after it was set to version "
            f"{version}: another writer changed it concurrently. Promotions of one model must be "
            "serialised (one-slot pool per model)"
        )


def delete_alias(client: MlflowClient, model_name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    with _step(f"deleting alias {alias!r} of {model_name!r}", client):
        try:
            client.delete_registered_model_alias(model_name, alias)
        except MlflowException as err:
            if not _not_found(err):
                raise


@dataclass
class AliasChange:
    alias: str
    before: str | None
    after: str | None
    at: str = field(default_factory=now_iso)


def move_champion(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    expected_champion: str | None,
    verify: Verifier,
) -> list[AliasChange]:
    """Make ``version`` champion, keeping the old one as ``previous_champion``. Run it serialised per model.

    * champion already ``version`` (a retry after success): nothing changes, returns ``[]``.
    * champion differs from ``expected_champion``: raises :class:`ChampionChanged`, nothing changes.
    * artifacts of ``version`` do not load: raises :class:`ArtifactVerificationError`, nothing changes.

    Order: tag the version with the champion it replaces, point ``previous_champion`` at the old
    champion, then ``champion`` at the new one, re-reading each alias. A crash anywhere leaves
    ``champion`` on a verified version and a retry finishes the move.
    """
    version = str(version)
    now = aliases(client, model_name)
    current = now.get(CHAMPION)
    if current == version:
        return []
    if current != (None if expected_champion is None else str(expected_champion)):
        raise ChampionChanged(model_name, expected_champion, current)
    verify_artifacts(client, model_name, version, verify)
    set_version_tags(client, model_name, version, {TAG_PREVIOUS: current or ""})
    changes = []
    if current is not None:
        set_alias_verified(client, model_name, PREVIOUS_CHAMPION, current)
        changes.append(AliasChange(PREVIOUS_CHAMPION, now.get(PREVIOUS_CHAMPION), current))
    set_alias_verified(client, model_name, CHAMPION, version)
    changes.append(AliasChange(CHAMPION, current, version))
    return changes


# --- rollback ----------------------------------------------------------------------------------------
@dataclass
class Rollback:
    """What a rollback did (stored as JSON in the registered model's ``mlops.last_rollback`` tag)."""

    model_name: str
    request_id: str
    from_version: str
    to_version: str
    reason: str
    actor: str | None
    at: str
    previous_champion_after: str | None
    alias_changes: list[dict[str, Any]]
    repeated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(
    client: MlflowClient,
    model_name: str,
    *,
    reason: str,
    request_id: str,
    verify: Verifier,
    actor: str | None = None,
) -> Rollback:
    """Move ``champion`` back to ``previous_champion``, recording why. Run it serialised per model.

    ``previous_champion`` then points at the version that one had replaced (from its
    ``mlops.previous_champion_version`` tag), or is removed, so a second rollback steps further
    back instead of flipping between two versions. A retry with the same ``request_id`` finishes
    or repeats nothing.
    """
    if not reason or not reason.strip():
        raise RollbackRefused("a rollback needs a reason; it is recorded on the model")
    with _step(f"reading {model_name!r}", client):
        model_tags = client.get_registered_model(model_name).tags
    last = json.loads(model_tags.get(TAG_LAST_ROLLBACK) or "{}")
    champion = alias_number(client, model_name, CHAMPION)
    if last.get("request_id") == request_id and champion == last.get("to_version"):
        _finish_rollback(client, model_name, last)
        return Rollback(**{**last, "repeated": True})
    if champion is None:
        raise RollbackRefused(f"{model_name!r} has no champion: nothing to roll back")
    target = alias_number(client, model_name, PREVIOUS_CHAMPION)
    if target is None:
        raise RollbackRefused(
            f"{model_name!r} has no {PREVIOUS_CHAMPION!r} alias: champion version {champion} has no "
            "predecessor to roll back to"
        )
    verify_artifacts(client, model_name, target, verify)
    before_previous = get_version(client, model_name, target).tags.get(TAG_PREVIOUS) or None
    record = Rollback(
        model_name, request_id, champion, target, reason.strip(), actor, now_iso(), before_previous,
        alias_changes=[
            asdict(AliasChange(CHAMPION, champion, target)),
            asdict(AliasChange(PREVIOUS_CHAMPION, target, before_previous)),
        ],
    )  # fmt: skip
    payload = {k: v for k, v in record.to_dict().items() if k != "repeated"}
    with _step(f"recording the rollback on {model_name!r}", client):
        client.set_registered_model_tag(model_name, TAG_LAST_ROLLBACK, _clip(payload))
    set_alias_verified(client, model_name, CHAMPION, target)
    _finish_rollback(client, model_name, payload)
    return record


def _finish_rollback(client: MlflowClient, model_name: str, record: dict[str, Any]) -> None:
    after = record.get("previous_champion_after")
    if after:
        set_alias_verified(client, model_name, PREVIOUS_CHAMPION, after)
    else:
        delete_alias(client, model_name, PREVIOUS_CHAMPION)
    note = {k: record[k] for k in ("reason", "actor", "at", "request_id", "to_version")}
    set_version_tags(client, model_name, record["from_version"], {TAG_ROLLED_BACK: note})
