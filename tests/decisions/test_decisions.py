"""Drift-gated promotion and rollback, as scenarios on a synthetic archive (`mlops data mirror`
with a regime change on the last day). One history, built in stages:

1. a stable market: the first run bootstraps a champion and pins it in GitOps; the second run's
   gate decides by quality on the shared window, with a record and an Evidently report;
2. `--shift-at` inside the current window: drift is detected and shown; the gate rejects and the
   champion stays;
3. a commit failure during a promotion puts the aliases back; the retry promotes;
4. crafted predictions (hostile): rows posted for real bars with features chosen to make the
   champion look bad are not judged, only counted: no rollback;
5. degraded live quality (inference log vs realized outcomes): one bad window → hold; N in a row
   → rollback to `previous`, the serving overlay reverted by a GitOps commit, all in the ledger.

Each stage runs once per session, when the first test that needs it asks (`history.stage(n)`
runs the stages before it first) and records what it observed at the time; each test asserts
on its stage's observations. So every test runs alone (`pytest -k NAME`) and a full run does
each stage's work once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions.pin import ServingPin
from pipelines.synthetic.mirror import write_mirror
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
            # 7 training days: a 1-day drift reference leaves the 8 null windows calibration
            # needs (the default 7 days would leave none: the fixed line)
            "MLOPS_DRIFT_REFERENCE_DAYS": "1",
        }
        self.runs: list[dict[str, Any]] = []
        self.asked = 0  # requests logged so far: each round answers a little later
        self.stages: dict[int, dict[str, Any]] = {}
        self.failed: dict[int, str] = {}

    def stage(self, n: int) -> dict[str, Any]:
        """What stage `n` observed, running it (and the stages before it) on first use. A stage
        that failed is not run again on the state it left: later tests fail naming it."""
        for k in range(1, n + 1):
            if k in self.failed:
                pytest.fail(f"stage {k} failed earlier: {self.failed[k]}")
            if k not in self.stages:
                try:
                    self.stages[k] = STAGES[k](self)
                except BaseException as error:
                    self.failed[k] = f"{type(error).__name__}: {error}"[:2000]
                    raise
        return self.stages[n]

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
        from pipelines.decisions.promotion import current_aliases
        from pipelines.ml.tracking import client

        return current_aliases(client(self.settings), "market-direction")

    def pinned(self) -> ServingPin | None:
        from pipelines.decisions.promotion import repo_of

        return repo_of(self.settings).pinned("local")

    def bento(self, version: int) -> ServingPin:
        """What a promotion of `version` pins: its registry tags."""
        from pipelines.decisions.promotion import pin_of
        from pipelines.ml.tracking import client

        return pin_of(client(self.settings), "market-direction", version)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    h = History(tmp_path_factory.mktemp("decisions"))
    write_mirror(h.mirror, ["BTCUSDT", "ETHUSDT"], "1m", START, DAYS, seed=11, shift_at=SHIFT)
    return h


def stable_market(history: History) -> dict[str, Any]:
    """Stage 1: bootstrap, then a second run on a stable market; the gate asked twice."""
    first = history.run(START + timedelta(days=5))
    seen: dict[str, Any] = {"first": first, "pinned_after_first": history.pinned()}
    second = history.run(START + timedelta(days=6))
    seen.update(second=second, aliases=history.aliases())
    seen["again"] = history.cli("decisions", "gate", "--run-id", second["run_id"], "--json")
    return seen


def regime_change(history: History) -> dict[str, Any]:
    """Stage 2: a run whose evaluation window holds the regime change."""
    before, pinned = history.aliases()["champion"], history.pinned()
    third = history.run(SHIFT)
    return {
        "third": third,
        "champion_before": before,
        "pinned_before": pinned,
        "champion_after": history.aliases()["champion"],
        "pinned_after": history.pinned(),
        "listed": history.cli("drift", "list", "--json")["reports"],
    }


def commit_failure(history: History) -> dict[str, Any]:
    """Stage 3: a promotion whose GitOps commit a hook refuses, then the same promotion again."""
    from pipelines.decisions import ledger
    from pipelines.decisions.promotion import apply, repo_of
    from pipelines.errors import PipelineError
    from tests.support.records import make_decision

    repo = repo_of(history.settings)
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    seen: dict[str, Any] = {
        "aliases": history.aliases(),
        "pinned": history.pinned(),
        "head": repo.head(),
    }
    record = make_decision(model_name="market-direction", reasons=["test"], decision_id="manual-3")
    moves: dict[str, int | None] = {"previous": seen["aliases"]["champion"], "champion": 3}
    try:
        apply(history.settings, history.storage, record, moves, history.bento(3), "p {record}")
        seen["error"] = None
    except PipelineError as error:
        seen["error"] = str(error)
    seen.update(
        aliases_after_failure=history.aliases(),
        pinned_after_failure=history.pinned(),
        head_after_failure=repo.head(),
        recorded=[
            d.decision
            for d in ledger.read_all(history.storage, "local")
            if d.decision_id == "manual-3"
        ],
    )
    hook.unlink()
    done = apply(
        history.settings, history.storage, record, moves, history.bento(3), "promote {record}"
    )
    seen.update(
        done=done,
        aliases_after_retry=history.aliases(),
        pinned_after_retry=history.pinned(),
        subject=repo.git("log", "-1", "--format=%s"),
        head_after_retry=repo.head(),
    )
    return seen


BAR_MS = 60_000  # the scenario's model interval (1m)


def answer_times(history: History, open_times: list[int]) -> list[int]:
    """When the server answered each bar: live, as a client asking at every bar's close would,
    each round of requests a second later than the one before (later answers supersede)."""
    history.asked += 1
    return [t + BAR_MS + 1000 * history.asked for t in open_times]


def log_rows(
    history: History,
    version: int,
    features: list[str],
    rows: Any,
    matrix: np.ndarray,
    probability: np.ndarray,
    tag: str,
) -> None:
    """Log `rows` (``symbol``, ``open_time``) as the server does: one request per bar time,
    answered at `answer_times`."""
    from bentos.inference_log import Chunk, InferenceLog

    logger = InferenceLog(history.storage, "local", str(version), features)
    open_ms = np.asarray([int(t.value // 1_000_000) for t in rows["open_time"]])
    symbols = np.asarray(rows["symbol"].tolist())
    bars = sorted(set(open_ms.tolist()))
    for bar, asked in zip(bars, answer_times(history, bars), strict=True):
        pick = open_ms == bar
        logger.append(
            Chunk(
                f"{tag}-{bar}",
                "predict",
                asked,
                matrix[pick],
                probability[pick],
                symbols[pick].tolist(),
                open_ms[pick].tolist(),
            )
        )
    logger.close()


def log_predictions(history: History, version: int, days: list[date], good: bool) -> int:
    """Logged predictions of `version` for every labelled bar of `days` (as the server writes
    them): right (probability tracks the outcome) or wrong (its opposite). Returns the rows."""
    from pipelines.ml.dataset import read_dataset

    prefix = history.runs[-1]["steps"]["features"]["prefix"]
    features = history.runs[-1]["steps"]["features"]["features"]
    rows = read_dataset(history.storage, prefix)
    part = rows[rows["open_time"].dt.date.isin(days)]
    rng = np.random.default_rng(len(days))
    label = part["label"].to_numpy(dtype=float)
    noise = rng.uniform(0, 0.3, len(part))
    probability = (0.6 + noise * label - noise * (1 - label)) if good else 1 - label * 0.9 - 0.05
    tag = "good" if good else "bad"
    matrix = client_features(history, part, features)
    log_rows(history, version, features, part, matrix, np.asarray(probability, float), tag)
    return len(part)


def client_features(history: History, part: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The float64 features a client computes for these bars (`tests.support.client_features`)."""
    from pipelines.ml.features import FeatureConfig
    from tests.support.client_features import client_features as recomputed

    interval = history.runs[-1]["params"]["interval"]
    settings = history.settings
    config = FeatureConfig(interval=settings.model_interval or interval, horizon=settings.horizon)
    return recomputed(history.storage, part, features, interval, config)


