"""One storage layout on a local directory or an S3 bucket, with atomic whole-object writes."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from pipelines import layout
from pipelines.errors import PipelineError

STALE_TEMP_SECONDS = 3600.0
"""A temporary file untouched this long was left by a killed writer: a write is one whole
bytes object, done in seconds (the largest, a Bento archive, in well under a minute), or a
stream (`Storage.open_writer`: a dataset file, written row group after row group, seconds
apart), and the kernel moves a temp's mtime on every write, so a live writer's temp is never
this old."""


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

    def open_writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A file to stream an object into, for one too large to hold as bytes: it is written
        to a temporary file in a local spool, and only when the ``with`` block ends without an
        error does it appear at `key`, whole (a rename, or an upload whose object S3 shows only
        once complete); on an error nothing appears and the temporary file is removed."""
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

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[BinaryIO]:
        """Stream into a temp in ``.tmp/``, renamed to `key` when the block ends cleanly."""
        path = self._path(key)
        tmp = self._tmp_dir(path) / f"{path.name}.{uuid.uuid4().hex}"
        try:
            with tmp.open("wb") as out:
                yield out
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

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


from pipelines.s3 import (  # noqa: E402 (re-exported: S3 is one backend of this layout)
    S3_AUTH_ERRORS,
    S3_MAX_ATTEMPTS,
    S3_UNREACHABLE_SECONDS,
    S3Storage,
)

__all__ = [
    "S3_AUTH_ERRORS",
    "S3_MAX_ATTEMPTS",
    "S3_UNREACHABLE_SECONDS",
    "LocalStorage",
    "RoutedStorage",
    "S3Storage",
    "Storage",
    "open_storage",
    "sweep_stale_temps",
    "write_file_atomic",
]


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

    def open_writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self._pick(key).open_writer(key)

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
