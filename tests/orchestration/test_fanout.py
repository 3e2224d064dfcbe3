"""Fan-out: the shards a run is split into, the bounded process pool that runs them, the fan-in
of their results, and resuming only the shards that failed."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.orchestration.context import RunParams, StepContext
from pipelines.orchestration.dag import Step, lint
from pipelines.orchestration.fanout import (
    MAX_SHARDS,
    merge,
    parse_shard,
    plan_shards,
)
from pipelines.orchestration.runner import run_pipeline
from pipelines.orchestration.steps import shards_step
from pipelines.settings import Settings
from pipelines.storage import LocalStorage

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


class Work(BaseModel):
    """What one shard did."""

    days: int
    symbols: list[str]
    pids: list[int]
    per_symbol: dict[str, list[str]]


def work(ctx: StepContext) -> Work:
    """A fan-out step (module level: the spawned workers import it by name)."""
    (symbol,) = ctx.params.symbols
    if ctx.storage.exists(f"plant/fail-{symbol}"):
        raise PipelineError(f"planted failure for {symbol}")
    days = (ctx.params.end - ctx.params.start).days + 1
    return Work(
        days=days,
        symbols=[symbol],
        pids=[os.getpid()],
        per_symbol={symbol: [ctx.params.start.isoformat()]},
    )


def steps() -> list[Step]:
    return [
        Step("shards", shards_step, output="shards"),
        Step("work", work, needs=("shards",), fan_out=True),
    ]


def params(start: date, end: date, symbols: list[str] = SYMBOLS) -> RunParams:
    return RunParams(source="file:///m", symbols=symbols, interval="1m", start=start, end=end)


def context(tmp_path: Path, run: RunParams, workers: int = 2) -> StepContext:
    settings = Settings(home=tmp_path, step_retry_backoff=0.01, fan_out_workers=workers)
    return StepContext("run-f", run, settings, LocalStorage(tmp_path / "data"))


def test_a_short_run_fans_out_per_symbol_and_a_long_one_per_symbol_and_month() -> None:
    short = plan_shards(params(date(2024, 1, 1), date(2024, 2, 29)), by_month_after_days=62)
    assert short.shards == [f"{s}:2024-01-01:2024-02-29" for s in SYMBOLS]
    assert not short.by_month
    long = plan_shards(params(date(2024, 1, 15), date(2024, 4, 10), ["BTCUSDT"]), 62)
    assert long.by_month and long.shards == [
        "BTCUSDT:2024-01-15:2024-01-31",
        "BTCUSDT:2024-02-01:2024-02-29",
        "BTCUSDT:2024-03-01:2024-03-31",
        "BTCUSDT:2024-04-01:2024-04-10",
    ]


def test_more_shards_than_one_run_carries_is_refused_with_the_way_out() -> None:
    many = [f"S{i}USDT" for i in range(MAX_SHARDS // 12 + 1)]
    with pytest.raises(PipelineError, match="mlops backfill"):
        plan_shards(params(date(2024, 1, 1), date(2024, 12, 31), many), 62)


@pytest.mark.hostile
@pytest.mark.parametrize(
    "text",
    [
        "BTCUSDT",
        "BTCUSDT:2024-01-01",
        "btcusdt:2024-01-01:2024-01-02",
        "BTCUSDT:2024-02-30:2024-03-01",
        "../x:2024-01-01:2024-01-02",
        "X" * 10_000,
        "DOGEUSDT:2024-01-01:2024-01-02",  # not a symbol of the run
        "BTCUSDT:2023-12-31:2024-01-02",  # starts before the run
        "BTCUSDT:2024-01-02:2024-01-01",  # ends before it starts
    ],
)
def test_a_shard_outside_the_run_or_malformed_is_refused(text: str) -> None:
    run = params(date(2024, 1, 1), date(2024, 1, 31))
    with pytest.raises(PipelineError, match="--shard") as caught:
        parse_shard(text, run)
    assert len(str(caught.value)) < 300, "the error quotes a bounded part of the input"


def test_results_merge_numbers_lists_and_mappings() -> None:
    merged = merge(
        [
            {"status": "succeeded", "rows": 2, "missing": ["b"], "q": {"x": 1}, "by": {"A": ["1"]}},
            {"status": "succeeded", "rows": 3, "missing": ["a", "b"], "q": {"x": 2, "y": 1}},
        ]
    )
    assert merged == {"rows": 5, "missing": ["a", "b"], "q": {"x": 3, "y": 1}, "by": {"A": ["1"]}}


def test_fan_out_steps_must_depend_on_the_shards_step() -> None:
    with pytest.raises(PipelineError, match="does not depend on the 'shards' step"):
        lint([Step("work", work, fan_out=True)])


@pytest.mark.integration  # spawns worker processes
def test_shards_run_in_a_bounded_pool_of_processes_and_merge(tmp_path: Path) -> None:
    run = params(date(2024, 1, 1), date(2024, 1, 2))
    summary = run_pipeline(context(tmp_path, run, workers=2), steps())
    assert summary["status"] == "succeeded", summary
    merged = summary["steps"]["work"]
    assert merged["days"] == 2 * len(SYMBOLS) and merged["symbols"] == sorted(SYMBOLS)
    assert merged["shards"] == len(SYMBOLS)
    assert os.getpid() not in merged["pids"], "shards ran in worker processes"
    assert 1 <= len(set(merged["pids"])) <= 2, "at most MLOPS_FAN_OUT_WORKERS processes"
    stored = tmp_path / "data" / layout.step_result("run-f", "work")
    assert json.loads(stored.read_text())["days"] == 6, "the merged result is recorded"


def test_one_worker_runs_the_shards_in_process(tmp_path: Path) -> None:
    run = params(date(2024, 1, 1), date(2024, 3, 31), ["BTCUSDT"])
    summary = run_pipeline(context(tmp_path, run, workers=1), steps())
    merged = summary["steps"]["work"]
    assert merged["pids"] == [os.getpid()] and merged["shards"] == 3, "per month, in-process"
    assert merged["days"] == 91
    assert merged["per_symbol"] == {"BTCUSDT": ["2024-01-01", "2024-02-01", "2024-03-01"]}


@pytest.mark.integration  # spawns worker processes
def test_a_failed_shard_fails_the_step_and_resume_reruns_only_it(tmp_path: Path) -> None:
    run = params(date(2024, 1, 1), date(2024, 1, 2))
    ctx = context(tmp_path, run)
    ctx.storage.write_bytes("plant/fail-ETHUSDT", b"")
    failed = run_pipeline(ctx, steps())
    assert failed["status"] == "failed" and failed["failed_step"] == "work"
    assert (
        "1 shard(s) failed" in failed["error"]
        and "ETHUSDT:2024-01-01:2024-01-02" in (failed["error"])
    )
    assert "planted failure for ETHUSDT" in failed["error"]
    shard_key = layout.shard_result("run-f", "work", "BTCUSDT-20240101-20240102")
    kept = ctx.storage.read_bytes(shard_key)
    ctx.storage.delete("plant/fail-ETHUSDT")
    resumed = run_pipeline(ctx, steps(), resume=True)
    assert resumed["status"] == "succeeded"
    assert resumed["steps"]["work"]["symbols"] == sorted(SYMBOLS)
    assert ctx.storage.read_bytes(shard_key) == kept, "a shard that succeeded is not re-run"


def test_the_shards_step_output_is_a_json_list_argo_can_expand(tmp_path: Path) -> None:
    run = params(date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=100), ["BTCUSDT"])
    summary = run_pipeline(context(tmp_path, run, workers=1), steps(), until="shards")
    listed = summary["steps"]["shards"]["shards"]
    assert isinstance(listed, list) and all(isinstance(s, str) for s in listed)
    assert [parse_shard(s, run).start.day for s in listed] == [1, 1, 1, 1]


def test_an_s3_storage_crosses_to_a_worker_process_without_its_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fan-out pool pickles the context: a live boto3 client or session cannot cross."""
    import pickle

    from pipelines.storage import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    storage = S3Storage("curated", "v1")
    assert storage.client is not None  # a live client (and session), as after a first request
    copy = pickle.loads(pickle.dumps(storage))
    assert (copy.bucket, copy.prefix, copy.url) == ("curated", "v1", "s3://curated/v1")
    assert copy.client is not storage.client, "the worker makes its own client"
