"""The ingestion half of `mlops run`, driven as a user drives it: real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration  # every test here starts a process


def test_mirror_then_run_until_validate_twice(tmp_path: Path, archive_server) -> None:
    env = {"MLOPS_HOME": str(tmp_path / "home")}
    made = run_cli(
        [
            "data",
            "mirror",
            str(tmp_path / "mirror"),
            "--start",
            "2024-01-01",
            "--days",
            "4",
            "--json",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["files"] == 8
    server = archive_server(tmp_path / "mirror")
    args = [
        "run",
        "--source",
        server.url,
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-04",
        "--until",
        "validate",
        "--json",
    ]

    first = run_cli(args, env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "succeeded" and summary["run_id"].startswith("run-")
    fetch, validate = summary["steps"]["fetch"], summary["steps"]["validate"]
    assert (
        fetch["files_downloaded"],
        fetch["files_skipped"],
        fetch["files_missing"],
        fetch["retries"],
    ) == (8, 0, [], 0)
    assert (
        validate["rows_valid"],
        validate["rows_quarantined"],
        validate["rows_duplicate"],
        validate["missing_bars"],
    ) == (8 * 1440, 0, 0, 0)
    assert fetch["status"] == validate["status"] == "succeeded"
    assert fetch["seconds"] >= 0 and validate["seconds"] >= 0
    assert set(summary["steps"]) == {"shards", "fetch", "validate"}

    second = run_cli(args, env)
    again = json.loads(second.stdout)
    assert second.returncode == 0 and again["run_id"] != summary["run_id"]
    assert (
        again["steps"]["fetch"]["files_downloaded"],
        again["steps"]["fetch"]["files_skipped"],
    ) == (0, 8)
    assert again["steps"]["validate"]["rows_valid"] == 8 * 1440
    assert not any(r["path"].endswith(".zip") for r in server.requests()[16:])


def test_hourly_bars_go_through_the_same_code(tmp_path: Path) -> None:
    env = {"MLOPS_HOME": str(tmp_path / "home")}
    assert (
        run_cli(
            [
                "data",
                "mirror",
                str(tmp_path / "m"),
                "--interval",
                "1h",
                "--start",
                "2024-01-01",
                "--days",
                "3",
            ],
            env,
        ).returncode
        == 0
    )
    done = run_cli(
        [
            "run",
            "--source",
            (tmp_path / "m").as_uri(),
            "--interval",
            "1h",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-03",
            "--until",
            "validate",
            "--json",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["validate"]["rows_valid"] == 2 * 3 * 24


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    env = {"MLOPS_HOME": str(tmp_path / "home")}
    cases = {
        ("run", "--interval", "7m"): "unknown interval '7m'",
        ("run", "--start", "2024-13-01"): "--start '2024-13-01' is not a date",
        (
            "run",
            "--start",
            "2024-02-01",
            "--end",
            "2024-01-01",
        ): "--end 2024-01-01 is before --start 2024-02-01",
        ("run", "--source", "ftp://x"): "must start with https://, http:// or file://",
        ("run", "--until", "nope", "--source", "file:///nonexistent"): "unknown step 'nope'",
        ("run", "--resume", "run-unknown"): "no run 'run-unknown'",
    }
    for args, expected in cases.items():
        done = run_cli(list(args), env)
        assert done.returncode != 0, args
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    bad_env = run_cli(["run"], {**env, "MLOPS_QUARANTINE_MAX_SHARE": "2"})
    assert bad_env.returncode != 0 and "MLOPS_quarantine_max_share" in bad_env.stderr


def test_nothing_found_fails_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_cli(
        [
            "run",
            "--source",
            (tmp_path / "empty").as_uri(),
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--until",
            "validate",
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["status"] == "failed" and summary["failed_step"] == "fetch"
    # each symbol's shard fails on its own, and the step names how many and the first
    assert "2 shard(s) failed" in summary["error"]
    assert "no archive file for BTCUSDT 1m" in summary["error"]
    assert summary["resume"] == f"mlops run --resume {summary['run_id']}"
