"""A recorded decision, published to the env's Evidently Workspace project
(`pipelines.reports.workspace`): its reports with its outcome, and one ``decision`` snapshot.

Publishing comes after the ledger record and the GitOps commit: the decision stands whether or
not its dashboard entry could be written, so a failure here is reported on stderr, never raised.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from pipelines.decisions.ledger import Decision
from pipelines.reports.store import SUMMARY
from pipelines.reports.workspace import DecisionFacts, publish_decision
from pipelines.settings import Settings
from pipelines.storage import Storage


def models_compared(record: Decision) -> str:
    """Which model versions the decision weighed, in words."""
    inputs = record.inputs
    if record.kind in ("gate", "shadow"):
        return f"challenger v{inputs.get('challenger')} vs champion v{inputs.get('champion')}"
    if "to" in inputs:
        return f"champion v{inputs.get('from')} -> v{inputs.get('to')}"
    return f"champion v{inputs.get('champion')} (live)"


def _summaries(storage: Storage, record: Decision) -> list[dict[str, Any]]:
    found = []
    for prefix in record.reports:
        key = f"{prefix}/{SUMMARY}"
        if storage.exists(key):
            found.append(json.loads(storage.read_bytes(key)))
    return found


def facts_of(storage: Storage, record: Decision) -> tuple[DecisionFacts, list[str]]:
    """The dashboard's view of `record`, and the features its drift reports tested."""
    drifts = [s for s in _summaries(storage, record) if "drift_share" in s]
    share = record.metrics.get("drift_share")
    if share is None and drifts:
        share = drifts[0]["drift_share"]
    if record.kind == "gate":
        auc = (record.metrics.get("champion") or {}).get("roc_auc")
    else:
        auc = record.thresholds.get("recorded_roc_auc")
    features = [c["column"] for c in drifts[0]["columns"]] if drifts else []
    facts = DecisionFacts(
        env=record.env,
        step=record.kind,
        outcome=record.decision,
        record=record.key,
        decided_at=datetime.fromisoformat(record.decided_at or record.started_at),
        models_compared=models_compared(record),
        drift_share=share,
        drift_by_kind={
            str(d["kind"]): (float(d["drift_share"]), len(d["drifted_columns"])) for d in drifts
        },
        champion_eval_roc_auc=auc,
        reports=list(record.reports),
    )
    return facts, features


def publish(settings: Settings, storage: Storage, record_key: str | None) -> list[str]:
    """Publish the decision recorded at `record_key` (None: nothing was decided); returns the
    runs added (empty when publishing failed, with the reason on stderr)."""
    from pipelines.reports.drift import drift_options

    if record_key is None:
        return []
    try:
        record = Decision.model_validate_json(storage.read_bytes(record_key))
        facts, features = facts_of(storage, record)
        options = drift_options(settings)
        return publish_decision(storage, facts, options["workspace"], options["project"], features)
    except Exception as error:  # the decision stands; its dashboard entry is best effort
        print(
            f"warning: decision {record_key} not published to the Evidently workspace: "
            f"{error.__class__.__name__}: {error}",
            file=sys.stderr,
        )
        return []
