"""Alias moves and the GitOps pin as one transaction, recorded in the ledger.

Order: reserve the record's key → move the aliases → commit the new pin (message names the
record) → write the record. If an alias move fails, the moves made are undone and nothing is
committed; if the commit fails, the aliases go back to where they were. Either way a ``failed``
record says what happened, and the error reaches the caller (the step can be re-run).
"""

from __future__ import annotations

from typing import Any

from pipelines.decisions import ledger
from pipelines.decisions.gitops import GitCredentials, GitOpsRepo
from pipelines.decisions.intent import (
    Intent,
    clear_intent,
    landed,
    outcome,
    read_intent,
    write_intent,
)
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.errors import PipelineError
from pipelines.ml.registry import (
    CANDIDATE_TAG,
    MODEL_DIGEST_TAG,
    SERVING_IMAGE_DIGEST_TAG,
    SERVING_IMAGE_TAG,
    serving_version,
)
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage

ALIASES = ("champion", "challenger", "previous")


def credentials_of(settings: Settings) -> GitCredentials:
    """The GitOps push credentials the settings name (``MLOPS_GITOPS_TOKEN_FILE``,
    ``MLOPS_GITOPS_SSH_KEY_FILE``, ``MLOPS_GITOPS_KNOWN_HOSTS_FILE``): files mounted from a
    Secret."""
    return GitCredentials(
        token_file=settings.gitops_token_file,
        ssh_key_file=settings.gitops_ssh_key_file,
        known_hosts_file=settings.gitops_known_hosts_file,
    )


def repo_of(settings: Settings) -> GitOpsRepo:
    """The GitOps working copy the settings name, with its push credentials."""
    return GitOpsRepo(
        settings.gitops_path,
        settings.gitops_branch,
        settings.gitops_remote,
        credentials=credentials_of(settings),
    )


def current_aliases(client: Any, name: str) -> dict[str, int]:
    """alias → version of the registered model."""
    return {a: int(v) for a, v in client.get_registered_model(name).aliases.items()}


def set_aliases(client: Any, name: str, wanted: dict[str, int | None]) -> None:
    """Point each alias at its version (None: remove the alias)."""
    for alias, version in wanted.items():
        if version is None:
            if alias in current_aliases(client, name):
                client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, str(version))


def pin_of(client: Any, name: str, version: int) -> ServingPin:
    """What serving runs for a registry version: the tags its package step set (and, for a
    version a candidate move registered, the serving image's digest: its pin names it).

    Raises:
        PipelineError: the version was never packaged (or its tags are not a valid pin).
    """
    tags = client.get_model_version(name, str(version)).tags or {}
    if SERVING_IMAGE_TAG not in tags or MODEL_DIGEST_TAG not in tags:
        raise PipelineError(
            f"{name} version {version} has no exported model archive (never packaged)",
            "re-run the package step of the run that registered it: "
            "mlops step package --run-id RUN_ID",
        )
    try:
        return ServingPin(
            image_tag=tags[SERVING_IMAGE_TAG],
            image_digest=tags.get(SERVING_IMAGE_DIGEST_TAG) or None,
            model_version=serving_version(tags, version),
            model_sha256=tags[MODEL_DIGEST_TAG],
        )
    except ValueError:
        raise PipelineError(
            f"{name} version {version}: its tags {SERVING_IMAGE_TAG} and {MODEL_DIGEST_TAG} "
            "do not form a valid pin",
            "re-run its package step",
        ) from None


def _candidate_of(client: Any, name: str, version: int | None) -> str | None:
    """The candidate registry version `version` is (its `CANDIDATE_TAG`), if any."""
    if version is None:
        return None
    return (client.get_model_version(name, str(version)).tags or {}).get(CANDIDATE_TAG)


def prepare(settings: Settings, storage: Storage, repo: GitOpsRepo) -> None:
    """Before a decision reads anything (under the decision lock): the working copy becomes the
    committed state, and an intent an interrupted decision left is reconciled
    (`pipelines.decisions.intent`)."""
    repo.sync()
    intent = read_intent(storage, settings.env)
    if intent is None:
        return
    client = mlflow_client(settings)
    name = settings.model_name
    completed = landed(intent, repo.pinned(settings.env), repo.head_message())
    set_aliases(client, name, intent.moves if completed else intent.restore)
    record = outcome(
        intent, completed, current_aliases(client, name), repo.head() if completed else None
    )
    if not storage.exists(record.key):  # (a kill after the record, before the intent cleared)
        ledger.write(storage, record)
    clear_intent(storage, settings.env)


