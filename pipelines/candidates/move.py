"""Moving a candidate into the next env, approving and rejecting it: each a ledger record.

A move runs with the target env's own settings (``MLOPS_ENV`` is the target): its storage, its
MLflow, its GitOps overlay. Under the env's decision lock, after reconciling any interrupted
decision, it

1. reads the candidate from the stage before (its record there, checked against its digests);
2. refuses unless the gate promoted it, it soaked in the stage before with no rollback, nothing
   rejected it anywhere, (where the env says so) it is approved here, and its serving image —
   by the manifest digest the candidate records — is in this env's registry (replicated there:
   `pipelines.ml.images`);
3. copies each artifact into this env's storage — its sha256 checked as read, write-once at the
   same key (a re-run finds the same bytes; other bytes are refused) — then the record itself;
4. registers it in this env's MLflow, found again by its `CANDIDATE_TAG` on a re-run;
5. moves ``champion``/``previous`` and commits the pin in one transaction with the ledger
   record (`pipelines.decisions.promotion.apply`: write-ahead intent, reconciled if killed).

Steps 3-4 are idempotent and step 5 is the existing decision transaction, so a move killed
anywhere leaves no half-state a re-run cannot complete: the same command finishes it, and once
the record exists it is a no-op.
"""

from __future__ import annotations

import getpass
import subprocess
from datetime import datetime

from pydantic import BaseModel

from pipelines.candidates.record import Candidate, event_inputs, read, sha256, store_once
from pipelines.candidates.standing import Stage, refusals, stages_of, standings
from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.promotion import apply, current_aliases, prepare, repo_of
from pipelines.errors import PipelineError
from pipelines.ml.images import repository_of, require_image
from pipelines.ml.registry import (
    CANDIDATE_TAG,
    MODEL_DIGEST_TAG,
    SERVING_IMAGE_DIGEST_TAG,
    SERVING_IMAGE_TAG,
    SERVING_VERSION_TAG,
    keep_one,
)
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage


class MoveResult(BaseModel):
    """A move's outcome: the candidate, where it went, its version there and the record."""

    candidate: str
    env: str
    version: int
    record: str
    gitops_commit: str | None
    artifacts: dict[str, str]
    """Key → sha256 of what this env now holds (read back after the copy)."""
    reused: bool


def _target(settings: Settings, own: Storage, to: str) -> tuple[list[Stage], Stage]:
    if to != settings.env:
        raise PipelineError(
            f"a move into {to} runs with {to}'s own settings (storage, MLflow, GitOps): these "
            f"are {settings.env}'s",
            f"run it with MLOPS_ENV={to} and {to}'s MLOPS_STORAGE_URL and MLFLOW_TRACKING_URI",
        )
    stages = stages_of(settings, own)
    return stages, next(s for s in stages if s.env == to)


def find(stages: list[Stage], ref: str) -> Candidate:
    """The candidate `ref` from the first env of `stages` that holds it.

    Raises:
        PipelineError: no env holds it.
    """
    for stage in stages:
        try:
            return read(stage.storage, stage.env, ref)
        except PipelineError:
            continue
    raise PipelineError(
        f"no candidate {ref!r} in {', '.join(s.env for s in stages)}",
        "list them: mlops candidates list",
    )


def promote(
    settings: Settings, storage: Storage, ref: str, to: str, now: datetime | None = None
) -> MoveResult:
    """Move candidate `ref` into env `to` (this env). `now` is the clock soak is measured by.

    Raises:
        PipelineError: naming every reason it may not move, or what failed.
    """
    stages, target = _target(settings, storage, to)
    index = stages.index(target)
    if index == 0:
        raise PipelineError(f"{to} is the first stage: candidates are created there by the gate")
    previous = stages[index - 1]
    candidate = read(previous.storage, previous.env, ref)
    repo = repo_of(settings)
    with repo.lock():
        prepare(settings, storage, repo)
        identity = ledger.decision_id("candidate", "promote", to, candidate.id)
        if (done := ledger.find(storage, to, identity)) is not None:
            return _result(storage, candidate, done, reused=True)
        why = refusals(settings, stages, standings(stages, candidate, now), candidate, to)
        if why:
            raise PipelineError(
                f"candidate {candidate.id} may not move into {to}: " + "; ".join(why)
            )
        image = candidate.serving_image_digest
        require_image(repository_of(settings, storage), image, to, candidate.id)
        copy_artifacts(previous, storage, to, candidate)
        version = register(settings, storage, candidate, previous.env)
        client = mlflow_client(settings)
        champion = current_aliases(client, candidate.model_name).get("champion")
        record = Decision(
            kind="candidate",
            env=to,
            model_name=candidate.model_name,
            decision="promote",
            reasons=[
                f"candidate {candidate.id} ({candidate.origin_env} v{candidate.model_version}) "
                f"from {previous.env}: gate passed, soaked {settings.candidate_soak_hours:g} h "
                "or more there with no rollback"
                + (", approved" if settings.candidate_requires_approval else "")
            ],
            decision_id=identity,
            inputs=event_inputs(
                candidate,
                version=version,
                source_env=previous.env,
                created_at=candidate.created_at,
                champion_before=champion,
            ),
            started_at=ledger.now_iso(),
        )
        moves: dict[str, int | None] = (
            {} if champion == version else {"previous": champion, "champion": version}
        )
        message = (
            f"candidate: serve {candidate.model_name} {candidate.id} "
            f"({candidate.origin_env} v{candidate.model_version}) as v{version} in {to} "
            "(decision {record})"
        )
        done = apply(settings, storage, record, moves, candidate.pin, message)
    return _result(storage, candidate, done, reused=False)


