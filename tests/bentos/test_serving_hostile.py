"""Hostile traffic and faults against a real `bentoml serve` (issue 15 #5, #7, #12): a scan of
random paths, oversized and endless bodies, a burst over the concurrency limit, and an
inference-log storage that is down — each bounded in time, on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bentos.contract import Kline, max_body_bytes
from bentos.log_spill import Backoff
from pipelines.decisions.inference import read_inference
from pipelines.storage import LocalStorage
from tests.bentos.conftest import training_env
from tests.services import bento_server

pytestmark = [pytest.mark.integration, pytest.mark.hostile]


MAX_ROWS = 100
MAX_CONCURRENCY = 2


def features_of(summary: dict[str, Any]) -> list[str]:
    return list(summary["steps"]["features"]["features"])


@pytest.fixture(scope="module")
def limited(
    trained: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with small limits: 100 rows a request, 2 requests at once."""
    home, _ = trained
    logs = tmp_path_factory.mktemp("limited")
    env = {
        **training_env(home),
        "MLOPS_MAX_ROWS": str(MAX_ROWS),
        "MLOPS_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "MLOPS_STORAGE_URL": str(logs / "data"),
    }
    with bento_server(env, logs / "serve.log") as (url, _):
        yield url


def request_series(url: str) -> list[str]:
    """BentoML's request-metric series (one line each) in /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return [
        line for line in text.splitlines() if line.startswith("bentoml_") and 'endpoint="' in line
    ]


def endpoints(series: list[str]) -> set[str]:
    return {m.group(1) for line in series if (m := re.search(r'endpoint="([^"]*)"', line))}


def test_a_scan_of_unknown_paths_creates_no_metric_series(
    limited: str, trained: tuple[Path, dict[str, Any]]
) -> None:
    """Finding 5: 2,000 random paths used to add 2,000 series (and fill the metrics volume)."""
    features = features_of(trained[1])
    with httpx.Client(base_url=limited, timeout=10) as client:  # a known series to start from
        ok = client.post("/predict", json={"rows": [dict.fromkeys(features, 0.1)]})
        assert ok.status_code == 200, ok.text
    before = request_series(limited)
    token = uuid.uuid4().hex[:12]
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=limited, timeout=10) as client:
        for k in range(2_000):
            assert time.monotonic() < deadline, f"only {k} probes in 180 s"
            path = f"/{token}-{k}" if k % 3 else f"/static_content/{token}/{k}.js"
            answer = client.post(path, json={}) if k % 7 == 0 else client.get(path)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    after = request_series(limited)
    assert not [line for line in after if token in line], "no series names a probed path"
    assert endpoints(after) == endpoints(before)
    assert len(after) == len(before), "not one request series more"
    assert statuses == {404: 2_000}, "an unknown path is a 404, a client error"
    answer = httpx.get(f"{limited}/{token}", timeout=10)
    assert answer.json()["error"].startswith("not found"), answer.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/metadata", 200),
        ("GET", "/livez", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/", 200),  # the Swagger UI and its static files
        ("GET", "/docs.json", 200),
        ("GET", "/static_content/swagger-ui.css", 200),
        ("GET", "/predict", 405),  # a known path with another method: BentoML's answer
    ],
)
def test_every_known_path_still_reaches_the_service(
    limited: str, method: str, path: str, status: int
) -> None:
    answer = httpx.request(method, f"{limited}{path}", timeout=30)
    assert answer.status_code == status, answer.text[:300]


def body_limit(features: list[str]) -> int:
    return max_body_bytes(MAX_ROWS, max(len(features) + 2, len(Kline.model_fields)))


def raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    """A socket with `head` (request line and headers) and `body` sent, nothing more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def status_of(sock: socket.socket) -> int:
    """The status of the answer on `sock` (raises on timeout: no answer came)."""
    data = b""
    while b"\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return int(data.split(b" ", 2)[1])


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    limited: str, trained: tuple[Path, dict[str, Any]]
) -> None:
    limit = body_limit(features_of(trained[1]))
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit + 1}\r\n"
    )
    with raw_request(limited, head) as sock:  # headers only: the body never comes
        assert status_of(sock) == 413


def test_an_endless_chunked_body_is_refused_once_over_the_limit(
    limited: str, trained: tuple[Path, dict[str, Any]]
) -> None:
    """No Content-Length to trust: the bytes are counted as they arrive; the body never ends,
    so an answer proves the server stopped reading."""
    limit = body_limit(features_of(trained[1]))
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n"
    )
    piece = b'{"rows": [' + b" " * 65_000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with raw_request(limited, head) as sock:
        sent = 0
        try:
            while sent <= limit + len(piece):
                sock.sendall(chunk)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: the answer is waiting
        assert status_of(sock) == 413


def full_precision_rows(features: list[str], n: int) -> list[dict[str, Any]]:
    return [
        {
            **{f: -1.2345678901234567e-300 for f in features},
            "symbol": "X" * 32,
            "open_time": 4_102_444_800_000,
        }
        for _ in range(n)
    ]


