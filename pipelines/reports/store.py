"""Where Evidently reports go: ``reports/{env}/{kind}/{timestamp}/`` holds Evidently's
``report.html`` and ``report.json``, the snapshot itself (``snapshot.json``, which
`pipelines.reports.workspace` adds to the Workspace once the decision it serves is known) and our
``summary.json`` (a `ReportSummary`).

Evidently is imported inside the functions: importing it takes ~10 s, and ``pipelines`` modules
must import fast (``mlops --help``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.storage import Storage

SUMMARY = "summary.json"
SNAPSHOT = "snapshot.json"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")


class ReportSummary(BaseModel):
    """What every stored report records about itself (``summary.json``)."""

    kind: str
    env: str
    timestamp: str
    """UTC, ``20261123T120501Z``; ``-2``, ``-3``… appended if that prefix was already taken."""
    prefix: str
    """``reports/{env}/{kind}/{timestamp}``."""
    html: str
    """Storage key of Evidently's HTML report."""
    json_key: str
    """Storage key of Evidently's JSON (``{"metrics": [...], "tests": [...]}``)."""
    model_version: str | None = None
    metadata: dict[str, Any] = {}


def save_report(
    snapshot: Any,
    storage: Storage,
    *,
    env: str,
    kind: str,
    moment: datetime,
) -> dict[str, str]:
    """Store Evidently's files under a fresh prefix.

    Returns the `ReportSummary` location fields (timestamp, prefix, html, json_key); the caller
    builds its summary from them and writes it with `write_summary`.
    """
    timestamp, prefix = _save_evidently(snapshot, storage, env, kind, moment)
    return {
        "timestamp": timestamp,
        "prefix": prefix,
        "html": f"{prefix}/report.html",
        "json_key": f"{prefix}/report.json",
    }


def write_summary(storage: Storage, summary: ReportSummary) -> None:
    """Write ``summary.json`` last: its presence means the report is whole."""
    storage.write_bytes(f"{summary.prefix}/{SUMMARY}", summary.model_dump_json(indent=2).encode())


def list_reports(storage: Storage, env: str | None = None) -> list[dict[str, Any]]:
    """Every stored report summary under ``reports/`` (or ``reports/{env}/``), newest first.

    Each is the ``summary.json`` dict plus ``"path"``: its prefix.

    Raises:
        PipelineError: if a summary is not valid JSON.
    """
    root = layout.reports_prefix(env)
    found: list[dict[str, Any]] = []
    for key in storage.list(root):
        if not key.endswith(f"/{SUMMARY}"):
            continue
        try:
            summary = json.loads(storage.read_bytes(key))
        except ValueError as error:
            raise PipelineError(
                f"report summary {key} is not valid JSON: {error}",
                "delete that report's folder, or re-run the report",
            ) from None
        found.append({**summary, "path": key.removesuffix(f"/{SUMMARY}")})
    return sorted(found, key=_newest_key, reverse=True)


def _newest_key(summary: dict[str, Any]) -> tuple[str, int, str]:
    """Sort key: the timestamp, then its ``-N`` suffix numerically (``-10`` after ``-9``)."""
    path = str(summary["path"])
    match = _STAMP.match(str(summary.get("timestamp", path.rsplit("/", 1)[-1])))
    if match is None:
        return ("", 0, path)
    return (match.group(1), int(match.group(2) or 1), path)


def check_segment(name: str, value: str) -> None:
    """Refuse a value that cannot be one storage path segment (`name` names it in the error)."""
    if not _SEGMENT.match(value):
        raise PipelineError(
            f"{name} {value!r} cannot be a storage path segment",
            "use letters, digits, '.', '_' and '-' only",
        )


def utc(now: datetime | None) -> datetime:
    """`now` in UTC; a naive datetime is taken to be UTC already."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def quiet_evidently() -> None:
    """Opt out of Evidently's usage telemetry (it would call out to the internet)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")


def snapshot_metadata(
    env: str, kind: str, model_version: str | None, metadata: dict[str, Any] | None
) -> dict[str, str]:
    """Evidently accepts only string metadata values: others are stored as JSON."""
    fields: dict[str, Any] = {"env": env, "kind": kind, **(metadata or {})}
    if model_version is not None:
        fields["model_version"] = model_version
    return {
        key: value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in fields.items()
    }


def _unique_prefix(storage: Storage, env: str, kind: str, moment: datetime) -> tuple[str, str]:
    """``(timestamp, prefix)`` for a prefix nothing is stored under yet."""
    base = moment.strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 1
    while storage.list(layout.report(env, kind, stamp) + "/"):
        n += 1
        stamp = f"{base}-{n}"
    return stamp, layout.report(env, kind, stamp)


def _save_evidently(
    snapshot: Any, storage: Storage, env: str, kind: str, moment: datetime
) -> tuple[str, str]:
    """Store Evidently's HTML and JSON under a fresh prefix; ``(timestamp, prefix)``."""
    timestamp, prefix = _unique_prefix(storage, env, kind, moment)
    with tempfile.TemporaryDirectory(prefix="mlops-report-") as tmp:
        for name, save in (
            ("report.html", snapshot.save_html),
            ("report.json", snapshot.save_json),
        ):
            path = Path(tmp) / name
            save(str(path))  # Evidently writes only when given a str path
            storage.write_bytes(f"{prefix}/{name}", path.read_bytes())
    # the whole snapshot (Snapshot.loads reads it back): published with its decision later
    storage.write_bytes(f"{prefix}/{SNAPSHOT}", snapshot.dumps().encode())
    return timestamp, prefix
