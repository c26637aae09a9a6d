"""Names that become path components must not escape the artifact root."""

from __future__ import annotations

import posixpath
import re

from airflow_mlops_provider.core.ingest.errors import IngestError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_component(value: str, what: str) -> str:
    """Return ``value`` when it is a single harmless path component, else raise :class:`IngestError`."""
    if not isinstance(value, str) or not _SAFE.match(value) or ".." in value:
        raise IngestError(
            f"{what} {value!r} is not a safe name: it would escape or clutter the artifact root "
            "(use letters, digits, '.', '_' and '-', starting with a letter or digit, no '..')"
        )
    return value


def ensure_within(root_uri: str, uri: str, what: str) -> str:
    """Raise :class:`IngestError` unless ``uri`` lies inside ``root_uri`` after normalising ``..``."""
    root = _normalise(root_uri)
    target = _normalise(uri)
    if target != root and not target.startswith(root.rstrip("/") + "/"):
        raise IngestError(f"{what} {uri!r} lies outside the artifact root {root_uri!r}")
    return uri


def _normalise(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    if scheme == "file":
        rest = "/" + rest.lstrip("/")
    return f"{scheme}://{posixpath.normpath(rest)}"
