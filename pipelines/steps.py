"""Step functions: adapt a `StepContext` to each lifecycle stage's typed function."""

from __future__ import annotations

from typing import Any

from pipelines.context import StepContext
from pipelines.dataset import DatasetInfo
from pipelines.fetch import fetch
from pipelines.validate import validate


def fetch_step(ctx: StepContext) -> dict[str, Any]:
    """Download and verify the run's archive files into ``raw/``."""
    p = ctx.params
    days = (p.end - p.start).days + 1
    advance = ctx.progress("fetch", len(p.symbols) * max(days, 0))
    result = fetch(
        ctx.settings, ctx.storage, p.source, p.symbols, p.interval, p.start, p.end, on_file=advance
    )
    return result.model_dump()


def validate_step(ctx: StepContext) -> dict[str, Any]:
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
    return result.model_dump()


def feature_config(ctx: StepContext) -> Any:
    """The run's feature configuration from settings and parameters."""
    from pipelines.features import FeatureConfig

    s = ctx.settings
    return FeatureConfig(interval=s.model_interval or ctx.params.interval, horizon=s.horizon)


def features_step(ctx: StepContext) -> dict[str, Any]:
    """Curated bars → content-addressed model-ready dataset."""
    from pipelines.dataset import build_dataset

    p = ctx.params
    info = build_dataset(ctx.storage, p.symbols, p.interval, p.start, p.end, feature_config(ctx))
    return info.model_dump(mode="json")


def _dataset(ctx: StepContext) -> DatasetInfo:
    return DatasetInfo.model_validate(ctx.result_of("features"))


def train_step(ctx: StepContext) -> dict[str, Any]:
    """Walk-forward CV, final fit before the evaluation window, model logged to MLflow."""
    from pipelines.train import train

    return train(ctx.settings, ctx.storage, _dataset(ctx), ctx.run_id)


def evaluate_step(ctx: StepContext) -> dict[str, Any]:
    """Metrics of the trained model on the latest out-of-sample window."""
    from pipelines.train import evaluate

    return evaluate(ctx.settings, ctx.storage, _dataset(ctx), ctx.result_of("train"))


def register_step(ctx: StepContext) -> dict[str, Any]:
    """New registry version with alias challenger (and champion on bootstrap)."""
    from pipelines.registry import register

    return register(
        ctx.settings, _dataset(ctx), ctx.result_of("train"), ctx.result_of("evaluate"), ctx.run_id
    )


def package_step(ctx: StepContext) -> dict[str, Any]:
    """The registered version as a Bento (the serving image's content), exported to storage."""
    from bentos.build import package  # lazily: pipelines does not import bentos at module level

    return package(ctx.settings, ctx.storage, int(ctx.result_of("register")["version"]))


def gate_step(ctx: StepContext) -> dict[str, Any]:
    """Challenger vs champion on the same window, drift check; promote or reject, recorded."""
    from pipelines.gate import gate

    return gate(
        ctx.settings,
        ctx.storage,
        _dataset(ctx),
        ctx.result_of("evaluate"),
        ctx.result_of("register"),
        ctx.result_of("package"),
        ctx.run_id,
    )


def monitor_step(ctx: StepContext) -> dict[str, Any]:
    """Live quality and drift of the serving champion; roll back after N degraded windows."""
    from pipelines.monitor import monitor

    return monitor(ctx.settings, ctx.storage, ctx.run_id)