def test_the_body_limit_never_refuses_a_valid_request(
    limited: str, trained: tuple[Path, dict[str, Any]]
) -> None:
    features = features_of(trained[1])
    rows = full_precision_rows(features, MAX_ROWS)
    pretty = json.dumps({"rows": rows}, indent=8).encode()
    answer = httpx.post(
        f"{limited}/predict",
        content=pretty,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]
    one_more = {"rows": full_precision_rows(features, MAX_ROWS + 1)}
    answer = httpx.post(f"{limited}/predict", json=one_more, timeout=30)
    assert answer.status_code == 400 and answer.json()["detail"][0]["loc"] == ["rows"]


def test_a_burst_over_the_concurrency_limit_is_refused_at_once(
    limited: str, trained: tuple[Path, dict[str, Any]]
) -> None:
    """Two slow uploads hold both slots; the next request is answered 429 at once (not queued
    until a timeout), the probes still answer, and the slots come back."""
    features = features_of(trained[1])
    body = json.dumps({"rows": [dict.fromkeys(features, 0.1)]}).encode()
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    stalled = [raw_request(limited, head, body[:10]) for _ in range(MAX_CONCURRENCY)]
    try:
        time.sleep(1)  # both are inside the server, waiting for the rest of their bodies
        answer = httpx.post(
            f"{limited}/predict",
            content=body,
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 429, answer.text[:300]
        assert httpx.get(f"{limited}/readyz", timeout=10).status_code == 200
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.post(
            f"{limited}/predict",
            content=body,
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text[:300]


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    line = next(x for x in text.splitlines() if x.startswith(f"{name} "))
    return float(line.split()[1])


FLUSH = 0.25
RETRY_MAX = 4.0
WINDOW = 10.0


def most_attempts(window: float) -> int:
    """Write attempts the backoff allows in `window` seconds at most: every wait is at least
    half its nominal value, starting from the first failure."""
    backoff, elapsed, attempts = Backoff(FLUSH, RETRY_MAX), 0.0, 1
    while True:
        elapsed += 0.5 * backoff.nominal(attempts)
        if elapsed > window:
            return attempts
        attempts += 1


def test_a_storage_outage_costs_few_retries_and_no_answered_row(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Finding 7: while the storage is down the log backs off (write attempts over a 10-s window
    of steady traffic, full batches included, stay within the backoff's bound; it used to try
    every flush interval and on every full batch). A clean stop during the outage spills the
    answered rows to disk; the next start, with the storage back, sends them and deletes the
    spill."""
    home, summary = trained
    features = features_of(summary)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the storage directory should be")
    spill = tmp_path / "spill"
    env = {
        **training_env(home),
        "MLOPS_STORAGE_URL": str(blocker / "data"),
        "MLOPS_INFERENCE_FLUSH_SECONDS": str(FLUSH),
        "MLOPS_INFERENCE_RETRY_MAX_SECONDS": str(RETRY_MAX),
        "MLOPS_INFERENCE_SPILL_DIR": str(spill),
    }
    rows = [dict.fromkeys(features, 0.1)] * 500  # 10 requests fill a batch (5,000 rows)
    answered: list[str] = []

    def ask(url: str) -> None:
        request_id = f"outage-{len(answered)}"
        answer = httpx.post(
            f"{url}/predict", json={"rows": rows}, headers={"x-request-id": request_id}, timeout=30
        )
        assert answer.status_code == 200, answer.text[:300]
        answered.append(request_id)

    failures = 'mlops_inference_log_write_failures_total{model_version="1"}'
    with bento_server(env, tmp_path / "serve-1.log") as (url, process):
        deadline = time.monotonic() + 30
        while metric(url, failures) == 0:
            assert time.monotonic() < deadline, "the log never tried to write"
            ask(url)
            time.sleep(0.1)
        start, first = time.monotonic(), metric(url, failures)
        while time.monotonic() - start < WINDOW:
            ask(url)
            time.sleep(0.1)
        attempts = metric(url, failures) - first
        assert 1 <= attempts <= most_attempts(time.monotonic() - start), attempts
        assert metric(url, 'mlops_inference_log_dropped_rows_total{model_version="1"}') == 0
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "a clean shutdown"
    spilled = LocalStorage(spill)
    assert spilled.list("inference/local/1/"), "the answered rows were spilled"
    kept = read_inference(spilled, "local", "1").column("request_id").to_pylist()
    assert sorted(set(kept)) == sorted(answered) and len(kept) == 500 * len(answered)
    assert not list((spill / "inference").rglob(".*")), "no temporary file beside the spill"

    blocker.unlink()  # the storage is back: the next start sends the spill
    storage = LocalStorage(blocker / "data")
    with bento_server(env, tmp_path / "serve-2.log") as (url, _):
        deadline = time.monotonic() + 30
        while spilled.list("inference/") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not spilled.list("inference/"), "the spill is deleted once sent"
    stored = read_inference(storage, "local", "1").column("request_id").to_pylist()
    assert sorted(set(stored)) == sorted(answered) and len(stored) == len(kept)
