"""Storage keys: the same on a local directory and on an S3 bucket (DESIGN.md section 4)."""

from __future__ import annotations

from datetime import date

from pipelines.archive import zip_name


def raw_zip(symbol: str, interval: str, day: date) -> str:
    """Verified archive zip, as downloaded."""
    return f"raw/klines/{symbol}/{interval}/{zip_name(symbol, interval, day)}"


def raw_checksum(symbol: str, interval: str, day: date) -> str:
    """The ``.CHECKSUM`` the zip was verified against, kept beside it."""
    return raw_zip(symbol, interval, day) + ".CHECKSUM"


def quarantine(symbol: str, interval: str, day: date) -> str:
    """Rejected rows of one day, each with its reason."""
    return f"quarantine/klines/{symbol}/{interval}/{day.isoformat()}.csv"


def curated(symbol: str, interval: str, day: date) -> str:
    """Clean, typed, deduplicated bars of one symbol and day."""
    return f"curated/klines/{interval}/symbol={symbol}/date={day.isoformat()}/part-0.parquet"


def run_params(run_id: str) -> str:
    """Parameters a run was started with (read by every step of that run)."""
    return f"runs/{run_id}/params.json"


def step_result(run_id: str, step: str) -> str:
    """What one step of a run produced (its part of the run summary)."""
    return f"runs/{run_id}/steps/{step}.json"


def inference(env: str, model_version: str, day: date, name: str) -> str:
    """One batch of logged predictions (what the server saw and said)."""
    return f"inference/{env}/{model_version}/{day.isoformat()}/{name}"
