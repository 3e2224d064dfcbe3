"""Run parameters are bounded: a hostile or mistyped range is one clear error, not millions of
jobs built eagerly (issue 15 #12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.intervals import MAX_RUN_DAYS
from pipelines.orchestration.runs import resolve_params
from pipelines.settings import Settings

pytestmark = pytest.mark.hostile


def test_a_century_long_run_is_refused_naming_the_limit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    options: dict[str, str | None] = {
        "source": "file:///m",
        "start": "1925-01-01",
        "end": "2024-12-31",
    }
    with pytest.raises(PipelineError) as caught:
        resolve_params(settings, options)
    message = str(caught.value)
    assert "36525 days" in message and f"({MAX_RUN_DAYS})" in message
    assert "Value error" not in message and "--value" not in message  # one clean line


def test_the_longest_allowed_run_is_accepted(tmp_path: Path) -> None:
    from datetime import date, timedelta

    start = date(2015, 1, 1)
    end = start + timedelta(days=MAX_RUN_DAYS - 1)
    params = resolve_params(
        Settings(home=tmp_path),
        {"source": "file:///m", "start": start.isoformat(), "end": end.isoformat()},
    )
    assert (params.end - params.start).days + 1 == MAX_RUN_DAYS
