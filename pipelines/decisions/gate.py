"""The gate: the training DAG's last step decides, from evidence, whether the new challenger
replaces the champion.

Both models are scored on the same latest out-of-sample window (the run's evaluation window).
Promote only when the challenger's ROC-AUC beats the champion's by at least
``gate_min_auc_delta`` AND the lower bound of a block-bootstrap interval of that difference
(``MLOPS_GATE_CONFIDENCE``, `pipelines.decisions.bootstrap`) is above zero (better by more than
noise), AND the features did not drift (Evidently) between the days just before the window
(``MLOPS_DRIFT_REFERENCE_DAYS``) and the window, nor the market's volatility level
(`pipelines.reports.volatility`). Otherwise reject, with each reason. Every decision is a ledger
record with its report; a promotion moves the aliases and the env's GitOps pin in one
transaction (`pipelines.decisions.promotion`). The same question asked twice is answered from
the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.decisions import ledger
from pipelines.decisions.bootstrap import block_bootstrap_auc_delta, bootstrap_block
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.decisions.promotion import apply, current_aliases, prepare, repo_of
from pipelines.decisions.publish import publish
from pipelines.errors import PipelineError
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.packaging import PackageResult
from pipelines.ml.registry import RegisterResult
from pipelines.ml.rows import Selection
from pipelines.ml.tracking import client as mlflow_client
from pipelines.ml.tracking import load_model_safely
from pipelines.ml.train import EvaluateResult
from pipelines.reports.volatility import StatisticCheck, describe
from pipelines.settings import Settings
from pipelines.storage import Storage


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
    interval: str,
) -> dict[str, Any]:
    """Both models on the same rows (bars of `interval`): metrics, the AUC difference and its
    bootstrap interval."""
    rows = rows.sort_values("open_time", kind="stable")
    y = rows["label"].to_numpy(dtype=int)
    if y.min() == y.max():
        raise PipelineError("the evaluation window has one class only; the gate cannot compare")
    p_new = _probabilities(settings, challenger, rows[features])
    p_old = _probabilities(settings, champion, rows[features])
    block = bootstrap_block(horizon, interval, rows["symbol"].nunique())
    return compare_predictions(settings, y, p_new, p_old, block)


def compare_predictions(
    settings: Settings, y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, block: int
) -> dict[str, Any]:
    """The gate's evidence from both models' probabilities on the same rows (time order):
    metrics, the AUC difference and its block-bootstrap interval (``MLOPS_GATE_*``)."""
    from sklearn.metrics import log_loss, roc_auc_score

    deltas = block_bootstrap_auc_delta(y, p_new, p_old, block, settings.gate_bootstrap_samples)
    alpha = 1 - settings.gate_confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    auc_new, auc_old = float(roc_auc_score(y, p_new)), float(roc_auc_score(y, p_old))
    return {
        "rows": len(y),
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
                **calibrated_drift(settings, storage, client, info, evaluated, challenger),
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
        window, reference = gate_rows(settings, storage, info, evaluated)
        evidence = compare(
            settings, window, info.features, champion, challenger, info.horizon, info.interval
        )
        key = record.thresholds.get("drift_calibration")
        drift = _drift(settings, storage, reference, window, info, challenger, key)
        reasons, promote = judge(
            settings,
            evidence,
            drift.drifted_columns,
            len(drift.columns),
            drift.threshold,
            drift.statistics,
        )
        record = record.model_copy(
            update={
                "decision": "promote" if promote else "reject",
                "reasons": reasons,
                "metrics": {
                    **evidence,
                    "drift_share": drift.drift_share,
                    "drifted_columns": drift.drifted_columns,
                    "drift_statistics": [c.model_dump() for c in drift.statistics],
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


def gate_rows(
    settings: Settings, storage: Storage, info: DatasetInfo, evaluated: EvaluateResult
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluation window (the columns the models and the bootstrap need) and the drift
    reference: the ``MLOPS_DRIFT_REFERENCE_DAYS`` days just before the window (the latest of
    the challenger's training rows), with the drift-tested features, the symbol and the time
    (the volatility level compares each symbol with its last day)."""
    from pipelines.reports.drift import drift_features

    selection = Selection(storage, info.prefix)
    start, end = pd.Timestamp(evaluated.eval_start), pd.Timestamp(evaluated.eval_end)
    window = selection.between(["open_time", "symbol", "label", *info.features], start, end)
    first = start - pd.Timedelta(days=settings.drift_reference_days)
    reference = selection.between(
        ["open_time", "symbol", *drift_features(info.features)],
        first,
        start - pd.Timedelta(milliseconds=1),
        last=True,
    )
    return window, reference


