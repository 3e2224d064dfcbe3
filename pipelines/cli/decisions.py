"""``mlops decisions …``: the gate, the monitor, rollbacks and shadows by hand, the canary
analysis, and the backtests of the decisions (``mlops drift …`` is cli/drift.py)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import err, out, print_json
from pipelines.errors import PipelineError

if TYPE_CHECKING:
    from pipelines.decisions.ledger import Decision

decisions_app = typer.Typer(
    help="Promotion and rollback: the gate, the live monitor, rollbacks by hand.",
    no_args_is_help=True,
)


def _show_record(record: Decision, json_out: bool) -> None:
    """A ledger record the command wrote: decision, reasons, key, GitOps commit, aliases."""
    _show_decision(
        {
            "decision": record.decision,
            "reasons": record.reasons,
            "record": record.key,
            "gitops_commit": record.gitops_commit,
            "aliases": record.aliases_after,
        },
        json_out,
    )


def _show_decision(decided: BaseModel | dict[str, Any], json_out: bool) -> None:
    result = decided.model_dump(mode="json") if isinstance(decided, BaseModel) else decided
    if json_out:
        print_json(result)
        return
    out.print(
        f"[bold]{result['decision']}[/]" + (" (already decided)" if result.get("reused") else "")
    )
    for reason in result.get("reasons", []):
        out.print(f"  - {reason}", highlight=False)
    if result.get("record"):
        out.print(f"record: {result['record']}", highlight=False)
    if result.get("gitops_commit"):
        out.print(f"GitOps commit: {result['gitops_commit']}", highlight=False)
    if result.get("shadow"):
        out.print("shadow:", highlight=False)
        _show_decision(result["shadow"], json_out)


@decisions_app.command("gate")
def gate(
    run_id: Annotated[str, typer.Option("--run-id", help="The training run to decide on.")],
    json_out: JsonFlag = False,
) -> None:
    """The training DAG's last step for run RUN_ID: challenger vs champion on the run's
    evaluation window plus a drift check; promote (aliases + GitOps commit) or reject."""
    from pipelines.cli.run import step

    step("gate", run_id, None, None, None, None, None, "training", json_out=json_out)


@decisions_app.command("monitor")
def monitor(json_out: JsonFlag = False) -> None:
    """Judge the serving champion now: inference log joined with realized outcomes per window,
    live drift; roll back after N degraded windows in a row. (The hourly CronWorkflow runs
    fetch → validate → monitor: ``mlops run --pipeline monitor``.)"""
    from pipelines.decisions.monitor import monitor as run_monitor

    settings = load_settings()
    with err.status("judging the champion on live evidence …"):
        result = run_monitor(settings, open_settings_storage(settings))
    _show_decision(result, json_out)


@decisions_app.command("analyze")
def analyze(
    version: Annotated[str, typer.Option("--version", help="The canary's model version.")],
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Push the verdict to MLOPS_METRICS_PUSHGATEWAY (mlops_canary_verdict) and exit "
            "0 whatever it is (the serving Rollout's analysis reads the pushed gauge).",
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Judge a canary model VERSION on its own trusted predictions and realized outcomes. Exit
    0: pass; 3: degraded; 4: too little evidence (inconclusive); 1: an error. With --push the
    verdict goes to the Pushgateway instead of the exit code (0 unless an error). Decides and
    writes nothing else."""
    from pipelines.decisions.canary import analyze as run_analyze
    from pipelines.decisions.canary import push_verdict

    settings = load_settings()
    with err.status(f"judging version {version} on live evidence …"):
        verdict = run_analyze(settings, open_settings_storage(settings), version)
    pushed = push_verdict(settings, verdict) if push else None
    if json_out:
        print_json(verdict.model_dump(mode="json") | ({"pushed_to": pushed} if pushed else {}))
    else:
        out.print(f"[bold]{verdict.verdict}[/] (version {version})")
        for reason in verdict.reasons:
            out.print(f"  - {reason}", highlight=False)
        if pushed:
            out.print(f"pushed to {pushed}", highlight=False)
    raise typer.Exit(0 if push else verdict.exit_code)


