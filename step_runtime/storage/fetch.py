"""Fetching a model or catalog named by a URI: once, bounded, retried, and pinned.

A file is streamed to a temporary name beside its final one while its sha256 and size are
counted; it gets its final name only when it is whole, within the size limit and, when the spec
pins a sha256, equal to the pin. So a file under the final name is always a complete, checked
download, and a wrong file is deleted before anything could load it (a pickle is code).

Failures are sorted into what retrying can fix (the store unreachable, a timeout, a 5xx, a
connection cut mid-body) and what it cannot (a missing object, refused credentials, a wrong
sha256, an object over the size limit): the first are retried with backoff until the attempts
or the deadline run out, the second fail at once with a message naming the field and the URI.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from step_runtime import __version__
from step_runtime.spec.common import SpecError
from step_runtime.spec.files import FetchSpec, S3Access
from step_runtime.step.model import file_sha256, pin_refusal
from step_runtime.step.secrets import secret_value
from step_runtime.storage.uri import (
    Location,
    fetch_dir,
    fetched_name,
    human_bytes,
    parse_quantity,
    parse_uri,
    pvc_path,
    pvc_root,
)

log = logging.getLogger("alertops.fetch")

FailureKind = Literal["checksum", "missing", "denied", "too-large", "config", "unavailable"]
CHUNK = 1 << 20
MAX_BACKOFF_S = 30.0
MAX_REQUEST_TIMEOUT_S = 30.0
# Anything naming a file by path (model: path, crossmatch: catalog, table: path) or uri, with
# the uri's s3 access and an optional sha256 pin.
FileSettings = Any


class FetchError(Exception):
    """A file that cannot be had; `kind` says whether retrying could help (`unavailable` only)."""

    def __init__(self, message: str, kind: FailureKind) -> None:
        super().__init__(message)
        self.kind = kind


class _Transient(Exception):
    """One attempt failed in a way the next attempt may not (network, timeout, 5xx)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Bounds of a fetch: bytes of all fetched files together, deadline per file, attempts."""

    size_limit: int
    timeout_s: float
    attempts: int

    @classmethod
    def from_spec(cls, spec: FetchSpec) -> "FetchPolicy":
        """The policy a PipelineStep's `spec.fetch` states."""
        return cls(parse_quantity(spec.size_limit), float(spec.timeout_seconds), spec.attempts)


@dataclass(frozen=True)
class Fetched:
    """A file in place: where, its sha256 and size, and what it took."""

    uri: str
    path: Path
    sha256: str
    size: int
    attempts: int
    seconds: float


def local_path(settings: FileSettings, base_dir: Path) -> Path:
    """Where the runtime reads a model or catalog: its path (relative to the manifest's folder),
    the pvc:// mount, or the fetched copy of an s3:// / http(s):// URI (which may not exist yet)."""
    if settings.uri is None:
        path = Path(_path_of(settings))
        return path if path.is_absolute() else base_dir / path
    loc = parse_uri(settings.uri)
    if not loc.fetched:
        return pvc_path(loc, pvc_root())
    return fetch_dir() / fetched_name(settings.uri)


def _path_of(settings: FileSettings) -> str:
    return getattr(settings, _local_field(settings)) or ""


def _local_field(settings: FileSettings) -> str:
    """The field naming a local file: `path`, or the spec's PATH_FIELD (crossmatch: `catalog`)."""
    return str(getattr(type(settings), "PATH_FIELD", "path"))


def _path_field(settings: FileSettings) -> str:
    if settings.uri is not None:
        return "uri"
    return _local_field(settings)


def shown(settings: FileSettings, path: Path) -> str:
    """How messages name a file: its URI when it has one, else its path."""
    return settings.uri or str(path)


def ensure_local(field: str, settings: FileSettings, base_dir: Path, policy: FetchPolicy,
                 verify: bool = False) -> Path:
    """The local path of a model or catalog, fetching it first when it is a URI not fetched yet.

    A file already fetched (by the pod's init container, or an earlier local run) is used as it
    is. With `verify`, the file is also checked against its pin (`verify_in_place`), unless it
    was fetched just now: the download checked the pin as it went, so it is not read twice.
    Without it, the loader checks the pin itself before reading the file.
    """
    path = local_path(settings, base_dir)
    if settings.uri is not None and parse_uri(settings.uri).fetched and not path.is_file():
        return fetch_file(field, settings.uri, settings.s3, settings.sha256, path, policy).path
    if verify:
        verify_in_place(field, settings, path)
    return path


