"""A real `bentoml serve` logs one JSON line per event from its workers, and each request's line
carries the id its predictions have in the inference log (a log line joins a prediction)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.decisions.inference import read_inference
from pipelines.storage import LocalStorage
from tests.bentos.conftest import training_env
from tests.services import bento_server

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-serving-password"
SUPERVISOR = "[cli] Starting production HTTP BentoServer"
"""BentoML's supervisor (`bentoml serve` itself, before any of our code runs in it) logs this
one line in its own format; every worker line is ours."""


def test_serving_lines_are_json_and_a_request_line_joins_its_logged_prediction(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, summary = trained
    version = str(summary["steps"]["register"]["version"])
    features = summary["steps"]["features"]["features"]
    one_row = {"rows": [dict.fromkeys(features, 0.1)]}
    env = {
        **training_env(home),
        "MLOPS_STORAGE_URL": str(tmp_path / "data"),
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    with bento_server(env, tmp_path / "serve.log") as (url, process):
        given = httpx.post(f"{url}/predict", json=one_row, headers={"x-request-id": "join-me-1"})
        minted = httpx.post(f"{url}/predict_batch", json=one_row)
        refused = httpx.post(f"{url}/predict", content=b"x", headers={"content-type": "text/plain"})
        assert (given.status_code, minted.status_code, refused.status_code) == (200, 200, 415)
        os.kill(process.pid, signal.SIGTERM)  # the inference log is written at shutdown
        assert process.wait(timeout=60) == 0
    ids = {r.headers["x-request-id"] for r in (given, minted)}
    assert "join-me-1" in ids and len(ids) == 2
    logged = read_inference(LocalStorage(tmp_path / "data"), "local", version).to_pandas()
    assert set(logged["request_id"]) == ids

    text = (tmp_path / "serve.log").read_text()
    assert SECRET not in text
    lines, foreign = [], []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            foreign.append(line)
    assert len(foreign) <= 1 and all(SUPERVISOR in x for x in foreign), foreign
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    workers = [x for x in lines if x["logger"] != "pipelines.cli.bento"]
    assert workers and {x["model_version"] for x in workers} == {version}
    requests = {x["request_id"]: x for x in lines if x.get("event") == "request"}
    for rid in ids:  # the line of each prediction's request, joined on the logged row's id
        assert requests[rid]["status"] == 200 and requests[rid]["model_version"] == version
    assert requests["join-me-1"]["path"] == "/predict"
    assert refused.headers["x-request-id"] in requests, "a refused request has its line too"
    assert requests[refused.headers["x-request-id"]]["status"] == 415
