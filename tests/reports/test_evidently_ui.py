"""The env's Evidently project dashboard (pipelines/reports/workspace.py), rendered by a real
`evidently ui` in a real headless Chromium: each panel shows data from a workspace with a few
published decisions; every snapshot carries the decision's outcome and ledger key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from pipelines.reports.drift import data_drift
from pipelines.reports.quality import quality_report
from pipelines.reports.workspace import OUTCOMES, PANELS, DecisionFacts, publish_decision
from pipelines.storage import LocalStorage
from tests.services import free_port, stop, wait_http

FEATURES = ["ret_1", "ret_5", "vol_15", "rsi_14"]
PROJECT = "market-direction-local"
START = datetime(2026, 11, 1, tzinfo=UTC)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GATES = ("promote", "reject", "promote")
MONITORS = ("hold", "hold", "rollback")


def frame(seed: int, shift: int = 0, rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    for column in FEATURES[:shift]:
        data[column] += 1.5
    return data


def decide(
    storage: LocalStorage, workspace: Path, step: str, outcome: str, moment: datetime, i: int
) -> DecisionFacts:
    """One decision as the gate or the monitor makes it: its reports, then its publication."""
    kind = "data_drift" if step == "gate" else "live_drift"
    drift = data_drift(
        frame(1), frame(10 + i, shift=i + 1), FEATURES, storage=storage, env="local",
        kind=kind, now=moment,
    )  # fmt: skip
    reports = [drift.prefix]
    if step == "monitor":
        rng = np.random.default_rng(i)
        live = pd.DataFrame({"label": rng.integers(0, 2, 300)})
        live["probability_up"] = np.clip(
            live["label"] * (0.4 - 0.15 * i) + rng.random(300) * 0.6, 0, 1
        )
        reports.insert(0, quality_report(live, storage=storage, env="local", now=moment).prefix)
    facts = DecisionFacts(
        env="local",
        step=step,
        outcome=outcome,
        record=f"decisions/local/{moment:%Y%m%dT%H%M%S}000000Z-{step}.json",
        decided_at=moment,
        models_compared=f"v{i + 2} vs v{i + 1}" if step == "gate" else "champion v3 (live)",
        drift_share=drift.drift_share,
        drift_by_kind={kind: (drift.drift_share, len(drift.drifted_columns))},
        champion_eval_roc_auc=0.61,
        reports=reports,
    )  # fmt: skip
    publish_decision(storage, facts, workspace, PROJECT, FEATURES)
    return facts


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DecisionFacts]]:
    root = tmp_path_factory.mktemp("evidently")
    storage, space = LocalStorage(root / "store"), root / "workspace"
    made = [
        decide(storage, space, "gate", outcome, START + timedelta(days=i), i)
        for i, outcome in enumerate(GATES)
    ] + [
        decide(storage, space, "monitor", outcome, START + timedelta(days=i, hours=12), i)
        for i, outcome in enumerate(MONITORS)
    ]
    return space, made


@pytest.fixture(scope="module")
def ui(workspace: tuple[Path, list[DecisionFacts]]) -> Iterator[str]:
    """A real `evidently ui` on 127.0.0.1, stopped by its process group afterwards."""
    port = free_port()
    log = (workspace[0].parent / "evidently-ui.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace[0]),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/projects", process, timeout=180)
        yield url
    finally:
        stop(process)
        log.close()


def project_id(url: str) -> str:
    (project,) = [p for p in httpx.get(f"{url}/api/projects").json() if p["name"] == PROJECT]
    return str(project["id"])


def panels(dom: str) -> dict[str, dict[str, Any]]:
    """Per panel title (``<h5>``): its series legends, lines, points and bars (MUI X charts)."""
    titles = list(re.finditer(r"<h5[^>]*>([^<]*)</h5>", dom))
    found = {}
    for n, title in enumerate(titles):
        body = dom[title.end() : titles[n + 1].start() if n + 1 < len(titles) else len(dom)]
        bars = re.findall(r'<rect[^>]*height="([\d.]+)"[^>]*MuiBarElement-series-([\w-]+)', body)
        found[title.group(1).replace("&#x27;", "'").replace("&#39;", "'")] = {
            "lines": len(re.findall(r'class="MuiLineElement-root', body)),
            "points": len(re.findall(r'class="MuiMarkElement-root', body)),
            "bars": [float(h) for h, _ in bars if float(h) > 0],
            "bar_series": {s for h, s in bars if float(h) > 0},
            "text": re.sub(r"<[^>]+>", " ", body),
        }
    return found


def render(url: str, tmp_path: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: apt-get install chromium (.ci/run does)"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.integration
def test_the_dashboard_renders_every_panel_with_data_in_chromium(
    ui: str, workspace: tuple[Path, list[DecisionFacts]], tmp_path: Path
) -> None:
    # The DOM is dumped at one moment: on a loaded machine (seen in CI at load ~2 on 2 cores)
    # the bar chart had not drawn yet, once in three dumps in a row (CI, 2026-12-02), so a dump
    # whose bar chart is still empty is taken again, at most six times, a second apart; each is
    # kept beside the test for reading, and every assertion below holds on the last one.
    for attempt in range(6):
        dom = render(f"{ui}/projects/{project_id(ui)}", tmp_path / f"render{attempt}")
        (tmp_path / f"render{attempt}.html").write_text(dom)
        shown = panels(dom)
        if PANELS[1] in shown and shown[PANELS[1]]["bar_series"]:
            break
        time.sleep(1)
    assert "currently empty" not in dom
    assert list(shown) == list(PANELS), list(shown)
    share, columns, per_feature, auc, decisions = (shown[t] for t in PANELS)
    # drift share and drifted columns: a series per report kind, a point per decision
    assert share["lines"] == 2 and share["points"] == len(GATES) + len(MONITORS)
    assert "gate: train vs window" in share["text"] and "monitor: live window" in share["text"]
    assert len(columns["bar_series"]) == 2 and len(columns["bars"]) == len(GATES) + len(MONITORS)
    # each feature's drift score, from every drift report
    assert per_feature["lines"] == len(FEATURES)
    assert per_feature["points"] == len(FEATURES) * (len(GATES) + len(MONITORS))
    assert all(f in per_feature["text"] for f in FEATURES)
    # live ROC-AUC per monitor window against the champion's evaluation
    assert auc["lines"] == 2 and auc["points"] == 2 * len(MONITORS)
    assert "live ROC-AUC" in auc["text"] and "champion's evaluation ROC-AUC" in auc["text"]
    # one bar per decision, coloured by its outcome
    assert len(decisions["bars"]) == len(GATES) + len(MONITORS)
    assert len(decisions["bar_series"]) == len(OUTCOMES)
    assert all(o in decisions["text"] for o in OUTCOMES)


@pytest.mark.integration
def test_every_snapshot_carries_the_decision(
    ui: str, workspace: tuple[Path, list[DecisionFacts]]
) -> None:
    snapshots = httpx.get(f"{ui}/api/projects/{project_id(ui)}/snapshots").json()
    made = workspace[1]
    assert len(snapshots) == sum(len(f.reports) + 1 for f in made)
    by_record = {f.record: f for f in made}
    for snapshot in snapshots:
        metadata, tags = snapshot["metadata"], snapshot["tags"]
        facts = by_record[metadata["record"]]
        assert metadata["outcome"] == facts.outcome and facts.outcome in tags
        assert metadata["models_compared"] == facts.models_compared
        assert metadata["drift_share"] == f"{facts.drift_share:.4f}"
        assert metadata["decision"] == facts.step and facts.step in tags
    # the Reports list filters by outcome: the tag picks exactly that outcome's snapshots
    rollbacks = [s for s in snapshots if "rollback" in s["tags"]]
    assert {s["metadata"]["record"] for s in rollbacks} == {
        f.record for f in made if f.outcome == "rollback"
    }
