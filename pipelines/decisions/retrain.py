"""Drift-triggered retraining: after the monitor decides, start a training run when the champion
no longer fits the market and no rollback helped.

A retrain is *needed* when the monitor held (no rollback happened: none was due, or there was no
rollback target) and either

- **drift is sustained**: the monitor's live drift report (against the champion's training
  rows, judged by the gate's limit: `pipelines.reports.drift.drift_test`) found the dataset
  drifted in each of the latest ``MLOPS_MONITOR_WINDOWS`` judged windows, or
- **live quality is degraded**: the latest ``MLOPS_MONITOR_WINDOWS`` judged windows in a row.

A needed retrain is then either *triggered* (`pipelines.decisions.retrain_backends`) or
*suppressed*, with its reason: the env does not train (``MLOPS_TRAINS=false``), a run this
trigger started is still running, or the last trigger was less than
``MLOPS_RETRAIN_COOLDOWN_HOURS`` ago (read from the ledger, so it never loops). Either way a
ledger record of kind ``retrain`` says so; a trigger that fails is a ``failed`` record and an
error.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import BaseModel

from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.retrain_backends import Backend, backend_for, backend_of
from pipelines.errors import PipelineError
from pipelines.reports.store import SUMMARY
from pipelines.settings import Settings
from pipelines.storage import Storage

LIVE_DRIFT = "/live_drift/"
"""The monitor's drift reports (``reports/{env}/live_drift/…``), among a record's reports."""


class RetrainResult(BaseModel):
    """What the retrain check decided after a monitor run."""

    decision: str
    """``triggered`` or ``suppressed``."""
    reasons: list[str]
    record: str
    """The ledger record's key."""
    trigger: dict[str, Any] | None = None
    """The started run's handle (backend, pid or workflow name, where its output goes)."""


def drift_windows(
    records: list[Decision], champion: int | None, storage: Storage
) -> list[dict[str, Any]]:
    """The monitor's live drift per judged window of `champion`, oldest window first: for each
    window the latest report (a window judged again later, with more rows, supersedes)."""
    by_window: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.kind != "monitor" or record.inputs.get("champion") != champion:
            continue
        for prefix in record.reports:
            key = f"{prefix}/{SUMMARY}"
            if LIVE_DRIFT not in f"{prefix}/" or not storage.exists(key):
                continue
            summary = json.loads(storage.read_bytes(key))
            window = (summary.get("metadata") or {}).get("window") or [None, None]
            by_window[str(window[0])] = {
                "start": window[0],
                "end": window[1],
                "dataset_drift": bool(summary["dataset_drift"]),
                "drift_share": summary["drift_share"],
                "drifted_columns": summary["drifted_columns"],
                "report": prefix,
            }
    return [by_window[k] for k in sorted(by_window)]


def needed(
    settings: Settings, monitor: Decision, records: list[Decision], storage: Storage
) -> tuple[list[str], dict[str, Any]]:
    """Why the champion should be retrained (empty: it should not), and the evidence."""
    n = settings.monitor_windows
    windows = drift_windows(records, monitor.inputs.get("champion"), storage)[-n:]
    degraded = int(monitor.metrics.get("trailing_degraded", 0))
    # the monitor's rollback rule (a CUSUM, `pipelines.decisions.degradation`) said "roll back"
    # but held for want of a target; records written before it count degraded windows in a row
    verdict = monitor.metrics.get("degradation")
    due = bool(verdict["rollback"]) if verdict else degraded >= n
    evidence: dict[str, Any] = {
        "drift_windows": windows,
        "trailing_degraded": degraded,
        "degradation": verdict,
    }
    if monitor.decision != "hold":
        return [], evidence  # rolled back (or failed): the champion changed, or nothing was judged
    reasons = []
    if len(windows) == n and all(w["dataset_drift"] for w in windows):
        shares = ", ".join(f"{w['drift_share']:.2f}" for w in windows)
        reasons.append(
            f"live drift over the gate's limit in the latest {n} judged window(s) "
            f"(drift shares {shares})"
        )
    if due:
        reasons.append(
            "live quality degraded ("
            + (
                f"CUSUM {verdict['statistic']:.2f} over {verdict['judged']} judged windows"
                if verdict
                else f"the latest {degraded} judged windows"
            )
            + ") and no rollback target"
        )
    return reasons, evidence


