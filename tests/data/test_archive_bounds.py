"""Decompressed-size bounds (issue 15 #9): a zip bomb, a lying zip header, a row of millions of
columns or a file of endless lines is refused BY NAME — at fetch (while streaming) and in
validate (never inflated past the bound) — and the other files of the step go on."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from pipelines import archive, layout
from pipelines.archive import checksum_line, zip_name, zip_path
from pipelines.data.fetch import Fetcher, fetch
from pipelines.data.unzip import ArchiveRefusedError, ZipBounds, inflate, read_csv
from pipelines.data.validate import validate
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_START, REPO, SYMBOLS
from tests.data.test_validate import DIRTY, END, csv_lines, fetched

pytestmark = pytest.mark.hostile
MiB = 2**20


def zip_of(payload_chunks: Iterator[bytes], name: str = "X.csv") -> bytes:
    """A deflated one-member zip, written as it streams (the test never holds the CSV whole)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as out,
        out.open(name, "w") as member,
    ):
        for chunk in payload_chunks:
            member.write(chunk)
    return buffer.getvalue()


def newlines(total: int) -> Iterator[bytes]:
    """`total` bytes of newlines, in 1 MiB chunks: the audit's "empty day" zip bomb."""
    for _ in range(total // MiB):
        yield b"\n" * MiB


def lie_about_size(blob: bytes, declared: int) -> bytes:
    """The same zip with its headers declaring `declared` bytes of CSV (the data unchanged)."""
    patched = bytearray(blob)
    local = patched.index(b"PK\x03\x04")
    struct.pack_into("<I", patched, local + 22, declared)
    central = patched.index(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, declared)
    return bytes(patched)


def wide_row(columns: int) -> Iterator[bytes]:
    """A header-less CSV whose only row has `columns` columns."""
    yield b"1," * (columns - 1) + b"1\n"


def plant_raw(storage: LocalStorage, symbol: str, day: date, blob: bytes) -> None:
    """`blob` under raw/ as if an earlier fetch had verified it (checksum beside it)."""
    storage.write_bytes(layout.raw_zip(symbol, "1m", day), blob)
    digest = hashlib.sha256(blob).hexdigest()
    storage.write_bytes(
        layout.raw_checksum(symbol, "1m", day),
        checksum_line(digest, zip_name(symbol, "1m", day)).encode(),
    )


def test_the_bounds_are_the_documented_ones_with_a_wide_margin_over_a_real_day(
    mirror_root: Path,
) -> None:
    assert (16 * MiB, 16 * MiB) == (archive.MAX_ZIP_BYTES, archive.MAX_CSV_BYTES)
    assert (archive.MAX_ZIP_MEMBERS, archive.MAX_CSV_LINES, archive.MAX_LINE_BYTES) == (
        1,
        50_000,
        4096,
    )
    assert archive.MAX_CHECKSUM_BYTES == 4096
    # a 1m day (the finest interval supported) is 30x or more under every bound
    blob = (mirror_root / zip_path("BTCUSDT", "1m", DIRTY)).read_bytes()
    lines = csv_lines(mirror_root, "BTCUSDT", DIRTY)
    csv_bytes = sum(len(line) + 1 for line in lines)
    assert 30 * len(blob) <= archive.MAX_ZIP_BYTES
    assert 30 * csv_bytes <= archive.MAX_CSV_BYTES
    assert 30 * len(lines) <= archive.MAX_CSV_LINES
    assert 25 * max(len(line) for line in lines) <= archive.MAX_LINE_BYTES
    assert read_csv(blob) == ("\n".join(lines) + "\n").encode()


BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "64 MiB of newlines": (
        lambda: zip_of(newlines(64 * MiB)),
        "its CSV declares 67108864 bytes, over the 16777216-byte bound",
    ),
    "a header that lies about the size": (
        lambda: lie_about_size(zip_of(newlines(64 * MiB)), 4096),
        "not a valid zip (BadZipFile)",  # zipfile stops at the declared size: the CRC fails
    ),
    "a row of a million columns": (
        lambda: zip_of(wide_row(1_000_000)),
        "line 1 of its CSV is 1999999 bytes (1000000 columns), over the 4096-byte bound",
    ),
    "a row of ten million columns": (
        lambda: zip_of(wide_row(10_000_000)),
        "its CSV declares 20000000 bytes, over the 16777216-byte bound",
    ),
    "sixty thousand short lines": (
        lambda: zip_of(iter([b"1\n" * 60_000])),
        "its CSV holds 60000 lines, over the bound of 50000",
    ),
    "two members": (
        lambda: two_members(),
        "zip holds 2 members, over the bound of 1",
    ),
}


