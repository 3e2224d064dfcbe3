"""`mlops backfill`: history in bounded chunks of runs up to validate; stops at a failed chunk
and continues from it when run again."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from pipelines import layout
from pipelines.errors import PipelineError
from pipelines.orchestration.backfill import chunks
from pipelines.synthetic.mirror import write_mirror
from tests.conftest import run_cli


def test_chunks_cover_the_range_without_overlap() -> None:
    parts = chunks(date(2024, 1, 1), date(2024, 3, 5), 31)
    assert [(c.start, c.end) for c in parts] == [
        (date(2024, 1, 1), date(2024, 1, 31)),
        (date(2024, 2, 1), date(2024, 3, 2)),
        (date(2024, 3, 3), date(2024, 3, 5)),
    ]
    with pytest.raises(PipelineError, match="before --start"):
        chunks(date(2024, 1, 2), date(2024, 1, 1), 3)


@pytest.mark.integration
def test_backfill_stops_at_a_failed_chunk_and_resumes_from_it(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    write_mirror(mirror, ["BTCUSDT"], "1h", date(2024, 3, 1), 6, seed=3)
    broken = next(mirror.rglob("BTCUSDT-1h-2024-03-04.zip"))
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # truncated upstream: its checksum fails
    env = {"MLOPS_HOME": str(tmp_path / "home"), "MLOPS_FETCH_MAX_ATTEMPTS": "1"}
    args = ["backfill", "--symbols", "BTCUSDT", "--interval", "1h", "--source", mirror.as_uri()]
    first = run_cli(
        [*args, "--start", "2024-03-01", "--end", "2024-03-06", "--chunk-days", "2", "--json"], env
    )
    assert first.returncode == 1, first.stderr
    result = json.loads(first.stdout)
    assert [c["status"] for c in result["chunks"]] == ["succeeded", "failed", "not run"]
    assert result["resume"].startswith("mlops backfill --start 2024-03-03 --end 2024-03-06")
    assert "continue with: mlops backfill --start 2024-03-03" in first.stderr
    data = tmp_path / "home" / "data"
    assert (data / layout.curated("BTCUSDT", "1h", date(2024, 3, 2))).exists()
    assert not (data / layout.curated("BTCUSDT", "1h", date(2024, 3, 5))).exists()

    broken.write_bytes(good)  # upstream repaired
    again = run_cli(
        [*args, "--start", "2024-03-03", "--end", "2024-03-06", "--chunk-days", "2", "--json"], env
    )
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert [c["status"] for c in resumed["chunks"]] == ["succeeded", "succeeded"]
    for day in range(1, 7):
        assert (data / layout.curated("BTCUSDT", "1h", date(2024, 3, day))).exists(), day
    runs = {c["run_id"] for c in result["chunks"][:2]} | {c["run_id"] for c in resumed["chunks"]}
    assert len(runs) == 4, "each chunk is its own run"
    assert not any((data / "runs" / r / "steps" / "train.json").exists() for r in runs), (
        "a backfill trains nothing"
    )
