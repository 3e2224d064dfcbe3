"""Terminal output: progress on stderr, results on stdout, errors as one line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True)
out = Console()


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """A factory of progress bars on stderr; each call adds a bar and returns its advance().
    Where the process logs JSON lines (no terminal), no bars: the log lines say what happens."""
    from pipelines import logs
    from pipelines.progress import no_progress

    if logs.json_enabled():
        yield no_progress
        return
    bars = Progress(
        TextColumn("[bold]{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )

    def add(description: str, total: int) -> Callable[[], None]:
        task = bars.add_task(description, total=total)
        return lambda: bars.advance(task)

    with bars:
        yield add


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    print(json.dumps(document, indent=2, default=str))
