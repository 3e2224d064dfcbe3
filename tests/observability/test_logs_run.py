"""A real local run and a real `mlops step` (what an Argo pod and `workflows run-local` run) log
one JSON line per event where stderr is no terminal: every line parses, every step's lines carry
the run id, and the lines after `register` the model version it registered."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MIRROR_START, run_cli
from tests.services.cluster import FAST_TRAINING

SECRET = "s3cr3t-value-of-a-password"


def parsed(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as JSON (a line that is not fails the test, naming it)."""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line[:300]!r}")
    return found


@pytest.mark.integration
def test_a_run_and_a_pod_step_log_json_lines_with_run_step_and_model_version(
    mirror_root: Path, tmp_path: Path
) -> None:
    env = {
        "MLOPS_HOME": str(tmp_path / "home"),
        **FAST_TRAINING,
        "MLFLOW_TRACKING_PASSWORD": SECRET,  # in the env of every step; never in a line
    }
    end = MIRROR_START.replace(day=MIRROR_START.day + 2).isoformat()
    args = ["run", "--source", mirror_root.as_uri(), "--start", MIRROR_START.isoformat()]
    done = run_cli([*args, "--end", end, "--until", "register", "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    run_id, version = summary["run_id"], str(summary["steps"]["register"]["version"])
    lines = parsed(done.stderr)
    assert SECRET not in done.stderr + done.stdout
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    ours = [x for x in lines if x.get("event", "").startswith(("run_", "step_"))]
    assert {x["run_id"] for x in ours} == {run_id}, "one run id on every step's line"
    ended = Counter(x["step"] for x in ours if x["event"] == "step_succeeded" and "shard" not in x)
    assert set(ended) == set(summary["steps"]) and set(ended.values()) == {1}
    shards = [x for x in ours if x.get("shard") and x["event"] == "step_succeeded"]
    assert {x["step"] for x in shards} == {"fetch", "validate"} and len(shards) == 4
    registered = [x for x in ours if x.get("step") == "register" and x["event"] == "step_succeeded"]
    assert registered[0]["model_version"] == version
    assert [x["event"] for x in (ours[0], ours[-1])] == ["run_started", "run_finished"]
    # MLflow's own prints ("Created version '1' …") came out as lines, not bare text
    assert any(f"version '{version}'" in x["message"] for x in lines if x.get("event") == "output")

    # one step as an Argo pod runs it: its whole output (stdout and stderr, as the pod's log)
    pod = run_cli(["step", "features", "--run-id", run_id], env)
    assert pod.returncode == 0, pod.stderr[-3000:]
    assert pod.stdout == "", "no human summary where the lines say it"
    step_lines = parsed(pod.stderr)
    assert [x["event"] for x in step_lines] == ["step_started", "step_succeeded"]
    assert {(x["run_id"], x["step"], x["model_version"]) for x in step_lines} == {
        (run_id, "features", version)
    }

    # an error is one JSON line too, naming what was wrong
    wrong = run_cli(["step", "gate", "--run-id", "run-that-does-not-exist"], env)
    assert wrong.returncode == 1
    (error,) = parsed(wrong.stderr)
    assert error["level"] == "error" and "needs" in error["message"]
