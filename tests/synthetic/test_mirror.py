"""The synthetic archive: exact layout, determinism, realistic and consistent bars."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipelines.archive import KLINE_COLUMNS, parse_checksum, zip_path
from pipelines.synthetic.market import day_bars, minute_bars
from pipelines.synthetic.mirror import write_mirror


def test_layout_checksums_and_header_mix(tmp_path: Path) -> None:
    summary = write_mirror(tmp_path, ["BTCUSDT"], "1m", date(2024, 1, 1), 8)
    assert summary.files == 8 and summary.rows == 8 * 1440
    headers = 0
    for day in range(1, 9):
        rel = zip_path("BTCUSDT", "1m", date(2024, 1, day))
        assert rel == f"data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-0{day}.zip"
        blob = (tmp_path / rel).read_bytes()
        line = (tmp_path / (rel + ".CHECKSUM")).read_text()
        assert line == f"{hashlib.sha256(blob).hexdigest()}  BTCUSDT-1m-2024-01-0{day}.zip\n"
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            assert archive.namelist() == [f"BTCUSDT-1m-2024-01-0{day}.csv"]
            first = archive.read(archive.namelist()[0]).decode().splitlines()[0]
        if first.startswith("open_time"):
            headers += 1
            assert first == ",".join(KLINE_COLUMNS)
        else:
            assert first.split(",")[0].isdigit() and len(first.split(",")) == 12
    assert 0 < headers < 8 == summary.files and headers == summary.with_header


def test_same_arguments_same_bytes_and_ranges_agree(tmp_path: Path) -> None:
    write_mirror(tmp_path / "a", ["ETHUSDT"], "1m", date(2024, 1, 1), 3, seed=5)
    write_mirror(tmp_path / "b", ["ETHUSDT"], "1m", date(2024, 1, 1), 3, seed=5)
    write_mirror(tmp_path / "c", ["ETHUSDT"], "1m", date(2024, 1, 2), 1, seed=5)
    write_mirror(tmp_path / "d", ["ETHUSDT"], "1m", date(2024, 1, 2), 1, seed=6)
    rel = zip_path("ETHUSDT", "1m", date(2024, 1, 2))
    a, b, c, d = ((tmp_path / x / rel).read_bytes() for x in "abcd")
    assert a == b == c  # deterministic, and independent of the range asked for
    assert a != d  # the seed matters


def test_bars_are_consistent_and_continuous() -> None:
    bars = minute_bars("BTCUSDT", date(2024, 5, 1))
    nxt = minute_bars("BTCUSDT", date(2024, 5, 2))
    assert len(bars) == 1440
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "close"]].max(axis=1) <= bars["high"]).all()
    assert (bars["taker_buy_volume"] <= bars["volume"]).all() and (bars["count"] > 0).all()
    assert (bars["close_time"] == bars["open_time"] + 59_999).all()
    assert np.all(np.diff(bars["open_time"]) == 60_000)
    # each minute opens at the previous close, and the next day opens where this one closed
    assert np.allclose(bars["open"].iloc[1:].to_numpy(), bars["close"].iloc[:-1].to_numpy())
    assert abs(nxt["open"].iloc[0] - bars["close"].iloc[-1]) <= 0.1 + 1e-9


def test_volatility_clusters_and_follows_the_session() -> None:
    bars = minute_bars("BTCUSDT", date(2024, 5, 1))
    r = np.diff(np.log(bars["close"].to_numpy()))
    squared = r**2
    lag1 = np.corrcoef(squared[:-1], squared[1:])[0, 1]
    assert lag1 > 0.05, "squared returns should be autocorrelated (volatility clustering)"
    hourly = bars.groupby(bars.index // 60)["volume"].sum().to_numpy()
    assert hourly[14] > 1.5 * hourly[21], "US session should trade more than late evening"


def test_shift_changes_the_regime_only_from_its_date() -> None:
    before, after = date(2024, 6, 10), date(2024, 6, 20)
    shift = date(2024, 6, 15)
    assert day_bars("ETHUSDT", before, "1m", shift_at=shift).equals(
        day_bars("ETHUSDT", before, "1m")
    )
    calm = day_bars("ETHUSDT", after, "1m")
    shifted = day_bars("ETHUSDT", after, "1m", shift_at=shift)
    vol = lambda b: np.std(np.diff(np.log(b["close"].to_numpy())))  # noqa: E731
    assert vol(shifted) > 1.8 * vol(calm)
    assert shifted["volume"].sum() > 2 * calm["volume"].sum()


@pytest.mark.parametrize(
    ("interval", "rows"), [("5m", 288), ("15m", 96), ("1h", 24), ("4h", 6), ("1d", 1)]
)
def test_longer_intervals_aggregate_minutes(interval: str, rows: int) -> None:
    minutes = minute_bars("BTCUSDT", date(2024, 2, 1))
    bars = day_bars("BTCUSDT", date(2024, 2, 1), interval)
    assert len(bars) == rows
    assert bars["volume"].sum() == pytest.approx(minutes["volume"].sum())
    assert bars["high"].max() == minutes["high"].max() and bars["low"].min() == minutes["low"].min()
    assert bars["open"].iloc[0] == minutes["open"].iloc[0]
    assert bars["close"].iloc[-1] == minutes["close"].iloc[-1]


def test_checksum_parsing_accepts_the_archive_formats() -> None:
    digest = "ab" * 32
    assert parse_checksum(f"{digest}  X.zip\n") == digest
    assert parse_checksum(f"{digest.upper()}  X.zip") == digest  # no trailing newline
    with pytest.raises(ValueError):
        parse_checksum("<html>not found</html>")
