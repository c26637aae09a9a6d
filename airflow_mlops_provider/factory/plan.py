"""Pipeline plans: validated configs as plain JSON, cached by content, so re-parsing is cheap.

The dag-processor re-imports the loader file every few seconds, in a fresh process each time.
Validating a config with pydantic costs tens of milliseconds in such a process, almost all of
it building the schema's classes and validators, and the YAML has usually not changed since
the last parse. So a config is validated once per content: the result (the *plan*: the
normalised config plus the values derived from it, see ``PipelineConfig.plan``) is stored
under a key made of the YAML bytes, the environment variables it may expand (see
:mod:`~airflow_mlops_provider.factory.env`), and the provider's schema code. The next parse of
the same file reads that JSON and builds the DAGs without importing the schema at all. Broken
configs are never cached: they fail every parse, and neither are plans that expanded a variable
whose name looks secret, so such a value never lands on disk.

Cache folder: ``$MLOPS_PLAN_CACHE``, else ``$AIRFLOW_HOME/.cache/airflow-mlops-provider/plans``
(``MLOPS_PLAN_CACHE=off`` disables it). It is created private (0700) and a folder that is not
owned by this user or is writable by others is not used: a plan decides what code the
DAGs run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_mlops_provider import __version__
from airflow_mlops_provider.factory import env as env_rules

PLAN_VERSION = 2
_ENV_REF = re.compile(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_HERE = Path(__file__).resolve().parent
# Code whose change must invalidate cached plans: the schema, its loader, the schemas it borrows.
_SCHEMA_FILES = (
    _HERE / "config.py",
    _HERE / "loader.py",
    _HERE / "plan.py",
    _HERE / "env.py",
    _HERE.parent / "core" / "gate.py",
    _HERE.parent / "core" / "drift" / "config.py",
    _HERE.parent / "core" / "training" / "hyperparameters.py",
)


class View(dict):
    """A plan as nested read-only attribute access: ``plan.data.source.resolved``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self[name])
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a pipeline plan is read-only")


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, View):
        return View(value)
    return value


def as_view(plan: Mapping[str, Any]) -> View:
    return View(plan)


def cache_dir() -> Path | None:
    """The plan cache folder, created if needed; None when disabled or not safe to use."""
    setting = os.environ.get("MLOPS_PLAN_CACHE")
    if setting and setting.lower() in ("off", "0", "false", "none"):
        return None
    if setting:
        folder = Path(setting)
    else:
        home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
        folder = home / ".cache" / "airflow-mlops-provider" / "plans"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return folder


def plan_key(raw: bytes, environ: Mapping[str, str] | None = None) -> str:
    """Cache key of one config file's content in this environment and provider version."""
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256(raw)
    for name in sorted({m.decode() for m in _ENV_REF.findall(raw)}):
        if not env_rules.allowed(name, environ):  # a config error; its value must not matter
            digest.update(f"\0{name}\2".encode())
            continue
        value = environ.get(name)
        digest.update(f"\0{name}={'' if value is None else value}\1{value is None}".encode())
    digest.update(f"\0{__version__}\0{PLAN_VERSION}\0{_schema_stamp()}".encode())
    return digest.hexdigest()


def load_plan(path: str | os.PathLike[str], label: str | None = None) -> View:
    """The plan of one config file: from the cache, or validated now (raises ``ConfigError``)."""
    path = Path(path)
    raw = path.read_bytes()
    folder = cache_dir()
    key = plan_key(raw)
    cached = folder / f"{key}.json" if folder else None
    if cached is not None:
        try:
            return View(json.loads(cached.read_bytes()))
        except (OSError, ValueError):
            pass
    from airflow_mlops_provider.factory.loader import load_pipeline

    plan = load_pipeline(path).plan()
    if cached is not None and not any(map(env_rules.looks_secret, plan["env"])):
        _write_atomic(cached, json.dumps(plan, sort_keys=True).encode())
    return View(plan)


def _write_atomic(target: Path, data: bytes) -> None:
    """Publish the plan with a rename, so readers see a whole file or none (failures cost only speed)."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".plan-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _schema_stamp() -> str:
    parts = []
    for file in _SCHEMA_FILES:
        try:
            info = file.stat()
            parts.append(f"{file.name}:{info.st_mtime_ns}:{info.st_size}")
        except OSError:
            parts.append(f"{file.name}:missing")
    return ",".join(parts)
