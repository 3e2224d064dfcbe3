"""The Argo exit handler's record of how a cluster run ended (``runs/{run_id}/exit.json``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel

from pipelines import layout
from pipelines.storage import Storage


class FailedNode(BaseModel):
    """One failed node of ``{{workflow.failures}}`` (Argo's field names)."""

    displayName: str | None = None  # noqa: N815 (Argo's JSON field)
    templateName: str | None = None  # noqa: N815
    message: str | None = None
    phase: str | None = None
    finishedAt: str | None = None  # noqa: N815


class ExitRecord(BaseModel):
    """How a workflow ended and which steps failed."""

    run_id: str
    status: str
    failures: list[FailedNode]
    recorded_at: str


def parse_failures(failures: str) -> list[FailedNode]:
    """Argo's ``{{workflow.failures}}`` (a JSON list, or a message, or empty) as nodes."""
    try:
        found = json.loads(failures) if failures.strip().startswith("[") else []
    except ValueError:
        found = [{"message": failures}]
    fields = FailedNode.model_fields
    return [
        FailedNode(**{k: (str(v) if v is not None else None) for k, v in f.items() if k in fields})
        for f in found
        if isinstance(f, dict)
    ]


def record_exit(storage: Storage, run_id: str, status: str, failures: str) -> ExitRecord:
    """Write the exit record of `run_id` and return it."""
    record = ExitRecord(
        run_id=run_id,
        status=status,
        failures=parse_failures(failures),
        recorded_at=datetime.now(UTC).isoformat(),
    )
    storage.write_bytes(layout.run_exit(run_id), record.model_dump_json(indent=2).encode())
    return record
