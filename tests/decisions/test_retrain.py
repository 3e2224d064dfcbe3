"""Drift-triggered retraining in-process: when a retrain is needed (sustained drift, degraded
quality, no rollback), when it is suppressed (env does not train, cool-down, a run still
running), that every trigger and suppressed trigger is a ledger record, and that a failed
trigger is recorded and raised. The end-to-end run on the real services is in
test_retrain_services.py; the cluster backend in test_retrain_argo.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.retrain import consider, last_judged_day
from pipelines.decisions.retrain_backends import ArgoBackend, Days, LocalBackend
from pipelines.errors import PipelineError
from pipelines.settings import Settings
from pipelines.storage import LocalStorage, Storage
from tests.support.records import make_decision

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class FakeBackend:
    """Records the starts asked of it; a start returns a handle or raises `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.starts: list[tuple[Days | None, str]] = []
        self.error = error

    def start(self, settings: Settings, days: Days | None, record_key: str) -> dict[str, Any]:
        self.starts.append((days, record_key))
        if self.error:
            raise self.error
        return {"backend": "local", "pid": 0, "started": 0.0}

    def running(self, handle: dict[str, Any], storage: Storage) -> bool:
        return False


def settings_of(tmp_path: Path, **values: Any) -> Settings:
    fields: dict[str, Any] = {
        "home": tmp_path,
        "model_name": "m",
        "monitor_windows": 2,
        "lookback_days": 10,
    }
    return Settings(**{**fields, **values})


def drift_report(storage: Storage, n: int, day: int, drifted: bool) -> str:
    """A live_drift report summary for the window of 2026-11-{day} (as the monitor stores it)."""
    prefix = f"reports/local/live_drift/2026110{day}T000000Z-{n}"
    start = f"2026-11-0{day} 00:00:00+00:00"
    summary = {
        "dataset_drift": drifted,
        "drift_share": 0.3 if drifted else 0.0,
        "drifted_columns": ["realized_vol_48"] if drifted else [],
        "metadata": {"window": [start, f"2026-11-0{day + 1} 00:00:00+00:00"]},
    }
    storage.write_bytes(f"{prefix}/summary.json", json.dumps(summary).encode())
    return prefix


def monitor_record(
    storage: Storage,
    reports: list[str],
    decision: str = "hold",
    degraded: int = 0,
    champion: int = 1,
    degradation: dict[str, Any] | None = None,
) -> str:
    """A monitor record in the ledger whose latest judged window ends on 2026-11-06."""
    windows = [{"start": "2026-11-05 00:00:00+00:00", "end": "2026-11-06 00:00:00+00:00"}]
    record = make_decision(
        kind="monitor",
        model_name="m",
        decision=decision,
        decision_id=f"mon-{len(reports)}-{decision}-{degraded}-{degradation is not None}",
        inputs={"champion": champion},
        metrics={
            "trailing_degraded": degraded,
            "windows": [{**windows[0], "judged": True}],
            "degradation": degradation,
        },
        reports=reports,
    )
    return ledger.write(storage, record).key


def retrain_records(storage: Storage) -> list[Decision]:
    return [r for r in ledger.read_all(storage, "local") if r.kind == "retrain"]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


def test_sustained_drift_triggers_once_then_the_cool_down_suppresses(
    tmp_path: Path, storage: LocalStorage
) -> None:
    settings = settings_of(tmp_path)
    backend = FakeBackend()
    first = monitor_record(storage, [drift_report(storage, 1, 4, True)])
    assert consider(settings, storage, first, backend=backend, now=NOW) is None  # 1 of 2 windows
    second = monitor_record(storage, [drift_report(storage, 2, 5, True)])
    result = consider(settings, storage, second, "run-1", backend=backend, now=NOW)
    assert result is not None and result.decision == "triggered"
    # the lookback up to the last judged day
    assert backend.starts == [((date(2026, 10, 27), date(2026, 11, 5)), result.record)]
    (record,) = retrain_records(storage)
    assert record.key == result.record and record.run_id == "run-1"
    assert record.metrics["trigger"] == {"backend": "local", "pid": 0, "started": 0.0}
    assert [w["dataset_drift"] for w in record.metrics["drift_windows"]] == [True, True]
    assert "latest 2 judged window(s)" in record.reasons[0]
    later = consider(settings, storage, second, backend=backend, now=NOW + timedelta(hours=23))
    assert later is not None and later.decision == "suppressed" and later.trigger is None
    assert "cool-down" in later.reasons[-1] and len(backend.starts) == 1
    assert [r.decision for r in retrain_records(storage)] == ["triggered", "suppressed"]
    after = consider(settings, storage, second, backend=backend, now=NOW + timedelta(hours=25))
    assert after is not None and after.decision == "triggered" and len(backend.starts) == 2


def test_drift_in_only_some_of_the_latest_windows_is_not_sustained(
    tmp_path: Path, storage: LocalStorage
) -> None:
    settings = settings_of(tmp_path)
    monitor_record(storage, [drift_report(storage, 1, 4, True)])
    key = monitor_record(storage, [drift_report(storage, 2, 5, False)])
    assert consider(settings, storage, key, backend=FakeBackend(), now=NOW) is None
    # a window judged again later supersedes its earlier report: now drifted
    key = monitor_record(storage, [drift_report(storage, 3, 5, True)])
    result = consider(settings, storage, key, backend=FakeBackend(), now=NOW)
    assert result is not None and result.decision == "triggered"


def test_degraded_quality_without_a_rollback_triggers_and_a_rollback_does_not(
    tmp_path: Path, storage: LocalStorage
) -> None:
    settings = settings_of(tmp_path)
    rolled = monitor_record(storage, [], decision="rollback", degraded=2)
    assert consider(settings, storage, rolled, backend=FakeBackend(), now=NOW) is None
    held = monitor_record(storage, [], decision="hold", degraded=2)
    result = consider(settings, storage, held, backend=FakeBackend(), now=NOW)
    assert result is not None and result.decision == "triggered"
    assert (
        "live quality degraded" in result.reasons[0] and "no rollback target" in result.reasons[0]
    )
    one = monitor_record(storage, [], decision="hold", degraded=1)
    later = NOW + timedelta(days=2)
    assert consider(settings, storage, one, backend=FakeBackend(), now=later) is None


def test_the_monitors_cusum_verdict_decides_degraded_not_windows_in_a_row(
    tmp_path: Path, storage: LocalStorage
) -> None:
    """The monitor rolls back on its CUSUM (pipelines.decisions.degradation): degraded windows in
    a row without a due rollback are no reason to retrain; a due rollback held for want of a
    target is."""
    settings = settings_of(tmp_path)
    verdict = {"judged": 3, "statistic": 1.2, "threshold": 3.0, "rollback": False}
    calm = monitor_record(storage, [], degraded=3, degradation={**verdict, "first_crossing": None})
    assert consider(settings, storage, calm, backend=FakeBackend(), now=NOW) is None
    due = {**verdict, "statistic": 3.4, "rollback": True, "first_crossing": 2}
    key = monitor_record(storage, [], degraded=0, degradation=due)
    result = consider(settings, storage, key, backend=FakeBackend(), now=NOW)
    assert result is not None and result.decision == "triggered"
    assert "CUSUM 3.40 over 3 judged windows" in result.reasons[0]


def test_drift_of_another_champion_does_not_count(tmp_path: Path, storage: LocalStorage) -> None:
    settings = settings_of(tmp_path)
    monitor_record(storage, [drift_report(storage, 1, 4, True)], champion=1)
    key = monitor_record(storage, [drift_report(storage, 2, 5, True)], champion=2)
    assert consider(settings, storage, key, backend=FakeBackend(), now=NOW) is None


def test_an_env_that_does_not_train_records_a_suppressed_trigger_and_starts_nothing(
    tmp_path: Path, storage: LocalStorage
) -> None:
    settings = settings_of(tmp_path, trains=False, retrain_cooldown_hours=0)
    backend = FakeBackend()
    key = monitor_record(storage, [], degraded=2)
    result = consider(settings, storage, key, backend=backend, now=NOW)
    assert result is not None and result.decision == "suppressed" and backend.starts == []
    assert "does not train" in result.reasons[-1]
    assert [r.decision for r in retrain_records(storage)] == ["suppressed"]


def test_a_run_still_running_suppresses_after_the_cool_down(
    tmp_path: Path, storage: LocalStorage
) -> None:
    settings = settings_of(tmp_path, retrain_cooldown_hours=0)
    me = psutil.Process(os.getpid())  # stands for the triggered run: alive, same start time
    alive = {"backend": "local", "pid": me.pid, "started": me.create_time()}
    ledger.write(
        storage,
        make_decision(
            kind="retrain", model_name="m", decision="triggered", metrics={"trigger": alive}
        ),
    )
    backend = FakeBackend()
    key = monitor_record(storage, [], degraded=2)
    result = consider(settings, storage, key, backend=backend, now=datetime.now(UTC))
    assert result is not None and result.decision == "suppressed" and backend.starts == []
    assert "still running" in result.reasons[-1] and f"pid {me.pid}" in result.reasons[-1]
    # the same pid started at another time is another process: the run ended
    assert not LocalBackend().running({**alive, "started": me.create_time() - 5}, storage)


def test_a_cluster_run_runs_until_its_exit_record_or_its_deadline(storage: LocalStorage) -> None:
    now = datetime.now(UTC).timestamp()
    handle = {"backend": "argo", "workflow": "mlops-training-retrain-x", "deadline_seconds": 3600}
    assert ArgoBackend().running({**handle, "created": now}, storage)
    assert not ArgoBackend().running({**handle, "created": now - 3600 - 601}, storage)
    storage.write_bytes("runs/mlops-training-retrain-x/exit.json", b"{}")
    assert not ArgoBackend().running({**handle, "created": now}, storage)


def test_a_failed_trigger_is_recorded_and_raised(tmp_path: Path, storage: LocalStorage) -> None:
    settings = settings_of(tmp_path)
    key = monitor_record(storage, [], degraded=2)
    refused = PipelineError("creating a training Workflow failed: HTTP 403 Forbidden")
    with pytest.raises(PipelineError, match="retrain: creating a training Workflow"):
        consider(settings, storage, key, backend=FakeBackend(refused), now=NOW)
    (record,) = retrain_records(storage)
    assert record.decision == "failed" and "HTTP 403" in record.reasons[-1]
    # a failed trigger starts no cool-down: the next monitor run triggers
    result = consider(settings, storage, key, backend=FakeBackend(), now=NOW)
    assert result is not None and result.decision == "triggered"


def test_the_run_covers_the_last_judged_day() -> None:
    record = make_decision(
        kind="monitor",
        metrics={
            "windows": [
                {
                    "start": "2026-11-05 00:00:00+00:00",
                    "end": "2026-11-06 00:00:00+00:00",
                    "judged": True,
                },
                {
                    "start": "2026-11-06 00:00:00+00:00",
                    "end": "2026-11-07 00:00:00+00:00",
                    "judged": False,
                },
            ]
        },
    )
    assert last_judged_day(record) == date(2026, 11, 5)
    assert last_judged_day(make_decision(kind="monitor")) is None


def test_an_argo_retrain_outside_a_cluster_is_one_clear_error(
    tmp_path: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = settings_of(tmp_path, retrain_backend="argo")
    key = monitor_record(storage, [], degraded=2)
    with pytest.raises(PipelineError, match="no in-cluster Kubernetes credentials") as caught:
        consider(settings, storage, key, now=NOW)
    assert "MLOPS_RETRAIN_BACKEND=local" in str(caught.value)
    assert [r.decision for r in retrain_records(storage)] == ["failed"]


@pytest.mark.parametrize(("shadow", "considered"), [("promote", False), ("continue", True)])
def test_no_retrain_is_considered_when_the_shadow_challenger_was_just_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shadow: str, considered: bool
) -> None:
    from pipelines.decisions import monitor as monitor_module
    from pipelines.decisions.shadow import ShadowResult

    held = monitor_module.MonitorResult(decision="hold", reasons=[], record="r", reused=True)
    asked: list[str | None] = []
    monkeypatch.setattr(monitor_module, "_decide", lambda *_: held)
    monkeypatch.setattr(
        monitor_module, "judge_shadow", lambda *_: ShadowResult(decision=shadow, reasons=[])
    )
    monkeypatch.setattr(
        monitor_module, "consider_retrain", lambda _s, _st, record, _r: asked.append(record)
    )
    result = monitor_module.monitor(settings_of(tmp_path), LocalStorage(tmp_path / "data"))
    assert result.shadow is not None and result.shadow.decision == shadow
    assert asked == (["r"] if considered else [])
