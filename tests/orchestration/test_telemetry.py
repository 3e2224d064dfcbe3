"""Metrics of steps, runs and decisions: the local textfile, and what a pod pushes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from pipelines import metrics
from pipelines.decisions import ledger
from pipelines.orchestration import telemetry
from pipelines.orchestration.dag import Step
from pipelines.orchestration.runner import run_pipeline
from tests.orchestration.test_runner import context
from tests.support.records import make_decision

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "run_summary.json"


def samples(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_validate_reports_rows_in_and_out_and_the_quarantine_share() -> None:
    body = {**json.loads(GOLDEN.read_text())["steps"]["validate"], "rows_quarantined": 400}
    counted, pushed = telemetry.step_update("training", "validate", body)
    state = dict(((m.name, tuple(sorted(lab.items()))), v) for m, lab, v in pushed.sets)
    rows_in = body["rows_valid"] + body["rows_quarantined"] + body["rows_duplicate"]
    step = (("pipeline", "training"), ("step", "validate"))
    assert state[("mlops_step_rows", (("direction", "in"), *step))] == rows_in
    assert state[("mlops_step_rows", (("direction", "out"), *step))] == body["rows_valid"]
    assert state[("mlops_quarantine_share", (("pipeline", "training"),))] == pytest.approx(
        400 / (57600 + 400)
    )
    assert [m.name for m, _, _ in counted.incs] == ["mlops_step_result_total"]
    assert counted.incs[0][1]["status"] == "Succeeded"


def monitor_record(auc: list[float], recorded: float = 0.55) -> Any:
    windows = [
        {"start": f"w{k}", "roc_auc": a, "judged": True, "degraded": a < recorded - 0.05}
        for k, a in enumerate(auc)
    ]
    windows.insert(1, {"start": "unjudged", "roc_auc": None, "judged": False})
    return make_decision(
        kind="monitor",
        decision="hold",
        metrics={"windows": windows},
        thresholds={"windows": 2, "recorded_roc_auc": recorded, "max_auc_drop": 0.05},
        aliases_after={"champion": 3},
    )


def test_the_decisions_summary_is_recomputed_from_the_ledger() -> None:
    decided = datetime(2026, 11, 30, 2, 40, tzinfo=UTC)
    records = [
        make_decision(decision="promote", aliases_after={"champion": 2}),
        make_decision(
            decision="reject",
            metrics={"drift_share": 0.6},
            thresholds={"max_drift_share": 0.5},
            decided_at=decided.isoformat(),
            aliases_after={"champion": 2},
        ),
        monitor_record([0.56, 0.52, 0.41]),
        make_decision(kind="rollback", decision="rollback", aliases_after={"champion": 1}),
    ]
    update = telemetry.decisions_update(records)
    got = {
        name: {tuple(sorted(k.items())): v for k, v in series}
        for name, (_, series) in update.replaced.items()
    }
    assert got["mlops_decisions_total"] == {
        (("decision", "promote"), ("kind", "gate")): 1,
        (("decision", "reject"), ("kind", "gate")): 1,
        (("decision", "hold"), ("kind", "monitor")): 1,
        (("decision", "rollback"), ("kind", "rollback")): 1,
    }
    assert got["mlops_drift_share"] == {(("kind", "gate"),): 0.6}
    assert got["mlops_drift_share_limit"] == {(("kind", "gate"),): 0.5}
    # the latest two judged windows, newest first; the unjudged one is not a window
    assert got["mlops_live_roc_auc"] == {(("window", "0"),): 0.41, (("window", "1"),): 0.52}
    assert got["mlops_live_roc_auc_floor"] == {(): pytest.approx(0.50)}
    assert got["mlops_champion_version"] == {(("model", "m"),): 1}
    assert got["mlops_training_last_success_timestamp_seconds"] == {(): decided.timestamp()}


def test_the_serving_models_age_comes_from_its_candidate_or_its_gate_promotion() -> None:
    created = datetime(2026, 11, 20, 2, 40, tzinfo=UTC)
    promoted = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    moved_in = make_decision(
        kind="candidate",
        decision="promote",
        inputs={"candidate": "c1", "version": 3, "created_at": created.isoformat()},
        aliases_after={"champion": 3},
    )
    gated = make_decision(
        inputs={"challenger": 4}, decided_at=promoted.isoformat(), aliases_after={"champion": 4}
    )
    age, trained = metrics.SERVING_MODEL_CREATED.name, metrics.TRAINING_LAST_SUCCESS.name
    # an env that does not train: its candidate's creation (not when it moved in), no training
    serving = telemetry.decisions_update([moved_in]).replaced
    assert serving[age][1] == [({}, created.timestamp())] and serving[trained][1] == []
    # an env that trains: the gate's promotion of its champion
    training = telemetry.decisions_update([gated]).replaced
    assert training[age][1] == [({}, promoted.timestamp())]


class Rows(BaseModel):
    rows_valid: int = 90
    rows_quarantined: int = 10
    rows_duplicate: int = 0


def test_the_runner_writes_each_step_to_the_textfile_with_its_pipeline(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.pipeline = "monitor"
    attempts = {"n": 0}

    def flaky(ctx: Any) -> Rows:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("transient")
        return Rows()

    def broken(ctx: Any) -> Rows:
        raise ValueError("bad input")

    summary = run_pipeline(
        ctx, [Step("validate", flaky, retries=1), Step("later", broken, needs=("validate",))]
    )
    assert summary["status"] == "failed"
    text = (tmp_path / "metrics" / "mlops.prom").read_text()
    found = samples(text)
    validate = {"pipeline": "monitor", "step": "validate"}
    assert found["mlops_step_result_total"] == {
        labels(status="Succeeded", **validate): 1,
        labels(status="Failed", pipeline="monitor", step="later"): 1,
    }
    assert found["mlops_step_retries"][labels(**validate)] == 1
    assert found["mlops_step_duration_seconds_count"][labels(**validate)] == 1
    assert found["mlops_quarantine_share"] == {labels(pipeline="monitor"): 0.1}


def test_a_metrics_failure_never_fails_the_step(tmp_path: Path, caplog: Any) -> None:
    ctx = context(tmp_path)
    (tmp_path / "metrics").write_text("a file where the metrics directory should be")
    summary = run_pipeline(ctx, [Step("validate", lambda ctx: Rows())])
    assert summary["status"] == "succeeded"
    assert "metrics of step validate not recorded: FileExistsError" in caplog.text


class Gateway:
    """An in-process stand-in for the Pushgateway: records each PUT (path and body)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str]] = []
        received = self.pushes

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["content-length"])
                received.append((self.path, self.rfile.read(length).decode()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    found = Gateway()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_a_decision_step_pushes_its_rows_and_the_ledgers_summary(
    tmp_path: Path, gateway: Gateway
) -> None:
    ctx = context(tmp_path)
    ctx.settings = ctx.settings.model_copy(update={"metrics_pushgateway": gateway.url})
    ctx.pipeline = "training"
    record = ledger.write(
        ctx.storage,
        make_decision(
            decision="reject", metrics={"drift_share": 0.7}, thresholds={"max_drift_share": 0.5}
        ),
    )
    telemetry.step_recorded(ctx, "validate", {"status": "succeeded", **Rows().model_dump()})
    telemetry.step_recorded(ctx, "gate", {"status": "succeeded", "record": record.key})
    paths = [path for path, _ in gateway.pushes]
    assert paths == [
        "/metrics/job/mlops-steps/pipeline/training/step/validate",
        "/metrics/job/mlops-decisions",
    ]
    steps, decisions = (samples(body) for _, body in gateway.pushes)
    # what Argo counts on the cluster is never pushed (a pod's counter would restart at 0)
    assert (
        metrics.STEP_RESULT.name not in steps and "mlops_step_duration_seconds_count" not in steps
    )
    assert steps["mlops_quarantine_share"] == {labels(pipeline="training"): 0.1}
    assert decisions["mlops_drift_share"] == {labels(kind="gate"): 0.7}
    assert decisions["mlops_decisions_total"] == {labels(kind="gate", decision="reject"): 1}
