"""One storage layout on a local directory or an S3 bucket, with atomic whole-object writes."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pipelines import layout
from pipelines.errors import PipelineError

STALE_TEMP_SECONDS = 3600.0
"""A temporary file untouched this long was left by a killed writer: every write is one whole
bytes object, done in seconds (the largest, a Bento archive, in well under a minute), and the
kernel moves a temp's mtime on every write, so a live writer's temp is never this old."""


def sweep_stale_temps(
    directory: Path, pattern: str, max_age: float = STALE_TEMP_SECONDS, now: float | None = None
) -> list[Path]:
    """Remove the files in `directory` matching `pattern` not modified for `max_age` seconds
    (the temps of writers killed mid-write); returns what was removed."""
    cutoff = (time.time() if now is None else now) - max_age
    removed = []
    for candidate in directory.glob(pattern):
        with contextlib.suppress(FileNotFoundError):  # another sweeper or its writer was first
            if candidate.is_file() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
    return removed


def write_file_atomic(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write `path` whole or not at all: a temp file (beside it, or in `tmp_dir` on the same
    filesystem), then rename. No fsync: the rename is what readers rely on; a crash re-run
    redoes the newest file (fsync cost ~0.6 ms a file in the ETL benchmark).

    A temp beside the file that a killed writer left (older than `STALE_TEMP_SECONDS`) is
    removed by the next write of the same file; `LocalStorage` sweeps its own `tmp_dir`.
    """
    if tmp_dir is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temps(path.parent, f".{path.name}.*.tmp")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    else:
        tmp = tmp_dir / f"{path.name}.{uuid.uuid4().hex}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class Storage(Protocol):
    """Keys are ``/``-separated paths of the storage layout (docs/architecture.md §4)."""

    url: str

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; `FileNotFoundError` if it does not exist."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store the whole object at once: a reader sees the old object or the new, never half."""
        ...

    def create(self, key: str, data: bytes) -> None:
        """Store a new object whole, never replacing one: `FileExistsError` if `key` exists
        (checked by the store at the write itself, so two racing writers cannot both win)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...


class LocalStorage:
    """The layout under a directory. Temp files live in ``.tmp/`` so none appears under a key
    (``.tmp`` is no key: `list` skips it, `exists`/`read_bytes` refuse it). Temps a killed
    writer left there are swept on the first write of each instance, then hourly: those older
    than `STALE_TEMP_SECONDS`, never a live writer's."""

    TMP = ".tmp"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._made: set[Path] = set()
        self._swept_at: float | None = None

    def _mkdir(self, directory: Path) -> None:
        if directory not in self._made:
            directory.mkdir(parents=True, exist_ok=True)
            self._made.add(directory)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if key.startswith("/") or ".." in parts or parts[0] == self.TMP:
            raise ValueError(
                f"storage keys are relative paths without '..', outside {self.TMP}/: {key!r}"
            )
        return self.root / key

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove the temps killed writers left in ``.tmp/`` (older than `STALE_TEMP_SECONDS`)."""
        self._swept_at = time.monotonic()
        tmp_dir = self.root / self.TMP
        return sweep_stale_temps(tmp_dir, "*", now=now) if tmp_dir.is_dir() else []

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _tmp_dir(self, path: Path) -> Path:
        self._mkdir(path.parent)
        tmp_dir = self.root / self.TMP
        self._mkdir(tmp_dir)
        if self._swept_at is None or time.monotonic() - self._swept_at > STALE_TEMP_SECONDS:
            self.sweep()
        return tmp_dir

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        write_file_atomic(path, data, self._tmp_dir(path))  # temps never appear under a key

    def create(self, key: str, data: bytes) -> None:
        """Write-once: the whole bytes go to a temp, then a hard link names them at `key`;
        ``link`` fails if `key` exists (atomically, unlike a check then a rename)."""
        path = self._path(key)
        tmp = self._tmp_dir(path) / f"{path.name}.{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{key} exists in {self.url}: it is written once") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and self.TMP not in p.relative_to(self.root).parts
        )
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


S3_MAX_ATTEMPTS = 10
"""Attempts per S3 request by botocore (standard mode); 5 s to connect, 60 s to answer."""
S3_UNREACHABLE_SECONDS = 60.0
"""How long a request waits out a server that refuses or drops connections or answers 5xx (a
restart): botocore's backoff starts at 50 ms, so its attempts alone can be spent in a second.
Retried with a backoff from 0.5 s doubling to 8 s; then the error reaches the step's retry."""
S3_AUTH_ERRORS = {
    "InvalidAccessKeyId": "the S3 server does not know this access key id",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "AccessDenied": "the credentials are not allowed this operation",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "403": "the server refused the request's credentials",  # a HEAD answer has no body
}
"""S3 error codes no retry can fix: one `PipelineError`, never retried."""


def _server_unavailable(error: BaseException) -> bool:
    """A refused or dropped connection, or a 5xx but 501 (a restarting server): wait it out."""
    from botocore.exceptions import ClientError, ConnectionClosedError
    from botocore.exceptions import ConnectionError as Refused

    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 and status != 501
    return isinstance(error, Refused | ConnectionClosedError)


