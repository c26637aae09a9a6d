"""Object storage access for core code: one fsspec filesystem per URI, no Airflow needed.

Operators resolve credentials (an Airflow S3 connection, say) into ``storage_options`` and
hand them down; core functions only see a URI and those options.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import fsspec
from fsspec.core import url_to_fs


@dataclass(frozen=True)
class Location:
    """A URI on a filesystem, with the options needed to open it."""

    uri: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return url_to_fs(self.uri, **dict(self.storage_options))[0]

    @property
    def path(self) -> str:
        """The filesystem-internal path (no scheme)."""
        return cast(str, url_to_fs(self.uri, **dict(self.storage_options))[1])

    def join(self, *parts: str) -> Location:
        return Location(join_uri(self.uri, *parts), self.storage_options)

    def exists(self) -> bool:
        return cast(bool, self.fs.exists(self.path))

    def read_bytes(self) -> bytes:
        return cast(bytes, self.fs.cat_file(self.path))

    def write_bytes_atomic(self, data: bytes) -> None:
        """Write to a temporary sibling and move it into place, so readers never see half a file."""
        fs, path = self.fs, self.path
        parent = posixpath.dirname(path)
        if is_local(fs):
            os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}"
        with fs.open(tmp, "wb") as handle:
            handle.write(data)
        fs.mv(tmp, path)


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI (``s3://b/p`` or ``file:///x`` or a plain path)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