def craft_predictions(history: History, version: int, days: list[date]) -> int:
    """The attack: for every bar of `days`, a row naming that real bar (symbol, open_time) with
    the features that make `version` most confident of the wrong direction, answered by the
    model itself, asked live (as if the attacker foresaw every outcome). Returns the rows."""
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.tracking import load_model_safely

    prefix = history.runs[-1]["steps"]["features"]["prefix"]
    features = history.runs[-1]["steps"]["features"]["features"]
    rows = read_dataset(history.storage, prefix)
    model = load_model_safely(history.settings, f"models:/market-direction/{version}")
    answers = model.predict_proba(rows[features])[:, 1]
    surest_up, surest_down = (
        rows[features].iloc[[int(np.argmax(answers))]],
        rows[features].iloc[[int(np.argmin(answers))]],
    )
    part = rows[rows["open_time"].dt.date.isin(days)]
    went_up = part["label"].to_numpy(dtype=float) == 1
    matrix = np.where(went_up[:, None], surest_down.to_numpy(), surest_up.to_numpy())
    probability = np.asarray(model.predict_proba(matrix)[:, 1], dtype=float)
    log_rows(history, version, features, part, matrix, probability, "crafted")
    return len(part)


def crafted_predictions(history: History) -> dict[str, Any]:
    """Stage 4 (hostile): honest traffic shows a healthy champion; then crafted rows for the
    same bars, answered later, try to make it look bad enough for a rollback."""
    champion, previous = history.aliases()["champion"], history.aliases()["previous"]
    days = [START + timedelta(days=k) for k in (3, 4, 5)]
    seen: dict[str, Any] = {"champion": champion, "previous": previous}
    seen["honest"] = log_predictions(history, champion, days, good=True)
    seen["crafted"] = craft_predictions(history, champion, days)
    seen["pinned_before"] = history.pinned()
    seen["result"] = history.cli("decisions", "monitor", "--json")
    seen.update(aliases_after=history.aliases(), pinned_after=history.pinned())
    return seen


