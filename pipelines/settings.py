"""Settings from ``MLOPS_*`` environment variables (read once, then passed as values)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.intervals import SUPPORTED


def split_symbols(value: object) -> list[str]:
    """Accept ``"BTCUSDT,ETHUSDT"`` or a list; upper-case, strip, drop empties."""
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    symbols = [str(s).strip().upper() for s in items if str(s).strip()]
    if not symbols:
        raise ValueError("at least one symbol is required, e.g. BTCUSDT,ETHUSDT")
    bad = [s for s in symbols if not s.isalnum()]
    if bad:
        raise ValueError(f"symbols must be letters and digits only, got {bad}")
    return symbols


class Settings(BaseSettings):
    """Everything configurable about a local or cluster run.

    Each field reads ``MLOPS_<FIELD>`` from the environment, e.g. ``MLOPS_HOME``.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Path(".mlops")
    """Root of local state: storage (unless ``storage_url`` says otherwise), MLflow DB, bentos."""

    env: str = "local"
    """Environment name; it keys reports, inference logs and decisions."""

    storage_url: str | None = None
    """Where the storage layout lives: a directory path, ``file://…`` or ``s3://bucket/prefix``.
    Default: ``$MLOPS_HOME/data``."""

    source_url: str = "https://data.binance.vision"
    """Archive root in the data.binance.vision layout: ``https://``, ``http://`` or ``file://``."""

    symbols: Annotated[list[str], NoDecode] = Field(default=["BTCUSDT", "ETHUSDT"])
    """Symbols to fetch and train on (comma-separated in the environment)."""

    interval: str = "1m"
    """Kline interval fetched from the archive."""

    lookback_days: int = Field(default=60, ge=1)
    """Days fetched when no ``--start`` is given (the range ends yesterday, UTC)."""

    model_name: str = "market-direction"
    """Registered model name in MLflow."""

    fetch_concurrency: int = Field(default=8, ge=1, le=64)
    """Downloads in flight at once."""

    fetch_max_attempts: int = Field(default=5, ge=1)
    """Attempts per request on connection errors, 5xx, 429/418 and truncated bodies."""

    fetch_backoff_initial: float = Field(default=0.5, ge=0)
    """First retry delay in seconds; doubles each attempt, with jitter."""

    fetch_backoff_max: float = Field(default=30.0, ge=0)
    """Largest delay between two attempts, in seconds."""

    fetch_max_retry_after: float = Field(default=300.0, ge=0)
    """Longest ``Retry-After`` honoured; a longer one fails the file instead of hanging."""

    fetch_timeout: float = Field(default=30.0, gt=0)
    """Seconds before a request is abandoned (then retried)."""

    quarantine_max_share: float = Field(default=0.01, ge=0, le=1)
    """Largest share of rows a day, or the run, may lose to quarantine before validate fails."""

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> list[str]:
        return split_symbols(value)

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        if value not in SUPPORTED:
            raise ValueError(f"unknown interval {value!r}; use one of {', '.join(SUPPORTED)}")
        return value

    @property
    def data_url(self) -> str:
        """Storage location, defaulting to ``$MLOPS_HOME/data``."""
        return self.storage_url or str(self.home / "data")