def verify_in_place(field: str, settings: FileSettings, path: Path) -> None:
    """The file is there and, when the spec pins a sha256, matches it (FetchError otherwise)."""
    if not path.is_file():
        where = f" (looked for {path})" if settings.uri else ""
        raise FetchError(f"{field}.{_path_field(settings)}: {shown(settings, path)}{where} does not exist", "missing")
    if settings.sha256 is not None:
        actual = file_sha256(path)
        if actual != settings.sha256.lower():
            raise FetchError(pin_refusal(field, shown(settings, path), actual, settings.sha256), "checksum")


def fetch_file(field: str, uri: str, s3: S3Access | None, pinned: str | None, dest: Path,
               policy: FetchPolicy) -> Fetched:
    """Download `uri` to `dest`: retried while the store is unavailable, refused when it cannot be had.

    Raises FetchError naming `field` (e.g. spec.processor.model) and the URI.
    """
    loc = parse_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = start + policy.timeout_s
    last = ""
    for attempt in range(1, policy.attempts + 1):
        request_timeout = max(1.0, min(MAX_REQUEST_TIMEOUT_S, deadline - time.monotonic()))
        try:
            digest, size = _download(field, loc, s3, pinned, dest, policy.size_limit, request_timeout)
        except _Transient as exc:
            last = str(exc)
        else:
            took = time.monotonic() - start
            log.info("fetched", extra={"fields": {"uri": uri, "path": str(dest), "sha256": digest, "bytes": size,
                                                   "attempts": attempt, "seconds": round(took, 3)}})
            return Fetched(uri, dest, digest, size, attempt, took)
        wait = min(MAX_BACKOFF_S, 2.0 ** (attempt - 1))
        if attempt == policy.attempts or time.monotonic() + wait >= deadline:
            break
        log.warning("fetch failed; retrying", extra={"fields": {
            "uri": uri, "attempt": attempt, "attempts": policy.attempts, "error": last, "retry_in_s": wait}})
        time.sleep(wait)  # backoff between attempts, bounded by the deadline
    took = time.monotonic() - start
    raise FetchError(f"{field}.uri: cannot fetch {uri}: {attempt} attempt(s) in {took:.0f} s "
                     f"(spec.fetch: attempts {policy.attempts}, timeoutSeconds {policy.timeout_s:.0f}), "
                     f"the last: {last}", "unavailable")


def _download(field: str, loc: Location, s3: S3Access | None, pinned: str | None, dest: Path,
              size_limit: int, timeout: float) -> tuple[str, int]:
    """One attempt: stream to a temporary file, check size and pin, then rename into place."""
    room = size_limit - _used_bytes(dest.parent, dest.name)
    opener = _open_s3 if loc.scheme == "s3" else _open_http
    length, chunks, close = opener(field, loc, s3, timeout)
    tmp = dest.parent / f".{dest.name}.part-{os.getpid()}"
    h = hashlib.sha256()
    size = 0
    try:
        if length is not None and length > room:
            raise FetchError(_too_large(field, loc.uri, length, size_limit, room), "too-large")
        with open(tmp, "wb") as out:
            for chunk in _reading(chunks, lambda: size):  # noqa: B023 - reads the running total on purpose
                size += len(chunk)
                if size > room:
                    raise FetchError(_too_large(field, loc.uri, size, size_limit, room), "too-large")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if length is not None and size != length:
            raise _Transient(f"the store announced {length} bytes and sent {size}")
        digest = h.hexdigest()
        if pinned is not None and digest != pinned.lower():
            raise FetchError(pin_refusal(field, loc.uri, digest, pinned) + " (the download was deleted)", "checksum")
        os.replace(tmp, dest)
        return digest, size
    finally:
        close()
        tmp.unlink(missing_ok=True)