def _drift(
    settings: Settings,
    storage: Storage,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    info: DatasetInfo,
    challenger: int,
    calibration_key: str | None,
) -> Any:
    from pipelines.reports.calibration import load, statistic_checks
    from pipelines.reports.drift import data_drift, drift_features, drift_test

    calibration = load(storage, calibration_key) if calibration_key else None
    calibrated = drift_test(settings, calibration.thresholds("gate") if calibration else None)
    tested = drift_features(info.features)
    used = calibration if calibrated["column_thresholds"] else None  # calibrated PSI only
    return data_drift(
        reference,
        window,
        tested,
        storage=storage,
        env=settings.env,
        kind="data_drift",
        model_version=str(challenger),
        metadata={
            "dataset_hash": info.dataset_hash,
            "decision": "gate",
            "drift_calibration": calibration_key,
            "reference_days": settings.drift_reference_days,
        },
        statistics=statistic_checks(used, "gate", reference, window, tested),
        # no workspace: it gets the report once decided, with the outcome (`.publish`)
        **calibrated,
    )


def calibrated_drift(
    settings: Settings,
    storage: Storage,
    client: Any,
    info: DatasetInfo,
    evaluated: EvaluateResult,
    challenger: int,
) -> dict[str, Any]:
    """Calibrate the challenger's drift thresholds on its training rows (the rows before the
    evaluation window: the latest whole days of them that fit in ``MLOPS_REFERENCE_ROWS``),
    store them beside the dataset, tag the version with their key; the record's thresholds name
    it (and how many rows it was calibrated on, of how many). The fixed threshold only with
    ``MLOPS_DRIFT_CALIBRATION=fixed`` or non-PSI."""
    from pipelines.reports.calibration import calibrate, decision_windows, store
    from pipelines.reports.drift import drift_features

    if settings.drift_calibration != "null" or (settings.drift_method or "") != "psi":
        return {"drift_threshold": settings.drift_threshold, "drift_method": settings.drift_method}
    training, before = Selection(storage, info.prefix).latest_days_before(
        ["open_time", "symbol", *drift_features(info.features)],
        pd.Timestamp(evaluated.eval_start),
        settings.reference_rows,
        last=True,
    )
    calibration = calibrate(
        training,
        drift_features(info.features),
        decision_windows(settings),
        settings.drift_false_alarm_rate,
        settings.drift_threshold,
        settings.drift_reference_days,
    )
    key = store(storage, info.prefix, calibration)
    client.set_model_version_tag(settings.model_name, str(challenger), "drift_calibration", key)
    return {
        "drift_calibration": key,
        "drift_calibration_method": calibration.method,
        "drift_false_alarm_rate": calibration.false_alarm_rate,
        "drift_calibration_rows": [len(training), before],
    }


def judge(
    settings: Settings,
    evidence: dict[str, Any],
    drifted_columns: list[str],
    columns: int,
    drift_limit: float,
    statistics: Sequence[StatisticCheck] = (),
) -> tuple[list[str], bool]:
    """The gate's rule: (reasons, promote). Promote when the challenger is better by more than
    noise, the share of drifted features is below `drift_limit` (calibrated: any drifted
    feature is drift) and none of the other drift `statistics` (the volatility level) drifted."""
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
    share = len(drifted_columns) / max(1, columns)
    calm = share < drift_limit and not any(s.drifted for s in statistics)
    reasons.append(
        f"data drift: {len(drifted_columns)} of {columns} features drifted"
        + (
            " (any feature over its calibrated threshold is drift)"
            if drift_limit * columns <= 1 + 1e-9
            else f" (share {share:.2f}, limit {drift_limit:.2f})"
        )
        + (f": {', '.join(drifted_columns)}" if drifted_columns else "")
        + (" — below the limit" if share < drift_limit else " — at or above the limit")
    )
    reasons += [describe(found) for found in statistics]
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
