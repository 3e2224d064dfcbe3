"""The live monitor (hourly on the cluster, ``mlops decisions monitor`` by hand).

Joins the champion's inference log with realized outcomes computed from freshly curated klines
(the label of a logged bar is known `horizon` bars later), judges live quality per window of
``monitor_window_hours`` against the champion's recorded evaluation, and reports drift of the
live features against the ``MLOPS_DRIFT_REFERENCE_DAYS`` days just before the window
(Evidently). It rolls back — ``champion`` ← ``previous``, the env's GitOps pin with it — only
when the sequential test below finds the champion degraded: one noisy window never triggers it.
Every run is a ledger record.

Only predictions the monitor can re-derive are judged (`pipelines.decisions.trust`): asked live,
with features equal to those recomputed from curated klines. The others are counted by reason in
the result and the record; they can neither force a rollback nor hold one back.

The rollback rule is a sequential test (`pipelines.decisions.degradation`): one-sided CUSUMs of
each judged window's ROC-AUC deficit (within symbol) and log-loss excess against the recorded
evaluation's, over the windows since the champion was promoted. Each window's ROC-AUC against the
recorded one minus ``monitor_max_auc_drop`` is still flagged in the record (``degraded``), for
reading.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.decisions import ledger
from pipelines.decisions.degradation import UNIT_SYMBOL_DAYS, WITHIN, Verdict, judge
from pipelines.decisions.inference import read_inference
from pipelines.decisions.ledger import Decision
from pipelines.decisions.promotion import current_aliases, rollback
from pipelines.decisions.publish import publish
from pipelines.decisions.retrain import RetrainResult
from pipelines.decisions.retrain import consider as consider_retrain
from pipelines.decisions.shadow import ShadowResult
from pipelines.decisions.shadow import shadow as judge_shadow
from pipelines.decisions.trust import (
    TrustReport,
    curated_features,
    feature_config_of,
    trust_reasons,
    trust_thresholds,
    verify,
)
from pipelines.ml.evaluation import roc_auc_within, window_starts
from pipelines.ml.features import FeatureConfig
from pipelines.ml.registry import serving_version
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage


def judge_windows(
    joined: pd.DataFrame, hours: float, min_rows: int, recorded_auc: float, max_drop: float
) -> list[dict[str, Any]]:
    """Per window of predictions (by bar time): rows, `symbol_days`, live ROC-AUC (pooled, and
    within each symbol: `roc_auc_within`, what the rollback test reads), log-loss, and whether
    it is judged (enough rows, both classes within a symbol) and degraded (pooled ROC-AUC below
    the recorded one by more than `max_drop`)."""
    from sklearn.metrics import log_loss, roc_auc_score

    if joined.empty:
        return []
    width = pd.Timedelta(hours=hours)
    windows = []
    for start, rows in joined.groupby(window_starts(joined["open_time"], hours), sort=True):
        y = rows["label"].to_numpy(dtype=int)
        p = rows["probability_up"].to_numpy(dtype=float)
        symbols = rows["symbol"].to_numpy() if "symbol" in rows else np.zeros(len(rows))
        within = roc_auc_within(y, p, symbols)
        judged = bool(len(rows) >= min_rows and np.isfinite(within))
        auc = float(roc_auc_score(y, p)) if y.min() != y.max() else None
        windows.append(
            {
                "start": str(start),
                "end": str(start + width),
                "rows": len(rows),
                "symbol_days": symbol_days(rows),
                "roc_auc": auc,
                "roc_auc_within_symbol": within if np.isfinite(within) else None,
                "log_loss": float(log_loss(y, p, labels=[0, 1])),
                "judged": judged,
                "degraded": bool(judged and auc is not None and auc < recorded_auc - max_drop),
            }
        )
    return windows


def symbol_days(rows: pd.DataFrame) -> float:
    """The evidence in a window's rows: the hours each symbol's rows touch, summed over the
    symbols, in days (a whole day of six symbols: 6.0; of two symbols' first six hours: 0.5).
    Counting hours, not rows, a serving log that holds every fifth bar still covers its day."""
    hours = rows["open_time"].dt.floor("h")
    groups = rows["symbol"] if "symbol" in rows else pd.Series(0, index=rows.index)
    touched = pd.DataFrame({"symbol": groups.to_numpy(), "hour": hours.to_numpy()})
    return float(len(touched.drop_duplicates())) / 24


def trailing_degraded(windows: list[dict[str, Any]]) -> int:
    """How many of the latest judged windows in a row are degraded."""
    count = 0
    for window in reversed([w for w in windows if w["judged"]]):
        if not window["degraded"]:
            break
        count += 1
    return count


def monitor(settings: Settings, storage: Storage, run_id: str | None = None) -> MonitorResult:
    """Judge the serving champion on live evidence and roll back when its live log-loss has
    degraded (`pipelines.decisions.degradation`); the decision is published to the env's
    Evidently project. Then a challenger in shadow is judged, and a retrain considered."""
    result = _decide(settings, storage, run_id)
    if not result.reused:
        publish(settings, storage, result.record)
    if result.decision != "rollback":  # a challenger in shadow is judged on the same run
        result.shadow = judge_shadow(settings, storage, run_id)
    if result.shadow is None or result.shadow.decision != "promote":  # else a new champion
        # asked again when the decision is reused too: a cool-down or a run may have ended since
        result.retrain = consider_retrain(settings, storage, result.record, run_id)
    return result


def _decide(settings: Settings, storage: Storage, run_id: str | None) -> MonitorResult:
    client = mlflow_client(settings)
    name, env = settings.model_name, settings.env
    aliases = current_aliases(client, name)
    champion = aliases.get("champion")
    started = ledger.now_iso()
    if champion is None:
        return MonitorResult(decision="hold", reasons=[f"{name} has no champion yet"], record=None)
    tags = client.get_model_version(name, str(champion)).tags or {}
    recorded_metrics = json.loads(tags.get("eval_metrics", "{}"))
    recorded = recorded_metrics.get("roc_auc")
    recorded_within = recorded_metrics.get(WITHIN)
    recorded_log_loss = recorded_metrics.get("log_loss")
    features = tags.get("features", "").split(",")
    log = read_inference(storage, env, str(serving_version(tags, champion))).to_pandas()
    thresholds = {
        "window_hours": settings.monitor_window_hours,
        "windows": settings.monitor_windows,
        "max_auc_drop": settings.monitor_max_auc_drop,
        "min_rows": settings.monitor_min_rows,
        "recorded_roc_auc": recorded,
        "recorded_roc_auc_within_symbol": recorded_within,
        "recorded_log_loss": recorded_log_loss,
        "auc_sd": settings.monitor_auc_sd,
        "log_loss_sd": settings.monitor_log_loss_sd,
        "unit_symbol_days": UNIT_SYMBOL_DAYS,
        "cusum_threshold": settings.monitor_cusum_threshold,
        "drift_calibration": tags.get("drift_calibration"),
    }
    keyed = (
        log.dropna(subset=["symbol", "open_time"])
        if {"symbol", "open_time", "timestamp"} <= set(log.columns)
        else pd.DataFrame()
    )
    windows: list[dict[str, Any]] = []
    reports: list[str] = []
    metrics: dict[str, Any] = {"logged_rows": len(log), "keyed_rows": len(keyed)}
    trust = TrustReport(keyed_rows=len(keyed))
    if not keyed.empty and recorded is not None:
        symbols = set(settings.symbols) | {s for s in tags.get("symbols", "").split(",") if s}
        config = feature_config_of(storage, tags)
        trusted, trust = verify(storage, keyed, features, config, settings.interval, symbols)
        joined = trusted.dropna(subset=["label"])
        metrics["joined_rows"] = len(joined)
        windows = judge_windows(
            joined,
            settings.monitor_window_hours,
            settings.monitor_min_rows,
            float(recorded),
            settings.monitor_max_auc_drop,
        )
        reports = _reports(
            settings, storage, joined, windows, tags, features, str(champion), config
        )
    metrics["trust"] = trust.model_dump()
    thresholds.update(trust_thresholds())
    degraded = trailing_degraded(windows)
    verdict: Verdict | None = None
    why = "hold"  # the verdict's line for the record
    if windows and recorded is not None and recorded_log_loss is not None:
        evaluation = {"log_loss": float(recorded_log_loss)}
        if recorded_within is not None and math.isfinite(float(recorded_within)):
            evaluation[WITHIN] = float(recorded_within)
        verdict = judge(windows, evaluation, settings)
        why = verdict.reason(evaluation)
    metrics.update(
        {
            "windows": windows,
            "trailing_degraded": degraded,
            "degradation": verdict.model_dump() if verdict else None,
        }
    )
    last = windows[-1]["start"] if windows else None
    due = bool(verdict and verdict.rollback)  # a due rollback is never a reused hold
    identity = ledger.decision_id("monitor", env, name, champion, last, len(windows), degraded, due)
    if (done := ledger.find(storage, env, identity)) is not None:
        return _result(done, reused=True)
    judged = sum(1 for w in windows if w["judged"])
    if verdict is not None and verdict.rollback and aliases.get("previous") is not None:
        reasons = [why, *trust_reasons(trust)]
        record = rollback(
            settings,
            storage,
            reasons=reasons,
            kind="monitor",
            extra={
                "metrics": metrics,
                "thresholds": thresholds,
                "reports": reports,
                "run_id": run_id,
            },
        )
        return _result(record)
    reasons = [f"{judged} judged window(s), rollback once {settings.monitor_windows} are; " + why]
    if verdict is not None and verdict.rollback:
        reasons = [f"{why}, but there is no 'previous' to roll back to: hold"]
    if recorded is None:
        reasons = [f"version {champion} has no recorded ROC-AUC to compare with: hold"]
    elif recorded_log_loss is None:
        reasons = [f"version {champion} has no recorded log-loss to compare with: hold"]
    elif keyed.empty:
        reasons = ["no logged predictions with symbol and open_time yet: hold"]
    elif not trust.trusted_rows:
        reasons = [
            f"no trusted prediction among the {len(keyed)} with symbol and open_time "
            f"({trust.untrusted_rows} untrusted, {trust.pending_rows} waiting for their bars "
            "to be curated): hold"
        ]
    reasons += trust_reasons(trust)
    record = Decision(
        kind="monitor",
        env=env,
        model_name=name,
        decision="hold",
        reasons=reasons,
        decision_id=identity,
        inputs={"champion": champion, "previous": aliases.get("previous")},
        metrics=metrics,
        thresholds=thresholds,
        reports=reports,
        aliases_before=aliases,
        aliases_after=aliases,
        run_id=run_id,
        started_at=started,
    )
    return _result(ledger.write(storage, record))


def _reports(
    settings: Settings,
    storage: Storage,
    joined: pd.DataFrame,
    windows: list[dict[str, Any]],
    tags: dict[str, str],
    features: list[str],
    version: str,
    config: FeatureConfig | None,
) -> list[str]:
    """Evidently: live quality of the latest judged window, and drift of its features against
    the ``MLOPS_DRIFT_REFERENCE_DAYS`` days just before it (features recomputed from curated
    bars, `config`)."""
    from pipelines.reports.drift import data_drift, drift_features, drift_test
    from pipelines.reports.quality import quality_report

    judged = [w for w in windows if w["judged"]]
    if not judged:
        return []
    start = pd.Timestamp(judged[-1]["start"])
    end = pd.Timestamp(judged[-1]["end"])
    latest = joined[(joined["open_time"] >= start) & (joined["open_time"] < end)]
    from pipelines.reports.calibration import Calibration, load, statistic_checks

    key = tags.get("drift_calibration")
    calibrated, days = None, settings.drift_reference_days
    calibration: Calibration | None = None
    if key:
        calibration = load(storage, key)
        calibrated = calibration.thresholds("monitor")
        days = calibration.reference_days or days  # the reference its thresholds are for
    window: dict[str, Any] = {"window": [str(start), str(end)], "drift_calibration": key}
    quality = quality_report(
        latest.assign(label=latest["label"].astype(int)),
        storage=storage,
        env=settings.env,
        model_version=version,
        metadata=window,
    )
    out = [quality.prefix]
    # the drift reference: the days before the window (the calibration's, else
    # MLOPS_DRIFT_REFERENCE_DAYS), their features recomputed from the curated bars
    names = [f for f in drift_features(features) if f in latest.columns]
    first = start - pd.Timedelta(days=days)
    symbols = sorted(str(s) for s in latest["symbol"].unique())
    reference = (
        curated_features(storage, symbols, settings.interval, config, first, start)
        if config is not None and names
        else pd.DataFrame()
    )
    usable = [f for f in names if f in reference.columns and reference[f].notna().any()]
    if names and usable == names and np.all([latest[f].notna().any() for f in names]):
        test = drift_test(settings, calibrated)
        used = calibration if test["column_thresholds"] else None  # calibrated PSI only
        drift = data_drift(
            reference,
            latest,
            names,
            storage=storage,
            env=settings.env,
            kind="live_drift",
            model_version=version,
            metadata={**window, "reference": [str(first), str(start)]},
            statistics=statistic_checks(used, "monitor", reference, latest, names),
            **test,  # no workspace: published with the decision
        )
        out.append(drift.prefix)
    return out


class MonitorResult(BaseModel):
    """The monitor step's result: hold or rollback, its reasons and where its evidence is."""

    decision: str
    reasons: list[str]
    record: str | None
    """The ledger record's key (None when there is nothing to judge yet)."""
    reports: list[str] = []
    gitops_commit: str | None = None
    aliases: dict[str, int] = {}
    reused: bool = False
    retrain: RetrainResult | None = None
    """A training run triggered (or suppressed) after this decision; None: none was needed."""
    trust: TrustReport | None = None
    """Logged predictions judged (trusted) and left out (untrusted, by reason); None in records
    written before the monitor checked them."""
    shadow: ShadowResult | None = None
    """The challenger-in-shadow decision of the same run (`pipelines.decisions.shadow`)."""


def _result(record: Decision, reused: bool = False) -> MonitorResult:
    return MonitorResult(
        decision=record.decision,
        reasons=record.reasons,
        record=record.key,
        reports=record.reports,
        gitops_commit=record.gitops_commit,
        aliases=record.aliases_after or record.aliases_before,
        reused=reused,
        trust=TrustReport.model_validate(record.metrics["trust"])
        if "trust" in record.metrics
        else None,
    )
