"""Source objects: list what a source URI names (one object, a prefix or a glob) and open it.

S3 is read through a boto3 client that the caller builds (operators get it from the amazon
provider's ``S3Hook``, so the Airflow connection decides credentials and endpoint); any other
URI (``file://``, an ``ObjectStoragePath``, ``memory://``...) goes through fsspec. Objects are
listed in key order, reads are pinned to the ETag (or VersionId) seen when listing, and
connection failures are retried with backoff before a :class:`SourceUnreachableError`.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from fsspec.core import url_to_fs

from airflow_mlops_provider.core.ingest.errors import IngestError, NothingListedError, SourceUnreachableError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

T = TypeVar("T")
GLOB_CHARS = "*?["


@dataclass
class SourceObject:
    """One object read into a snapshot, as recorded in the manifest."""

    uri: str
    size: int
    etag: str | None = None
    version_id: str | None = None
    last_modified: str | None = None
    key: str = field(default="", repr=False)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "size": self.size,
            "etag": self.etag,
            "version_id": self.version_id,
            "last_modified": self.last_modified,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a storage call that could not connect."""

    attempts: int = 3
    backoff_s: float = 1.0


class Source:
    """A set of objects to ingest, and how to open them."""

    uri: str

    def objects(self) -> list[SourceObject]:  # pragma: no cover - interface
        raise NotImplementedError

    def open_stream(self, obj: SourceObject) -> BinaryIO:  # pragma: no cover - interface
        """Open for sequential reading."""
        raise NotImplementedError

    def open_seekable(self, obj: SourceObject, buffer_bytes: int) -> BinaryIO:  # pragma: no cover
        """Open for random access (Parquet footers and column chunks)."""
        raise NotImplementedError


def open_source(
    uri: Any,
    *,
    s3_client: Any | None = None,
    storage_options: Mapping[str, Any] | None = None,
    retry: RetryPolicy | None = None,
) -> Source:
    """The :class:`Source` for ``uri``: S3 through ``s3_client`` when given, fsspec otherwise.

    ``uri`` may also be a path object carrying its own filesystem (an Airflow
    ``ObjectStoragePath`` or a ``UPath``): its ``fs`` and ``path`` are used as they are.
    """
    retry = retry or RetryPolicy()
    if not isinstance(uri, str) and hasattr(uri, "fs") and hasattr(uri, "path"):
        protocol = uri.protocol if isinstance(uri.protocol, str) else uri.protocol[0]
        display = f"{protocol or 'file'}://{uri.path}"
        return FsspecSource(display, {}, retry, filesystem=(uri.fs, uri.path))
    uri = str(uri)
    if uri.startswith(("s3://", "s3a://")) and s3_client is not None:
        return S3Source(uri, s3_client, retry)
    return FsspecSource(uri, dict(storage_options or {}), retry)