def apply(
    settings: Settings,
    storage: Storage,
    record: Decision,
    moves: dict[str, int | None],
    pin: ServingPin | None,
    message: str,
) -> Decision:
    """Move aliases and pin `pin` (serving image and model) for the env, all or nothing;
    write `record`. Call `prepare` first, under the decision lock.

    `message` may hold ``{record}``, replaced by the record's storage key. An intent is written
    before anything moves and cleared once the record is written: a decision killed in between
    is completed or undone by the next one's `prepare`.
    """
    client = mlflow_client(settings)
    name = settings.model_name
    repo = repo_of(settings)
    before = current_aliases(client, name)
    record = record.model_copy(
        update={
            "key": ledger.reserve_key(storage, record.env, record.kind),
            "aliases_before": before,
            "gitops_pin": pin,
        }
    )
    restore = {a: before.get(a) for a in moves}
    message = message.format(record=record.key)
    write_intent(
        storage, Intent(record=record, moves=moves, restore=restore, pin=pin, message=message)
    )
    try:
        set_aliases(client, name, moves)
    except Exception as error:
        set_aliases(client, name, restore)
        reason = repo.redact(str(error))  # the ledger and the log keep no credential
        _failed(storage, record, f"moving aliases failed and was undone: {reason}")
        raise PipelineError(f"{record.kind}: moving aliases failed (undone): {reason}") from None
    try:
        commit = repo.pin(record.env, pin, message) if pin else None
    except Exception as error:
        set_aliases(client, name, restore)
        reason = repo.redact(str(error))
        _failed(storage, record, f"GitOps commit failed; aliases moved back: {reason}")
        raise PipelineError(
            f"{record.kind}: the GitOps commit failed, aliases moved back: {reason}",
            "fix the GitOps repository, then re-run (the decision is re-made)",
        ) from None
    after = current_aliases(client, name)
    done = ledger.write(
        storage,
        record.model_copy(
            update={
                "aliases_after": after,
                "gitops_commit": commit or (repo.head() if pin else None),
            }
        ),
    )
    clear_intent(storage, record.env)
    return done


def _failed(storage: Storage, record: Decision, reason: str) -> None:
    """Record the failed attempt (under a new key) and clear its intent: it is undone."""
    clear_intent(storage, record.env)
    ledger.write(
        storage,
        record.model_copy(
            update={
                "decision": "failed",
                "reasons": [*record.reasons, reason],
                "key": "",
            }
        ),
    )


def rollback(
    settings: Settings,
    storage: Storage,
    to: int | None = None,
    reasons: list[str] | None = None,
    kind: ledger.Kind = "rollback",
    extra: dict[str, Any] | None = None,
) -> Decision:
    """``champion`` ← `to` (default: ``previous``), ``previous`` cleared; the env's overlay pins
    that version's model and serving image. Recorded; idempotent when `to` already serves."""
    client = mlflow_client(settings)
    name = settings.model_name
    repo = repo_of(settings)
    with repo.lock():
        prepare(settings, storage, repo)
        aliases = current_aliases(client, name)  # as reconciled
        target = to if to is not None else aliases.get("previous")
        if target is None:
            raise PipelineError(
                f"{name} has no 'previous' version to roll back to", "pass --to VERSION"
            )
        pin = pin_of(client, name, target)
        record = Decision(
            kind=kind,
            env=settings.env,
            model_name=name,
            decision="rollback",
            reasons=reasons or [f"by hand: champion back to version {target}"],
            decision_id=ledger.decision_id(
                kind, settings.env, name, aliases.get("champion"), target
            ),
            inputs={
                "from": aliases.get("champion"),
                "to": target,
                # the candidate rolled back away from: rejected for good (pipelines.candidates)
                "candidate": _candidate_of(client, name, aliases.get("champion")),
            },
            started_at=ledger.now_iso(),
            **(extra or {}),
        )
        if aliases.get("champion") == target and repo.pinned(settings.env) == pin:
            return ledger.write(
                storage,
                record.model_copy(
                    update={
                        "decision": "hold",
                        "reasons": [f"version {target} already serves; nothing to roll back"],
                        "aliases_before": aliases,
                        "aliases_after": aliases,
                    }
                ),
            )
        message = (
            f"rollback: {name} v{aliases.get('champion')} -> v{target} in {settings.env} "
            "(decision {record})"
        )
        return apply(
            settings, storage, record, {"champion": target, "previous": None}, pin, message
        )
