"""``mlops data …``: the synthetic archive (the embedded default's data source)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import IntervalOpt, JsonFlag, SymbolsOpt, load_settings
from pipelines.cli.console import out, print_json, progress_bars
from pipelines.orchestration.runs import parse_day

data_app = typer.Typer(help="Synthetic archive and data utilities.", no_args_is_help=True)


@data_app.command("mirror")
def data_mirror(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the archive (created if absent).")
    ],
    symbols: SymbolsOpt = None,
    interval: IntervalOpt = None,
    start: Annotated[
        str | None,
        typer.Option(help="First day, YYYY-MM-DD. Default: DAYS days ending yesterday (UTC)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Number of daily files per symbol.")] = 60,
    seed: Annotated[
        int, typer.Option(help="Random seed; same arguments give the same bytes.")
    ] = 42,
    shift_at: Annotated[
        str | None,
        typer.Option(
            "--shift-at", help="Regime change (volatility, volume, trend) from this day on."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a deterministic synthetic archive in the data.binance.vision layout."""
    from pipelines.intervals import interval_ms
    from pipelines.settings import split_symbols
    from pipelines.synthetic.mirror import write_mirror

    settings = load_settings()
    chosen = split_symbols(symbols) if symbols else settings.symbols
    chosen_interval = interval or settings.interval
    interval_ms(chosen_interval)
    first = parse_day(start, "--start") or (datetime.now(UTC).date() - timedelta(days=days))
    shift = parse_day(shift_at, "--shift-at")
    with progress_bars() as bars:
        advance = bars("mirror", days * len(chosen))
        summary = write_mirror(
            directory, chosen, chosen_interval, first, days, seed, shift, advance
        )
    document = {
        **summary.__dict__,
        "source": directory.resolve().as_uri(),
        "interval": chosen_interval,
    }
    document["start"], document["end"] = summary.days[0], summary.days[-1]
    del document["days"]
    if json_out:
        print_json(document)
    else:
        first_day, last_day = summary.days[0], summary.days[-1]
        out.print(
            f"wrote {summary.files} files ({summary.rows:,} rows, {summary.with_header} with a "
            f"header) for {first_day} .. {last_day} under {directory}",
            soft_wrap=True,
        )
        out.print(
            f"use it with: mlops run --source {document['source']} "
            f"--start {first_day} --end {last_day}",
            soft_wrap=True,
        )
