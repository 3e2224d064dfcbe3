"""The Argo exit handler (`mlops workflows record-exit`): how a cluster run ended, in storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration  # every test here starts a process


def test_record_exit_keeps_the_failed_steps(tmp_path: Path) -> None:
    failures = json.dumps(
        [
            {
                "displayName": "train",
                "templateName": "train",
                "message": "OOMKilled",
                "phase": "Failed",
                "finishedAt": "2026-01-01T00:00:00Z",
                "podName": "x",
            }
        ]
    )
    done = run_cli(
        [
            "workflows",
            "record-exit",
            "--run-id",
            "mlops-training-1",
            "--status",
            "Failed",
            "--failures",
            failures,
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "data" / "runs" / "mlops-training-1" / "exit.json").read_text())
    assert record["status"] == "Failed" and record["failures"][0]["displayName"] == "train"
    assert (
        record["failures"][0]["message"] == "OOMKilled" and "podName" not in record["failures"][0]
    )
