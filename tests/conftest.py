"""Shared fixtures: a synthetic mirror, a fault-injecting archive server, CLI runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipelines.settings import Settings
from pipelines.synthetic.mirror import write_mirror

if TYPE_CHECKING:
    from stacks.offline.plan import Plan

REPO = Path(__file__).resolve().parent.parent
# joblib asks `lscpu`/`cat /proc/cpuinfo` for the physical cores unless told: no process needed.
os.environ.setdefault("LOKY_MAX_CPU_COUNT", str(os.cpu_count() or 1))
MIRROR_START = date(2024, 3, 1)
MIRROR_DAYS = 6
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
# The tests' mirror holds two symbols, so every pipeline the tests run (in-process or as a
# `mlops` process) trains on those two: the default universe (`Settings.symbols`, six) would
# fetch four symbols the mirror does not have (so does a caller's own MLOPS_SYMBOLS: set, not
# defaulted). Tests of the defaults read the field's default.
os.environ["MLOPS_SYMBOLS"] = ",".join(SYMBOLS)


@pytest.fixture(scope="session")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic archive: 2 symbols x 6 days of 1m bars."""
    root = tmp_path_factory.mktemp("mirror")
    write_mirror(root, SYMBOLS, "1m", MIRROR_START, MIRROR_DAYS, seed=7)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own home, fast retries."""
    return Settings(
        home=tmp_path / "home",
        fetch_backoff_initial=0.01,
        fetch_backoff_max=0.05,
        fetch_concurrency=4,
    )


@dataclass
class ArchiveServer:
    url: str
    log_file: Path
    pid: int

    def requests(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def hits(self, suffix: str) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["path"].endswith(suffix)]


@pytest.fixture
def archive_server(tmp_path: Path) -> Iterator[Callable[..., ArchiveServer]]:
    """Start `tests/support/archive_server.py` on 127.0.0.1; stopped by PID afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(root: Path, faults: dict[str, list[str]] | None = None) -> ArchiveServer:
        n = len(started)
        faults_file = tmp_path / f"faults-{n}.json"
        faults_file.write_text(json.dumps(faults or {}))
        log_file = tmp_path / f"requests-{n}.jsonl"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.archive_server",
                str(root),
                str(faults_file),
                str(log_file),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), f"archive server did not start: {line!r}"
        return ArchiveServer(f"http://127.0.0.1:{line.split()[1]}", log_file, process.pid)

    yield start
    for process in started:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def run_cli(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``mlops ARGS`` as a user would (a real process), capturing output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


class StackPlans(dict[str, "Plan"]):
    """Stack plans (``mlops infra plan`` under mocks) by env, each computed once, on first use.

    ``plans[env]`` is the update-mode plan; ``plans.of(env, preview)`` either mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.previews: dict[str, Plan] = {}

    def __missing__(self, env: str) -> Plan:
        from stacks.offline.plan import plan_stack  # lazily: most tests never plan a stack

        plan = self[env] = plan_stack(env, preview=False)
        return plan

    def of(self, env: str, preview: bool) -> Plan:
        """The plan of `env` in preview (True) or update (False) mode."""
        if not preview:
            return self[env]
        if env not in self.previews:
            from stacks.offline.plan import plan_stack

            self.previews[env] = plan_stack(env, preview=True)
        return self.previews[env]


@pytest.fixture(scope="session")
def plans() -> StackPlans:
    """The stacks' plans, shared by every module that inspects them (each env planned once)."""
    return StackPlans()


class ProcessStartedError(RuntimeError):
    """A test outside the ``integration`` marker tried to start a process."""


@pytest.fixture(autouse=True)
def _fast_lane_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the markers honest: a test not marked ``integration`` may not start a process.

    The fast lane (``pytest -m "not integration"``) is then in-process only by construction; a
    test that needs a process, a server or a tool binary must say so with the marker.
    """
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        raise ProcessStartedError(
            f"{request.node.nodeid} starts a process ({args!r}); mark it "
            "@pytest.mark.integration (see README, 'Tests')"
        )

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


SLOWEST_FIRST = (
    "tests/candidates/test_candidates_services.py",
    "tests/decisions/test_decisions.py",
    "tests/decisions/test_retrain_services.py",
    "tests/decisions/test_shadow_decision.py",
    "tests/bentos/test_serving_hostile.py",
    "tests/bentos/test_serving.py",
    "tests/services/test_faults.py",
    "tests/services/test_cluster_path.py",
    "tests/ml/test_training_cli.py",
    "tests/ml/test_training.py",
    "tests/bentos/test_alerting.py",
    "tests/orchestration/test_run_local_services.py",
    "tests/bentos/test_shadow_serving.py",
    "tests/ml/test_train_budget.py",
    "tests/services/test_local_services.py",
    "tests/services/test_canary_analysis.py",
    "tests/ml/test_rerun_after_kill.py",
    "tests/bentos/test_start.py",
    "tests/orchestration/test_steps_cli.py",
)
"""The modules that take longest (each over a minute on one core, from CI's `--durations`),
longest first. The xdist workers take whole modules (`--dist=loadfile`) in collection order
(`--no-loadscope-reorder`): starting with the longest leaves the short ones to fill the end, so
no worker runs one long module alone at the end while the other idles. Only the order changes;
a module missing here runs after them, in its usual place."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the `SLOWEST_FIRST` modules first, in that order; every other test keeps its place."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