def last_judged_day(monitor: Decision) -> date | None:
    """The last day of the latest judged window: the data a retrain must include (its run
    covers the ``MLOPS_LOOKBACK_DAYS`` up to it)."""
    judged = [w for w in monitor.metrics.get("windows", []) if w.get("judged")]
    if not judged:
        return None
    end = pd.Timestamp(judged[-1]["end"]) - pd.Timedelta(milliseconds=1)
    day: date = end.date()
    return day


def suppressed_because(
    settings: Settings, records: list[Decision], storage: Storage, now: datetime
) -> str | None:
    """Why a needed retrain must not start now (None: it may)."""
    if not settings.trains:
        return (
            f"env {settings.env} does not train (MLOPS_TRAINS=false): it serves candidates "
            "trained elsewhere"
        )
    triggered = [
        r
        for r in records
        if r.kind == "retrain" and r.decision == "triggered" and r.model_name == settings.model_name
    ]
    if not triggered:
        return None
    last = triggered[-1]
    since = now - datetime.fromisoformat(last.decided_at)
    if since < timedelta(hours=settings.retrain_cooldown_hours):
        return (
            f"cool-down: the last retrain was triggered {since.total_seconds() / 3600:.2f} h ago "
            f"({last.key}), within MLOPS_RETRAIN_COOLDOWN_HOURS={settings.retrain_cooldown_hours}"
        )
    handle = last.metrics.get("trigger") or {}
    if handle and backend_for(handle).running(handle, storage):
        where = handle.get("workflow") or f"pid {handle.get('pid')}"
        return f"the training run triggered at {last.decided_at} ({where}) is still running"
    return None


def consider(
    settings: Settings,
    storage: Storage,
    monitor_key: str | None,
    run_id: str | None = None,
    backend: Backend | None = None,
    now: datetime | None = None,
) -> RetrainResult | None:
    """After the monitor's decision (its record at `monitor_key`): trigger a training run when
    one is needed and allowed, record a suppressed trigger when it is needed but not allowed.
    None when no retrain is needed (nothing is recorded).

    Raises:
        PipelineError: the backend could not start the run (a ``failed`` record says why).
    """
    if monitor_key is None:
        return None
    monitor = Decision.model_validate_json(storage.read_bytes(monitor_key))
    records = ledger.read_all(storage, settings.env)
    reasons, evidence = needed(settings, monitor, records, storage)
    if not reasons:
        return None
    moment = now or datetime.now(UTC)
    why_not = suppressed_because(settings, records, storage, moment)
    end = last_judged_day(monitor)
    days = (end - timedelta(days=settings.lookback_days - 1), end) if end else None
    record = Decision(
        kind="retrain",
        env=settings.env,
        model_name=settings.model_name,
        decision="suppressed" if why_not else "triggered",
        reasons=[*reasons, why_not or "retrain: trigger a training run"],
        decision_id=ledger.decision_id("retrain", settings.env, monitor.key, moment.isoformat()),
        inputs={"champion": monitor.inputs.get("champion"), "monitor_record": monitor.key},
        metrics={**evidence, "days": [d.isoformat() for d in days] if days else None},
        thresholds={
            "trains": settings.trains,
            "cooldown_hours": settings.retrain_cooldown_hours,
            "windows": settings.monitor_windows,
            "backend": settings.retrain_backend,
        },
        reports=[w["report"] for w in evidence["drift_windows"]],
        run_id=run_id,
        started_at=moment.isoformat(timespec="milliseconds"),
        decided_at=moment.isoformat(timespec="milliseconds"),  # the cool-down counts from it
    )
    if why_not:
        done = ledger.write(storage, record)
        return RetrainResult(decision=done.decision, reasons=done.reasons, record=done.key)
    record = record.model_copy(update={"key": ledger.reserve_key(storage, settings.env, "retrain")})
    try:
        handle = (backend or backend_of(settings)).start(settings, days, record.key)
    except (PipelineError, OSError) as error:
        ledger.write(
            storage,
            record.model_copy(
                update={"decision": "failed", "reasons": [*reasons, str(error)], "key": ""}
            ),
        )
        raise PipelineError(f"retrain: {error}") from None
    done = ledger.write(
        storage, record.model_copy(update={"metrics": {**record.metrics, "trigger": handle}})
    )
    return RetrainResult(
        decision=done.decision, reasons=done.reasons, record=done.key, trigger=handle
    )