def copy_artifacts(source: Stage, storage: Storage, env: str, candidate: Candidate) -> None:
    """Copy every artifact, then the record, from `source` into `storage` (env `env`), each
    checked against its sha256 as read (write-once: a re-run finds the same bytes).

    Raises:
        PipelineError: an artifact is missing in `source` or its bytes are not its digest's.
    """
    from pipelines import layout

    for artifact in candidate.artifacts:
        try:
            data = source.storage.read_bytes(artifact.key)
        except FileNotFoundError:
            raise PipelineError(
                f"{source.storage.url}/{artifact.key} is missing: candidate {candidate.id} "
                f"cannot leave {source.env}",
                "candidates are write-once: find what deleted it",
            ) from None
        if sha256(data) != artifact.sha256:
            raise PipelineError(
                f"{source.storage.url}/{artifact.key} has sha256 {sha256(data)}, candidate "
                f"{candidate.id} names {artifact.sha256}: refusing to copy it",
                "the artifact was replaced after the candidate was created",
            )
        store_once(storage, artifact.key, data)
    store_once(storage, layout.candidate(env, candidate.id), candidate.body())


def register(settings: Settings, storage: Storage, candidate: Candidate, source_env: str) -> int:
    """The candidate's version in this env's MLflow: found by its `CANDIDATE_TAG`, else
    created from the copied model archive with the lineage tags."""
    from mlflow.exceptions import MlflowException

    from pipelines import layout

    client = mlflow_client(settings)
    name = candidate.model_name
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    versions = sorted(
        (
            mv
            for mv in client.search_model_versions(f"name='{name}'")
            if (mv.tags or {}).get(CANDIDATE_TAG) == candidate.id
        ),
        key=lambda mv: int(mv.version),
    )
    if (kept := keep_one(client, name, versions)) is not None:
        return int(kept.version)
    archive = candidate.artifacts[0].key
    created = client.create_model_version(
        name,
        source=f"{storage.url}/{archive}",
        tags={
            **candidate.tags,
            SERVING_IMAGE_TAG: candidate.serving_image,
            SERVING_IMAGE_DIGEST_TAG: candidate.serving_image_digest,
            MODEL_DIGEST_TAG: candidate.model_sha256,
            SERVING_VERSION_TAG: str(candidate.model_version),
            CANDIDATE_TAG: candidate.id,
            "mlops.source_env": source_env,
            "mlops.origin_env": candidate.origin_env,
            "mlops.origin_version": str(candidate.model_version),
            "mlops.origin_run_id": candidate.mlflow_run_id or "",
            "mlops.gate_record": candidate.gate_record,
        },
        description=(
            f"candidate {candidate.id} from {source_env} "
            f"({layout.candidate(source_env, candidate.id)})"
        ),
    )
    return int(created.version)


def _result(storage: Storage, candidate: Candidate, record: Decision, reused: bool) -> MoveResult:
    held = {a.key: sha256(storage.read_bytes(a.key)) for a in candidate.artifacts}
    return MoveResult(
        candidate=candidate.id,
        env=record.env,
        version=int(record.inputs["version"]),
        record=record.key,
        gitops_commit=record.gitops_commit,
        artifacts=held,
        reused=reused,
    )


def who(by: str | None) -> str:
    """Who acts: `by`, else git's ``user.email`` (or ``user.name``), else the login name."""
    if by:
        return by
    for key in ("user.email", "user.name"):
        try:
            done = subprocess.run(
                ["git", "config", "--get", key], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            break
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return getpass.getuser()


def judge(
    settings: Settings, storage: Storage, ref: str, verdict: str, reason: str, by: str | None
) -> Decision:
    """Record an ``approve`` or ``reject`` of candidate `ref` in this env's ledger (the same
    verdict by the same person twice is one record).

    Raises:
        PipelineError: no reason, or approving a candidate already rejected or rolled back.
    """
    if not reason.strip():
        raise PipelineError(f"a {verdict} needs a reason", "pass --reason '…'")
    stages = stages_of(settings, storage)
    candidate = find(stages, ref)
    actor = who(by)
    found = standings(stages, candidate)
    stopped = [e for s in found for e in s.rejections]
    if verdict == "approve" and stopped:
        first = stopped[0]
        raise PipelineError(
            f"candidate {candidate.id} was {first.action}ed in {first.env} ({first.record}): "
            "it cannot be approved"
        )
    identity = ledger.decision_id("candidate", verdict, settings.env, candidate.id, actor)
    if (done := ledger.find(storage, settings.env, identity)) is not None:
        return done
    return ledger.write(
        storage,
        Decision(
            kind="candidate",
            env=settings.env,
            model_name=candidate.model_name,
            decision=verdict,
            reasons=[reason.strip()],
            decision_id=identity,
            inputs=event_inputs(candidate, by=actor),
            started_at=ledger.now_iso(),
        ),
    )
