"""Fetch against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import layout
from pipelines.archive import parse_checksum, zip_path
from pipelines.data.fetch import fetch, parse_retry_after
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)
DAY = [MIRROR_START + timedelta(days=i) for i in range(MIRROR_DAYS)]


def url_path(symbol: str, day: date) -> str:
    return "/" + zip_path(symbol, "1m", day)


def raw_files(storage: LocalStorage) -> list[str]:
    return storage.list("raw/")


def assert_raw_is_verified(storage: LocalStorage) -> None:
    """Every zip under raw/ matches its stored checksum; nothing else is there."""
    names = raw_files(storage)
    zips = [k for k in names if k.endswith(".zip")]
    assert sorted(names) == sorted(zips + [z + ".CHECKSUM" for z in zips])
    for key in zips:
        expected = parse_checksum(storage.read_bytes(key + ".CHECKSUM").decode())
        assert hashlib.sha256(storage.read_bytes(key)).hexdigest() == expected
    leftovers = list((storage.root / ".tmp").glob("*")) if (storage.root / ".tmp").exists() else []
    assert leftovers == [], "no temporary file may outlive a write"


@pytest.mark.integration
def test_faults_are_retried_missing_days_reported_and_rerun_downloads_nothing(
    mirror_root: Path, tmp_path: Path, settings: Settings, archive_server
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    missing_day = DAY[2]
    for suffix in ("", ".CHECKSUM"):
        (mirror / (zip_path("ETHUSDT", "1m", missing_day) + suffix)).unlink()
    faults = {
        url_path("BTCUSDT", DAY[0]): ["500"],
        url_path("BTCUSDT", DAY[1]) + ".CHECKSUM": ["429:1"],
        url_path("BTCUSDT", DAY[3]): ["truncate"],
        url_path("ETHUSDT", DAY[4]): ["corrupt"],
        url_path("ETHUSDT", DAY[5]): ["503", "503"],
    }
    server = archive_server(mirror, faults)
    storage = LocalStorage(tmp_path / "data")

    result = fetch(settings, storage, server.url, SYMBOLS, "1m", MIRROR_START, END)

    assert result.files_downloaded == 2 * MIRROR_DAYS - 1
    assert result.files_missing == [missing_day.isoformat()]
    assert result.missing == {"ETHUSDT": [missing_day.isoformat()]}
    # 500 once, 429 once, truncated once, corrupt once (both refetched), 503 twice
    assert result.retries == 6
    assert [r["status"] for r in server.hits(url_path("BTCUSDT", DAY[0]))] == [500, 200]
    waited = server.hits(url_path("BTCUSDT", DAY[1]) + ".CHECKSUM")
    assert [r["status"] for r in waited] == [429, 200]
    assert waited[1]["t"] - waited[0]["t"] >= 0.95, "Retry-After: 1 must be honoured"
    assert [r["action"] for r in server.hits(url_path("BTCUSDT", DAY[3]))] == ["truncate", "ok"]
    assert len(server.hits(url_path("ETHUSDT", DAY[4]) + ".CHECKSUM")) == 2  # refetched both
    assert_raw_is_verified(storage)
    assert len(raw_files(storage)) == 2 * (2 * MIRROR_DAYS - 1)

    before = len(server.requests())
    again = fetch(settings, storage, server.url, SYMBOLS, "1m", MIRROR_START, END)
    assert (again.files_downloaded, again.files_skipped, again.retries) == (
        0,
        2 * MIRROR_DAYS - 1,
        0,
    )
    new = server.requests()[before:]
    assert all(r["status"] == 404 for r in new), "only the missing day is asked for again"


@pytest.mark.integration
def test_persistent_checksum_mismatch_fails_that_file_and_keeps_the_rest(
    mirror_root: Path, tmp_path: Path, settings: Settings, archive_server
) -> None:
    bad = url_path("BTCUSDT", DAY[1])
    server = archive_server(mirror_root, {bad: ["corrupt", "corrupt"]})
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError) as failure:
        fetch(settings, storage, server.url, ["BTCUSDT"], "1m", MIRROR_START, DAY[2])
    assert f"BTCUSDT-1m-{DAY[1]}.zip: sha256 mismatch" in failure.value.message
    assert not storage.exists(layout.raw_zip("BTCUSDT", "1m", DAY[1]))
    assert storage.exists(layout.raw_zip("BTCUSDT", "1m", DAY[0]))
    assert_raw_is_verified(storage)
    # a later run (the upstream file fixed) fetches only the failed file
    fixed = fetch(settings, storage, server.url, ["BTCUSDT"], "1m", MIRROR_START, DAY[2])
    assert (fixed.files_downloaded, fixed.files_skipped) == (1, 2)


@pytest.mark.integration
def test_endless_server_errors_give_up_after_the_bounded_attempts(
    mirror_root: Path, tmp_path: Path, archive_server
) -> None:
    settings = Settings(
        home=tmp_path, fetch_max_attempts=3, fetch_backoff_initial=0.01, fetch_backoff_max=0.02
    )
    target = url_path("BTCUSDT", DAY[0]) + ".CHECKSUM"
    server = archive_server(mirror_root, {target: ["500"] * 10})
    with pytest.raises(PipelineError, match="gave up after 3 attempts"):
        fetch(settings, LocalStorage(tmp_path / "d"), server.url, ["BTCUSDT"], "1m", DAY[0], DAY[0])
    assert len(server.hits(target)) == 3


@pytest.mark.integration
def test_a_ban_longer_than_allowed_fails_at_once(
    mirror_root: Path, tmp_path: Path, archive_server
) -> None:
    settings = Settings(home=tmp_path, fetch_max_retry_after=5)
    target = url_path("BTCUSDT", DAY[0]) + ".CHECKSUM"
    server = archive_server(mirror_root, {target: ["418:3600"]})
    with pytest.raises(PipelineError, match="asks to wait 3600s"):
        fetch(settings, LocalStorage(tmp_path / "d"), server.url, ["BTCUSDT"], "1m", DAY[0], DAY[0])
    assert len(server.hits(target)) == 1


def test_a_symbol_with_no_file_at_all_is_an_error(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError, match="no archive file for DOGEUSDT 1m"):
        fetch(
            settings, storage, mirror_root.as_uri(), ["BTCUSDT", "DOGEUSDT"], "1m", DAY[0], DAY[1]
        )


def test_file_source_reads_the_same_layout(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    storage = LocalStorage(tmp_path / "data")
    result = fetch(
        settings,
        storage,
        mirror_root.as_uri(),
        SYMBOLS,
        "1m",
        MIRROR_START,
        END + timedelta(days=1),
    )
    assert result.files_downloaded == 2 * MIRROR_DAYS
    assert result.files_missing == [(END + timedelta(days=1)).isoformat()]  # "today" never exists
    assert_raw_is_verified(storage)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
