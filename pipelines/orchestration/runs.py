"""Opening a run: its parameters from options and settings, or from storage when it exists."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import ValidationError

from pipelines.errors import PipelineError, describe_validation_error
from pipelines.layout import run_params
from pipelines.orchestration.context import RunParams, StepContext, default_dates, new_run_id
from pipelines.settings import Settings, split_symbols
from pipelines.storage import open_storage

Options = dict[str, str | None]
"""Run options as given on the command line; None or "" means "not given" (Argo passes "")."""


def parse_day(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value, or a clear error naming the option."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PipelineError(f"{option} {value!r} is not a date", "use YYYY-MM-DD") from None


def resolve_params(settings: Settings, options: Options) -> RunParams:
    """Parameters of a new run: the options given, settings for the rest, dates ending yesterday."""
    default_start, default_end = default_dates(settings)
    try:
        params = RunParams(
            source=options.get("source") or settings.source_url,
            symbols=split_symbols(options["symbols"])
            if options.get("symbols")
            else settings.symbols,
            interval=options.get("interval") or settings.interval,
            start=parse_day(options.get("start"), "--start") or default_start,
            end=parse_day(options.get("end"), "--end") or default_end,
        )
    except ValidationError as error:
        raise PipelineError(describe_validation_error(error, "--")) from None
    if params.end < params.start:
        raise PipelineError(f"--end {params.end} is before --start {params.start}", "fix the dates")
    return params


def _conflicts(stored: RunParams, settings: Settings, options: Options) -> list[str]:
    given = {k: v for k, v in options.items() if v}
    if not given:
        return []
    wanted = resolve_params(
        settings,
        {
            **stored.model_dump(mode="json", exclude={"symbols"}),
            "symbols": ",".join(stored.symbols),
            **given,
        },
    )
    return [f"--{k}" for k in given if getattr(wanted, k) != getattr(stored, k)]


def open_run(
    settings: Settings, run_id: str | None, options: Options, resume: bool = False
) -> StepContext:
    """The context of run `run_id` (new when it has no stored parameters yet).

    Raises:
        PipelineError: when resuming a run that does not exist, or when options contradict the
            parameters the run already has.
    """
    storage = open_storage(settings.data_url, settings.raw_storage_url)
    if run_id and storage.exists(run_params(run_id)):
        stored = RunParams.model_validate_json(storage.read_bytes(run_params(run_id)))
        conflicts = _conflicts(stored, settings, options)
        if conflicts:
            raise PipelineError(
                f"run {run_id} already has parameters; {', '.join(conflicts)} cannot change them",
                "drop those options, or start a new run",
            )
        return StepContext(run_id, stored, settings, storage)
    if resume:
        raise PipelineError(
            f"no run {run_id!r} under {storage.url}", "check the run id (mlops run prints it)"
        )
    return StepContext(run_id or new_run_id(), resolve_params(settings, options), settings, storage)


def read_summary(run_id: str, pipeline: str) -> dict[str, Any]:
    """The run summary as the pods left it in storage (the settings of this shell name it)."""
    from pipelines.orchestration.dag import get_pipeline, lint
    from pipelines.orchestration.runner import stored_result
    from pipelines.settings import Settings

    ctx = open_run(Settings(), run_id, {})
    steps = {s.name: stored_result(ctx, s.name) for s in lint(get_pipeline(pipeline).steps)}
    found = {name: result for name, result in steps.items() if result is not None}
    ok = len(found) == len(steps) and all(r.get("status") == "succeeded" for r in found.values())
    return {
        "run_id": run_id,
        "status": "succeeded" if ok else "failed",
        "params": ctx.params.model_dump(mode="json"),
        "storage": ctx.storage.url,
        "steps": found,
    }
