"""Step functions: adapt a `StepContext` to each lifecycle stage's typed function."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.data.fetch import FetchResult, fetch
from pipelines.data.validate import ValidateResult, validate
from pipelines.ml.dataset import DatasetInfo
from pipelines.orchestration.context import StepContext
from pipelines.orchestration.fanout import ShardsResult, plan_shards

if TYPE_CHECKING:
    from pipelines.decisions.gate import GateResult
    from pipelines.decisions.monitor import MonitorResult
    from pipelines.ml.features import FeatureConfig
    from pipelines.ml.packaging import PackageResult
    from pipelines.ml.registry import RegisterResult
    from pipelines.ml.train import EvaluateResult, TrainResult


def shards_step(ctx: StepContext) -> ShardsResult:
    """The run's shards — what fetch and validate fan out over (Argo's ``withParam``)."""
    return plan_shards(ctx.params, ctx.settings.shard_by_month_after_days)


def fetch_step(ctx: StepContext) -> FetchResult:
    """Download and verify the run's archive files into ``raw/``."""
    p = ctx.params
    days = (p.end - p.start).days + 1
    advance = ctx.progress("fetch", len(p.symbols) * max(days, 0))
    result = fetch(
        ctx.settings, ctx.storage, p.source, p.symbols, p.interval, p.start, p.end, on_file=advance
    )
    return result


def validate_step(ctx: StepContext) -> ValidateResult:
    """Check every row of the run's raw files; quarantine rejects; write curated Parquet."""
    p = ctx.params
    result = validate(
        ctx.storage,
        p.symbols,
        p.interval,
        p.start,
        p.end,
        ctx.settings.quarantine_max_share,
        progress=ctx.progress,
    )
    return result


def feature_config(ctx: StepContext) -> FeatureConfig:
    """The run's feature configuration from settings and parameters."""
    from pipelines.ml.features import FeatureConfig

    s = ctx.settings
    return FeatureConfig(interval=s.model_interval or ctx.params.interval, horizon=s.horizon)


def features_step(ctx: StepContext) -> DatasetInfo:
    """Curated bars → content-addressed model-ready dataset."""
    from pipelines.ml.dataset import build_dataset

    p = ctx.params
    info = build_dataset(ctx.storage, p.symbols, p.interval, p.start, p.end, feature_config(ctx))
    return info


def _dataset(ctx: StepContext) -> DatasetInfo:
    return ctx.result("features", DatasetInfo)


def train_step(ctx: StepContext) -> TrainResult:
    """Walk-forward CV, final fit before the evaluation window, model logged to MLflow."""
    from pipelines.ml.train import train

    return train(ctx.settings, ctx.storage, _dataset(ctx), ctx.run_id)


def evaluate_step(ctx: StepContext) -> EvaluateResult:
    """Metrics of the trained model on the latest out-of-sample window."""
    from pipelines.ml.train import TrainResult, evaluate

    return evaluate(ctx.settings, ctx.storage, _dataset(ctx), ctx.result("train", TrainResult))


def register_step(ctx: StepContext) -> RegisterResult:
    """New registry version with alias challenger (and champion on bootstrap)."""
    from pipelines.ml.registry import register
    from pipelines.ml.train import EvaluateResult, TrainResult

    trained = ctx.result("train", TrainResult)
    evaluated = ctx.result("evaluate", EvaluateResult)
    return register(ctx.settings, _dataset(ctx), trained, evaluated, ctx.run_id)


def package_step(ctx: StepContext) -> PackageResult:
    """The registered version as a Bento (the serving image's content), exported to storage."""
    from pipelines.ml.packaging import package
    from pipelines.ml.registry import RegisterResult

    return package(ctx.settings, ctx.storage, ctx.result("register", RegisterResult).version)


def gate_step(ctx: StepContext) -> GateResult:
    """Challenger vs champion on the same window, drift check; promote or reject, recorded; a
    promotion also creates the candidate the next envs are promoted from."""
    from pipelines.decisions.gate import gate
    from pipelines.ml.packaging import PackageResult
    from pipelines.ml.registry import RegisterResult
    from pipelines.ml.train import EvaluateResult

    result = gate(
        ctx.settings,
        ctx.storage,
        _dataset(ctx),
        ctx.result("evaluate", EvaluateResult),
        ctx.result("register", RegisterResult),
        ctx.result("package", PackageResult),
        ctx.run_id,
    )
    if result.decision == "promote" and result.record:
        from pipelines.candidates.record import create

        # what the gate promoted becomes a candidate for the next envs (idempotent: a retry
        # of the step completes a creation a kill interrupted)
        create(ctx.settings, ctx.storage, result.record)
    return result


def monitor_step(ctx: StepContext) -> MonitorResult:
    """Live quality and drift of the serving champion; roll back after N degraded windows."""
    from pipelines.decisions.monitor import monitor

    return monitor(ctx.settings, ctx.storage, ctx.run_id)
