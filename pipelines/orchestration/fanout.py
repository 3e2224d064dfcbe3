"""Fan-out: a step that runs once per shard of its run, and the fan-in of the shards' results.

A shard is one symbol over the whole run, or — for a run longer than
``MLOPS_SHARD_BY_MONTH_AFTER_DAYS`` (a backfill) — one symbol over one calendar month. The
``shards`` step computes the list from the run's stored parameters and publishes it: as its
result locally, and as the output parameter Argo's ``withParam`` expands on the cluster. Each
shard's result is stored on its own (`pipelines.layout.shard_result`); the step's result is
their merge, once every planned shard has succeeded.
"""

from __future__ import annotations

import json
import re
from calendar import monthrange
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.orchestration.context import RunParams, StepContext

SHARDS_STEP = "shards"
"""The step whose result lists the shards every fan-out step of the run expands over."""

MAX_SHARDS = 2000
"""Upper bound of shards in one run. On the cluster the list travels as an output parameter,
which Argo keeps in the pod's task result (bounded by Kubernetes' 256 KiB annotation/object
budget); 2000 shards of at most 40 bytes is 80 KB. Longer histories go through
``mlops backfill``, which splits them into runs."""

_SHARD = re.compile(r"^([A-Z0-9]{1,32}):(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2})$")


class Shard(BaseModel, frozen=True):
    """One unit of a fan-out: a symbol over a range of days inside the run's range."""

    symbol: str
    start: date
    end: date

    def __str__(self) -> str:
        """The shard as Argo's ``{{item}}`` and ``mlops step --shard`` carry it."""
        return f"{self.symbol}:{self.start.isoformat()}:{self.end.isoformat()}"

    @property
    def key(self) -> str:
        """The shard's name in storage keys (no ``:``)."""
        return f"{self.symbol}-{self.start:%Y%m%d}-{self.end:%Y%m%d}"


class ShardsResult(BaseModel):
    """The ``shards`` step's part of the run summary: what the fan-out steps expand over."""

    shards: list[str]
    """``SYMBOL:START:END`` per shard, in order (Argo's ``withParam`` list)."""
    count: int
    by_month: bool
    """True when the run is long enough to be split per calendar month."""


def _months(start: date, end: date) -> list[tuple[date, date]]:
    ranges, first = [], start
    while first <= end:
        last = min(end, first.replace(day=monthrange(first.year, first.month)[1]))
        ranges.append((first, last))
        first = last + timedelta(days=1)
    return ranges


def plan_shards(params: RunParams, by_month_after_days: int) -> ShardsResult:
    """The run's shards: per symbol, or per symbol and calendar month for long runs.

    Raises:
        PipelineError: when the run would have more than `MAX_SHARDS` shards.
    """
    days = (params.end - params.start).days + 1
    by_month = days > by_month_after_days
    ranges = _months(params.start, params.end) if by_month else [(params.start, params.end)]
    count = len(ranges) * len(params.symbols)
    if count > MAX_SHARDS:
        raise PipelineError(
            f"{len(params.symbols)} symbols x {len(ranges)} months is {count} shards, more than "
            f"one run fans out to ({MAX_SHARDS})",
            "split the history with `mlops backfill --chunk-days N` or run fewer symbols",
        )
    shards = [str(Shard(symbol=s, start=a, end=b)) for s in params.symbols for a, b in ranges]
    return ShardsResult(shards=shards, count=count, by_month=by_month)


