"""What every step of a run receives: its parameters, settings, storage and progress."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, field_validator, model_validator

from pipelines import layout
from pipelines.intervals import MAX_RUN_DAYS
from pipelines.progress import Progress, no_progress
from pipelines.settings import Interval, Settings, Symbols
from pipelines.storage import Storage

ResultT = TypeVar("ResultT", bound=BaseModel)


class RunParams(BaseModel):
    """Parameters of one run; stored with the run so every step (and a resume) sees the same."""

    source: str
    symbols: Symbols
    interval: Interval
    start: date
    end: date

    @field_validator("source")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("https://", "http://", "file://")):
            raise ValueError(f"source {value!r} must start with https://, http:// or file://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _bounded(self) -> RunParams:
        days = (self.end - self.start).days + 1
        if days > MAX_RUN_DAYS:
            raise ValueError(
                f"{days} days from {self.start} to {self.end} is more than one run covers "
                f"({MAX_RUN_DAYS}); split the backfill into runs of at most that many days"
            )
        return self


def default_dates(settings: Settings, today: date | None = None) -> tuple[date, date]:
    """The range a scheduled run covers: `lookback_days` days ending yesterday (UTC)."""
    end = (today or datetime.now(UTC).date()) - timedelta(days=1)
    return end - timedelta(days=settings.lookback_days - 1), end


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as ``run-20260101T120000Z-1a2b3c``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{secrets.token_hex(3)}"


@dataclass
class StepContext:
    """Everything a step function needs; steps share data only through `storage`."""

    run_id: str
    params: RunParams
    settings: Settings
    storage: Storage
    progress: Progress = no_progress
    pipeline: str = ""
    """The pipeline the step belongs to (labels its metrics); set by the CLI."""

    def result(self, step: str, model: type[ResultT]) -> ResultT:
        """What an earlier step of this run recorded, as its typed result."""
        return model.model_validate(self.result_of(step))

    def result_of(self, step: str) -> dict[str, Any]:
        """What an earlier step of this run recorded (raises FileNotFoundError if none)."""
        loaded: dict[str, Any] = json.loads(
            self.storage.read_bytes(layout.step_result(self.run_id, step))
        )
        return loaded
