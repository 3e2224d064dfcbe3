"""The local runner: retries, resume, parallelism, DAG lint."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines.errors import PipelineError
from pipelines.orchestration.context import RunParams, StepContext
from pipelines.orchestration.dag import Step, lint, upstream
from pipelines.orchestration.runner import run_pipeline
from pipelines.settings import Settings
from pipelines.storage import LocalStorage


class Result(BaseModel):
    """A step's typed result, as every real step returns one."""

    value: int | None = None
    rows: int = 0
    met: bool | None = None


def context(tmp_path: Path, run_id: str = "run-t") -> StepContext:
    params = RunParams(
        source="file:///m",
        symbols=["BTCUSDT"],
        interval="1m",
        start=date(2024, 1, 1),
        end=date(2024, 1, 2),
    )
    settings = Settings(home=tmp_path, step_retry_backoff=0.01)
    return StepContext(run_id, params, settings, LocalStorage(tmp_path / "data"))


class Counter:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def hit(self, name: str) -> int:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            return self.calls[name]


def test_a_step_that_fails_twice_then_succeeds_is_retried(tmp_path: Path) -> None:
    counter = Counter()

    def flaky(ctx: StepContext) -> Result:
        if counter.hit("flaky") <= 2:
            raise ConnectionError("transient")
        return Result(value=1)

    summary = run_pipeline(context(tmp_path), [Step("flaky", flaky, retries=2)])
    assert summary["status"] == "succeeded"
    assert counter.calls["flaky"] == 3 and summary["steps"]["flaky"]["attempts"] == 3


def test_retries_are_bounded_and_the_failure_names_step_cause_and_resume(tmp_path: Path) -> None:
    def broken(ctx: StepContext) -> Result:
        raise ConnectionError("still down")

    summary = run_pipeline(
        context(tmp_path),
        [Step("a", broken, retries=1), Step("b", lambda c: Result(), needs=("a",))],
    )
    assert summary["status"] == "failed" and summary["failed_step"] == "a"
    assert "step a failed after 2 attempt(s): ConnectionError: still down" in summary["error"]
    assert summary["resume"] == "mlops run --resume run-t" and summary["not_run"] == ["b"]


def test_an_interrupted_run_resumes_without_redoing_finished_steps(tmp_path: Path) -> None:
    counter = Counter()
    broken = {"yes": True}

    def first(ctx: StepContext) -> Result:
        counter.hit("first")
        return Result(rows=10)

    def second(ctx: StepContext) -> Result:
        counter.hit("second")
        if broken["yes"]:
            raise PipelineError("input not ready")
        return Result(rows=ctx.result("first", Result).rows * 2)

    def third(ctx: StepContext) -> Result:
        counter.hit("third")
        return Result(rows=ctx.result("second", Result).rows + 1)

    steps = [
        Step("first", first),
        Step("second", second, needs=("first",)),
        Step("third", third, needs=("second",)),
    ]
    failed = run_pipeline(context(tmp_path), steps)
    assert failed["status"] == "failed" and failed["failed_step"] == "second"
    broken["yes"] = False
    resumed = run_pipeline(context(tmp_path), steps, resume=True)
    assert resumed["status"] == "succeeded"
    assert counter.calls == {"first": 1, "second": 2, "third": 1}
    assert resumed["steps"]["first"]["resumed"] is True and resumed["steps"]["third"]["rows"] == 21

    # a second resume redoes nothing; changed inputs of a step make it run again
    again = run_pipeline(context(tmp_path), steps, resume=True)
    assert counter.calls == {"first": 1, "second": 2, "third": 1}
    assert all(s.get("resumed") for s in again["steps"].values())
    ctx = context(tmp_path)
    record = ctx.result_of("first")
    ctx.storage.write_bytes(
        "runs/run-t/steps/first.json", __import__("json").dumps({**record, "rows": 11}).encode()
    )
    run_pipeline(ctx, steps, resume=True)
    assert counter.calls == {"first": 1, "second": 3, "third": 2}


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    left_started, right_started = threading.Event(), threading.Event()

    def left(ctx: StepContext) -> Result:
        left_started.set()
        return Result(met=right_started.wait(timeout=5))

    def right(ctx: StepContext) -> Result:
        right_started.set()
        return Result(met=left_started.wait(timeout=5))

    steps = [
        Step("root", lambda c: Result()),
        Step("left", left, needs=("root",)),
        Step("right", right, needs=("root",)),
        Step("join", lambda c: Result(), needs=("left", "right")),
    ]
    summary = run_pipeline(context(tmp_path), steps, parallel=2)
    assert summary["status"] == "succeeded"
    assert summary["steps"]["left"]["met"] and summary["steps"]["right"]["met"], "both ran at once"


def test_dag_lint_rejects_unknown_dependencies_cycles_and_duplicates() -> None:
    def noop(ctx: StepContext) -> Result:
        return Result()

    with pytest.raises(PipelineError, match="needs unknown step"):
        lint([Step("a", noop, needs=("ghost",))])
    with pytest.raises(PipelineError, match="dependency cycle: a -> b -> a"):
        lint([Step("a", noop, needs=("b",)), Step("b", noop, needs=("a",))])
    with pytest.raises(PipelineError, match="duplicate step name"):
        lint([Step("a", noop), Step("a", noop)])
    order = [
        s.name
        for s in lint(
            [Step("c", noop, needs=("b",)), Step("b", noop, needs=("a",)), Step("a", noop)]
        )
    ]
    assert order == ["a", "b", "c"]
    assert [
        s.name
        for s in upstream([Step("a", noop), Step("b", noop, needs=("a",)), Step("x", noop)], "b")
    ] == ["a", "b"]
