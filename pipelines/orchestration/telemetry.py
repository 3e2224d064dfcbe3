"""What a step's or a run's end tells the metrics (names from `pipelines.metrics`).

`step_recorded` is called by the runner each time it records a step's result (`mlops run` and
`mlops step` alike); `run_recorded` when `mlops run` ends. Locally everything goes to the
metrics textfile (`pipelines.exposition.MetricsFile`); with ``MLOPS_METRICS_PUSHGATEWAY`` set
(the cluster), what a pod alone knows — its rows, the quarantine share, and the decisions'
summary — is also pushed there, while Argo's template metrics count results and durations.

The decisions' figures are recomputed from the ledger by every decision step (gate, monitor):
the ledger is the source of truth and append-only, so the count of its records by outcome is a
real counter however often a step is retried, and a push replaces the whole summary.

Metrics never fail a step: a failure to write or push them is logged as a warning.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pipelines import metrics as m
from pipelines.exposition import MetricsFile, Update, push
from pipelines.orchestration.context import StepContext
from pipelines.settings import Settings

log = logging.getLogger(__name__)

ROWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "validate": (("rows_valid", "rows_quarantined", "rows_duplicate"), ("rows_valid",)),
    "features": ((), ("rows",)),
    "train": (("train_rows",), ()),
    "evaluate": (("rows",), ()),
}
"""Per step, the result keys whose sum is the rows read (in) and written (out)."""

DECIDING_STEPS = frozenset({"gate", "monitor"})
"""Steps whose result names a ledger record: they refresh the decisions' summary."""


def metrics_file(settings: Settings) -> MetricsFile:
    """The local metrics textfile (``MLOPS_METRICS_DIR``, default ``$MLOPS_HOME/metrics``)."""
    return MetricsFile(settings.metrics_dir or settings.home / "metrics")


def status_word(status: str) -> str:
    """A runner status (``succeeded``/``failed``) as Argo's (``Succeeded``/``Failed``)."""
    return {"succeeded": "Succeeded", "failed": "Failed"}.get(status, "Error")


def step_update(pipeline: str, step: str, body: dict[str, Any]) -> tuple[Update, Update]:
    """What a recorded step result changes: (what only the textfile keeps, what a pod pushes)."""
    labels = {"pipeline": pipeline, "step": step}
    counted = Update()
    status = status_word(str(body.get("status")))
    counted.inc(m.STEP_RESULT, pipeline=pipeline, step=step, status=status)
    counted.observe(m.STEP_DURATION, float(body.get("seconds", 0.0)), **labels)
    counted.set(m.STEP_RETRIES, max(int(body.get("attempts", 1)) - 1, 0), **labels)
    pushed = Update()
    if body.get("status") == "succeeded" and step in ROWS:
        for direction, keys in zip(("in", "out"), ROWS[step], strict=True):
            if keys:
                rows = sum(int(body.get(k) or 0) for k in keys)
                pushed.set(m.STEP_ROWS, rows, direction=direction, **labels)
    if body.get("status") == "succeeded" and step == "validate":
        bad = int(body.get("rows_quarantined") or 0)
        checked = bad + int(body.get("rows_valid") or 0)
        pushed.set(m.QUARANTINE_SHARE, bad / checked if checked else 0.0, pipeline=pipeline)
    return counted, pushed


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def decisions_update(records: list[Any]) -> Update:
    """The decisions' summary from the ledger's records (oldest first)."""
    update = Update()
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        counts[(record.kind, record.decision)] = counts.get((record.kind, record.decision), 0) + 1
    update.replace(m.DECISIONS, [({"kind": k, "decision": d}, n) for (k, d), n in counts.items()])
    gates = [r for r in records if r.kind == "gate"]
    drift = [r for r in gates if "drift_share" in r.metrics]
    drift_samples = [({"kind": "gate"}, float(drift[-1].metrics["drift_share"]))] if drift else []
    update.replace(m.DRIFT_SHARE, drift_samples)
    limits = [r for r in gates if "max_drift_share" in r.thresholds]
    update.replace(
        m.DRIFT_SHARE_LIMIT,
        [({"kind": "gate"}, float(limits[-1].thresholds["max_drift_share"]))] if limits else [],
    )
    monitors = [r for r in records if r.kind == "monitor" and r.metrics.get("windows")]
    windows: list[tuple[dict[str, str], float]] = []
    floor: list[tuple[dict[str, str], float]] = []
    if monitors:
        latest = monitors[-1]
        judged = [w for w in latest.metrics["windows"] if w.get("judged") and w.get("roc_auc")]
        keep = int(latest.thresholds.get("windows") or len(judged))
        for index, window in enumerate(reversed(judged[-keep:])):
            windows.append(({"window": str(index)}, float(window["roc_auc"])))
        recorded = latest.thresholds.get("recorded_roc_auc")
        if recorded is not None:
            drop = float(latest.thresholds.get("max_auc_drop") or 0.0)
            floor.append(({}, float(recorded) - drop))
    update.replace(m.LIVE_ROC_AUC, windows)
    update.replace(m.LIVE_ROC_AUC_FLOOR, floor)
    champion: list[tuple[dict[str, str], float]] = []
    for record in reversed(records):
        version = (record.aliases_after or record.aliases_before).get("champion")
        if version is not None:
            champion = [({"model": record.model_name}, float(version))]
            break
    update.replace(m.CHAMPION_VERSION, champion)
    created = champion_created(records, int(champion[0][1])) if champion else None
    update.replace(m.SERVING_MODEL_CREATED, [({}, created)] if created is not None else [])
    reached = [r for r in gates if r.decision in ("promote", "reject")]
    last = reached[-1] if reached else None
    stamp = _timestamp(last.decided_at or last.started_at) if last else None
    update.replace(m.TRAINING_LAST_SUCCESS, [({}, stamp)] if stamp is not None else [])
    return update


