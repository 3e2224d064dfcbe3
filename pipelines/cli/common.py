"""What every command group shares: settings loading, storage, common options."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pipelines.errors import PipelineError, describe_validation_error

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SymbolsOpt = Annotated[
    str | None,
    typer.Option("--symbols", help="Comma-separated, e.g. BTCUSDT,ETHUSDT. (env MLOPS_SYMBOLS)"),
]
IntervalOpt = Annotated[
    str | None,
    typer.Option("--interval", help="Kline interval: 1m 5m 15m 1h 4h 1d … (env MLOPS_INTERVAL)"),
]
PipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="training (daily) or monitor (hourly).")
]


def load_settings() -> Any:
    """Settings from the environment, with a one-line error on a bad MLOPS_* value."""
    from pipelines.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        raise PipelineError(describe_validation_error(error, "MLOPS_")) from None


def open_settings_storage(settings: Any) -> Any:
    """The storage the settings name (``MLOPS_STORAGE_URL`` + ``MLOPS_RAW_STORAGE_URL``)."""
    from pipelines.storage import open_storage

    return open_storage(settings.data_url, settings.raw_storage_url)