class S3Source(Source):
    """Objects in S3, read with a boto3 client (from ``S3Hook.get_conn()``)."""

    def __init__(self, uri: str, client: Any, retry: RetryPolicy) -> None:
        self.uri = uri
        self.client = client
        self.retry = retry
        bucket, _, self.pattern = uri.split("://", 1)[1].partition("/")
        if not bucket:
            raise IngestError(f"Source {uri!r} names no bucket")
        self.bucket = bucket

    def objects(self) -> list[SourceObject]:
        pattern = self.pattern
        if any(ch in pattern for ch in GLOB_CHARS):
            prefix = pattern[: min(pattern.find(ch) for ch in GLOB_CHARS if ch in pattern)]
            found = [o for o in self._list(prefix) if fnmatch.fnmatchcase(o.key, pattern)]
            if not found:
                raise NothingListedError(
                    f"No object matches {self.uri} (listed prefix s3://{self.bucket}/{prefix})"
                )
            return found
        if pattern and not pattern.endswith("/"):
            single = self._head(pattern)
            if single is not None:
                if single.size == 0:
                    raise IngestError(f"Object {single.uri} is empty (0 bytes)")
                return [single]
            found = self._list(pattern + "/")
            if not found:
                raise NothingListedError(f"Missing object: {self.uri} does not exist (nor is it a prefix)")
            return found
        found = self._list(pattern)
        if not found:
            raise NothingListedError(f"Empty prefix: no objects under {self.uri}")
        return found

    def open_stream(self, obj: SourceObject) -> BinaryIO:
        response = self._get(obj)
        obj.version_id = obj.version_id or response.get("VersionId")
        return cast(BinaryIO, response["Body"])

    def open_seekable(self, obj: SourceObject, buffer_bytes: int) -> BinaryIO:
        return io.BufferedReader(_S3RangeReader(self, obj), buffer_size=buffer_bytes)

    def _get(self, obj: SourceObject, byte_range: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": obj.key}
        if obj.version_id:
            kwargs["VersionId"] = obj.version_id
        elif obj.etag:
            kwargs["IfMatch"] = f'"{obj.etag}"'
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            return self._call(lambda: self.client.get_object(**kwargs), f"read {obj.uri}")
        except _client_error() as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412"):
                raise IngestError(
                    f"Object {obj.uri} changed while it was being ingested (ETag differs)"
                ) from err
            if code in ("NoSuchKey", "404", "NoSuchVersion"):
                raise IngestError(f"Missing object: {obj.uri} disappeared during ingestion") from err
            raise IngestError(f"Cannot read {obj.uri}: {code} {err}") from err

    def _head(self, key: str) -> SourceObject | None:
        try:
            head = self._call(
                lambda: self.client.head_object(Bucket=self.bucket, Key=key), f"read {self.uri}"
            )
        except _client_error() as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._client_failure(err) from err
        return SourceObject(
            uri=f"s3://{self.bucket}/{key}",
            key=key,
            size=int(head["ContentLength"]),
            etag=head.get("ETag", "").strip('"') or None,
            version_id=head.get("VersionId"),
            last_modified=str(head.get("LastModified")) if head.get("LastModified") else None,
        )

    def _list(self, prefix: str) -> list[SourceObject]:
        def listing() -> list[SourceObject]:
            out = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/") or int(item["Size"]) == 0 or hidden(item["Key"]):
                        continue
                    out.append(
                        SourceObject(
                            uri=f"s3://{self.bucket}/{item['Key']}",
                            key=item["Key"],
                            size=int(item["Size"]),
                            etag=item.get("ETag", "").strip('"') or None,
                            last_modified=str(item.get("LastModified")) if item.get("LastModified") else None,
                        )
                    )
            return sorted(out, key=lambda o: o.key)

        try:
            return self._call(listing, f"list s3://{self.bucket}/{prefix}")
        except _client_error() as err:
            raise self._client_failure(err) from err

    def _client_failure(self, err: Any) -> IngestError:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return IngestError(f"Bucket {self.bucket!r} does not exist (source {self.uri})")
        return IngestError(f"Cannot list {self.uri}: {code} {err}")

    def _call(self, fn: Callable[[], T], what: str) -> T:
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", "S3")
        return with_retries(fn, f"{what} at {endpoint}", self.retry)


class _S3RangeReader(io.RawIOBase):
    """A seekable, read-only view of one S3 object using ranged GETs."""

    def __init__(self, source: S3Source, obj: SourceObject) -> None:
        self._source, self._obj, self._pos = source, obj, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._obj.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._obj.size - self._pos)
        if want <= 0:
            return 0
        response = self._source._get(self._obj, f"bytes={self._pos}-{self._pos + want - 1}")
        self._obj.version_id = self._obj.version_id or response.get("VersionId")
        data = response["Body"].read()
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class FsspecSource(Source):
    """Objects on any fsspec filesystem (``file://``, ``ObjectStoragePath`` URIs, ``s3://`` via s3fs)."""

    fs: Any  # an fsspec filesystem (fsspec is untyped)
    path: str

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, Any],
        retry: RetryPolicy,
        filesystem: tuple[Any, str] | None = None,
    ) -> None:
        self.uri = uri
        self.retry = retry
        self.fs, self.path = filesystem or url_to_fs(uri, **storage_options)

    def objects(self) -> list[SourceObject]:
        fs, path = self.fs, self.path
        if any(ch in path for ch in GLOB_CHARS):
            paths = [
                p
                for p in with_retries(lambda: fs.glob(path), f"list {self.uri}", self.retry)
                if not hidden(p)
            ]
            if not paths:
                raise NothingListedError(f"No object matches {self.uri}")
        elif with_retries(lambda: fs.isdir(path), f"list {self.uri}", self.retry):
            paths = [p for p in fs.find(path) if not hidden(p)]
            if not paths:
                raise NothingListedError(f"Empty prefix: no objects under {self.uri}")
        elif fs.exists(path):
            paths = [path]
        else:
            raise NothingListedError(f"Missing object: {self.uri} does not exist")
        out = []
        for p in sorted(paths):
            info = fs.info(p)
            if info.get("type") == "directory" or (int(info.get("size") or 0) == 0 and len(paths) > 1):
                continue
            if int(info.get("size") or 0) == 0:
                raise IngestError(f"Object {fs.unstrip_protocol(p)} is empty (0 bytes)")
            mtime = info.get("mtime") or info.get("LastModified")
            out.append(
                SourceObject(
                    uri=fs.unstrip_protocol(p),
                    key=p,
                    size=int(info["size"]),
                    etag=(info.get("ETag") or "").strip('"') or None,
                    version_id=info.get("VersionId"),
                    last_modified=_timestamp(mtime),
                )
            )
        if not out:
            raise NothingListedError(f"Empty prefix: no non-empty objects under {self.uri}")
        return out

    def open_stream(self, obj: SourceObject) -> BinaryIO:
        return self._open(obj, 1 << 22)

    def open_seekable(self, obj: SourceObject, buffer_bytes: int) -> BinaryIO:
        return self._open(obj, buffer_bytes)

    def _open(self, obj: SourceObject, block: int) -> BinaryIO:
        try:
            opened = with_retries(
                lambda: self.fs.open(obj.key, "rb", block_size=block), f"read {obj.uri}", self.retry
            )
            return cast(BinaryIO, opened)
        except FileNotFoundError as err:
            raise IngestError(f"Missing object: {obj.uri} disappeared during ingestion") from err


def hidden(key: str) -> bool:
    """Whether a listed object is hidden (its name starts with a dot), as the temporary file of a
    writer that publishes by rename is: a listing never reads one. A path named exactly still is."""
    return posixpath.basename(key.rstrip("/")).startswith(".")


def with_retries(fn: Callable[[], T], what: str, retry: RetryPolicy) -> T:
    """Call ``fn``, retrying connection failures with backoff; then raise :class:`SourceUnreachableError`."""
    retryable = _connection_errors()
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except retryable as err:
            if attempt == retry.attempts:
                raise SourceUnreachableError(
                    f"Cannot reach storage to {what} after {retry.attempts} attempts: {err}"
                ) from err
            delay = retry.backoff_s * 2 ** (attempt - 1)
            log.warning(
                "Storage unreachable (attempt %d/%d) to %s: %s; retrying in %.1fs",
                attempt,
                retry.attempts,
                what,
                err,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return str(value)


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        errors += [EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError]
    except ImportError:  # pragma: no cover - botocore ships with the amazon provider
        pass
    return tuple(errors)


def _client_error() -> type[ClientError]:
    from botocore.exceptions import ClientError

    return ClientError  # type: ignore[no-any-return]  # botocore ships no type stubs
