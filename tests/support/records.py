"""Decision records for tests: every required field filled, the ones a test cares about given."""

from __future__ import annotations

from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision


def make_decision(**changes: object) -> Decision:
    """A gate's ``promote`` record (env ``local``, model ``m``), with `changes` applied."""
    fields: dict[str, object] = {
        "kind": "gate",
        "env": "local",
        "model_name": "m",
        "decision": "promote",
        "reasons": ["r"],
        "decision_id": "q1",
        "started_at": ledger.now_iso(),
    }
    return Decision.model_validate({**fields, **changes})