@decisions_app.command("backtest")
def backtest(
    scenarios: Annotated[
        str | None,
        typer.Option("--scenarios", help="Comma-separated scenario names (default: all)."),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, help="Seeds per scenario that trains models.")
    ] = 20,
    drift_seeds: Annotated[
        int | None,
        typer.Option(
            "--drift-seeds",
            min=1,
            help="Seeds per no-change drift-only scenario (4 windows each; default: --seeds).",
        ),
    ] = None,
    first_seed: Annotated[
        int,
        typer.Option(
            "--first-seed",
            min=0,
            help="Seed of each scenario's first trial: check settings tuned on some seeds on "
            "seeds the tuning never saw.",
        ),
    ] = 0,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Replay on a real archive in the data.binance.vision layout (https://, http:// "
            "or file://) instead of the synthetic market: the scenarios that need no generator, "
            "seed N starting on the range's day N. Needs --start and --end.",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First archive day (YYYY-MM-DD), with --source.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Last archive day (YYYY-MM-DD), with --source.")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the figures as Markdown (benchmarks).")
    ] = False,
    label: Annotated[
        str, typer.Option("--label", help="Heading of the Markdown figures.")
    ] = "defaults",
    json_out: JsonFlag = False,
) -> None:
    """Replay the gate and the monitor over a matrix of scenarios and seeds — on the synthetic
    market of MLOPS_SYMBOLS, or with --source on a real archive — with the current
    MLOPS_GATE_*/MONITOR_*/DRIFT_* settings: promotion, false-promotion, false-rollback and
    missed-rollback rates, detection delay and drift false alarms, each with its trial count
    and 95% upper bound (2 processes at most)."""
    import sys
    from datetime import UTC, datetime

    from pipelines.backtest.archive import ARCHIVE_SCENARIOS
    from pipelines.backtest.matrix import BY_NAME, run_matrix, settings_digest, trial_count
    from pipelines.backtest.targets import markdown as render
    from pipelines.backtest.targets import targets
    from pipelines.cli.console import progress_bars

    settings = load_settings()
    archive = _backtest_archive(settings, source, start, end)
    default = list(ARCHIVE_SCENARIOS) if archive else list(BY_NAME)
    names = [n.strip() for n in scenarios.split(",") if n.strip()] if scenarios else default
    with progress_bars() as add:
        advance = add("backtest trials", trial_count(names, seeds, drift_seeds))
        results = run_matrix(
            settings,
            names,
            seeds,
            drift_seeds,
            on_trial=advance,
            first_seed=first_seed,
            archive=archive,
        )
    digest = settings_digest(settings, f"{source} {start}..{end}" if archive else None)
    if json_out:
        print_json({"settings_digest": digest, "scenarios": [r.public() for r in results]})
    elif markdown:
        day = datetime.now(UTC).date().isoformat()
        # plain stdout: rich would wrap the table rows at the terminal's width
        sys.stdout.write(
            render(
                results,
                digest,
                label,
                day,
                seeds,
                drift_seeds or seeds,
                first_seed,
                len(settings.symbols),
            )
        )
    else:
        _show_backtest(results, targets(results), digest)


def _show_backtest(results: list[Any], goals: list[Any], digest: str) -> None:
    from rich.table import Table

    def cell(rate: Any) -> str:
        return "-" if rate is None else f"{rate.value:.1%} ({rate.events}/{rate.trials})"

    table = Table(title=f"decisions backtest (settings {digest})")
    for column in ("scenario", "seeds", "promotion", "false promotion", "false rollback"):
        table.add_column(column)
    for column in ("missed rollback", "missed detection", "delay", "drift false alarm"):
        table.add_column(column)
    for r in results:
        delay = f"{r.detection_delay_windows:.2f}" if r.detection_delay_windows else "-"
        table.add_row(
            r.name,
            str(r.seeds),
            cell(r.promotion),
            cell(r.false_promotion),
            cell(r.false_rollback),
            cell(r.missed_rollback),
            cell(r.missed_detection),
            delay,
            cell(r.drift_false_alarm),
        )
    out.print(table)
    for goal in goals:
        out.print(
            f"{goal.name}: {goal.rate:.1%} of {goal.trials}, 95% upper bound {goal.upper:.1%}"
            f" — {goal.status}",
            highlight=False,
        )