def degraded_live_quality(history: History) -> dict[str, Any]:
    """Stage 5: one bad live window (hold), then three (rollback), then a rollback by hand."""
    from pipelines.decisions import ledger
    from pipelines.decisions.promotion import repo_of

    champion, previous = history.aliases()["champion"], history.aliases()["previous"]
    days = [START + timedelta(days=k) for k in (3, 4, 5)]
    honest = log_predictions(history, champion, days[:2], good=True)
    honest += log_predictions(history, champion, days[2:], good=False)
    seen: dict[str, Any] = {"champion": champion, "previous": previous, "honest": honest}
    seen["hold"] = history.cli("decisions", "monitor", "--json")
    seen.update(aliases_after_hold=history.aliases(), pinned_after_hold=history.pinned())
    log_predictions(history, champion, days[:2], good=False)  # now three bad windows in a row
    seen["rolled"] = history.cli("decisions", "monitor", "--json")
    repo = repo_of(history.settings)
    seen.update(
        aliases_after_rollback=history.aliases(),
        pinned_after_rollback=history.pinned(),
        subject=repo.git("log", "-1", "--format=%s"),
        changed=repo.git("show", "--name-only", "--format=", "HEAD").split(),
        last_record=ledger.read_all(history.storage, "local")[-1],
        moves=history.cli("models", "history", "--json")["history"],
    )
    seen["by_hand"] = history.cli("decisions", "rollback", "--to", str(champion), "--json")
    seen.update(aliases_after_by_hand=history.aliases(), pinned_after_by_hand=history.pinned())
    return seen


STAGES = {
    1: stable_market,
    2: regime_change,
    3: commit_failure,
    4: crafted_predictions,
    5: degraded_live_quality,
}


def test_a_stable_market_bootstraps_then_gates_by_quality(history: History) -> None:
    seen = history.stage(1)
    first, second = seen["first"], seen["second"]
    gate = first["steps"]["gate"]
    assert gate["status"] == "succeeded" and gate["decision"] == "promote"
    assert "bootstrap" in gate["reasons"][0]
    package = first["steps"]["package"]
    pin = seen["pinned_after_first"]
    assert pin == history.bento(1)
    assert pin.model_version == 1 and pin.model_sha256 == package["model_sha256"]
    assert pin.image_tag == package["image_tag"] == package["bento"].split("-")[-1]
    # the pinned digest is the digest of the archive the package step exported
    key = package["model_archive"].removeprefix(f"{history.storage.url}/")
    assert hashlib.sha256(history.storage.read_bytes(key)).hexdigest() == pin.model_sha256

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
    assert {a: v for a, v in seen["aliases"].items() if a != "challenger"} == expected

    # re-running the same decision is answered from the ledger, not made twice
    assert seen["again"]["record"] == gate["record"] and seen["again"]["reused"] is True


