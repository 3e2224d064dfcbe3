"""Settings from ``MLOPS_*`` environment variables (read once, then passed as values)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.intervals import SUPPORTED

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The source tree (``platform/`` manifests, the git commit a model is trained from)."""


def split_symbols(value: object) -> list[str]:
    """Accept ``"BTCUSDT,ETHUSDT"`` or a list; upper-case, strip, drop empties."""
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    symbols = [str(s).strip().upper() for s in items if str(s).strip()]
    if not symbols:
        raise ValueError("at least one symbol is required, e.g. BTCUSDT,ETHUSDT")
    bad = [s for s in symbols if not s.isalnum()]
    if bad:
        raise ValueError(f"symbols must be letters and digits only, got {bad}")
    return symbols


def known_interval(value: str) -> str:
    """`value` if the archive publishes that kline interval."""
    if value not in SUPPORTED:
        raise ValueError(f"unknown interval {value!r}; use one of {', '.join(SUPPORTED)}")
    return value


def stage_map(value: object) -> object:
    """A JSON object (the environment's text) or a mapping of env → storage URL."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"not a JSON object of env → storage URL: {error}") from None
    return value


Stages = Annotated[dict[str, str], BeforeValidator(stage_map)]
"""The promotion chain, env → storage URL in order (JSON text in the environment)."""
Interval = Annotated[str, AfterValidator(known_interval)]
"""A kline interval the archive publishes (``1m`` … ``1d``)."""
Symbols = Annotated[list[str], BeforeValidator(split_symbols)]
"""Symbols from ``"BTCUSDT,ETHUSDT"`` or a list: upper-cased, letters and digits only."""


class Settings(BaseSettings):
    """Everything configurable about a local or cluster run.

    Each field reads ``MLOPS_<FIELD>`` from the environment, e.g. ``MLOPS_HOME``.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Path(".mlops")
    """Root of local state: storage (unless ``storage_url`` says otherwise), MLflow DB, bentos."""

    env: str = Field(default="local", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    """Environment name; it keys reports, inference logs and decisions."""

    storage_url: str | None = None
    """Where the storage layout lives: a directory path, ``file://…`` or ``s3://bucket/prefix``.
    Default: ``$MLOPS_HOME/data``."""

    raw_storage_url: str | None = None
    """Optional separate root for ``raw/`` and ``quarantine/`` (e.g. the raw bucket)."""

    source_url: str = "https://data.binance.vision"
    """Archive root in the data.binance.vision layout: ``https://``, ``http://`` or ``file://``."""

    symbols: Annotated[Symbols, NoDecode] = Field(
        default=["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
    )
    """Symbols to fetch and train on (comma-separated in the environment). Six by default:
    each symbol adds independent evidence to every decision window, and with two the monitor
    could not see a volatility x2 day or a reversed signal in time (docs/decisions.md)."""

    interval: Interval = "1m"
    """Kline interval fetched from the archive."""

    lookback_days: int = Field(default=60, ge=1)
    """Days fetched when no ``--start`` is given (the range ends yesterday, UTC)."""

    model_name: str = "market-direction"
    """Registered model name in MLflow."""

    fetch_concurrency: int = Field(default=8, ge=1, le=64)
    """Downloads in flight at once."""

    fetch_max_attempts: int = Field(default=5, ge=1)
    """Attempts per request on connection errors, 5xx, 429/418 and truncated bodies."""

    fetch_backoff_initial: float = Field(default=0.5, ge=0)
    """First retry delay in seconds; doubles each attempt, with jitter."""

    fetch_backoff_max: float = Field(default=30.0, ge=0)
    """Largest delay between two attempts, in seconds."""

    fetch_max_retry_after: float = Field(default=300.0, ge=0)
    """Longest ``Retry-After`` honoured; a longer one fails the file instead of hanging."""

    fetch_timeout: float = Field(default=30.0, gt=0)
    """Seconds before a request is abandoned (then retried)."""

    step_retry_backoff: float = Field(default=2.0, ge=0)
    """First delay before the local runner retries a failed step; doubles per attempt."""

    fan_out_workers: int = Field(default=2, ge=1, le=32)
    """Processes the local runner runs a fan-out step's shards on (fetch, validate); on the
    cluster the stack's ``workflows.parallelism`` bounds the pods instead."""

    shard_by_month_after_days: int = Field(default=62, ge=1, le=3660)
    """A run longer than this many days fans out per symbol and calendar month (a backfill);
    shorter runs fan out per symbol."""

    metrics_dir: Path | None = None
    """Where the steps keep their metrics textfile (``mlops.prom``); default
    ``$MLOPS_HOME/metrics`` (pipelines/exposition.py)."""

    metrics_pushgateway: str | None = Field(default=None, pattern=r"^https?://[^/@\s]+(/\S*)?$")
    """Pushgateway the steps push their figures and the decisions' summary to (the cluster's,
    e.g. ``http://prometheus-pushgateway.monitoring.svc:9091``); none: the textfile only. No
    credential: a URL with a user or password is refused (the Pushgateway is reached on the
    cluster network only)."""

    quarantine_max_share: float = Field(default=0.01, ge=0, le=1)
    """Largest share of rows a day, or the run, may lose to quarantine before validate fails."""

    model_interval: Interval | None = None
    """Interval the model works at (curated bars are resampled); default: ``interval``."""

    horizon: int = Field(default=12, ge=1)
    """Label horizon in bars: is the close this many bars ahead above the current close?"""

    eval_days: float = Field(default=7.0, gt=0)
    """Length of the latest out-of-sample window (evaluation and promotion gate), in days."""

    cv_folds: int = Field(default=4, ge=1, le=20)
    """Walk-forward folds over the data before the evaluation window."""

    embargo_bars: int | None = Field(default=None, ge=0)
    """Bars dropped between train and test (default and minimum: ``horizon``)."""

    model_type: Literal["hist_gradient_boosting", "logistic_regression"] = "hist_gradient_boosting"
    """scikit-learn estimator of the pipeline."""

    model_params: dict[str, Any] = Field(default_factory=dict)
    """Hyperparameters (JSON in ``MLOPS_MODEL_PARAMS``) over the model type's defaults."""

    train_memory_mb: int = Field(default=512, ge=1)
    """Memory budget of the training rows, in MiB: each is estimated at
    `pipelines.ml.train.TRAIN_BYTES_PER_ROW` (the rows and the model's working copies of them).
    When the rows before the evaluation window need more, the model is trained on a random
    sample of as many as fit, spread evenly over the window (the train step's ``sampled_from``
    then says how many there were; the evaluation window is never sampled)."""

    reference_rows: int = Field(default=500_000, ge=1000)
    """Most training rows the gate holds for its drift calibration (what is before the
    evaluation window): the latest whole days that fit in this many. Below it, all rows are
    used (benchmarks/README.md, scale: the cost of the bound). The drift reference itself is
    the `drift_reference_days` before the window, bounded by their count."""

    fee_bps: float = Field(default=4.0, ge=0)
    """Cost of one round-trip trade of the naive strategy, in basis points."""

    min_train_rows: int = Field(default=500, ge=10)
    """Fewer labelled rows than this before the evaluation window is an error."""

    champion_min_roc_auc: float = Field(default=0.52, ge=0, le=1)
    """Quality floor for the first version to become ``champion`` when none exists."""

    mlflow_experiment: str | None = None
    """MLflow experiment name; default: the model name."""

    gitops_repo: Path | None = None
    """GitOps working copy whose ``platform/envs/<env>`` overlays promotion and rollback change;
    default ``$MLOPS_HOME/gitops`` (created from this checkout's ``platform/``)."""

    gitops_branch: str = "main"
    """Branch the decisions commit to."""

    gitops_remote: str | None = None
    """Remote to push each decision's commit to (none: commit locally only). Never put a
    credential in it: a URL with a password is refused; use one of the files below."""

    gitops_token_file: Path | None = None
    """File holding a token for HTTPS pushes (mounted from a Secret); git reads it through a
    credential helper, so it never appears in a URL, argv or a log line."""

    gitops_ssh_key_file: Path | None = None
    """SSH deploy key for pushes (mounted from a Secret, mode 0400)."""

    gitops_known_hosts_file: Path | None = None
    """known_hosts for the SSH remote (strict host key checking)."""

    gate_min_auc_delta: float = Field(default=0.0, ge=0)
    """Promote only if the challenger's ROC-AUC beats the champion's by at least this much…"""

    gate_confidence: float = Field(default=0.98, gt=0, lt=1)
    """…and the lower bound of this two-sided bootstrap interval of the difference is above 0
    (0.98: its lower bound is the 1% quantile; at 0.9 the backtest's gate promoted 12% of
    truly worse challengers, docs/decisions.md)."""

    gate_bootstrap_samples: int = Field(default=300, ge=50)
    """Block-bootstrap resamples of the evaluation window (blocks of 6 hours of bars,
    `pipelines.decisions.bootstrap.BLOCK_HOURS`)."""

    gate_max_drift_share: float = Field(default=0.5, gt=0, le=1)
    """Reject when this share (or more) of the features drifted between the days just before
    the evaluation window (`drift_reference_days`) and the window (uncalibrated drift only)."""

    drift_method: str | None = "psi"
    """Evidently stattest for every feature (empty: Evidently's choice by column). PSI, because
    Evidently's default for large samples (normed Wasserstein at 0.1) flags ordinary day-to-day
    volatility: on a stable synthetic market it marked 23-77% of the features as drifted, PSI at
    0.2 marked 0-8%, and both 77% after a regime change (README: drift)."""

    drift_threshold: float | None = 0.2
    """Threshold of that stattest (PSI 0.2: the customary "significant shift") where no
    calibration applies (``MLOPS_DRIFT_CALIBRATION=fixed``, a method other than PSI, or too
    little stable history)."""

    drift_calibration: Literal["null", "fixed"] = "null"
    """``null``: per-feature PSI thresholds calibrated on the model's stable history for
    `drift_false_alarm_rate` per decision (docs/decisions.md); ``fixed``: `drift_threshold` for
    every feature and `gate_max_drift_share` as the decision's line."""

    drift_false_alarm_rate: float = Field(default=0.01, gt=0, lt=0.5)
    """Target rate of drift alarms per decision on stable data (shared by the features)."""

    drift_reference_days: int = Field(default=7, ge=1, le=30)
    """The gate's and the monitor's drift reference: each window is compared with this many
    whole days just before it ("has the market changed recently?"), and calibrated the same
    way (docs/decisions.md)."""

    monitor_window_hours: float = Field(default=24.0, gt=0)
    """Live quality is judged per window of this many hours of predictions."""

    monitor_windows: int = Field(default=3, ge=1)
    """Roll back only once this many windows have been judged (never on one noisy one); the
    rollback itself is the CUSUM below (`pipelines.decisions.degradation`)."""

    monitor_max_auc_drop: float = Field(default=0.05, ge=0)
    """A window is flagged (``degraded`` in the record, for reading) when its live ROC-AUC is
    this far below the champion's recorded; the rollback does not use it."""

    monitor_auc_sd: float = Field(default=0.0307, gt=0)
    """Standard deviation of one window's live ROC-AUC within symbol below the recorded one for
    a healthy champion, stated for a window of two symbols' day: the unit of the ROC-AUC CUSUM,
    scaled by ``sqrt(2 / (symbols x window days))`` for the window at hand
    (`pipelines.decisions.degradation.units`; 0.0177 x sqrt(3) over the 1,200 windows of the
    backtest's 300 six-symbol ``healthy-champion`` tuning trials, seeds 0-299, of 2026-12-02,
    each recorded on its 7-day evaluation window, docs/decisions.md)."""

    monitor_log_loss_sd: float = Field(default=0.0185, gt=0)
    """Standard deviation of one window's live log-loss above the recorded one for a healthy
    champion, stated and scaled the same way: the unit of the log-loss CUSUM (0.0185, measured
    the same way; 0.0263 before the backtest recorded its champions on the 7-day evaluation
    window the platform uses)."""

    monitor_cusum_threshold: float = Field(default=3.5, gt=0)
    """Roll back when either CUSUM (ROC-AUC deficit, log-loss excess, each in its unit above)
    reaches this; their false-rollback rate is measured by the backtest."""

    monitor_min_rows: int = Field(default=100, ge=10)
    """Windows with fewer joined predictions are not judged."""

    trains: bool = True
    """Whether this env trains its own models: its training CronWorkflow runs and its gate
    creates candidates. ``false`` (staging and prod: stack config ``platform.trains``): the env
    serves candidates promoted from the stage before it (`pipelines.candidates`), its training
    CronWorkflow is suspended and its freshness alert watches the serving model's age. Only an
    env that trains has its monitor trigger a training run on sustained drift or degraded
    quality (docs/decisions.md, drift-triggered retraining)."""

    candidate_stages: Annotated[Stages, NoDecode] = Field(default_factory=dict)
    """The promotion chain, in order: env → its storage URL (JSON in ``MLOPS_CANDIDATE_STAGES``,
    e.g. ``{"dev": "s3://…-dev-curated/v1", "staging": …, "prod": …}``). A move into an env
    reads the other envs there (read only: every env's ledger; the candidate's record and
    artifacts in the env before it; the stacks grant exactly that, docs/deploy.md) and writes
    only its own storage, MLflow and GitOps overlay."""

    serving_repository: str | None = Field(
        default=None,
        pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9][a-z0-9._/-]*$",
    )
    """This env's ECR repository of the serving image (``MLOPS_SERVING_REPOSITORY``, e.g.
    ``111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-serving``, set by the stack config):
    where a candidate's image digest is resolved and a move checks it is present. Unset: the
    local stand-in in this env's storage (`pipelines.ml.images`)."""

    candidate_soak_hours: float = Field(default=24.0, ge=0)
    """A candidate moves into this env only after serving this many hours in the stage before
    it, with no rollback (``MLOPS_CANDIDATE_SOAK_HOURS``, per env in the stack config)."""

    candidate_requires_approval: bool = False
    """A move into this env also needs an approval in its ledger (``mlops candidates approve``;
    prod)."""

    retrain_cooldown_hours: float = Field(default=24.0, ge=0)
    """No second drift-triggered training run within this many hours of the last one (read
    from the ledger), so retraining never loops."""

    retrain_backend: Literal["local", "argo"] = "local"
    """How a drift-triggered training run starts: ``local``, a detached ``mlops run`` on this
    machine; ``argo``, a Workflow created through the Kubernetes API from the training
    CronWorkflow (the rendered monitor CronWorkflow sets it)."""

    retrain_cron_workflow: str = Field(
        default="mlops-training", pattern=r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$"
    )
    """The training CronWorkflow whose ``workflowSpec`` an ``argo`` retrain submits."""

    retrain_namespace: str = Field(default="mlops", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """The namespace of that CronWorkflow and of the Workflow created from it."""

    shadow_alpha: float = Field(default=0.05, gt=0, lt=0.5)
    """The shadow decision's error rate (two-sided), valid at whatever time it stops: the
    chance a no-better challenger is ever promoted, or a no-worse one ever rejected, is at
    most half of it each (`pipelines.decisions.sequential`)."""

    shadow_loss_bound: float = Field(default=0.5, gt=0)
    """The block means of the log-loss difference (challenger - champion) are clipped to ± this
    before the confidence sequence (its range must be bounded). The sequence cannot decide a
    mean below about ``2 x bound x log(2 / alpha) / (0.5 x blocks)``, so a bound far above what
    the block means reach only slows it: 1.0 decided 7 of 50 six-symbol ``shadow-better``
    trials within 4 windows, 0.5 decided 49, with no false decision either way
    (``mlops decisions backtest-shadow``, 2026-12-03, benchmarks/README.md)."""

    @property
    def effective_embargo(self) -> int:
        """Embargo in bars, never shorter than the horizon."""
        return max(self.embargo_bars or 0, self.horizon)

    @property
    def experiment(self) -> str:
        """MLflow experiment name."""
        return self.mlflow_experiment or self.model_name

    @property
    def gitops_path(self) -> Path:
        """The GitOps working copy."""
        return self.gitops_repo or self.home / "gitops"

    @property
    def data_url(self) -> str:
        """Storage location, defaulting to ``$MLOPS_HOME/data``."""
        return self.storage_url or str(self.home / "data")