def _backtest_archive(
    settings: Any, source: str | None, start: str | None, end: str | None
) -> str | None:
    """The real archive's model rows for ``--source`` (None: the synthetic market)."""
    if source is None:
        if start or end:
            raise PipelineError("--start and --end only go with --source", "add --source URL")
        return None
    if not (start and end):
        raise PipelineError(
            "--source needs --start and --end", "e.g. --start 2024-01-01 --end 2024-06-30"
        )
    from pipelines.backtest.archive import prepare
    from pipelines.cli.console import progress_bars

    first, last = _day(start, "--start"), _day(end, "--end")
    with progress_bars() as add:
        advance = add("archive days", max(0, (last - first).days + 1) * len(settings.symbols))
        return str(prepare(settings, source, first, last, on_file=advance))


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PipelineError(f"{option} {value!r} is not a date", "use YYYY-MM-DD") from None


@decisions_app.command("backtest-shadow")
def backtest_shadow(
    scenarios: Annotated[
        str | None,
        typer.Option("--scenarios", help="Comma-separated shadow scenario names (default: all)."),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Trials per scenario.")] = 10,
    json_out: JsonFlag = False,
) -> None:
    """Replay the shadow decision (a challenger scored beside the champion) over synthetic
    scenarios: a better challenger, a worse one, one no decision is owed on. Prints promoted,
    rejected, undecided and false decisions and the delay in windows as a Markdown table, or
    --json with every trial (2 processes at most)."""
    import sys
    from dataclasses import asdict

    from pipelines.backtest.shadow import BY_NAME, markdown, run_shadow

    settings = load_settings()
    names = [n.strip() for n in scenarios.split(",") if n.strip()] if scenarios else list(BY_NAME)
    with err.status(f"shadow backtest: {len(names)} scenario(s) x {seeds} seed(s) …"):
        results, outcomes = run_shadow(settings, names, seeds)
    if json_out:
        print_json(
            {
                "results": [r.model_dump(mode="json") for r in results],
                "trials": [asdict(o) for o in outcomes],
            }
        )
    else:  # plain stdout: rich would wrap the table rows at the terminal's width
        sys.stdout.write(markdown(results, settings) + "\n")


@decisions_app.command("rollback")
def rollback(
    to: Annotated[
        int | None, typer.Option("--to", help="Version to serve (default: the 'previous' alias).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Roll back by hand: champion ← previous (or --to), the env's serving overlay pinned to its
    Bento in one GitOps commit, recorded in the ledger."""
    from pipelines.decisions.promotion import rollback as do_rollback
    from pipelines.decisions.publish import publish

    settings = load_settings()
    storage = open_settings_storage(settings)
    record = do_rollback(settings, storage, to)
    publish(settings, storage, record.key)
    _show_record(record, json_out)


@decisions_app.command("shadow")
def shadow(
    version: Annotated[
        int | None,
        typer.Option(
            "--version", min=1, help="Registry version to score in shadow beside the champion."
        ),
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop shadowing.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Start (--version) or stop (--stop) shadowing a challenger: the env's serving overlay pins
    it beside the champion and the 'challenger' alias names it, in one GitOps commit, recorded
    in the ledger; each monitor run then judges it (docs/decisions.md)."""
    from pipelines.decisions.shadow_pin import pin_challenger
    from pipelines.errors import PipelineError

    if (version is None) == (not stop):
        raise PipelineError("give exactly one of --version N and --stop", "see --help")
    settings = load_settings()
    storage = open_settings_storage(settings)
    record = pin_challenger(settings, storage, version)
    _show_record(record, json_out)
