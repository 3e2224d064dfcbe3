"""ASGI guards around the service: only known paths reach BentoML, request bodies are bounded.

- ``KnownRoutesService`` (the services' ``service_class``) wraps the app BentoML builds in
  ``KnownPathsOnly``. BentoML's request-metrics middleware is the outermost of its stack and
  labels every series with the raw URL path, before any middleware a service adds
  (``add_asgi_middleware``) runs: a scan of random paths created one series per path and filled
  the metrics volume. Wrapping the whole app answers an unknown path 404 before BentoML sees it.
- ``BodyLimit`` refuses a body over a byte limit with 413, from its ``Content-Length`` or, when
  it has none or lies, while counting the bytes as they arrive; the body is never read whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles

from bentos.contract import error_body

Scope = dict[str, Any]


def _static_files(app: StaticFiles) -> frozenset[str]:
    """Every file a `StaticFiles` app can serve, as paths relative to its mount."""
    found: set[str] = set()
    for directory in app.all_directories:
        root = Path(directory)
        for folder, _, files in os.walk(root, followlinks=False):
            found.update((Path(folder) / name).relative_to(root).as_posix() for name in files)
    return frozenset(found)


class KnownPathsOnly:
    """ASGI wrapper: an HTTP request or websocket to a path no route of `app` serves gets 404
    (or a refused websocket) here, so it reaches none of the app's middleware and creates no
    metric series. A known path with another method still goes through (BentoML answers 405:
    one series per route and status, bounded).

    The routes are read from `app` once (Starlette's own matching, mounts included; a static
    files mount knows the files it holds, not just its prefix).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.routes: list[BaseRoute] = list(getattr(app, "routes", []))
        self._static: dict[int, frozenset[str]] = {}

    def known(self, scope: Scope, routes: list[BaseRoute] | None = None) -> bool:
        """Whether a route (or a route of a mounted app) serves ``scope["path"]``."""
        for route in self.routes if routes is None else routes:
            match, child = route.matches(scope)
            if match == Match.NONE:
                continue
            if not isinstance(route, Mount):
                return True
            inner = {**scope, **child}
            if isinstance(route.app, StaticFiles):
                files = self._static.get(id(route.app))
                if files is None:
                    files = self._static[id(route.app)] = _static_files(route.app)
                if Path(route.app.get_path(inner)).as_posix() in files:
                    return True
                continue
            sub_routes = getattr(route.app, "routes", None)
            if isinstance(sub_routes, list):
                if self.known(inner, sub_routes):
                    return True
            else:  # an opaque mounted app: its prefix is all we know
                return True
        return False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Answer an unknown path here; hand anything else to the app."""
        if scope["type"] in ("http", "websocket") and not self.known(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = error_body(
                "not found: the service has no endpoint at this path; see /docs.json",
                [{"loc": ["path"], "type": "not_found"}],
            )
            await JSONResponse(body, status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class KnownRoutesService(bentoml.Service):  # type: ignore[misc,type-arg]
    """A BentoML service whose app answers unknown paths itself (`KnownPathsOnly`); pass it
    as ``service_class`` to ``@bentoml.service``."""

    def to_asgi(self, is_main: bool = True) -> Any:
        """BentoML's app for this service, wrapped in `KnownPathsOnly`."""
        return KnownPathsOnly(super().to_asgi(is_main))


class BodyTooLargeError(Exception):
    """The request body went over the limit while it was being read."""


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 without being read whole.

    A declared ``Content-Length`` over the limit is refused before any byte is read; otherwise
    the bytes are counted as they arrive and the request is refused as soon as the count goes
    over. The body read here (at most `max_bytes`) is handed on to the app unchanged.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> JSONResponse:
        body = error_body(
            f"request body is larger than {self.max_bytes} bytes; send fewer rows per request",
            [{"loc": ["body"], "type": "too_large"}],
        )
        # the rest of the body is not read: the connection is closed after the answer
        return JSONResponse(body, status_code=413, headers={"connection": "close"})

    async def _read(self, receive: Any) -> bytes | None:
        """The whole body, or None if the client went away."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLargeError
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Refuse an oversized body with 413; hand the app the body read so far otherwise."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal()(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except BodyTooLargeError:
            await self._refusal()(scope, receive, send)
            return
        if body is None:
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: dict[str, Any] = await receive()  # e.g. http.disconnect
            return message

        await self.app(scope, replay, send)
