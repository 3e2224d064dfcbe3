"""``mlops decisions analyze``: a version that is not one fails with one line naming it (never
a traceback), before or after asking the registry. The verdicts themselves are tested against
the real services (tests/services/test_canary_analysis.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.decisions.canary import (
    EXIT_CODES,
    VERDICT_VALUES,
    CanaryVerdict,
    analyze,
    push_verdict,
)
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import run_cli


def test_exit_codes_stay_apart_from_the_cli_s_error_codes() -> None:
    assert EXIT_CODES["pass"] == 0
    assert len(set(EXIT_CODES.values())) == 3 and not {1, 2} & set(EXIT_CODES.values())


def test_each_verdict_pushes_its_own_value() -> None:
    assert sorted(VERDICT_VALUES) == sorted(EXIT_CODES)
    assert len(set(VERDICT_VALUES.values())) == 3 and VERDICT_VALUES["inconclusive"] == 0


def test_a_push_without_a_pushgateway_is_refused_by_name(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", metrics_pushgateway=None)
    verdict = CanaryVerdict(verdict="pass", model_version="3", reasons=[])
    with pytest.raises(PipelineError, match="--push needs a Pushgateway: set MLOPS_METRICS_PUSH"):
        push_verdict(settings, verdict)


@pytest.mark.parametrize("version", ["unreleased", "0", "-1", "v3", ""])
def test_a_version_that_is_no_number_is_refused_by_name(tmp_path: Path, version: str) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(PipelineError, match=f"--version '{version}': a model version is a posi"):
        analyze(settings, LocalStorage(tmp_path / "data"), version)


@pytest.mark.integration  # importing MLflow runs `uname`
def test_a_version_the_registry_lacks_is_refused_by_name(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(PipelineError, match=r"market-direction version 99 cannot be read from the"):
        analyze(settings, LocalStorage(tmp_path / "data"), "99")


@pytest.mark.integration
def test_the_command_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    env = {"MLOPS_HOME": str(tmp_path / "home")}
    done = run_cli(["decisions", "analyze", "--version", "unreleased", "--json"], env)
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()  # one JSON log line: stderr is not a terminal
    error = json.loads(line)
    assert error["level"] == "error", line
    assert error["message"].startswith("error: --version 'unreleased'"), line