def _reading(chunks: Iterator[bytes], done: Callable[[], int]) -> Iterator[bytes]:
    """The chunks of a response, a broken connection turned into a _Transient (writing errors,
    such as a full disk, are not the store's and stay what they are)."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except Exception as exc:
            if isinstance(exc, FetchError) or not _is_transport_error(exc):
                raise
            raise _Transient(f"the transfer broke after {human_bytes(done())}: {_reason(exc)}") from None
        yield chunk


def _used_bytes(folder: Path, except_name: str) -> int:
    """Bytes the other complete files in the fetch folder take (temporary files are left out)."""
    total = 0
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name != except_name:
            total += p.stat().st_size
    return total


def _too_large(field: str, uri: str, size: int, limit: int, room: int) -> str:
    others = f" ({human_bytes(limit - room)} already taken by other fetched files)" if room < limit else ""
    return (f"{field}.uri: {uri} is {'at least ' if size > room else ''}{human_bytes(size)}, more than spec.fetch.sizeLimit "
            f"allows ({human_bytes(limit)}{others}); raise spec.fetch.sizeLimit")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


# ------------------------------------------------------------------------------------------
# S3 (boto3)
# ------------------------------------------------------------------------------------------

_S3_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_S3_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "InvalidToken",
              "ExpiredToken", "AllAccessDisabled", "InvalidSecurity"}
_S3_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                 "InternalError", "503", "500", "502", "504"}


def _open_s3(field: str, loc: Location, s3: S3Access | None,
             timeout: float) -> tuple[int | None, Iterator[bytes], Callable[[], None]]:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = s3 or S3Access()
    credentials: dict[str, Any] = {}
    if s3.access_key_id is not None and s3.secret_access_key is not None:
        try:
            credentials = {"aws_access_key_id": secret_value(s3.access_key_id, f"{field}.s3.accessKeyId"),
                           "aws_secret_access_key": secret_value(s3.secret_access_key, f"{field}.s3.secretAccessKey")}
        except SpecError as exc:
            raise FetchError(str(exc), "config") from None
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1},
                    s3={"addressing_style": s3.addressing_style},
                    signature_version="s3v4" if credentials else UNSIGNED,
                    user_agent_extra=f"alertops/{__version__}")
    # A session of its own: boto3's default session would also read AWS_* env vars and
    # ~/.aws, and the spec is meant to say everything.
    client = boto3.session.Session().client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                                            config=config, **credentials)
    try:
        resp = client.get_object(Bucket=loc.authority, Key=loc.key)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = f"{code}{': ' + err['Message'] if err.get('Message') else ''}"
        where = f" at {s3.endpoint}" if s3.endpoint else ""
        if code in _S3_MISSING or status == 404:
            raise FetchError(f"{field}.uri: {loc.uri} does not exist{where} ({detail})", "missing") from None
        if code in _S3_DENIED or status in (401, 403):
            secrets = (f"Secret {s3.access_key_id.name!r} keys {s3.access_key_id.key!r}/{s3.secret_access_key.key!r}"
                       if s3.access_key_id and s3.secret_access_key else "no credentials (anonymous)")
            raise FetchError(f"{field}.uri: the store{where} refused {loc.uri} ({detail}) with {secrets}; check "
                             f"them (a rotated Secret reaches the pods when they restart: kubectl rollout restart)",
                             "denied") from None
        if code in _S3_TRANSIENT or status >= 500 or status == 429:
            raise _Transient(f"{s3.endpoint or 'S3'} answered {status} {detail}") from None
        raise FetchError(f"{field}.uri: the store{where} refused {loc.uri} ({status} {detail})", "config") from None
    except Exception as exc:
        if _is_transport_error(exc):
            raise _Transient(_reason(exc)) from None
        raise
    body = resp["Body"]
    length = resp.get("ContentLength")
    return (int(length) if length is not None else None), body.iter_chunks(CHUNK), body.close


def _is_transport_error(exc: BaseException) -> bool:
    """Errors of the connection rather than of the request: worth another attempt."""
    from botocore.exceptions import BotoCoreError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, (BotoConnectionError, HTTPClientError, Urllib3Error, OSError, socket.timeout)):
        return True
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    return isinstance(exc, (ReadTimeoutError, IncompleteReadError, ResponseStreamingError)) or (
        isinstance(exc, BotoCoreError) and "timeout" in type(exc).__name__.lower())


# ------------------------------------------------------------------------------------------
# HTTP(S) (the standard library)
# ------------------------------------------------------------------------------------------

def _open_http(field: str, loc: Location, _s3: S3Access | None,
               timeout: float) -> tuple[int | None, Iterator[bytes], Callable[[], None]]:
    request = urllib.request.Request(loc.uri, headers={"User-Agent": f"alertops/{__version__}"})  # noqa: S310 - http(s) by the spec
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the scheme is http(s) by the spec
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (404, 410):
            raise FetchError(f"{field}.uri: {loc.uri} does not exist ({exc.code} {exc.reason})", "missing") from None
        if exc.code in (401, 403):
            raise FetchError(f"{field}.uri: {loc.uri} refused ({exc.code} {exc.reason}): it must be readable "
                             f"without credentials (or use s3:// with a Secret)", "denied") from None
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"{loc.authority} answered {exc.code} {exc.reason}") from None
        raise FetchError(f"{field}.uri: {loc.uri} answered {exc.code} {exc.reason}", "config") from None
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise _Transient(f"cannot reach {loc.authority}: {_reason(reason)}") from None  # type: ignore[arg-type]

    def chunks() -> Iterator[bytes]:
        while True:
            block = resp.read(CHUNK)
            if not block:
                return
            yield block

    length = resp.headers.get("Content-Length")
    return (int(length) if length and length.isdigit() else None), chunks(), resp.close