def champion_created(records: list[Any], version: int) -> float | None:
    """When registry version `version` became a candidate (Unix seconds): the creation time a
    candidate move into this env recorded, or the gate's promotion of it here."""
    for record in reversed(records):
        inputs, promoted = record.inputs, record.decision == "promote"
        if promoted and record.kind == "candidate" and inputs.get("version") == version:
            return _timestamp(str(inputs["created_at"]))
        if promoted and record.kind == "gate" and inputs.get("challenger") == version:
            return _timestamp(record.decided_at or record.started_at)
    return None


def _push(settings: Settings, job: str, grouping: dict[str, str], update: Update) -> None:
    if settings.metrics_pushgateway and (update.sets or update.replaced):
        push(settings.metrics_pushgateway, job, grouping, update)


def step_recorded(ctx: StepContext, step: str, body: dict[str, Any]) -> None:
    """Record a step's result in the metrics; never raises (a warning names what failed)."""
    try:
        pipeline = ctx.pipeline or "unknown"
        counted, pushed = step_update(pipeline, step, body)
        decided = Update()
        if step in DECIDING_STEPS and body.get("record"):
            from pipelines.decisions import ledger

            decided = decisions_update(ledger.read_all(ctx.storage, ctx.settings.env))
        metrics_file(ctx.settings).update(_merged(counted, pushed, decided))
        job = m.PUSHGATEWAY_JOBS
        _push(ctx.settings, job["steps"], {"pipeline": pipeline, "step": step}, pushed)
        _push(ctx.settings, job["decisions"], {}, decided)
    except Exception as error:  # metrics must never fail the pipeline
        log.warning("metrics of step %s not recorded: %s: %s", step, type(error).__name__, error)


def run_recorded(ctx: StepContext, pipeline: str, summary: dict[str, Any]) -> None:
    """Record a local run's end (Argo's workflow metrics on the cluster); never raises."""
    try:
        update = Update()
        status = status_word(str(summary.get("status")))
        update.inc(m.WORKFLOW_RESULT, pipeline=pipeline, status=status)
        update.set(m.WORKFLOW_DURATION, float(summary.get("seconds", 0.0)), pipeline=pipeline)
        metrics_file(ctx.settings).update(update)
    except Exception as error:
        log.warning(
            "metrics of run %s not recorded: %s: %s", ctx.run_id, type(error).__name__, error
        )


def _merged(*updates: Update) -> Update:
    merged = Update()
    for update in updates:
        merged.sets += update.sets
        merged.incs += update.incs
        merged.observations += update.observations
        merged.replaced.update(update.replaced)
    return merged
