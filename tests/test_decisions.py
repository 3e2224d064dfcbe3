"""Drift-gated promotion and rollback, as scenarios on a synthetic archive (`mlops data mirror`
with a regime change on the last day). One history, in order:

1. a stable market: the first run bootstraps a champion and pins it in GitOps; the second run's
   gate decides by quality on the shared window, with a record and an Evidently report;
2. `--shift-at` inside the current window: drift is detected and shown; the gate rejects and the
   champion stays;
3. a commit failure during a promotion puts the aliases back; the retry promotes;
4. degraded live quality (inference log vs realized outcomes): one bad window → hold; N in a row
   → rollback to `previous`, the serving overlay reverted by a GitOps commit, all in the ledger.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.mirror import write_mirror
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

START = date(2024, 3, 1)
DAYS = 8
SHIFT = START + timedelta(days=DAYS - 1)  # the regime changes on the last day


class History:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.mirror = root / "mirror"
        self.env = {
            "MLOPS_HOME": str(self.home),
            "MLOPS_EVAL_DAYS": "1",
            "MLOPS_CV_FOLDS": "2",
            "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
            "MLOPS_GATE_BOOTSTRAP_SAMPLES": "100",
            "MLOPS_MONITOR_WINDOW_HOURS": "24",
            "MLOPS_MONITOR_WINDOWS": "3",
            "MLOPS_MONITOR_MIN_ROWS": "200",
        }
        self.runs: list[dict[str, Any]] = []

    def cli(self, *args: str) -> Any:
        done = run_cli(list(args), self.env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def run(self, last_day: date) -> dict[str, Any]:
        summary: dict[str, Any] = self.cli(
            "run",
            "--source",
            self.mirror.as_uri(),
            "--start",
            START.isoformat(),
            "--end",
            last_day.isoformat(),
            "--json",
        )
        self.runs.append(summary)
        return summary

    @property
    def settings(self) -> Any:
        from pipelines.settings import Settings

        return Settings(home=self.home)

    @property
    def storage(self) -> Any:
        from pipelines.storage import LocalStorage

        return LocalStorage(self.home / "data")

    def aliases(self) -> dict[str, int]:
        from pipelines.promotion import current_aliases
        from pipelines.tracking import client

        return current_aliases(client(self.settings), "market-direction")

    def pinned(self) -> str:
        from pipelines.promotion import repo_of

        return repo_of(self.settings).pinned("local")

    def bento(self, version: int) -> str:
        from pipelines.promotion import bento_of
        from pipelines.tracking import client

        return bento_of(client(self.settings), "market-direction", version)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    h = History(tmp_path_factory.mktemp("decisions"))
    write_mirror(h.mirror, ["BTCUSDT", "ETHUSDT"], "1m", START, DAYS, seed=11, shift_at=SHIFT)
    return h


def test_1_stable_market_bootstraps_then_gates_by_quality(history: History) -> None:
    first = history.run(START + timedelta(days=5))
    gate = first["steps"]["gate"]
    assert gate["status"] == "succeeded" and gate["decision"] == "promote"
    assert "bootstrap" in gate["reasons"][0]
    assert history.pinned() == history.bento(1) == first["steps"]["package"]["bento"].split(":")[1]

    second = history.run(START + timedelta(days=6))
    gate = second["steps"]["gate"]
    assert gate["decision"] in ("promote", "reject")
    assert gate["reasons"][0].startswith("ROC-AUC") and "interval" in gate["reasons"][0]
    assert "below the limit" in gate["reasons"][1], gate["reasons"]  # a stable market
    record = json.loads(history.storage.read_bytes(gate["record"]))
    assert record["inputs"]["challenger"] == 2 and record["inputs"]["champion"] == 1
    assert (
        record["metrics"]["rows"] > 1000 and len(record["metrics"]["roc_auc_delta_interval"]) == 2
    )
    assert history.storage.exists(f"{gate['report']}/report.html")
    assert history.storage.exists(f"{gate['report']}/report.json")
    expected = {"champion": 2, "previous": 1} if gate["decision"] == "promote" else {"champion": 1}
    assert {a: v for a, v in history.aliases().items() if a != "challenger"} == expected

    # re-running the same decision is answered from the ledger, not made twice
    again = history.cli("gate", "--run-id", second["run_id"], "--json")
    assert again["record"] == gate["record"] and again["reused"] is True


def test_2_a_regime_change_in_the_window_is_drift_and_the_gate_rejects(history: History) -> None:
    before = history.aliases()["champion"]
    pinned = history.pinned()
    third = history.run(SHIFT)
    gate = third["steps"]["gate"]
    assert gate["decision"] == "reject"
    assert "at or above the limit" in gate["reasons"][1], gate["reasons"]
    summary = json.loads(history.storage.read_bytes(f"{gate['report']}/summary.json"))
    assert summary["dataset_drift"] is True and summary["drift_share"] >= 0.5
    drifted = {c["column"] for c in summary["columns"] if c["drifted"]}
    assert drifted & {"realized_vol_12", "realized_vol_48", "hl_range"}
    assert history.aliases()["champion"] == before and history.pinned() == pinned
    listed = history.cli("drift", "list", "--json")["reports"]
    assert listed[0]["path"] == gate["report"] and listed[0]["decision"] == "reject"


def test_3_a_commit_failure_during_promotion_puts_the_aliases_back(history: History) -> None:
    from pipelines import ledger
    from pipelines.errors import PipelineError
    from pipelines.ledger import Decision
    from pipelines.promotion import apply, repo_of

    repo = repo_of(history.settings)
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    aliases, pinned, head = history.aliases(), history.pinned(), repo.head()
    record = Decision(
        kind="gate",
        env="local",
        model_name="market-direction",
        decision="promote",
        reasons=["test"],
        decision_id="manual-3",
        started_at=ledger.now_iso(),
    )
    moves: dict[str, int | None] = {"previous": aliases["champion"], "champion": 3}
    with pytest.raises(PipelineError, match="GitOps commit failed"):
        apply(
            history.settings, history.storage, record, moves, history.bento(3), "promote {record}"
        )
    assert history.aliases() == aliases and history.pinned() == pinned and repo.head() == head
    failed = [d for d in ledger.read_all(history.storage, "local") if d.decision_id == "manual-3"]
    assert [d.decision for d in failed] == ["failed"]

    hook.unlink()
    done = apply(
        history.settings, history.storage, record, moves, history.bento(3), "promote {record}"
    )
    assert (
        history.aliases()["champion"] == 3 and history.aliases()["previous"] == aliases["champion"]
    )
    assert history.pinned() == history.bento(3)
    subject = repo.git("log", "-1", "--format=%s")
    assert subject == f"promote {done.key}" and done.gitops_commit == repo.head()


def log_predictions(history: History, version: int, days: list[date], good: bool) -> None:
    """Logged predictions of `version` for every labelled bar of `days` (as the server writes
    them): right (probability tracks the outcome) or wrong (its opposite)."""
    from bentos.inference_log import Chunk, InferenceLog
    from pipelines.dataset import read_dataset

    prefix = history.runs[-1]["steps"]["features"]["prefix"]
    features = history.runs[-1]["steps"]["features"]["features"]
    rows = read_dataset(history.storage, prefix)
    logger = InferenceLog(history.storage, "local", str(version), features)
    rng = np.random.default_rng(len(days))
    for day in days:
        part = rows[rows["open_time"].dt.date == day]
        label = part["label"].to_numpy(dtype=float)
        noise = rng.uniform(0, 0.3, len(part))
        probability = (
            (0.6 + noise * label - noise * (1 - label)) if good else 1 - label * 0.9 - 0.05
        )
        logger.append(
            Chunk(
                f"day-{day}-{'good' if good else 'bad'}",
                "predict",
                time.time_ns() // 1_000_000,  # later answers for the same bar supersede
                part[features].to_numpy(),
                np.asarray(probability, dtype=float),
                part["symbol"].tolist(),
                [int(t.value // 1_000_000) for t in part["open_time"]],
            )
        )
    logger.close()


def test_4_degraded_live_quality_rolls_back_only_after_n_windows(history: History) -> None:
    from pipelines import ledger

    champion, previous = history.aliases()["champion"], history.aliases()["previous"]
    assert champion == 3
    days = [START + timedelta(days=k) for k in (3, 4, 5)]
    log_predictions(history, champion, days[:2], good=True)
    log_predictions(history, champion, days[2:], good=False)
    hold = history.cli("monitor", "--json")
    assert hold["decision"] == "hold", hold
    assert history.aliases()["champion"] == champion and history.pinned() == history.bento(champion)
    record = json.loads(history.storage.read_bytes(hold["record"]))
    windows = record["metrics"]["windows"]
    assert [w["degraded"] for w in windows] == [False, False, True]
    assert all(w["rows"] >= 200 for w in windows)
    assert any(r.startswith("reports/local/live_quality/") for r in hold["reports"])

    log_predictions(history, champion, days[:2], good=False)  # now three bad windows in a row
    rolled = history.cli("monitor", "--json")
    assert rolled["decision"] == "rollback", rolled
    assert history.aliases()["champion"] == previous and "previous" not in history.aliases()
    assert history.pinned() == history.bento(previous)
    from pipelines.promotion import repo_of

    repo = repo_of(history.settings)
    assert repo.git("log", "-1", "--format=%s").endswith(f"(decision {rolled['record']})")
    assert repo.git("show", "--stat", "--format=", "HEAD").startswith(
        "platform/envs/local/kustomization.yaml"
    ) or "kustomization.yaml" in repo.git("show", "--stat", "--format=", "HEAD")
    records = ledger.read_all(history.storage, "local")
    assert records[-1].kind == "monitor" and records[-1].decision == "rollback"

    moves = history.cli("models", "history", "--json")["history"]
    assert moves[-1]["decision"] == "rollback"
    assert moves[-1]["moves"]["champion"] == {"from": champion, "to": previous}
    assert [m["kind"] for m in moves][:1] == ["gate"]

    by_hand = history.cli("rollback", "--to", str(champion), "--json")
    assert by_hand["decision"] == "rollback" and history.aliases()["champion"] == champion
    assert history.pinned() == history.bento(champion)


def test_evidently_ui_lists_the_reports(history: History) -> None:
    """A real `evidently ui` on the workspace the gate and the monitor fill."""
    import os
    import sys

    import httpx

    from tests.services import free_port, stop, wait_http

    port = free_port()
    log = (history.root / "evidently-ui.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "evidently"),  # the CLI a user runs
            "ui",
            "--workspace",
            str(history.home / "evidently"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/projects", process, timeout=120)
        projects = httpx.get(f"{url}/api/projects").json()
        (project,) = [p for p in projects if p["name"] == "market-direction-local"]
        snapshots = httpx.get(f"{url}/api/projects/{project['id']}/snapshots").json()
        names = {s.get("name") for s in snapshots}
        gate_reports = {
            r["gate"]["report"]
            for r in ({"gate": run["steps"]["gate"]} for run in history.runs)
            if r["gate"]["report"]
        }
        assert gate_reports and gate_reports <= names, (gate_reports, names)
        assert any(str(n).startswith("reports/local/live_quality/") for n in names)
    finally:
        stop(process)
        log.close()


def test_an_ad_hoc_drift_report_by_date_windows(history: History) -> None:
    dataset = history.runs[-1]["steps"]["features"]["prefix"]
    common = ["drift", "report", "--dataset", dataset, "--reference", "2024-03-01..2024-03-06"]
    calm = history.cli(*common, "--current", "2024-03-07..2024-03-07", "--json")
    shifted = history.cli(*common, "--current", f"{SHIFT}..{SHIFT}", "--json")
    assert calm["kind"] == shifted["kind"] == "adhoc"
    assert calm["drift_share"] < 0.5 <= shifted["drift_share"]
    assert calm["reference_rows"] == shifted["reference_rows"] > calm["current_rows"] > 1000
    listed = [r["path"] for r in history.cli("drift", "list", "--json")["reports"]]
    assert shifted["prefix"] in listed and calm["prefix"] in listed


def test_an_env_without_an_overlay_is_refused_clearly(history: History, tmp_path: Path) -> None:
    done = run_cli(["rollback", "--to", "1"], {**history.env, "MLOPS_ENV": "qa"})
    assert done.returncode == 1
    assert "no serving overlay for env 'qa'" in done.stderr
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0
