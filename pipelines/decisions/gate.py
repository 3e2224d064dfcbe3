"""The gate: the training DAG's last step decides, from evidence, whether the new challenger
replaces the champion.

Both models are scored on the same latest out-of-sample window (the run's evaluation window).
Promote only when the challenger's ROC-AUC beats the champion's by at least
``gate_min_auc_delta`` AND the lower bound of a block-bootstrap interval of that difference is
above zero (better by more than noise), AND the features did not drift (Evidently) between the
challenger's training rows and the window. Otherwise reject, with each reason. Every decision is
a ledger record with its report; a promotion moves the aliases and the env's GitOps pin in one
transaction (`pipelines.decisions.promotion`). The same question asked twice is answered from
the ledger.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.decisions.promotion import apply, current_aliases, prepare, repo_of
from pipelines.decisions.publish import publish
from pipelines.errors import PipelineError
from pipelines.ml.dataset import DatasetInfo, read_dataset
from pipelines.ml.packaging import PackageResult
from pipelines.ml.registry import RegisterResult
from pipelines.ml.tracking import client as mlflow_client
from pipelines.ml.tracking import load_model_safely
from pipelines.ml.train import EvaluateResult
from pipelines.settings import Settings
from pipelines.storage import Storage


def block_bootstrap_auc_delta(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    block: int,
    samples: int,
    seed: int = 0,
) -> np.ndarray:
    """ROC-AUC(challenger) - ROC-AUC(champion) over `samples` moving-block resamples of the
    rows (in time order; blocks keep the overlap of labels that share a horizon together)."""
    from sklearn.metrics import roc_auc_score

    n = len(y)
    block = max(1, min(block, n))
    starts = np.arange(n - block + 1)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(samples):
        picks = rng.choice(starts, size=int(np.ceil(n / block)))
        idx = (picks[:, None] + np.arange(block)[None, :]).ravel()[:n]
        ys = y[idx]
        if ys.min() == ys.max():
            continue
        deltas.append(roc_auc_score(ys, challenger[idx]) - roc_auc_score(ys, champion[idx]))
    return np.asarray(deltas)


def _probabilities(settings: Settings, version: int, frame: pd.DataFrame) -> np.ndarray:
    model = load_model_safely(settings, f"models:/{settings.model_name}/{version}")
    return np.asarray(model.predict_proba(frame)[:, 1])


def compare(
    settings: Settings,
    rows: pd.DataFrame,
    features: list[str],
    champion: int,
    challenger: int,
    horizon: int,
) -> dict[str, Any]:
    """Both models on the same rows: metrics, the AUC difference and its bootstrap interval."""
    from sklearn.metrics import log_loss, roc_auc_score

    rows = rows.sort_values("open_time", kind="stable")
    y = rows["label"].to_numpy(dtype=int)
    if y.min() == y.max():
        raise PipelineError("the evaluation window has one class only; the gate cannot compare")
    p_new = _probabilities(settings, challenger, rows[features])
    p_old = _probabilities(settings, champion, rows[features])
    symbols = max(1, rows["symbol"].nunique())
    deltas = block_bootstrap_auc_delta(
        y, p_new, p_old, horizon * symbols, settings.gate_bootstrap_samples
    )
    alpha = 1 - settings.gate_confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    auc_new, auc_old = float(roc_auc_score(y, p_new)), float(roc_auc_score(y, p_old))
    return {
        "rows": len(rows),
        "challenger": {"roc_auc": auc_new, "log_loss": float(log_loss(y, p_new, labels=[0, 1]))},
        "champion": {"roc_auc": auc_old, "log_loss": float(log_loss(y, p_old, labels=[0, 1]))},
        "roc_auc_delta": auc_new - auc_old,
        "roc_auc_delta_interval": [float(low), float(high)],
        "bootstrap_samples": len(deltas),
    }


def gate(
    settings: Settings,
    storage: Storage,
    info: DatasetInfo,
    evaluated: EvaluateResult,
    registered: RegisterResult,
    packaged: PackageResult,
    run_id: str,
) -> GateResult:
    """Decide, record, and (on promote) move aliases and the GitOps pin; then publish the
    decision to the env's Evidently project. Returns the step's result: ``decision``,
    ``reasons``, ``report``, ``record`` and the evidence."""
    result = _decide(settings, storage, info, evaluated, registered, packaged, run_id)
    if not result.reused:
        publish(settings, storage, result.record)
    return result


def _decide(
    settings: Settings,
    storage: Storage,
    info: DatasetInfo,
    evaluated: EvaluateResult,
    registered: RegisterResult,
    packaged: PackageResult,
    run_id: str,
) -> GateResult:
    client = mlflow_client(settings)
    name, env = settings.model_name, settings.env
    challenger = registered.version
    pin = ServingPin(
        image_tag=packaged.image_tag,
        model_version=packaged.model_version,
        model_sha256=packaged.model_sha256,
    )
    repo = repo_of(settings)
    with repo.lock():
        prepare(settings, storage, repo)
        aliases = current_aliases(client, name)
        champion = aliases.get("champion")
        identity = ledger.decision_id("gate", env, name, challenger, champion, info.dataset_hash)
        if (done := ledger.find(storage, env, identity)) is not None:
            return _result(done, reused=True)
        record = Decision(
            kind="gate",
            env=env,
            model_name=name,
            decision="reject",
            reasons=[],
            decision_id=identity,
            run_id=run_id,
            started_at=ledger.now_iso(),
            inputs={
                "challenger": challenger,
                "champion": champion,
                "dataset_hash": info.dataset_hash,
                "window": [evaluated.eval_start, evaluated.eval_end],
                "bento": packaged.bento,
                "pin": pin.model_dump(),
            },
            thresholds={
                "min_auc_delta": settings.gate_min_auc_delta,
                "confidence": settings.gate_confidence,
                "max_drift_share": settings.gate_max_drift_share,
            },
        )
        if champion is None:
            reason = registered.decision or "no champion"
            return _result(ledger.write(storage, record.model_copy(update={"reasons": [reason]})))
        if champion == challenger:  # bootstrapped by register: serve it
            record = record.model_copy(
                update={
                    "decision": "promote",
                    "reasons": [f"bootstrap: {registered.decision or 'first champion'}"],
                }
            )
            message = f"gate: serve {name} v{challenger} in {env} (bootstrap; decision {{record}})"
            return _result(apply(settings, storage, record, {}, pin, message))
        rows = read_dataset(storage, info.prefix)
        start, end = pd.Timestamp(evaluated.eval_start), pd.Timestamp(evaluated.eval_end)
        window = rows[(rows["open_time"] >= start) & (rows["open_time"] <= end)]
        reference = rows[rows["open_time"] < start]
        evidence = compare(settings, window, info.features, champion, challenger, info.horizon)
        drift = _drift(settings, storage, reference, window, info, challenger)
        reasons, promote = _judge(settings, evidence, drift)
        record = record.model_copy(
            update={
                "decision": "promote" if promote else "reject",
                "reasons": reasons,
                "metrics": {
                    **evidence,
                    "drift_share": drift.drift_share,
                    "drifted_columns": drift.drifted_columns,
                },
                "reports": [drift.prefix],
            }
        )
        if not promote:
            return _result(ledger.write(storage, record))
        message = (
            f"gate: promote {name} v{challenger} over v{champion} in {env} (decision {{record}})"
        )
        moves: dict[str, int | None] = {"previous": champion, "champion": challenger}
        return _result(apply(settings, storage, record, moves, pin, message))


def _drift(
    settings: Settings,
    storage: Storage,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    info: DatasetInfo,
    challenger: int,
) -> Any:
    from pipelines.reports.drift import data_drift, drift_features, drift_test

    return data_drift(
        reference,
        window,
        drift_features(info.features),
        storage=storage,
        env=settings.env,
        kind="data_drift",
        model_version=str(challenger),
        metadata={"dataset_hash": info.dataset_hash, "decision": "gate"},
        # no workspace: it gets the report once decided, with the outcome (`.publish`)
        **drift_test(settings),
    )


def _judge(settings: Settings, evidence: dict[str, Any], drift: Any) -> tuple[list[str], bool]:
    delta = evidence["roc_auc_delta"]
    low, high = evidence["roc_auc_delta_interval"]
    reasons = []
    better = delta >= settings.gate_min_auc_delta and low > 0
    reasons.append(
        f"ROC-AUC {evidence['challenger']['roc_auc']:.4f} vs champion "
        f"{evidence['champion']['roc_auc']:.4f}: delta {delta:+.4f}, "
        f"{settings.gate_confidence:.0%} interval [{low:+.4f}, {high:+.4f}] — "
        + ("better by more than noise" if better else "not better by more than noise")
    )
    calm = drift.drift_share < settings.gate_max_drift_share
    reasons.append(
        f"data drift: {len(drift.drifted_columns)} of {len(drift.columns)} features drifted "
        f"(share {drift.drift_share:.2f}, limit {settings.gate_max_drift_share:.2f})"
        + (f": {', '.join(drift.drifted_columns)}" if drift.drifted_columns else "")
        + (" — below the limit" if calm else " — at or above the limit")
    )
    return reasons, better and calm


class GateResult(BaseModel):
    """The gate step's result: the decision, its reasons and where its evidence is."""

    decision: str
    reasons: list[str]
    report: str | None
    """The drift report's prefix (``reports/{env}/data_drift/…``)."""
    record: str | None
    """The ledger record's key."""
    gitops_commit: str | None
    aliases: dict[str, int]
    reused: bool
    """The same question was already answered: this is the recorded answer."""


def _result(record: Decision, reused: bool = False) -> GateResult:
    return GateResult(
        decision=record.decision,
        reasons=record.reasons,
        report=record.reports[0] if record.reports else None,
        record=record.key,
        gitops_commit=record.gitops_commit,
        aliases=record.aliases_after or record.aliases_before,
        reused=reused,
    )