class S3Storage:
    """The layout under ``s3://bucket/prefix``; a PUT of the whole object is atomic in S3.
    Requests retry, bounded; refused credentials are one error naming endpoint and key id."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its client (a fan-out worker process makes its own)."""
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: keeps `mlops --help` fast
            from botocore.config import Config

            self._session = boto3.session.Session()
            self._client = self._session.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"),
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                ),
            )
        return self._client

    def _key_id(self) -> str:
        """The access key id the client signs with (an identifier, not a secret)."""
        try:
            return str(self._session.get_credentials().access_key)
        except Exception:  # no session (a given client) or no credentials
            return "(unknown)"

    def _call(self, operation: str, key: str, method: str, **kwargs: Any) -> Any:
        """``client.<method>(Bucket=…, **kwargs)`` about `key`: waits out an unreachable
        endpoint, and turns refused or missing credentials into one `PipelineError`."""
        from botocore.exceptions import ClientError, NoCredentialsError
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        endpoint = self.client.meta.endpoint_url
        try:
            for attempt in Retrying(
                retry=retry_if_exception(_server_unavailable),
                wait=wait_exponential(multiplier=0.5, max=8),
                stop=stop_after_delay(S3_UNREACHABLE_SECONDS),
                reraise=True,
            ):
                with attempt:
                    call = getattr(self.client, method)
                    return call(Bucket=self.bucket, **kwargs)
        except NoCredentialsError:
            raise PipelineError(
                f"no S3 credentials to {operation} {self.url}/{key} at {endpoint}",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the pod its IAM role)",
            ) from None
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code not in S3_AUTH_ERRORS:
                raise
            raise PipelineError(
                f"S3 at {endpoint} refused to {operation} {self.url}/{key} for access key id "
                f"{self._key_id()}: {code} ({S3_AUTH_ERRORS[code]})",
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the pod's IAM role) for "
                "that endpoint",
            ) from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        try:
            response = self._call("read", key, "get_object", Key=self._key(key))
            body: bytes = response["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.url}/{key}") from None
        return body

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, "put_object", Key=self._key(key), Body=data)

    CREATE_ATTEMPTS = 3
    """A 409 ConditionalRequestConflict (a concurrent write to the key) is retried, as S3
    asks; the retry then succeeds or meets the winner's object (412)."""

    def create(self, key: str, data: bytes) -> None:
        """Write-once: one conditional PUT (``If-None-Match: *``); S3 answers 412 if the key
        exists. A server that does not implement the header answers 501: refused by name,
        never degraded to an overwriting PUT."""
        from botocore.exceptions import ClientError

        for attempt in range(1, self.CREATE_ATTEMPTS + 1):
            try:
                self._call(
                    "create", key, "put_object", Key=self._key(key), Body=data, IfNoneMatch="*"
                )
                return
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                if code in {"PreconditionFailed", "412"}:
                    raise FileExistsError(f"{self.url}/{key} exists: it is written once") from None
                if code in {"NotImplemented", "501"}:
                    raise PipelineError(
                        f"the S3 server of {self.url} does not implement conditional writes "
                        "(If-None-Match), which write-once keys need",
                        "use Amazon S3 or a server that answers 412 to an If-None-Match PUT",
                    ) from None
                if code != "ConditionalRequestConflict" or attempt == self.CREATE_ATTEMPTS:
                    raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call("look up", key, "head_object", Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        full, strip = self._key(prefix), len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:  # one page at a time, each a retried call
            page = self._call("list", prefix, "list_objects_v2", Prefix=full, **token)
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self._key(key))


class RoutedStorage:
    """One storage layout over two roots: ``raw/`` and ``quarantine/`` keys (as downloaded, with
    their own retention and storage class) on `raw`, everything else on `main`."""

    RAW_PREFIXES = layout.RAW_PREFIXES

    def __init__(self, main: Storage, raw: Storage) -> None:
        self.main, self.raw = main, raw
        self.url = main.url

    def _pick(self, key: str) -> Storage:
        return self.raw if key.startswith(self.RAW_PREFIXES) else self.main

    def read_bytes(self, key: str) -> bytes:
        return self._pick(key).read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._pick(key).write_bytes(key, data)

    def create(self, key: str, data: bytes) -> None:
        self._pick(key).create(key, data)

    def exists(self, key: str) -> bool:
        return self._pick(key).exists(key)

    def list(self, prefix: str) -> list[str]:
        if prefix.startswith(self.RAW_PREFIXES):
            return self.raw.list(prefix)
        keys = self.main.list(prefix)
        if not prefix:
            keys = sorted([*keys, *(k for p in self.RAW_PREFIXES for k in self.raw.list(p))])
        return keys

    def delete(self, key: str) -> None:
        self._pick(key).delete(key)


def open_storage(url: str, raw_url: str | None = None) -> Storage:
    """Storage at `url`; with `raw_url`, ``raw/`` and ``quarantine/`` keys live there instead."""
    main = _open_one(url)
    return RoutedStorage(main, _open_one(raw_url)) if raw_url else main


def _open_one(url: str) -> Storage:
    """Storage for a directory path, ``file://`` URL or ``s3://bucket/prefix``.

    Raises:
        PipelineError: for any other scheme.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise PipelineError(f"storage URL {url!r} names no bucket", "use s3://BUCKET/PREFIX")
        return S3Storage(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme in ("", None) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStorage(Path(url))
    raise PipelineError(
        f"unsupported storage URL {url!r}",
        "use a directory path, file:///ABS/PATH or s3://BUCKET/PREFIX",
    )
