"""Bounded reading of one archive zip: the one CSV inside, and never more than the bounds allow.

A zip's headers are the sender's word. The declared size is checked first (cheap), then the
member is inflated through a counting limit, so a header that lies costs at most the bound; the
CSV's lines are bounded before any parser sees them. A file past a bound raises
`ArchiveRefusedError` with the bound it broke, and never echoes what it read (names, bytes).
"""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from pipelines.archive import (
    MAX_CSV_BYTES,
    MAX_CSV_LINES,
    MAX_LINE_BYTES,
    MAX_ZIP_BYTES,
    MAX_ZIP_MEMBERS,
)

_CORRUPT = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    ValueError,
    zlib.error,
    lzma.LZMAError,
)


_CHUNK = 2**20


class ArchiveRefusedError(ValueError):
    """A file that is not a sound daily kline zip: corrupt, or past one of the `ZipBounds`."""


@dataclass(frozen=True)
class ZipBounds:
    """The bounds one archive file must stay within; the defaults are the archive's
    (`pipelines.archive`, where each is sized from the files the archive really publishes)."""

    zip_bytes: int = MAX_ZIP_BYTES
    members: int = MAX_ZIP_MEMBERS
    csv_bytes: int = MAX_CSV_BYTES
    csv_lines: int = MAX_CSV_LINES
    line_bytes: int = MAX_LINE_BYTES


ARCHIVE_BOUNDS = ZipBounds()
"""The production bounds."""


def read_csv(blob: bytes, bounds: ZipBounds = ARCHIVE_BOUNDS) -> bytes:
    """The one CSV inside the zip `blob`, inflated within `bounds`, its CRC and lines checked.

    Raises:
        ArchiveRefusedError: naming the bound broken, or why the zip is not valid.
    """
    if len(blob) > bounds.zip_bytes:
        raise ArchiveRefusedError(
            f"zip of {len(blob)} bytes is over the {bounds.zip_bytes}-byte bound"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = archive.infolist()
            if len(members) > bounds.members:
                raise ArchiveRefusedError(
                    f"zip holds {len(members)} members, over the bound of {bounds.members}"
                )
            if len(members) != 1 or not members[0].filename.endswith(".csv"):
                raise ArchiveRefusedError("expected one CSV inside the zip")
            info = members[0]
            if info.file_size > bounds.csv_bytes:
                raise ArchiveRefusedError(
                    f"its CSV declares {info.file_size} bytes, over the "
                    f"{bounds.csv_bytes}-byte bound"
                )
            payload = inflate(archive, info, bounds.csv_bytes)
    except ArchiveRefusedError:
        raise
    except _CORRUPT as error:
        raise ArchiveRefusedError(f"not a valid zip ({type(error).__name__})") from None
    check_lines(payload, bounds)
    return payload


def inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, counted as they inflate: never trust the header alone. Small reads
    keep the decompressor's own buffer small too; reading to the end checks the CRC."""
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ArchiveRefusedError(
                    f"its CSV inflates past the {limit}-byte bound (its header said "
                    f"{info.file_size})"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def check_lines(payload: bytes, bounds: ZipBounds = ARCHIVE_BOUNDS) -> None:
    """Refuse a CSV with more lines, or a longer line, than `bounds` allow.

    Raises:
        ArchiveRefusedError: naming the bound, and for a long line its number and column count.
    """
    lines = payload.count(b"\n") + int(bool(payload) and not payload.endswith(b"\n"))
    if lines > bounds.csv_lines:
        raise ArchiveRefusedError(
            f"its CSV holds {lines} lines, over the bound of {bounds.csv_lines} "
            "(a 1m day has 1,441)"
        )
    if not payload:
        return
    # `lines` is bounded now, so the newline positions are too.
    ends = np.flatnonzero(np.frombuffer(payload, dtype=np.uint8) == ord("\n"))
    edges = np.concatenate(([-1], ends, [len(payload)]))
    lengths = np.diff(edges) - 1
    row = int(lengths.argmax())
    if int(lengths[row]) > bounds.line_bytes:
        start, end = int(edges[row]) + 1, int(edges[row + 1])
        columns = payload.count(b",", start, end) + 1
        raise ArchiveRefusedError(
            f"line {row + 1} of its CSV is {int(lengths[row])} bytes ({columns} columns), over "
            f"the {bounds.line_bytes}-byte bound (a row is 12 columns of ~100-160 bytes)"
        )
