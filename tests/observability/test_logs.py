"""`pipelines.logs` in-process: the JSON line's fields, the context a line inherits, where the
lines go (JSON where stderr is no terminal), and that no credential reaches a line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from bentos.request_log import RequestLog, request_id
from pipelines import logs

SECRET = "pa55-w0rd-that-must-not-leak"
T = TypeVar("T")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON logging of this process into a buffer; the root logger restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.setenv("MLOPS_GITOPS_TOKEN_FILE", "/var/run/secrets/token")  # a path, kept
    stream = io.StringIO()
    assert logs.configure(stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_time_level_message_its_context_and_extras(captured: io.StringIO) -> None:
    log = logging.getLogger("tests.logs")
    with logs.bound(run_id="run-1", step="train"):
        log.info("step %s started", "train", extra={"event": "step_started"})
        with logs.bound(model_version=3):
            log.warning("inner", extra={"rows": 5, "step": "override"})
    log.info("outside")
    first, inner, outside = lines(captured)
    assert first["message"] == "step train started" and first["level"] == "info"
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert (first["run_id"], first["step"], first["event"]) == ("run-1", "train", "step_started")
    assert "model_version" not in first
    assert (inner["model_version"], inner["rows"], inner["step"]) == ("3", 5, "override")
    assert inner["level"] == "warning" and inner["logger"] == "tests.logs"
    assert "run_id" not in outside and "step" not in outside


def test_an_exception_and_printed_lines_become_json_lines(captured: io.StringIO) -> None:
    log = logging.getLogger("tests.logs")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    writer = logs.LineWriter(logging.getLogger("tests.output"))
    writer.write("Successfully registered model 'm'.\nCreated version '1' ")
    writer.write("of model 'm'.\n\npartial")
    writer.flush()
    failed, *printed = lines(captured)
    assert "RuntimeError: boom" in failed["exc_info"]
    assert [p["message"] for p in printed] == [
        "Successfully registered model 'm'.",
        "Created version '1' of model 'm'.",
        "partial",
    ]
    assert {p["event"] for p in printed} == {"output"}


def test_no_credential_from_the_env_a_url_or_a_header_reaches_a_line(
    captured: io.StringIO,
) -> None:
    log = logging.getLogger("tests.logs")
    log.error("MLflow refused %s", SECRET, extra={"detail": {"nested": [f"x{SECRET}x"]}})
    log.warning("GET https://ci:hunter22@mlflow.example/api failed")
    log.warning("sent Authorization: Bearer abc.def.ghi")
    log.info("token file at /var/run/secrets/token")
    text = captured.getvalue()
    assert SECRET not in text and "hunter22" not in text and "abc.def.ghi" not in text
    refused, url, header, path = lines(captured)
    assert refused["message"] == "MLflow refused ***"
    assert refused["detail"] == {"nested": ["x***x"]}
    assert url["message"] == "GET https://***@mlflow.example/api failed"
    assert header["message"] == "sent Authorization: Bearer ***"
    assert path["message"] == "token file at /var/run/secrets/token"


def test_json_is_the_default_without_a_terminal_and_text_keeps_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("MLOPS_LOG_FORMAT", raising=False)
    assert logs.json_enabled(stream=io.StringIO())
    assert not logs.json_enabled(stream=Terminal())
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    assert logs.json_enabled(stream=Terminal())
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "text")
    root = logging.getLogger()
    before = list(root.handlers)
    assert not logs.configure(io.StringIO())
    assert root.handlers == before, "text mode leaves the console as it is"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`coroutine` on a loop of its own (``asyncio.run`` would leave this thread without a
    current loop, which later in-process code — Pulumi's mocks — expects)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def test_a_request_gets_a_sane_id_bound_to_its_lines_and_answered(
    captured: io.StringIO,
) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["headers"] = dict(scope["headers"])
        logging.getLogger("tests.endpoint").info("scoring")
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call(given: bytes | None) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        headers = [(b"x-request-id", given)] if given is not None else []
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await RequestLog(app)(scope, None, send)
        return sent

    sent = run(call(b"abc-123"))
    assert seen["headers"][b"x-request-id"] == b"abc-123"
    assert (b"x-request-id", b"abc-123") in sent[0]["headers"]
    endpoint, request = lines(captured)
    assert endpoint["request_id"] == request["request_id"] == "abc-123"
    assert (request["event"], request["status"], request["level"]) == ("request", 503, "warning")
    assert request["path"] == "/predict" and request["milliseconds"] >= 0
    # a caller's id that is no sane token is replaced, in the request and the answer alike
    run(call(b"x" * 200 + b"\n{}"))
    replaced = seen["headers"][b"x-request-id"].decode()
    assert len(replaced) == 32 and lines(captured)[-1]["request_id"] == replaced
    assert request_id([]) != request_id([])


def test_run_local_tells_each_pods_progress_as_a_line(captured: io.StringIO) -> None:
    from pipelines.cli.workflows import _reporter

    _reporter()("fetch(0:BTCUSDT:2024-03-01:2024-03-06)", "succeeded")
    (line,) = lines(captured)
    assert (line["event"], line["phase"]) == ("pod", "succeeded")
    assert line["pod"] == "fetch(0:BTCUSDT:2024-03-01:2024-03-06)"
