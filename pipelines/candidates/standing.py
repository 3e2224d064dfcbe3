"""Where a candidate stands in each env, read from the envs' ledgers — and whether it may move.

The stages are `Settings.candidate_stages` (env → storage URL, in promotion order). Each env's
ledger says, for a candidate: when it entered (the gate's promotion in the origin env, a
candidate move elsewhere), the hours it served as champion since (records leaving another
version champion stop the count, a rollback to it resumes it), its approvals, rejections and
rollbacks (a rollback record names the candidate it rolled back away from:
`pipelines.decisions.promotion.rollback`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipelines.candidates.record import Candidate
from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import Storage, open_storage

State = Literal["absent", "serving", "served", "rejected", "rolled back"]


@dataclass(frozen=True)
class Stage:
    """One env of the promotion chain and its storage (read only unless it is this env's)."""

    env: str
    storage: Storage


def stages_of(settings: Settings, own: Storage) -> list[Stage]:
    """The promotion chain; this env's stage uses `own` (its own storage and credentials).

    Raises:
        PipelineError: no chain is configured, or it does not name this env.
    """
    chain = settings.candidate_stages
    if settings.env not in chain:
        raise PipelineError(
            f"MLOPS_CANDIDATE_STAGES does not name this env {settings.env!r}"
            + (f" (it names {', '.join(chain)})" if chain else " (it is not set)"),
            'set it to the chain in order, e.g. {"dev": "s3://…", "staging": "s3://…", '
            '"prod": "s3://…"} (stacks/Pulumi.<env>.yaml, workflows.settings)',
        )
    return [
        Stage(env, own if env == settings.env else open_storage(url)) for env, url in chain.items()
    ]


class Event(BaseModel):
    """One ledger record about the candidate, as the views show it."""

    env: str
    action: str
    """``create``, ``promote`` (entered), ``approve``, ``reject``, ``rollback``."""
    when: str
    record: str
    by: str | None = None
    reasons: list[str] = Field(default_factory=list)


class Standing(BaseModel):
    """The candidate in one env."""

    env: str
    state: State
    version: int | None = None
    """Its registry version in that env."""
    entered: str | None = None
    left: str | None = None
    """When another version last replaced it as champion there (None while it serves)."""
    served_hours: float | None = None
    """Hours it has been champion there, in total (a rollback to it resumes the count)."""
    approvals: list[Event] = Field(default_factory=list)
    rejections: list[Event] = Field(default_factory=list)
    """Rejections and rollbacks: either stops the candidate for good."""
    events: list[Event] = Field(default_factory=list)


def _hours(start: str, end: datetime) -> float:
    return (end - datetime.fromisoformat(start)).total_seconds() / 3600


def standing(stage: Stage, candidate: Candidate, now: datetime | None = None) -> Standing:
    """Where `candidate` stands in `stage`, from its ledger."""
    records = [
        r
        for r in ledger.read_all(stage.storage, stage.env)
        if r.model_name == candidate.model_name and r.decision != "failed"
    ]
    now = now or datetime.now(UTC)
    result = Standing(env=stage.env, state="absent")
    entered_at: int | None = None
    for index, record in enumerate(records):
        event = _event(stage.env, record, candidate)
        if event is None:
            continue
        result.events.append(event)
        if event.action in ("enter", "promote") and entered_at is None:
            entered_at = index
            result.entered = event.when
            result.version = int(record.inputs.get("version") or candidate.model_version)
        elif event.action == "approve":
            result.approvals.append(event)
        elif event.action in ("reject", "rollback"):
            result.rejections.append(event)
    if entered_at is not None and result.entered is not None:
        since: str | None = result.entered
        served = 0.0
        for record in records[entered_at + 1 :]:
            champion = record.aliases_after.get("champion")
            if champion is None:
                continue
            if since is not None and champion != result.version:
                served += _hours(since, datetime.fromisoformat(record.decided_at))
                since, result.left = None, record.decided_at
            elif since is None and champion == result.version:  # rolled back to it
                since, result.left = record.decided_at, None
        if since is not None:
            served += _hours(since, now)
        result.served_hours = round(served, 4)
        result.state = "serving" if since is not None else "served"
    if result.rejections:
        kinds = {e.action for e in result.rejections}
        result.state = "rolled back" if "rollback" in kinds else "rejected"
    return result


def _event(env: str, record: Decision, candidate: Candidate) -> Event | None:
    """The record as an event of `candidate`, or None when it is about something else."""
    inputs: dict[str, Any] = record.inputs
    action: str | None = None
    if record.key == candidate.gate_record and record.decision == "promote":
        action = "enter"
    elif record.kind == "candidate" and inputs.get("candidate") == candidate.id:
        action = record.decision
    elif record.decision == "rollback" and inputs.get("candidate") == candidate.id:
        action = "rollback"
    if action is None:
        return None
    return Event(
        env=env,
        action=action,
        when=record.decided_at or record.started_at,
        record=record.key,
        by=inputs.get("by"),
        reasons=record.reasons,
    )


def standings(
    stages: list[Stage], candidate: Candidate, now: datetime | None = None
) -> list[Standing]:
    """The candidate in every env of the chain, in order."""
    return [standing(stage, candidate, now) for stage in stages]


def refusals(
    settings: Settings,
    stages: list[Stage],
    found: list[Standing],
    candidate: Candidate,
    target: str,
) -> list[str]:
    """Why `candidate` may not move into `target` now (empty: it may). `found` are
    `standings` of `stages`."""
    index = [s.env for s in stages].index(target)
    if index == 0:
        return [f"{target} is the first stage: candidates are created there by the gate"]
    by_env = {s.env: s for s in found}
    why: list[str] = []
    for env, state in by_env.items():
        for event in state.rejections:
            verb = "rolled back" if event.action == "rollback" else "rejected"
            why.append(
                f"candidate {candidate.id} was {verb} in {env} ({event.record}"
                + (f", by {event.by}" if event.by else "")
                + "): it never moves again"
            )
    origin = by_env.get(candidate.origin_env)
    if origin is None or origin.entered is None:
        why.append(
            f"the gate's promotion {candidate.gate_record} is not in the ledger of "
            f"{candidate.origin_env}: no move without it"
        )
    previous = found[index - 1]
    soak = settings.candidate_soak_hours
    if previous.entered is None:
        why.append(f"it has not reached {previous.env}: move it there first")
    elif (previous.served_hours or 0.0) < soak:
        stopped = f" before another version replaced it ({previous.left})" if previous.left else ""
        why.append(
            f"it served {previous.served_hours or 0:.2f} h in {previous.env}{stopped}; "
            f"{target} needs {soak:g} h of soak there (MLOPS_CANDIDATE_SOAK_HOURS)"
        )
    if settings.candidate_requires_approval and not by_env[target].approvals:
        why.append(
            f"{target} needs an approval in its ledger: mlops candidates approve "
            f"{candidate.id} --reason '…' (with {target}'s settings)"
        )
    return why
