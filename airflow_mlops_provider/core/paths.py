"""Names that become paths or registry keys: one check for every stage, stdlib only.

Pipeline and split names become path components under the artifact root; URIs read from
XCom or registry tags must lie under it before anything is written beside them; model names
go to the MLflow registry, which treats them as file names in places and quotes them in its
search filters. Every check raises :class:`UnsafeNameError`, which retrying cannot fix.
"""

from __future__ import annotations

import posixpath
import re

from airflow_mlops_provider.core.errors import PermanentError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_MODEL_NAME = 256  # the registry's column width (MLflow's SQL store)


class UnsafeNameError(PermanentError, ValueError):
    """A name or URI would escape the artifact root or break the registry: retrying cannot fix it."""


def safe_component(value: str, what: str) -> str:
    """Return ``value`` when it is a single harmless path component, else raise :class:`UnsafeNameError`."""
    if not isinstance(value, str) or not _SAFE.match(value) or ".." in value:
        raise UnsafeNameError(
            f"{what} {value!r} is not a safe name: it would escape or clutter the artifact root "
            "(use letters, digits, '.', '_' and '-', starting with a letter or digit, no '..')"
        )
    return value


def ensure_within(root_uri: str, uri: str, what: str) -> str:
    """Return ``uri`` when it lies inside ``root_uri`` after normalising ``..``, else raise."""
    root = _normalise(root_uri)
    target = _normalise(uri)
    if target != root and not target.startswith(root.rstrip("/") + "/"):
        raise UnsafeNameError(f"{what} {uri!r} lies outside the artifact root {root_uri!r}")
    return uri


def check_model_name(name: str) -> str:
    """Return ``name`` when the MLflow registry accepts it and our registry look-ups can quote it.

    MLflow's rules (``mlflow.utils.validation._validate_model_name`` and its file store): not
    blank; no ``/``, ``:``, ``\\`` or ``%``; unchanged by path normalisation (so no ``..``
    prefix, no leading ``/``, not ``.``); at most 256 characters. Ours on top: not both ``'``
    and ``"``, since MLflow's search filters have no escape character.
    """
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "it is empty"
    elif len(name) > MAX_MODEL_NAME:
        problem = f"it is longer than {MAX_MODEL_NAME} characters"
    elif any(c in name for c in "/:\\%"):
        problem = "it contains '/', ':', '\\' or '%'"
    elif posixpath.normpath(name) != name or name == "." or name.startswith(".."):
        problem = "it reads as a relative path"
    elif "'" in name and '"' in name:
        problem = "it contains both ' and \", which no registry search filter can quote"
    if problem:
        raise UnsafeNameError(f"model name {name!r} is not valid in the MLflow registry: {problem}")
    return name


def _normalise(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    if scheme == "file":
        rest = "/" + rest.lstrip("/")
    return f"{scheme}://{posixpath.normpath(rest)}"
