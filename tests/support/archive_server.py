"""A local HTTP server for a mirror directory, with faults injected on request.

Run as ``python -m tests.support.archive_server ROOT FAULTS.json LOG.jsonl``; it prints
``PORT <n>`` once listening on 127.0.0.1. FAULTS maps a URL path to a list of actions used
by its successive requests (then it serves normally):

* ``"500"``, ``"503"``, ``"404"`` — that status, empty body
* ``"429:S"`` / ``"418:S"`` — that status with ``Retry-After: S``
* ``"truncate"`` — announces the full Content-Length, sends half, closes the connection
* ``"corrupt"`` — serves the body with some bytes flipped (a checksum mismatch)
* ``"delay:S"`` — logs the request at once (action ``delay``), waits S seconds, then serves
* ``"ok"`` — serves normally

Every request is appended to LOG as one JSON line: ``{"path", "status", "action", "t"}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Faults:
    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan = {path: list(actions) for path, actions in plan.items()}
        self.lock = threading.Lock()

    def next(self, path: str) -> str:
        with self.lock:
            actions = self.plan.get(path)
            return actions.pop(0) if actions else "ok"


def make_handler(root: Path, faults: Faults, log: Path) -> type[BaseHTTPRequestHandler]:
    log_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def _log(self, status: int, action: str) -> None:
            line = json.dumps(
                {"path": self.path, "status": status, "action": action, "t": time.time()}
            )
            with log_lock, log.open("a") as handle:
                handle.write(line + "\n")

        def _status(self, status: int, action: str, headers: dict[str, str] | None = None) -> None:
            # logged before the answer, so a client that saw it finds it in the log
            self._log(status, action)
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            action = faults.next(self.path)
            if action in ("500", "503", "404"):
                return self._status(int(action), action)
            if action.startswith("redirect:"):  # a 302 to wherever the plan says
                return self._status(302, action, {"Location": action.removeprefix("redirect:")})
            if action.startswith(("429:", "418:")):
                code, seconds = action.split(":")
                return self._status(int(code), action, {"Retry-After": seconds})
            if action.startswith("delay:"):  # a slow answer, announced when it begins
                self._log(0, "delay")
                time.sleep(float(action.removeprefix("delay:")))
            file = root / self.path.lstrip("/")
            if ".." in self.path or not file.is_file():
                return self._status(404, "missing")
            body = file.read_bytes()
            if action == "corrupt":
                body = bytes(b ^ 0x5A for b in body[:64]) + body[64:]
            self._log(200, action)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if action == "truncate":
                self.send_header("Connection", "close")
            self.end_headers()
            if action == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
            else:
                self.wfile.write(body)

    return Handler


def main() -> None:
    root, faults_file, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    plan = json.loads(faults_file.read_text()) if faults_file.exists() else {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(root, Faults(plan), log))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
