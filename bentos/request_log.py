"""The serving side of `pipelines.logs`: JSON log lines from the server's workers, and one line
per HTTP request carrying the request id the inference log records for its predictions.

- `configure_serving_logs` (called by each service's ``__init__``, in its worker process, after
  BentoML configured its own logging) sends the worker's log records — BentoML's, uvicorn's,
  ours — to stderr as JSON lines, each with the served model's version. BentoML's own access
  log is silenced: `RequestLog` writes a richer one.
- `RequestLog` (ASGI middleware) gives every request an id: the caller's ``x-request-id`` when it
  is a sane token (at most 128 of ``[A-Za-z0-9._:-]``), else a new one. The id is written back
  into the request's headers (the endpoint logs its predictions under it: `bentos.service`),
  bound to every log line of the request, returned as the response's ``x-request-id``, and
  logged once the response is sent (``event: request``, method, path, status, milliseconds).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from pipelines import logs

HEADER = b"x-request-id"
SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
QUIET_PATHS = frozenset({"/metrics", "/livez", "/readyz", "/healthz"})
"""Probes and scrapes: their lines are DEBUG (one a second per scraper otherwise)."""
SERVER_LOGGERS = ("bentoml", "uvicorn", "uvicorn.error", "uvicorn.access", "circus")
"""Loggers BentoML's server configuration gives handlers of their own."""

log = logging.getLogger("bentos.request")


def configure_serving_logs(model_version: str) -> bool:
    """JSON lines from this worker (where `pipelines.logs` says so), each naming
    `model_version`; whether they are on."""
    if not logs.configure(loggers=SERVER_LOGGERS, fields={"model_version": model_version}):
        return False
    for access in ("bentoml.access", "uvicorn.access"):  # RequestLog's lines say more
        logging.getLogger(access).setLevel(logging.WARNING)
    return True


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``x-request-id`` if it is a sane token, else a new random one."""
    given = next((v for k, v in headers if k.lower() == HEADER), b"")
    return given.decode() if SANE_ID.fullmatch(given) else uuid.uuid4().hex


class RequestLog:
    """ASGI middleware: an id and a log line for every HTTP request (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on under its id; log it once answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers") or [])
        rid = request_id(headers)
        headers = [(k, v) for k, v in headers if k.lower() != HEADER] + [(HEADER, rid.encode())]
        started = time.perf_counter()
        status = 0

        async def answer(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                sent = [(k, v) for k, v in message.get("headers") or [] if k.lower() != HEADER]
                message = {**message, "headers": [*sent, (HEADER, rid.encode())]}
            await send(message)

        token = logs.bind(request_id=rid)
        try:
            await self.app({**scope, "headers": headers}, receive, answer)
        finally:
            if status >= 500 or status == 0:
                level = logging.WARNING
            else:
                level = logging.DEBUG if scope.get("path") in QUIET_PATHS else logging.INFO
            log.log(
                level,
                "%s %s %d",
                scope.get("method", ""),
                scope.get("path", ""),
                status,
                extra={
                    "event": "request",
                    "method": scope.get("method", ""),
                    "path": scope.get("path", ""),
                    "status": status,
                    "milliseconds": round((time.perf_counter() - started) * 1000, 3),
                },
            )
            logs.unbind(token)
