"""Fetch step: download daily kline zips, verify them, store them under ``raw/``."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipelines import layout
from pipelines.archive import MAX_CHECKSUM_BYTES, parse_checksum, zip_path
from pipelines.data.bars import date_range
from pipelines.data.http import OutsideSource, client_url, make_client
from pipelines.data.unzip import ARCHIVE_BOUNDS, ArchiveRefusedError, ZipBounds, read_csv
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import Storage


class RetryableError(Exception):
    """A failure worth another attempt: connection error, 5xx, 429/418, truncated body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FetchResult(BaseModel):
    """The fetch step's part of the run summary."""

    files_downloaded: int = 0
    files_skipped: int = 0
    """Already verified under ``raw/`` by an earlier run: not downloaded again."""
    files_missing: list[str] = Field(default_factory=list)
    """Dates for which at least one symbol's file does not exist upstream (404)."""
    missing: dict[str, list[str]] = Field(default_factory=dict)
    """Missing dates per symbol."""
    files_failed: dict[str, str] = Field(default_factory=dict)
    """File name -> why it could not be fetched and verified."""
    retries: int = 0
    bytes_downloaded: int = 0


@dataclass
class _Counters:
    retries: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, retries: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            self.retries += retries
            self.bytes += nbytes


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Fetcher:
    """Downloads with bounded retries; one instance per run, shared by worker threads."""

    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.counters = _Counters()
        self._backoff = wait_exponential_jitter(
            multiplier=settings.fetch_backoff_initial,
            max=settings.fetch_backoff_max,
            jitter=settings.fetch_backoff_initial,
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    def _count_retry(self, state: RetryCallState) -> None:
        self.counters.add(retries=1)

    def get(self, url: str, max_bytes: int) -> bytes | None:
        """The body at `url`, or None on 404; a body over `max_bytes` is refused as it streams
        (at once if its Content-Length says so), never read whole.

        Raises:
            PipelineError: after the last attempt, at once on a non-retryable status or a body
                over `max_bytes`.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.fetch_max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._get_once(url, max_bytes)
        except RetryableError as error:
            raise PipelineError(
                f"{url}: gave up after {self.settings.fetch_max_attempts} attempts ({error})"
            ) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(self, url: str, max_bytes: int) -> bytes | None:
        try:
            with self.client.stream("GET", url) as response:
                return self._receive(url, response, max_bytes)
        except httpx.UnsupportedProtocol as error:
            raise PipelineError(
                f"{url}: {error}", "use an https://, http:// or file:// source"
            ) from error
        except OutsideSource as error:  # a redirect or a symlink out of the source: never retried
            raise PipelineError(f"{url}: {error}", "fetch only from the source itself") from None
        except httpx.TooManyRedirects:
            raise PipelineError(f"{url}: more than 3 redirects", "check --source") from None
        except httpx.TransportError as error:  # connection refused/reset, timeout, cut body
            raise RetryableError(f"{type(error).__name__}: {error}") from error

    def _receive(self, url: str, response: httpx.Response, max_bytes: int) -> bytes | None:
        status = response.status_code
        if status == 404:
            return None
        if status in (429, 418):
            wait = parse_retry_after(response.headers.get("Retry-After"))
            limit = self.settings.fetch_max_retry_after
            if wait is not None and wait > limit:
                raise PipelineError(
                    f"{url}: HTTP {status} asks to wait {wait:.0f}s, "
                    f"longer than MLOPS_FETCH_MAX_RETRY_AFTER={limit:.0f}s",
                    "wait for the rate limit (or ban) to lift, then re-run",
                )
            raise RetryableError(f"HTTP {status}", retry_after=wait)
        if status >= 500:
            raise RetryableError(f"HTTP {status}")
        if status != 200:
            raise PipelineError(f"{url}: unexpected HTTP {status}", "check --source")
        expected = response.headers.get("Content-Length")
        declared = int(expected) if expected is not None and expected.isdigit() else None
        if declared is not None and declared > max_bytes:
            raise _too_large(url, f"announces {declared} bytes", max_bytes)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:  # stop reading here: the rest is never downloaded
                raise _too_large(url, f"sent over {max_bytes} bytes", max_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
        if declared is not None and declared != len(body):
            raise RetryableError(f"truncated body: {len(body)} of {expected} bytes")
        self.counters.add(nbytes=len(body))
        return body


def _too_large(url: str, what: str, max_bytes: int) -> PipelineError:
    # One message, no separate hint: fetch reports it per file (`files_failed`).
    return PipelineError(
        f"{url}: {what}, over this file's bound of {max_bytes} bytes (pipelines/archive.py: a "
        "daily kline zip is ~50-80 KB, its .CHECKSUM one line): refused unread, not stored; "
        "check --source"
    )


def zip_problem(blob: bytes, bounds: ZipBounds = ARCHIVE_BOUNDS) -> str | None:
    """Why `blob` is not a sound one-CSV zip within `bounds` (CRC checked), or None if it is."""
    try:
        read_csv(blob, bounds)
    except ArchiveRefusedError as refused:
        return str(refused)
    return None


def is_verified(storage: Storage, symbol: str, interval: str, day: date) -> bool:
    """Whether ``raw/`` already holds this file together with the checksum it matches."""
    zip_key = layout.raw_zip(symbol, interval, day)
    sum_key = layout.raw_checksum(symbol, interval, day)
    if not (storage.exists(zip_key) and storage.exists(sum_key)):
        return False
    try:
        expected = parse_checksum(storage.read_bytes(sum_key).decode())
    except (ValueError, UnicodeDecodeError):
        return False
    return hashlib.sha256(storage.read_bytes(zip_key)).hexdigest() == expected


def fetch_file(
    fetcher: Fetcher,
    storage: Storage,
    base_url: str,
    symbol: str,
    interval: str,
    day: date,
    bounds: ZipBounds = ARCHIVE_BOUNDS,
) -> tuple[str, str | None]:
    """Fetch one file: returns (outcome, detail) with outcome downloaded/skipped/missing/failed.

    The zip must stay within `bounds` (downloaded size, members, inflated CSV and its lines).
    """
    if is_verified(storage, symbol, interval, day):
        return "skipped", None
    url = f"{client_url(base_url).rstrip('/')}/{zip_path(symbol, interval, day)}"
    problem = ""
    for attempt in range(2):  # on a bad checksum, refetch both files once
        if attempt:
            fetcher.counters.add(retries=1)
        checksum_body = fetcher.get(url + ".CHECKSUM", MAX_CHECKSUM_BYTES)
        blob = fetcher.get(url, bounds.zip_bytes) if checksum_body is not None else None
        if checksum_body is None or blob is None:
            return "missing", None
        try:
            expected = parse_checksum(checksum_body.decode(errors="replace"))
        except ValueError as error:
            problem = f"unreadable .CHECKSUM ({error})"
            continue
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected:
            problem = f"sha256 mismatch: .CHECKSUM says {expected[:12]}…, zip is {actual[:12]}…"
            continue
        broken = zip_problem(blob, bounds)
        if broken:
            problem = broken
            continue
        storage.write_bytes(layout.raw_zip(symbol, interval, day), blob)
        storage.write_bytes(layout.raw_checksum(symbol, interval, day), checksum_body)
        return "downloaded", None
    return "failed", problem


def fetch(
    settings: Settings,
    storage: Storage,
    source_url: str,
    symbols: Sequence[str],
    interval: str,
    start: date,
    end: date,
    on_file: Callable[[], None] | None = None,
    bounds: ZipBounds = ARCHIVE_BOUNDS,
) -> FetchResult:
    """Download and verify every (symbol, day) in range that ``raw/`` does not yet hold.

    Raises:
        PipelineError: if a file failed verification after a refetch, or a symbol has no file
            at all in the range (a 404 alone is a missing day, reported, not fatal).
    """
    if end < start:
        raise PipelineError(f"--end {end} is before --start {start}", "swap or fix the dates")
    if "@" in urlsplit(source_url).netloc:  # never echoed: the URL itself holds the secret
        raise PipelineError(
            "the archive source has a user or password in its URL",
            "serve the archive without one (a credential never goes in a URL, an error or a log)",
        )
    jobs = [(symbol, day) for symbol in symbols for day in date_range(start, end)]
    result = FetchResult()
    found: dict[str, int] = dict.fromkeys(symbols, 0)
    with make_client(settings.fetch_timeout, settings.fetch_concurrency, source_url) as client:
        fetcher = Fetcher(settings, client)

        def work(job: tuple[str, date]) -> tuple[str, date, str, str | None]:
            symbol, day = job
            try:
                outcome, detail = fetch_file(
                    fetcher, storage, source_url, symbol, interval, day, bounds
                )
            except PipelineError as error:
                outcome, detail = "failed", error.message
            if on_file:
                on_file()
            return symbol, day, outcome, detail

        with ThreadPoolExecutor(max_workers=settings.fetch_concurrency) as pool:
            outcomes = list(pool.map(work, jobs))
    for symbol, day, outcome, detail in outcomes:
        if outcome == "downloaded":
            result.files_downloaded += 1
        elif outcome == "skipped":
            result.files_skipped += 1
        elif outcome == "missing":
            result.missing.setdefault(symbol, []).append(day.isoformat())
        else:
            result.files_failed[f"{symbol}-{interval}-{day.isoformat()}.zip"] = detail or "failed"
        if outcome in ("downloaded", "skipped"):
            found[symbol] += 1
    result.files_missing = sorted({d for dates in result.missing.values() for d in dates})
    result.retries = fetcher.counters.retries
    result.bytes_downloaded = fetcher.counters.bytes
    if result.files_failed:
        failed = sorted(result.files_failed.items())
        listing = "; ".join(f"{name}: {why}" for name, why in failed[:5])
        if len(failed) > 5:
            listing += f"; and {len(failed) - 5} more (see steps.fetch.files_failed)"
        raise PipelineError(
            f"{len(result.files_failed)} file(s) could not be fetched and verified: {listing}",
            "re-run the same command later (verified files are kept and not downloaded again)",
        )
    empty = [symbol for symbol, count in found.items() if count == 0]
    if empty:
        raise PipelineError(
            f"no archive file for {', '.join(empty)} {interval} between {start} and {end} "
            f"at {source_url}",
            "check --source, --symbols, --interval and the dates "
            "(today's file never exists; yesterday's appears hours late)",
        )
    return result
