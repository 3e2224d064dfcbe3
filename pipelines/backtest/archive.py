"""The backtest on a real archive (`mlops decisions backtest --source URL --start D --end D`).

The synthetic market can replay shifts nobody has seen; only real history says how often the
decisions are wrong on the market they will face: how often the calibrated drift test fires
on real stable days, how noisy a healthy champion's live windows really are (real symbols move
together, the synthetic ones do not), how often the gate promotes a challenger that the
following days call worse. So the same trials run on an archive in the data.binance.vision
layout: it is fetched and validated by the pipeline's own steps into a storage of its own
(``$MLOPS_HOME/backtest-archive``, never the platform's), turned into model rows by the
features step's code, and each trial's *seed* picks its first day (seed 0: the archive's first
whole day, seed 1 the next, …). Neighbouring seeds share most of their days, so their outcomes
are not independent: a rate's Clopper-Pearson bound assumes they are and is optimistic here.

Only scenarios that need no generator run on an archive (`ARCHIVE_SCENARIOS`): the market
shifts and the concept change (``vol-x*``, ``trend``, ``volume``, ``champion-degrades``) exist
only in the synthetic market.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd

from pipelines.data.fetch import fetch
from pipelines.data.validate import validate
from pipelines.errors import PipelineError
from pipelines.ml.dataset import build_dataset
from pipelines.ml.features import FeatureConfig
from pipelines.settings import Settings
from pipelines.storage import LocalStorage

ARCHIVE_SCENARIOS = (
    "no-change",
    "late-days",
    "broken-constant",
    "broken-nan",
    "broken-unit",
    "same-challenger",
    "better-challenger",
    "worse-challenger",
    "label-noise",
    "healthy-champion",
    "served-in-percent",
)
"""The scenarios a real archive can replay (the rest need the synthetic market's generator)."""
INTERVAL = "1m"
"""The trials' features are computed on 1-minute bars (`pipelines.backtest.trials.INTERVAL`)."""
MAX_DAYS = 730
"""At most this many archive days (each is fetched, validated and kept as model rows)."""


def prepare(
    settings: Settings,
    source: str,
    start: date,
    end: date,
    on_file: Callable[[], None] | None = None,
) -> Path:
    """Fetch, validate and featurize `source`'s ``MLOPS_SYMBOLS`` 1-minute klines from `start`
    to `end` into ``$MLOPS_HOME/backtest-archive``; returns the labelled model rows' Parquet
    file (a rerun reuses what is there: the steps are idempotent).

    Raises:
        PipelineError: for a bad range or interval, or when the archive fails the pipeline's
            own checks (named by the failing step).
    """
    if settings.interval != INTERVAL:
        raise PipelineError(
            f"the backtest replays 1-minute bars, not MLOPS_INTERVAL={settings.interval}",
            "run it with MLOPS_INTERVAL=1m",
        )
    if end < start:
        raise PipelineError(f"--end {end} is before --start {start}", "swap them")
    if (end - start).days + 1 > MAX_DAYS:
        raise PipelineError(
            f"{(end - start).days + 1} days of archive is more than the backtest reads",
            f"pick at most {MAX_DAYS} days",
        )
    storage = LocalStorage(settings.home / "backtest-archive")
    fetched = fetch(settings, storage, source, settings.symbols, INTERVAL, start, end, on_file)
    gaps = {s: days for s, days in fetched.missing.items() if days}
    if gaps or fetched.files_failed:
        first = next(iter(gaps.items()), None)
        where = f"{first[0]} has no file for {', '.join(first[1][:3])}" if first else ""
        failed = (
            f"{len(fetched.files_failed)} file(s) failed their checks"
            if fetched.files_failed
            else ""
        )
        raise PipelineError(
            f"the archive is not whole from {start} to {end}: "
            + "; ".join(x for x in (where, failed) if x),
            "pick a range every symbol covers (a trial must not land on a gap), or fewer --symbols",
        )
    validate(storage, settings.symbols, INTERVAL, start, end, settings.quarantine_max_share)
    config = FeatureConfig(interval=INTERVAL, horizon=FeatureConfig().horizon)
    info = build_dataset(storage, settings.symbols, INTERVAL, start, end, config)
    return storage.root / info.prefix / "labelled.parquet"


@lru_cache(maxsize=2)
def _all_rows(path: str) -> pd.DataFrame:
    """Every labelled row of the archive, in time order (read once per process)."""
    rows = pd.read_parquet(path)
    times = rows["open_time"]
    rows["open_time"] = (
        pd.to_datetime(times, unit="ms", utc=True)
        if pd.api.types.is_numeric_dtype(times)
        else pd.to_datetime(times, utc=True)
    )
    rows = rows[rows["label"].notna()].astype({"label": "int64"})
    return rows.sort_values(["open_time", "symbol"], ignore_index=True)


def whole_days(path: str) -> int:
    """Whole days of rows the archive holds from its first midnight (a day counts when its
    last minute is there: the last day's final hours have no label yet)."""
    rows = _all_rows(path)
    first = rows["open_time"].min().normalize()
    end = rows["open_time"].max() + pd.Timedelta(minutes=1)
    return int((end - first) / pd.Timedelta(days=1))


def check_seeds(
    path: str, days_needed: dict[str, int], first_seed: int, seeds: dict[str, int]
) -> None:
    """Refuse, before any trial runs, seeds whose days the archive does not hold.

    Raises:
        PipelineError: naming the scenario, the days it needs and the seeds that fit.
    """
    available = whole_days(path)
    start = _all_rows(path)["open_time"].min().normalize()
    for name, needed in days_needed.items():
        last = first_seed + seeds[name] - 1 + needed  # one past the last day read
        if last > available:
            fits = available - needed - first_seed + 1
            through = (start + pd.Timedelta(days=available - 1)).date()
            raise PipelineError(
                f"{name} reads {needed} days from each seed's first day, so seeds "
                f"{first_seed}..{first_seed + seeds[name] - 1} need the archive through day "
                f"{last} after {start.date()}, but it holds {available} whole days "
                f"(through {through})",
                f"use at most {max(fits, 0)} seeds from --first-seed {first_seed}, or a longer "
                "--start/--end range",
            )


def archive_rows(path: str, seed: int, days: int) -> pd.DataFrame:
    """The archive's rows of the `days` days from its first midnight plus `seed` days.

    Raises:
        PipelineError: when the archive ends before them.
    """
    rows = _all_rows(path)
    first = rows["open_time"].min().normalize() + pd.Timedelta(days=seed)
    end = first + pd.Timedelta(days=days)
    available = whole_days(path)
    if seed + days > available:  # `check_seeds` refuses this before any trial runs
        raise PipelineError(
            f"seed {seed} reads {days} days but the archive holds {available} whole days",
            "give a longer --start/--end range or fewer --seeds",
        )
    found: pd.DataFrame = rows[(rows["open_time"] >= first) & (rows["open_time"] < end)]
    return found