def two_members() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.writestr("a.csv", b"1\n")
        out.writestr("b.csv", b"1\n")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(BOMBS))
def test_validate_refuses_the_file_by_name_and_curates_the_others(
    kind: str, mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    build, reason = BOMBS[kind]
    storage = fetched(settings, mirror_root, tmp_path)
    plant_raw(storage, "BTCUSDT", DIRTY, build())
    with pytest.raises(PipelineError) as caught:
        validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    message = str(caught.value)
    assert f"1 raw file(s) refused, not validated: BTCUSDT-1m-{DIRTY}: {reason}" in message
    assert "delete the refused files under raw/" in message
    assert not storage.exists(layout.curated("BTCUSDT", "1m", DIRTY))
    note = storage.read_bytes(layout.quarantine("BTCUSDT", "1m", DIRTY)).decode()
    assert f"file refused: {reason}" in note
    # the rest of the step went on: every other day is curated
    others = [layout.curated(s, "1m", d) for s in SYMBOLS for d in (MIRROR_START, DIRTY, END)]
    assert [storage.exists(k) for k in others] == [
        k != layout.curated("BTCUSDT", "1m", DIRTY) for k in others
    ]


def test_a_refused_day_never_keeps_an_older_curated_copy(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    storage = fetched(settings, mirror_root, tmp_path)
    validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    assert storage.exists(layout.curated("BTCUSDT", "1m", DIRTY))
    plant_raw(storage, "BTCUSDT", DIRTY, zip_of(newlines(64 * MiB)))
    with pytest.raises(PipelineError, match=f"BTCUSDT-1m-{DIRTY}: its CSV declares"):
        validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    assert not storage.exists(layout.curated("BTCUSDT", "1m", DIRTY))


def test_a_bound_can_be_lowered_and_a_file_just_past_it_is_refused(mirror_root: Path) -> None:
    blob = (mirror_root / zip_path("BTCUSDT", "1m", DIRTY)).read_bytes()
    lines = csv_lines(mirror_root, "BTCUSDT", DIRTY)
    size = sum(len(line) + 1 for line in lines)
    assert len(read_csv(blob, ZipBounds(csv_bytes=size, csv_lines=len(lines)))) == size
    with pytest.raises(
        ArchiveRefusedError, match=f"declares {size} bytes, over the {size - 1}-byte"
    ):
        read_csv(blob, ZipBounds(csv_bytes=size - 1))
    with pytest.raises(ArchiveRefusedError, match=f"holds {len(lines)} lines, over the bound"):
        read_csv(blob, ZipBounds(csv_lines=len(lines) - 1))
    with pytest.raises(ArchiveRefusedError, match=f"zip of {len(blob)} bytes is over"):
        read_csv(blob, ZipBounds(zip_bytes=len(blob) - 1))


def test_inflating_is_counted_not_taken_from_the_header() -> None:
    # Call the inflater past the header check, as if the header had been believed: the count
    # alone stops it one chunk past the bound.
    with zipfile.ZipFile(io.BytesIO(zip_of(newlines(64 * MiB)))) as bomb:
        info = bomb.infolist()[0]
        with pytest.raises(ArchiveRefusedError, match="inflates past the 2097152-byte bound"):
            inflate(bomb, info, 2 * MiB)


def test_fetch_refuses_a_zip_bomb_by_name_and_stores_the_other_files(
    mirror_root: Path, tmp_path: Path, settings: Settings
) -> None:
    mirror = tmp_path / "mirror"
    day = MIRROR_START
    for symbol in SYMBOLS:
        source = mirror_root / zip_path(symbol, "1m", day)
        target = mirror / zip_path(symbol, "1m", day)
        target.parent.mkdir(parents=True)
        blob = source.read_bytes() if symbol != "BTCUSDT" else zip_of(newlines(64 * MiB))
        target.write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        Path(f"{target}.CHECKSUM").write_text(checksum_line(digest, target.name))
    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(PipelineError) as caught:
        fetch(settings, storage, mirror.as_uri(), SYMBOLS, "1m", day, day)
    assert (
        f"BTCUSDT-1m-{day}.zip: its CSV declares 67108864 bytes, over the 16777216-byte bound"
        in str(caught.value)
    )
    assert not storage.exists(layout.raw_zip("BTCUSDT", "1m", day))
    assert storage.exists(layout.raw_zip("ETHUSDT", "1m", day))


class EndlessBody(httpx.SyncByteStream):
    """A body that never ends, counting the chunks the client pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.pulled += 1
            yield b"\0" * 65536


@pytest.mark.parametrize("announced", [True, False])
def test_a_download_over_the_bound_is_refused_while_streaming(
    settings: Settings, announced: bool
) -> None:
    body = EndlessBody()
    headers = {"Content-Length": str(10 * 2**30)} if announced else {}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers=headers)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        fetcher = Fetcher(settings, client)
        with pytest.raises(PipelineError) as caught:
            fetcher.get("http://127.0.0.1/x.zip", archive.MAX_ZIP_BYTES)
    message = str(caught.value)
    assert "over this file's bound of 16777216 bytes" in message and "refused unread" in message
    if announced:
        assert "announces 10737418240 bytes" in message and body.pulled == 0
    else:
        assert "sent over 16777216 bytes" in message
        assert body.pulled == archive.MAX_ZIP_BYTES // 65536 + 1, "stopped at the bound"
    assert fetcher.counters.retries == 0, "an oversize body is not retried"


def test_a_file_mirror_streams_so_a_huge_file_is_never_read_whole(
    tmp_path: Path, settings: Settings
) -> None:
    day = MIRROR_START
    huge = tmp_path / "mirror" / zip_path("BTCUSDT", "1m", day)
    huge.parent.mkdir(parents=True)
    with huge.open("wb") as handle:  # sparse: 256 MiB on paper, nothing on disk
        handle.truncate(256 * MiB)
    Path(f"{huge}.CHECKSUM").write_text(checksum_line("0" * 64, huge.name))
    tracemalloc.start()
    try:
        with pytest.raises(PipelineError) as caught:
            fetch(
                settings,
                LocalStorage(tmp_path / "d"),
                (tmp_path / "mirror").as_uri(),
                ["BTCUSDT"],
                "1m",
                day,
                day,
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * MiB, f"the file was read whole: {peak} bytes allocated"
    assert "announces 268435456 bytes, over this file's bound" in str(caught.value)


PEAK_CHILD = """
import json, sys
from datetime import date
from pathlib import Path
from pipelines.data.validate import validate
from pipelines.errors import PipelineError
from pipelines.storage import LocalStorage

def peak_kib():
    # VmHWM: the peak RSS of this address space. (getrusage's ru_maxrss survives exec on
    # Linux, so a child would report the pytest process's own peak.)
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])

