"""The canary's live quality, for Argo Rollouts' analysis (``mlops decisions analyze``).

During a canary (platform/base/serving/rollout.yaml) the new model version serves a share of
the traffic and logs its predictions under its own version (``inference/{env}/{version}/``).
This judges exactly those rows the way the monitor judges the champion — the same trust check
(`pipelines.decisions.trust.verify`: only live predictions whose features match the curated
klines count), the same windows and threshold (`pipelines.decisions.monitor.judge_windows`:
live ROC-AUC against the version's recorded evaluation, ``monitor_max_auc_drop``,
``monitor_min_rows``) — and answers for one analysis measurement:

- ``degraded``: the latest judged window is below the recorded ROC-AUC by more than the allowed
  drop (a canary gets no second window: it is not serving everyone yet);
- ``pass``: judged windows exist and the latest is not degraded;
- ``inconclusive``: nothing to judge yet (no recorded ROC-AUC, no trusted row with a realized
  outcome, or no window with ``monitor_min_rows`` rows of both classes).

It decides nothing and writes nothing to storage. A person reads the exit code
(`CanaryVerdict.exit_code`); the Rollout's analysis reads the verdict pushed to the Pushgateway
(`push_verdict`, ``mlops decisions analyze --push``) as the gauge ``mlops_canary_verdict``
(`VERDICT_VALUES`), because Argo Rollouts' job provider turns an exit code into Successful or
Failed only, while a Prometheus metric whose success and failure conditions are both false is
Inconclusive, which pauses the rollout (platform/base/serving/analysistemplate.yaml).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from pipelines import metrics as m
from pipelines.decisions.inference import read_inference
from pipelines.decisions.monitor import judge_windows, trailing_degraded
from pipelines.decisions.trust import TrustReport, feature_config_of, verify
from pipelines.errors import PipelineError
from pipelines.exposition import Update, push
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage

EXIT_CODES = {"pass": 0, "degraded": 3, "inconclusive": 4}
"""The command's exit code per verdict (1 and 2 stay the CLI's codes for an error and for a
usage error)."""
VERDICT_VALUES = {"pass": 1.0, "inconclusive": 0.0, "degraded": -1.0}
"""The value of the pushed ``mlops_canary_verdict`` gauge per verdict: the AnalysisTemplate's
``live-quality`` metric succeeds on 1, fails on -1, and is inconclusive on 0 or no fresh push."""


class CanaryVerdict(BaseModel):
    """One analysis measurement of a canary model version."""

    verdict: Literal["pass", "degraded", "inconclusive"]
    model_version: str
    reasons: list[str]
    recorded_roc_auc: float | None = None
    logged_rows: int = 0
    joined_rows: int = 0
    """Trusted rows whose outcome is realized (what the windows are made of)."""
    windows: list[dict[str, Any]] = []
    trust: TrustReport = TrustReport()
    thresholds: dict[str, Any] = {}

    @property
    def exit_code(self) -> int:
        """What ``mlops decisions analyze`` exits with (`EXIT_CODES`)."""
        return EXIT_CODES[self.verdict]


def analyze(settings: Settings, storage: Storage, version: str) -> CanaryVerdict:
    """Judge model `version` of ``settings.model_name`` on its own logged predictions.

    Raises:
        PipelineError: `version` is not a version number, or the registry has no such version.
    """
    if not version.isdecimal() or int(version) < 1:
        raise PipelineError(
            f"--version {version!r}: a model version is a positive integer (the pinned "
            "MLOPS_MODEL_VERSION; 'unreleased' means the env has no model pinned yet)"
        )
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    try:
        tags = client.get_model_version(settings.model_name, version).tags or {}
    except MlflowException as error:
        raise PipelineError(
            f"{settings.model_name} version {version} cannot be read from the registry "
            f"({error.error_code}): check the version and MLFLOW_TRACKING_URI"
        ) from None
    recorded = json.loads(tags.get("eval_metrics", "{}")).get("roc_auc")
    thresholds = {
        "window_hours": settings.monitor_window_hours,
        "min_rows": settings.monitor_min_rows,
        "max_auc_drop": settings.monitor_max_auc_drop,
    }
    verdict = CanaryVerdict(
        verdict="inconclusive",
        model_version=version,
        reasons=[],
        recorded_roc_auc=recorded,
        thresholds=thresholds,
    )
    if recorded is None:
        verdict.reasons = [f"version {version} has no recorded ROC-AUC to compare with"]
        return verdict
    log = read_inference(storage, settings.env, version).to_pandas()
    verdict.logged_rows = len(log)
    keyed = (
        log.dropna(subset=["symbol", "open_time"])
        if {"symbol", "open_time", "timestamp"} <= set(log.columns)
        else pd.DataFrame()
    )
    if keyed.empty:
        verdict.reasons = [f"version {version} has no logged prediction with symbol and bar yet"]
        return verdict
    symbols = set(settings.symbols) | {s for s in tags.get("symbols", "").split(",") if s}
    features = tags.get("features", "").split(",")
    config = feature_config_of(storage, tags)
    trusted, verdict.trust = verify(storage, keyed, features, config, settings.interval, symbols)
    joined = trusted.dropna(subset=["label"])
    verdict.joined_rows = len(joined)
    verdict.windows = judge_windows(
        joined,
        settings.monitor_window_hours,
        settings.monitor_min_rows,
        float(recorded),
        settings.monitor_max_auc_drop,
    )
    judged = [w for w in verdict.windows if w["judged"]]
    floor = float(recorded) - settings.monitor_max_auc_drop
    if not judged:
        verdict.reasons = [
            f"too little evidence: {len(joined)} trusted row(s) with a realized outcome "
            f"({verdict.trust.trusted_rows} trusted, {verdict.trust.untrusted_rows} untrusted, "
            f"{verdict.trust.pending_rows} pending), no window of {settings.monitor_window_hours} "
            f"h with {settings.monitor_min_rows} rows of both classes"
        ]
        return verdict
    latest = judged[-1]
    if trailing_degraded(verdict.windows) >= 1:
        verdict.verdict = "degraded"
        verdict.reasons = [
            f"live ROC-AUC {latest['roc_auc']:.4f} over {latest['rows']} rows (window from "
            f"{latest['start']}) is below {floor:.4f} (recorded {recorded:.4f} - "
            f"{settings.monitor_max_auc_drop})"
        ]
    else:
        verdict.verdict = "pass"
        verdict.reasons = [
            f"live ROC-AUC {latest['roc_auc']:.4f} over {latest['rows']} rows (window from "
            f"{latest['start']}) is at or above {floor:.4f}"
        ]
    return verdict


def push_verdict(settings: Settings, verdict: CanaryVerdict) -> str:
    """Push `verdict` as ``mlops_canary_verdict{model_version=…}`` to the Pushgateway (job
    ``mlops-canary``, grouped by model version: each analysis of a version replaces the last, and
    the Pushgateway's own ``push_time_seconds`` of the group tells the analysis how fresh it is).
    Returns the Pushgateway's URL.

    Raises:
        PipelineError: no Pushgateway is configured, or the push failed (the Rollout's analysis
            Job then fails, which aborts the canary: a verdict that did not arrive is no pass).
    """
    url = settings.metrics_pushgateway
    if not url:
        raise PipelineError(
            "--push needs a Pushgateway: set MLOPS_METRICS_PUSHGATEWAY (on the cluster the "
            "canary-analysis-env ConfigMap carries it), or drop --push to read the exit code"
        )
    update = Update().set(
        m.CANARY_VERDICT, VERDICT_VALUES[verdict.verdict], model_version=verdict.model_version
    )
    try:
        push(url, m.PUSHGATEWAY_JOBS["canary"], {"model_version": verdict.model_version}, update)
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise PipelineError(
            f"the verdict could not be pushed to {url} ({type(error).__name__}: {error}): check "
            "MLOPS_METRICS_PUSHGATEWAY and that the Pushgateway is up"
        ) from None
    return url