def test_a_regime_change_in_the_window_is_drift_and_the_gate_rejects(history: History) -> None:
    seen = history.stage(2)
    gate = seen["third"]["steps"]["gate"]
    assert gate["decision"] == "reject"
    assert "at or above the limit" in gate["reasons"][1], gate["reasons"]
    summary = json.loads(history.storage.read_bytes(f"{gate['report']}/summary.json"))
    assert summary["dataset_drift"] is True and summary["drift_share"] >= summary["threshold"]
    # calibrated (docs/decisions.md): each feature against its own threshold, named in the record
    record = json.loads(history.storage.read_bytes(gate["record"]))
    assert record["thresholds"]["drift_calibration"].startswith("features/")
    assert len({c["threshold"] for c in summary["columns"]}) > 1
    drifted = {c["column"] for c in summary["columns"] if c["drifted"]}
    # the volatility features' own lines are high (day-to-day volatility clustering); the
    # regime's other ingredients (returns' spread, aggressive buyers) cross theirs
    assert drifted and all(
        c["score"] >= c["threshold"] for c in summary["columns"] if c["column"] in drifted
    )
    assert seen["champion_after"] == seen["champion_before"]
    assert seen["pinned_after"] == seen["pinned_before"]
    assert seen["listed"][0]["path"] == gate["report"]
    assert seen["listed"][0]["decision"] == "reject"


def test_a_commit_failure_during_promotion_puts_the_aliases_back(history: History) -> None:
    seen = history.stage(3)
    assert seen["error"] is not None and "GitOps commit failed" in seen["error"]
    assert seen["aliases_after_failure"] == seen["aliases"]
    assert seen["pinned_after_failure"] == seen["pinned"]
    assert seen["head_after_failure"] == seen["head"]
    assert seen["recorded"] == ["failed"]

    after = seen["aliases_after_retry"]
    assert after["champion"] == 3 and after["previous"] == seen["aliases"]["champion"]
    assert seen["pinned_after_retry"] == history.bento(3)
    done = seen["done"]
    assert seen["subject"] == f"promote {done.key}"
    assert done.gitops_commit == seen["head_after_retry"]


@pytest.mark.hostile
def test_crafted_predictions_are_counted_not_judged(history: History) -> None:
    """Finding 3: rows posted to /predict naming real bars, with features that make the champion
    confidently wrong and answered after the honest ones, once forced a rollback (the monitor
    judged the latest answer per bar). Now they are checked against the curated klines, left
    out and counted; the honest rows of the same bars are still judged (healthy: hold)."""
    seen = history.stage(4)
    result = seen["result"]
    assert seen["crafted"] > 3 * 200  # enough to judge three windows on their own
    assert result["decision"] == "hold", result
    assert seen["aliases_after"]["champion"] == seen["champion"]
    assert seen["aliases_after"]["previous"] == seen["previous"]
    assert seen["pinned_after"] == seen["pinned_before"] == history.bento(seen["champion"])
    trust = result["trust"]
    assert trust["untrusted"] == {"features_differ": seen["crafted"]}, trust
    assert trust["trusted_rows"] == seen["honest"] and trust["pending_rows"] == 0
    assert any("features_differ" in r and "left out" in r for r in result["reasons"])
    record = json.loads(history.storage.read_bytes(result["record"]))
    assert record["metrics"]["trust"] == trust
    windows = record["metrics"]["windows"]
    assert len(windows) == 3 and all(w["judged"] and not w["degraded"] for w in windows)
    assert sum(w["rows"] for w in windows) == seen["honest"]  # the honest answers, not crafted


