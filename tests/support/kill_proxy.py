"""An HTTP proxy on 127.0.0.1 that lands a fault at the worst moment of one request.

Every request is passed to the upstream server and its answer relayed, except the first whose
method and path match the trigger: that one reaches the server (which commits it), then
`on_trigger` runs (e.g. ``kill -9`` of the server) and the client's connection is dropped
without an answer — what a client sees when the server dies after committing and before it
replied. While the upstream is unreachable, connections are dropped the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class KillProxy:
    """The proxy's state: whether the trigger fired, and the requests it saw."""

    def __init__(
        self, upstream: str, method: str, path: str, on_trigger: Callable[[], None]
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.method, self.path = method, path
        self.on_trigger = on_trigger
        self.fired = threading.Event()
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen.append(f"{self.command} {self.path.split('?')[0]}")
                    trigger = (
                        not proxy.fired.is_set()
                        and self.command == proxy.method
                        and self.path.split("?")[0] == proxy.path
                    )
                    if trigger:
                        proxy.fired.set()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    answer = httpx.request(
                        self.command,
                        proxy.upstream + self.path,
                        content=body,
                        headers=headers,
                        timeout=60,
                    )
                except httpx.TransportError:
                    self.close_connection = True  # upstream down: drop, as a dead server would
                    return
                if trigger:
                    proxy.on_trigger()
                    self.close_connection = True  # committed upstream, never answered
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        return Handler


@contextmanager
def kill_proxy(
    upstream: str, method: str, path: str, on_trigger: Callable[[], None]
) -> Iterator[tuple[str, KillProxy]]:
    """Run the proxy in a thread; yields its URL and state. Stopped at the end."""
    proxy = KillProxy(upstream, method, path, on_trigger)
    server = ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
