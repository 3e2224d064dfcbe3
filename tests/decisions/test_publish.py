"""Publishing a recorded decision to the env's Evidently project (pipelines/decisions/publish.py,
pipelines/reports/workspace.py), in-process: what the dashboard records of each kind of
decision, the dashboard created once and kept, and a failure that never undoes a decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.decisions import ledger
from pipelines.decisions.publish import facts_of, models_compared, publish
from pipelines.reports.drift import data_drift
from pipelines.reports.workspace import PANELS, TAB, open_project
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.support.records import make_decision

FEATURES = ["a", "b", "c"]


def drift_report(storage: LocalStorage, kind: str) -> str:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(rng.normal(size=(300, 3)), columns=FEATURES)
    current = reference.assign(a=reference["a"] + 2)
    report = data_drift(reference, current, FEATURES, storage=storage, env="local", kind=kind)
    return report.prefix


def test_what_the_dashboard_records_of_each_kind_of_decision(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    live = drift_report(storage, "live_drift")
    gate = make_decision(
        inputs={"challenger": 5, "champion": 4},
        metrics={"drift_share": 0.25, "champion": {"roc_auc": 0.58}},
        key="decisions/local/x-gate.json",
        decided_at="2026-11-01T10:00:00.000+00:00",
    )
    facts, features = facts_of(storage, gate)
    assert (facts.step, facts.outcome, facts.record) == ("gate", "promote", gate.key)
    assert facts.models_compared == "challenger v5 vs champion v4"
    assert (facts.drift_share, facts.champion_eval_roc_auc, features) == (0.25, 0.58, [])
    assert facts.decided_at == datetime(2026, 11, 1, 10, tzinfo=UTC)
    hold = make_decision(
        kind="monitor",
        decision="hold",
        inputs={"champion": 4},
        thresholds={"recorded_roc_auc": 0.61},
        reports=[live],
    )
    facts, features = facts_of(storage, hold)
    assert facts.models_compared == "champion v4 (live)" and features == FEATURES
    assert facts.drift_share == pytest.approx(1 / 3) and facts.champion_eval_roc_auc == 0.61
    ((kind, (share, drifted)),) = facts.drift_by_kind.items()
    assert (kind, drifted) == ("live_drift", 1) and share == pytest.approx(1 / 3)
    rollback = make_decision(kind="rollback", decision="rollback", inputs={"from": 5, "to": 4})
    assert models_compared(rollback) == "champion v5 -> v4"


def test_the_dashboard_is_created_once_and_a_users_panel_is_kept(tmp_path: Path) -> None:
    from evidently.sdk.panels import text_panel

    space, project = open_project(tmp_path / "ws", "p", FEATURES[:2])
    model = space.get_dashboard(project.id)
    assert [p.title for p in model.panels] == list(PANELS)
    assert [t.title for t in model.tabs] == [TAB]
    project.dashboard.add_panel(text_panel("mine"), tab=TAB)
    space, project = open_project(tmp_path / "ws", "p", FEATURES)  # a report with a new feature
    model = space.get_dashboard(project.id)
    assert [p.title for p in model.panels] == [*PANELS, "mine"]
    (per_feature,) = [p for p in model.panels if p.title == PANELS[2]]
    assert [v.metric_labels["column"] for v in per_feature.values] == FEATURES
    assert len(space.search_project("p")) == 1


def test_a_failed_publication_is_reported_and_never_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(home=tmp_path / "home")
    storage = LocalStorage(tmp_path / "store")
    record = ledger.write(storage, make_decision(reports=["reports/local/data_drift/gone"]))
    assert publish(settings, storage, record.key) == []
    err = capsys.readouterr().err
    assert f"decision {record.key} not published" in err and "snapshot.json" in err
    assert publish(settings, storage, None) == []
    # with its report stored, the same record publishes: the report, then the decision
    kept = ledger.write(storage, make_decision(reports=[drift_report(storage, "data_drift")]))
    added = publish(settings, storage, kept.key)
    assert added == [kept.reports[0], kept.key.removesuffix(".json")]
