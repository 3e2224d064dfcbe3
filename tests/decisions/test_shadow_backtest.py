"""The shadow scenarios of the backtest (``mlops decisions backtest-shadow``): a better
challenger in shadow is promoted and a worse one rejected within the shadowed windows; the
figures count false decisions and delays."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipelines.backtest.shadow import (
    BY_NAME,
    SHADOW_WINDOWS,
    ShadowOutcome,
    aggregate,
    markdown,
    run_shadow,
)
from pipelines.cli import app
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from tests.conftest import run_cli


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


def test_bad_arguments_are_refused_by_name_before_any_trial() -> None:
    with pytest.raises(PipelineError, match=r"shadow scenario\(s\): shadow-nope — use some"):
        run_shadow(Settings(), ["shadow-better", "shadow-nope"], 1)
    with pytest.raises(PipelineError, match="--seeds 0: at least one seed"):
        run_shadow(Settings(), ["shadow-better"], 0)


def test_the_command_has_help_and_refuses_zero_seeds() -> None:
    shown = CliRunner().invoke(app, ["decisions", "backtest-shadow", "--help"])
    assert shown.exit_code == 0
    assert all(flag in shown.output for flag in ("--seeds", "--scenarios", "--json"))
    refused = CliRunner().invoke(app, ["decisions", "backtest-shadow", "--seeds", "0"])
    assert refused.exit_code == 2 and "--seeds" in refused.output


@pytest.mark.integration
def test_better_promoted_worse_rejected_within_the_shadowed_windows() -> None:
    args = ["decisions", "backtest-shadow", "--scenarios", "shadow-better,shadow-worse"]
    done = run_cli([*args, "--seeds", "1", "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    results = {r["name"]: r for r in document["results"]}
    assert [t["seed"] for t in document["trials"]] == [0, 0]
    better, worse = results["shadow-better"], results["shadow-worse"]
    assert better["promoted"] == 1 and better["false_decisions"] == 0
    assert worse["rejected"] == 1 and worse["false_decisions"] == 0
    assert 1 <= better["max_delay_windows"] <= SHADOW_WINDOWS
    assert 1 <= worse["max_delay_windows"] <= SHADOW_WINDOWS


@pytest.mark.integration
def test_an_unknown_scenario_is_one_line_and_exit_1() -> None:
    done = run_cli(["decisions", "backtest-shadow", "--scenarios", "shadow-nope"])
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "unknown shadow scenario(s): shadow-nope" in line and "Traceback" not in line