storage = LocalStorage(Path(sys.argv[1]))
day = date.fromisoformat(sys.argv[2])
before = peak_kib()
try:
    validate(storage, ["BTCUSDT"], "1m", day, day, max_share=0.01)
    outcome = "accepted"
except PipelineError as error:
    outcome = str(error)
print(json.dumps({"before_kib": before, "grew_kib": peak_kib() - before, "outcome": outcome}))
"""


@pytest.mark.integration  # measures peak memory in a child process
@pytest.mark.parametrize(
    ("declared", "reason"),
    [(None, "its CSV declares 268435456 bytes"), (4096, "not a valid zip (BadZipFile)")],
)
def test_validate_peak_memory_stays_bounded_on_a_256_mib_bomb(
    tmp_path: Path, declared: int | None, reason: str
) -> None:
    blob = zip_of(newlines(256 * MiB))
    storage = LocalStorage(tmp_path / "data")
    planted = blob if declared is None else lie_about_size(blob, declared)
    plant_raw(storage, "BTCUSDT", DIRTY, planted)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD, str(storage.root), DIRTY.isoformat()],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)  # the measured growth, for the record (pytest -s)
    assert f"BTCUSDT-1m-{DIRTY}: {reason}" in report["outcome"]
    # the step's peak grew by less than the CSV bound, not by the 256 MiB the zip inflates to
    assert report["before_kib"] > 0 and report["grew_kib"] < archive.MAX_CSV_BYTES // 1024, report