def parse_shard(text: str, params: RunParams) -> Shard:
    """A ``SYMBOL:START:END`` shard of this run.

    Raises:
        PipelineError: for a malformed shard, or one outside the run's symbols or days.
    """
    found = _SHARD.match(text.strip())
    try:
        if not found:
            raise ValueError
        shard = Shard(
            symbol=found[1], start=date.fromisoformat(found[2]), end=date.fromisoformat(found[3])
        )
    except ValueError:
        raise PipelineError(
            f"--shard {text[:80]!r} is not SYMBOL:YYYY-MM-DD:YYYY-MM-DD",
            "pass one item of the shards step's list (mlops step shards prints it)",
        ) from None
    if shard.symbol not in params.symbols or not (
        params.start <= shard.start <= shard.end <= params.end
    ):
        raise PipelineError(
            f"--shard {shard} is outside the run ({','.join(params.symbols)} "
            f"{params.start}..{params.end})",
            "pass one item of the shards step's list",
        )
    return shard


def narrowed(ctx: StepContext, shard: Shard) -> StepContext:
    """The run's context seen by one shard: its symbol and days only."""
    params = ctx.params.model_copy(
        update={"symbols": [shard.symbol], "start": shard.start, "end": shard.end}
    )
    return replace(ctx, params=params)


def planned(ctx: StepContext) -> list[Shard]:
    """The shards the run's ``shards`` step planned.

    Raises:
        PipelineError: when the ``shards`` step has not run yet.
    """
    try:
        listed = ctx.result(SHARDS_STEP, ShardsResult).shards
        # the run's own parameters: `ctx` may be one shard's narrowed view of them
        run = RunParams.model_validate_json(ctx.storage.read_bytes(layout.run_params(ctx.run_id)))
    except FileNotFoundError:
        raise PipelineError(
            f"run {ctx.run_id} has no shards yet",
            f"run: mlops step {SHARDS_STEP} --run-id {ctx.run_id}",
        ) from None
    return [parse_shard(item, run) for item in listed]


def shard_result(ctx: StepContext, step: str, shard: Shard) -> dict[str, Any] | None:
    """What one shard of `step` recorded, or None."""
    try:
        loaded: dict[str, Any] = json.loads(
            ctx.storage.read_bytes(layout.shard_result(ctx.run_id, step, shard.key))
        )
    except FileNotFoundError:
        return None
    return loaded


_PER_RUN = ("status", "seconds", "attempts", "inputs_digest", "resumed", "error")


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' results as one: numbers add up, lists join (sorted, unique), mappings
    merge key by key the same way; the first shard's value wins for anything else."""
    merged: dict[str, Any] = {}
    for result in results:
        for key, value in result.items():
            if key in _PER_RUN:
                continue
            merged[key] = _combine(merged[key], value) if key in merged else value
    return merged


def _combine(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return sorted(set(map(_hashable, a)) | set(map(_hashable, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _combine(out[key], value) if key in out else value
        return out
    return a


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def fan_in(ctx: StepContext, step: str) -> dict[str, Any] | None:
    """The merged result of every planned shard of `step`: ``succeeded`` when all did,
    ``failed`` (naming the shards) when one failed or is missing; None before any ran."""
    shards = planned(ctx)
    found = {shard.key: shard_result(ctx, step, shard) for shard in shards}
    if not any(found.values()):
        return None
    done = [r for r in found.values() if r and r.get("status") == "succeeded"]
    missing = sorted(str(s) for s in shards if not (found[s.key] or {}).get("status"))
    failed = sorted(str(s) for s in shards if (found[s.key] or {}).get("status") == "failed")
    body: dict[str, Any] = {
        "status": "succeeded" if len(done) == len(shards) else "failed",
        **merge(done),
        "shards": len(shards),
        "seconds": round(max((r.get("seconds", 0.0) for r in done), default=0.0), 3),
        "attempts": max((r.get("attempts", 1) for r in done), default=1),
    }
    if failed or missing:
        first = next((found[s.key] for s in shards if str(s) in failed), None) or {}
        body["error"] = (
            f"{len(failed)} shard(s) failed, {len(missing)} not run of {len(shards)}"
            + (f"; first failure {failed[0]}: {first.get('error', '?')}" if failed else "")
        )
        body["shards_failed"], body["shards_missing"] = failed, missing
    return body
