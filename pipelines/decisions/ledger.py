"""The decision ledger: one append-only JSON record per gate, monitor and rollback decision,
under ``decisions/{env}/{timestamp}-{kind}.json``. Nothing is ever rewritten.

Records are write-once at the store itself: `Storage.create` (a hard link locally, a PUT with
``If-None-Match: *`` on S3), so two writers racing for one key cannot both win and no check can
go stale before the write. On S3 the stack's bucket policy refuses any other PUT of a record
and every delete (stacks/components/buckets.py). Only the keys directly under
``decisions/{env}/`` are records; ``decisions/{env}/intents/`` (`layout.decision_intents_prefix`)
holds deletable working state and is never read as the ledger."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipelines import layout
from pipelines.decisions.pin import ServingPin
from pipelines.storage import Storage

Kind = Literal["gate", "monitor", "rollback", "retrain", "candidate", "shadow"]


class Decision(BaseModel):
    """What was decided, from what evidence, and what changed."""

    kind: Kind
    env: str
    model_name: str
    decision: str
    """``promote``, ``reject``, ``rollback``, ``hold`` or ``failed``; a ``retrain`` record:
    ``triggered``, ``suppressed`` or ``failed``; a candidate's record (`pipelines.candidates`)
    also ``create`` or ``approve``."""
    reasons: list[str]
    decision_id: str
    """Identity of the question decided (kind, env, versions, data): the same question asked
    again finds this record instead of acting twice."""
    inputs: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    reports: list[str] = Field(default_factory=list)
    aliases_before: dict[str, int] = Field(default_factory=dict)
    aliases_after: dict[str, int] = Field(default_factory=dict)
    gitops_commit: str | None = None
    gitops_pin: ServingPin | str | None = None
    """What the decision pinned (image and model); a string in records written before the
    two-part pin."""
    run_id: str | None = None
    started_at: str
    decided_at: str = ""
    key: str = ""
    """Storage key of the record (set when written)."""


def decision_id(*parts: object) -> str:
    """16 hex digits identifying a decision's question."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def now_iso() -> str:
    """UTC now, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def reserve_key(storage: Storage, env: str, kind: str) -> str:
    """A fresh record key: ``decisions/{env}/{UTC timestamp}-{kind}.json`` (never an existing
    one, so a record is never overwritten)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    n = 1
    while storage.exists(key := layout.decision(env, stamp, kind, n)):
        n += 1
    return key


RESERVE_ATTEMPTS = 5
"""Fresh keys tried when another writer creates the key this one reserved first."""


def write(storage: Storage, record: Decision) -> Decision:
    """Append `record` (at its reserved key, or a new one) and return it as written.

    Raises:
        FileExistsError: if `record` names a key that exists (records are append-only).
    """
    if not record.decided_at:
        record = record.model_copy(update={"decided_at": now_iso()})
    preset = bool(record.key)
    for _ in range(1 if preset else RESERVE_ATTEMPTS):
        if not preset:
            record = record.model_copy(
                update={"key": reserve_key(storage, record.env, record.kind)}
            )
        try:
            storage.create(record.key, record.model_dump_json(indent=2).encode())
        except FileExistsError:
            if preset:
                raise FileExistsError(
                    f"decision record {record.key} exists; records are append-only"
                ) from None
            continue  # another writer created the key we reserved: reserve the next one
        return record
    raise FileExistsError(
        f"no fresh key for a {record.kind} record in {layout.decisions_prefix(record.env)} "
        f"after {RESERVE_ATTEMPTS} attempts: other writers keep creating them"
    )


def is_record(env: str, key: str) -> bool:
    """Whether `key` is a ledger record of `env`: a ``.json`` directly under
    ``decisions/{env}/`` (never the ``intents/`` working state below it)."""
    prefix = layout.decisions_prefix(env)
    rest = key.removeprefix(prefix)
    return key.startswith(prefix) and "/" not in rest and rest.endswith(".json")


def read_all(storage: Storage, env: str) -> list[Decision]:
    """Every record of `env`, oldest first (the records only: not the intent in flight)."""
    return [
        Decision.model_validate_json(storage.read_bytes(key))
        for key in storage.list(layout.decisions_prefix(env))
        if is_record(env, key)
    ]


def find(storage: Storage, env: str, identity: str) -> Decision | None:
    """The latest record answering the question `identity` (ignoring failed attempts)."""
    matches = [
        d for d in read_all(storage, env) if d.decision_id == identity and d.decision != "failed"
    ]
    return matches[-1] if matches else None


def alias_history(storage: Storage, env: str) -> list[dict[str, Any]]:
    """Alias moves over time, from the ledger: one row per record that changed an alias, and
    every candidate record (created, moved, approved, rejected)."""
    rows = []
    for record in read_all(storage, env):
        moved = {
            alias: {"from": record.aliases_before.get(alias), "to": record.aliases_after.get(alias)}
            for alias in sorted(set(record.aliases_before) | set(record.aliases_after))
            if record.aliases_before.get(alias) != record.aliases_after.get(alias)
        }
        if moved or record.decision in ("promote", "rollback") or record.kind == "candidate":
            rows.append(
                {
                    "when": record.decided_at,
                    "kind": record.kind,
                    "decision": record.decision,
                    "moves": moved,
                    "gitops_commit": record.gitops_commit,
                    "record": record.key,
                    "reasons": record.reasons,
                    "candidate": record.inputs.get("candidate"),
                }
            )
    return rows
