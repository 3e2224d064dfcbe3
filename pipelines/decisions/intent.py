"""Write-ahead intents: what a promotion or rollback is about to do, written before it moves
anything, so a decision killed half-way (``kill -9``, an evicted pod) is reconciled by the next
one instead of leaving registry, GitOps pin and ledger disagreeing.

`apply` (`pipelines.decisions.promotion`) writes the intent, moves the aliases, commits and pushes
the pin, writes the ledger record, then clears the intent. `reconcile` runs under the decision
lock before any decision reads the aliases. With an intent left over, it looks at the GitOps
repository's **committed** state (the remote's, when there is one), never the working copy:

- the pin the intent names is committed, by a commit naming the intent's record: the decision
  happened; the aliases are set to its target and its ledger record is written (completed);
- otherwise it did not: the aliases go back to where they were, and a ``failed`` record says the
  decision was interrupted and undone. The next decision asks the question afresh.
"""

from __future__ import annotations

from pydantic import BaseModel

from pipelines import layout
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.storage import Storage


class Intent(BaseModel):
    """One decision in flight: its record (key reserved) and every change it will make."""

    record: Decision
    moves: dict[str, int | None]
    """Alias → version (None: remove) the decision sets."""
    restore: dict[str, int | None]
    """Alias → version before it (what undoing sets back)."""
    pin: ServingPin | None
    message: str
    """The GitOps commit message (names the record's key)."""


def write_intent(storage: Storage, intent: Intent) -> None:
    """Record `intent` before anything moves (replacing none: call `reconcile` first)."""
    storage.write_bytes(
        layout.decision_intent(intent.record.env), intent.model_dump_json(indent=2).encode()
    )


def read_intent(storage: Storage, env: str) -> Intent | None:
    """The intent left in `env`, if any."""
    key = layout.decision_intent(env)
    if not storage.exists(key):
        return None
    return Intent.model_validate_json(storage.read_bytes(key))


def clear_intent(storage: Storage, env: str) -> None:
    """The decision is recorded (or undone): nothing is in flight any more."""
    storage.delete(layout.decision_intent(env))


def landed(intent: Intent, pinned: ServingPin | None, head_message: str) -> bool:
    """Whether the intent's GitOps commit is the committed state: its pin is what the overlay
    holds and the head commit names its record (a pin equal by chance does not count)."""
    return intent.pin is not None and pinned == intent.pin and intent.record.key in head_message


def outcome(
    intent: Intent, completed: bool, aliases: dict[str, int], commit: str | None
) -> Decision:
    """The ledger record that closes `intent`: the decision as made, or a ``failed`` one."""
    record = intent.record
    if completed:
        return record.model_copy(
            update={
                "aliases_after": aliases,
                "gitops_commit": commit,
                "reasons": [
                    *record.reasons,
                    "recorded by reconciliation: the decision was interrupted after its "
                    "GitOps commit landed",
                ],
            }
        )
    return record.model_copy(
        update={
            "decision": "failed",
            "aliases_after": aliases,
            "reasons": [
                *record.reasons,
                "interrupted before its GitOps commit landed; reconciliation moved the aliases "
                "back and committed nothing",
            ],
        }
    )
