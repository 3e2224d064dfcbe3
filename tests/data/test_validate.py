"""Validate: header detection, row rules, duplicates, quarantine, threshold, curated Parquet."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import layout
from pipelines.archive import KLINE_COLUMNS, checksum_line, zip_path
from pipelines.data.fetch import fetch
from pipelines.data.validate import validate
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from pipelines.synthetic.mirror import make_zip
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)
DIRTY = MIRROR_START + timedelta(days=1)


def csv_lines(mirror: Path, symbol: str, day: date) -> list[str]:
    blob = (mirror / zip_path(symbol, "1m", day)).read_bytes()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return archive.read(archive.namelist()[0]).decode().splitlines()


def replace_day(mirror: Path, symbol: str, day: date, lines: list[str]) -> None:
    rel = zip_path(symbol, "1m", day)
    blob = make_zip(Path(rel).name.replace(".zip", ".csv"), ("\n".join(lines) + "\n").encode(), day)
    (mirror / rel).write_bytes(blob)
    (mirror / (rel + ".CHECKSUM")).write_text(
        checksum_line(hashlib.sha256(blob).hexdigest(), Path(rel).name)
    )


def dirty_lines(lines: list[str]) -> tuple[list[str], int]:
    """Plant duplicates and malformed rows into one day; returns the lines and header offset."""
    body_start = 1 if lines[0].startswith("open_time") else 0
    rows = lines[body_start:]
    fields = [r.split(",") for r in rows]

    def row(i: int, **changes: str) -> str:
        f = list(fields[i])
        names = list(KLINE_COLUMNS)
        for key, value in changes.items():
            f[names.index(key)] = value
        return ",".join(f)

    open_us = str(int(fields[100][0]) * 1000)
    close_us = str(int(fields[100][6]) * 1000 + 999)
    planted = {
        10: row(10, open="abc"),  # unparseable number
        20: row(20, high=str(float(fields[20][3]) - 1)),  # high below low: OHLC inconsistent
        30: row(30, volume="-1.0"),  # negative volume
        40: row(40, close_time=str(int(fields[40][6]) + 5)),  # wrong close_time
        50: ",".join(fields[50][:11]),  # 11 columns
        100: row(100, open_time=open_us, close_time=close_us),  # microseconds: valid
        200: row(
            200,
            volume="0.000",
            quote_volume="0.0000",
            count="0",
            taker_buy_volume="0.000",
            taker_buy_quote_volume="0.0000",
        ),  # zero volume: valid
    }
    out = [planted.get(i, r) for i, r in enumerate(rows)]
    out += [rows[300], rows[301], rows[301]]  # exact duplicates: dropped and counted (3)
    out.append(row(400, close=fields[400][1], volume="999.000"))  # conflicts with row 400
    del out[700:703]  # a real gap of three bars
    return lines[:body_start] + out, body_start


@pytest.fixture
def dirty_mirror(mirror_root: Path, tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    lines, _ = dirty_lines(csv_lines(mirror, "BTCUSDT", DIRTY))
    replace_day(mirror, "BTCUSDT", DIRTY, lines)
    return mirror


def fetched(settings: Settings, mirror: Path, tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "data")
    fetch(settings, storage, mirror.as_uri(), SYMBOLS, "1m", MIRROR_START, END)
    return storage


def test_dirty_day_is_cleaned_quarantined_and_curated(
    dirty_mirror: Path, tmp_path: Path, settings: Settings
) -> None:
    storage = fetched(settings, dirty_mirror, tmp_path)
    result = validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)

    name = f"BTCUSDT-1m-{DIRTY}"
    reasons = result.quarantine[name]
    assert reasons == {
        "unparseable or missing open": 1,
        "OHLC inconsistent (low <= open,close <= high)": 1,
        "negative volume": 1,
        "close_time != open_time + 1m - 1ms": 1,
        "expected 12 columns, got 11": 1,
        "conflicting duplicate open_time": 2,
    }
    assert list(result.quarantine) == [name]
    assert result.rows_quarantined == 7 and result.rows_duplicate == 3
    # 1440 minutes - 3 cut - 5 malformed - 1 conflicting minute = 1431 curated bars that day
    assert result.gaps == {f"BTCUSDT {DIRTY}": 9}
    assert result.rows_valid == 2 * MIRROR_DAYS * 1440 - 9
    assert result.missing_bars == 9

    curated = pq.read_table(
        io.BytesIO(storage.read_bytes(layout.curated("BTCUSDT", "1m", DIRTY)))
    ).to_pandas()
    assert len(curated) == 1431
    assert curated["open_time"].is_monotonic_increasing and curated["open_time"].is_unique
    assert str(curated["open_time"].dt.tz) == "UTC" and curated["count"].dtype == "int64"
    assert (curated["volume"] == 0).sum() == 1  # the zero-volume candle is kept
    day_start = pd.Timestamp(DIRTY, tz="UTC")
    assert (
        curated["open_time"] == day_start + pd.Timedelta(minutes=100)
    ).sum() == 1  # µs row kept, in ms
    assert not (curated["open_time"] == day_start + pd.Timedelta(minutes=400)).any()

    quarantine = pd.read_csv(
        io.BytesIO(storage.read_bytes(layout.quarantine("BTCUSDT", "1m", DIRTY)))
    )
    assert len(quarantine) == 7 and quarantine["reason"].notna().all()
    assert not storage.exists(layout.quarantine("ETHUSDT", "1m", DIRTY))

    total = sum(
        len(pq.read_table(io.BytesIO(storage.read_bytes(k)))) for k in storage.list("curated/")
    )
    assert total == result.rows_valid


def test_rerun_skips_curated_days_and_reports_the_same(
    dirty_mirror: Path, tmp_path: Path, settings: Settings
) -> None:
    storage = fetched(settings, dirty_mirror, tmp_path)
    first = validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    key = layout.curated("ETHUSDT", "1m", END)
    mtime = (storage.root / key).stat().st_mtime_ns
    second = validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    assert second.files_skipped == 2 * MIRROR_DAYS and second.files_validated == 0
    assert second.model_dump(exclude={"files_skipped", "files_validated"}) == first.model_dump(
        exclude={"files_skipped", "files_validated"}
    )
    assert (storage.root / key).stat().st_mtime_ns == mtime, "nothing verified is rewritten"


def test_too_much_quarantine_fails_naming_the_file_and_reasons(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    lines = csv_lines(mirror, "ETHUSDT", DIRTY)
    start = 1 if lines[0].startswith("open_time") else 0
    for i in range(start, start + 60):  # 60 of 1440 rows (4.2%) with a negative count
        f = lines[i].split(",")
        f[8] = "-3"
        lines[i] = ",".join(f)
    replace_day(mirror, "ETHUSDT", DIRTY, lines)
    storage = fetched(settings, mirror, tmp_path)
    with pytest.raises(PipelineError) as failure:
        validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    message = str(failure.value)
    assert f"ETHUSDT-1m-{DIRTY} (4.2%" in message and "negative count" in message
    assert not storage.exists(layout.curated("ETHUSDT", "1m", DIRTY))
    assert storage.exists(layout.quarantine("ETHUSDT", "1m", DIRTY))
    assert storage.exists(layout.curated("BTCUSDT", "1m", DIRTY))  # good days are still curated
    # a higher threshold accepts it on re-run
    result = validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.05)
    assert result.quarantine[f"ETHUSDT-1m-{DIRTY}"] == {"negative count": 60}


def test_files_with_and_without_header_give_the_same_rows(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    lines = csv_lines(mirror, "BTCUSDT", DIRTY)
    flipped = (
        lines[1:]
        if lines[0].startswith("open_time")
        else [
            "open_time,open,high,low,close,volume,"
            "close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore",
            *lines,
        ]
    )
    storage_a = fetched(settings, mirror, tmp_path / "a")
    validate(storage_a, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    replace_day(mirror, "BTCUSDT", DIRTY, flipped)
    storage_b = fetched(settings, mirror, tmp_path / "b")
    validate(storage_b, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    key = layout.curated("BTCUSDT", "1m", DIRTY)
    a = pq.read_table(io.BytesIO(storage_a.read_bytes(key)))
    b = pq.read_table(io.BytesIO(storage_b.read_bytes(key)))
    assert a.equals(b) and len(a) == 1440


def test_no_raw_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="run the fetch step first"):
        validate(LocalStorage(tmp_path), SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)


def test_batched_days_give_the_outputs_of_the_per_file_path(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    """Row-rule faults stay on the batch path, a duplicate sends its day back to the per-file
    path: either way each day's counts, reasons, quarantine and curated file are the same."""
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_root, mirror)
    lines = csv_lines(mirror, "ETHUSDT", DIRTY)
    body = 1 if lines[0].startswith("open_time") else 0
    fields = [line.split(",") for line in lines]
    fields[body + 5][2] = str(float(fields[body + 5][3]) - 1)  # high below low
    fields[body + 6][5] = "-2.5"  # negative volume
    fields[body + 7][0] = str(int(fields[body + 7][0]) + 7)  # off the minute
    replace_day(mirror, "ETHUSDT", DIRTY, [",".join(f) for f in fields])
    other = DIRTY + timedelta(days=1)
    plain = csv_lines(mirror, "BTCUSDT", other)
    replace_day(mirror, "BTCUSDT", other, [*plain, plain[-1]])  # an exact duplicate

    outputs = []
    for batch_files in (16, 1):
        storage = fetched(settings, mirror, tmp_path / f"b{batch_files}")
        result = validate(
            storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01, batch_files=batch_files
        )
        files = {key: storage.read_bytes(key) for key in storage.list("quarantine/")}
        tables = {
            key: pq.read_table(io.BytesIO(storage.read_bytes(key)))
            for key in storage.list("curated/")
        }
        outputs.append((result, files, tables))
    (batched, quarantine, curated), (single, quarantine_1, curated_1) = outputs
    assert batched == single and quarantine == quarantine_1
    assert curated.keys() == curated_1.keys()
    for key, table in curated.items():
        assert table.equals(curated_1[key], check_metadata=True)
    assert batched.quarantine == {
        f"ETHUSDT-1m-{DIRTY}": {
            "OHLC inconsistent (low <= open,close <= high)": 1,
            "negative volume": 1,
            "open_time not on a 1m boundary": 1,
        }
    }
    assert batched.rows_duplicate == 1 and batched.files_validated == 2 * MIRROR_DAYS
