"""The shadow scenarios of the backtest: a better challenger in shadow is promoted and a worse
one rejected within the shadowed windows; the figures count false decisions and delays."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.backtest.shadow import (
    BY_NAME,
    SHADOW_WINDOWS,
    ShadowOutcome,
    aggregate,
    main,
    markdown,
)
from pipelines.settings import Settings
from tests.conftest import REPO


def test_a_decision_against_the_fresh_days_is_counted_false() -> None:
    outcomes = [
        ShadowOutcome("shadow-better", 0, "promote", 2, -0.05, -0.04),
        ShadowOutcome("shadow-better", 1, "promote", 3, 0.01, -0.02),  # truly worse: false
        ShadowOutcome("shadow-better", 2, "reject", 1, -0.03, 0.01),  # truly better: false
        ShadowOutcome("shadow-better", 3, "continue", None, -0.01, 0.0),
    ]
    result = aggregate(BY_NAME["shadow-better"], outcomes)
    assert (result.promoted, result.rejected, result.undecided) == (2, 1, 1)
    assert result.false_decisions == 2
    assert result.mean_delay_windows == 2.0 and result.max_delay_windows == 3
    table = markdown([result], Settings())
    assert "| shadow-better | 4 | promote | 2 | 1 | 1 | 2 | 2.00 / 3 |" in table


def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenarios", "shadow-nope"]) == 2
    assert "unknown scenario(s) ['shadow-nope']" in capsys.readouterr().err
    assert main(["--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


@pytest.mark.integration
def test_better_promoted_worse_rejected_within_the_shadowed_windows() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.backtest.shadow",
            "--scenarios",
            "shadow-better,shadow-worse",
            "--seeds",
            "1",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    better, worse = results["shadow-better"], results["shadow-worse"]
    assert better["promoted"] == 1 and better["false_decisions"] == 0
    assert worse["rejected"] == 1 and worse["false_decisions"] == 0
    assert 1 <= better["max_delay_windows"] <= SHADOW_WINDOWS
    assert 1 <= worse["max_delay_windows"] <= SHADOW_WINDOWS