def test_degraded_live_quality_rolls_back_only_after_n_windows(history: History) -> None:
    seen = history.stage(5)
    champion, previous = seen["champion"], seen["previous"]
    assert champion == 3
    hold = seen["hold"]
    assert hold["decision"] == "hold", hold
    assert seen["aliases_after_hold"]["champion"] == champion
    assert seen["pinned_after_hold"] == history.bento(champion)
    record = json.loads(history.storage.read_bytes(hold["record"]))
    windows = record["metrics"]["windows"]
    assert [w["degraded"] for w in windows] == [False, False, True]
    assert all(w["rows"] >= 200 for w in windows)
    # the ROC-AUC deficit is judged within symbol, against what training recorded
    assert 0.0 < record["thresholds"]["recorded_roc_auc_within_symbol"] < 1.0
    assert all(0.0 <= w["roc_auc_within_symbol"] <= 1.0 for w in windows if w["judged"])
    verdict = record["metrics"]["degradation"]
    assert (
        len(verdict["excess"]["roc_auc"]) == verdict["judged"] == sum(w["judged"] for w in windows)
    )
    assert any(r.startswith("reports/local/live_quality/") for r in hold["reports"])

    # the crafted rows of stage 4 are still in the log: counted, never judged, and they do not
    # stop honest evidence from rolling back (an attacker cannot block a due rollback either)
    assert hold["trust"]["untrusted"] == {"features_differ": history.stage(4)["crafted"]}
    rolled = seen["rolled"]
    assert rolled["decision"] == "rollback", rolled
    assert rolled["trust"]["untrusted"] == hold["trust"]["untrusted"]
    assert rolled["trust"]["trusted_rows"] > hold["trust"]["trusted_rows"] > seen["honest"]
    after = seen["aliases_after_rollback"]
    assert after["champion"] == previous and "previous" not in after
    assert seen["pinned_after_rollback"] == history.bento(previous)
    assert seen["subject"].endswith(f"(decision {rolled['record']})")
    # the rollback commit changes exactly the local env's pin: the model (same serving code,
    # so the image tag stays)
    assert seen["changed"] == ["platform/envs/local/model.env"]
    assert seen["last_record"].kind == "monitor" and seen["last_record"].decision == "rollback"

    moves = seen["moves"]
    assert moves[-1]["decision"] == "rollback"
    assert moves[-1]["moves"]["champion"] == {"from": champion, "to": previous}
    assert [m["kind"] for m in moves][:1] == ["gate"]

    by_hand = seen["by_hand"]
    assert (
        by_hand["decision"] == "rollback" and seen["aliases_after_by_hand"]["champion"] == champion
    )
    assert seen["pinned_after_by_hand"] == history.bento(champion)


def test_evidently_ui_lists_the_reports(history: History) -> None:
    """A real `evidently ui` on the workspace the gate and the monitor fill."""
    history.stage(5)  # gate reports (stages 1-3) and live quality reports (stages 4-5)
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
        # each decision published its reports and itself with its outcome and ledger key
        from pipelines.decisions import ledger

        records = {r.key: r for r in ledger.read_all(history.storage, "local")}
        published = [s for s in snapshots if "record" in s["metadata"]]
        for snapshot in published:
            record = records[snapshot["metadata"]["record"]]
            assert snapshot["metadata"]["outcome"] == record.decision in snapshot["tags"]
            assert snapshot["metadata"]["decision"] == record.kind
        gate_records = {run["steps"]["gate"]["record"] for run in history.runs}
        assert gate_records <= {s["metadata"]["record"] for s in published}
        assert {"promote", "reject", "hold", "rollback"} <= {
            s["metadata"]["outcome"] for s in published
        }
    finally:
        stop(process)
        log.close()


def test_an_ad_hoc_drift_report_by_date_windows(history: History) -> None:
    dataset = history.stage(2)["third"]["steps"]["features"]["prefix"]
    common = ["drift", "report", "--dataset", dataset, "--reference", "2024-03-01..2024-03-06"]
    calm = history.cli(*common, "--current", "2024-03-07..2024-03-07", "--json")
    shifted = history.cli(*common, "--current", f"{SHIFT}..{SHIFT}", "--json")
    assert calm["kind"] == shifted["kind"] == "adhoc"
    assert calm["drift_share"] < 0.5 <= shifted["drift_share"]
    assert calm["reference_rows"] == shifted["reference_rows"] > calm["current_rows"] > 1000
    listed = [r["path"] for r in history.cli("drift", "list", "--json")["reports"]]
    assert shifted["prefix"] in listed and calm["prefix"] in listed


def test_an_env_without_an_overlay_is_refused_clearly(history: History) -> None:
    from pipelines.decisions import ledger
    from pipelines.decisions.promotion import repo_of

    history.stage(1)  # a registry with versions to roll back to
    repo = repo_of(history.settings)
    head, aliases = repo.head(), history.aliases()
    done = run_cli(["decisions", "rollback", "--to", "1"], {**history.env, "MLOPS_ENV": "qa"})
    assert done.returncode == 1
    assert "no serving overlay for env 'qa'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    # refused before anything moved: no commit, no alias move; the ledger keeps the attempt
    assert repo.head() == head and history.aliases() == aliases
    records = ledger.read_all(history.storage, "qa")
    assert [r.decision for r in records] == ["failed"]
    assert records[0].gitops_commit is None and records[0].aliases_after == {}
