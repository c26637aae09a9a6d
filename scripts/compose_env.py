"""First run of the compose stack: write ``.env`` with fresh random secrets, never overwriting one.

    make compose-env            # or: python3 scripts/compose_env.py [PATH]

docker-compose.yaml takes every password, key and secret from this file (``${NAME:?...}``),
so ``docker compose`` refuses to start without it. An existing file is kept as it is; only
variables it lacks (added by a newer compose file) are appended. The file is private (0600).
Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _token() -> str:
    return secrets.token_urlsafe(32)


def _fernet_key() -> str:
    """What ``cryptography.fernet.Fernet.generate_key()`` returns: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


VARIABLES: dict[str, Callable[[], str]] = {
    "AIRFLOW_ADMIN_PASSWORD": _token,
    "AIRFLOW_FERNET_KEY": _fernet_key,
    "AIRFLOW_JWT_SECRET": _token,
    "AIRFLOW_API_SECRET_KEY": _token,
    "POSTGRES_PASSWORD": _token,
    "MLFLOW_DB_PASSWORD": _token,
    "MLFLOW_ADMIN_USER": lambda: "admin",
    "MLFLOW_ADMIN_PASSWORD": _token,
    "MLFLOW_FLASK_SECRET_KEY": _token,
    "MINIO_ROOT_USER": lambda: "mlops",
    "MINIO_ROOT_PASSWORD": _token,
    "GRAFANA_ADMIN_PASSWORD": _token,
}


def write_env(path: Path) -> list[str]:
    """Add to ``path`` every variable it lacks (all of them for a new file); the names added."""
    existing = path.read_text() if path.exists() else ""
    present = set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=", existing, re.M))
    missing = [name for name in VARIABLES if name not in present]
    if missing:
        header = (
            ""
            if existing
            else "# Secrets of the compose stack, made by scripts/compose_env.py. Keep private.\n"
        )
        separator = "\n" if existing and not existing.endswith("\n") else ""
        lines = "".join(f"{name}={VARIABLES[name]()}\n" for name in missing)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(header + separator + lines)
    path.chmod(0o600)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else REPO / ".env"
    added = write_env(path)
    print(f"{path}: added {', '.join(added)}" if added else f"{path}: complete, left unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
