"""A small HTTP/1.1 load generator for `serve.py`, run in its own process (Debian has no
wrk2/vegeta; wrk is closed-loop only).

Two modes, one JSON summary on stdout:

- ``open``: requests at a fixed arrival rate, each with its scheduled send time
  ``t0 + i / rate``. Latency is measured from that scheduled time, not from when the request
  could be sent, so time spent queued behind a slow server (or a late generator) is counted —
  no coordinated omission. Each request goes out on an idle keep-alive connection, or a new one
  (up to `--max-connections`; beyond that it waits for one, and the wait counts too). The
  generator's own scheduling error (actual send time minus scheduled time) is reported.
- ``closed``: `--clients` keep-alive connections, each sending its next request as soon as the
  previous answer arrived (like wrk); latency from the actual send.

Raw asyncio protocols on uvloop with the request bytes prepared once: a few tens of
microseconds of CPU per request, so the generator takes little of the machine it shares.

    python benchmarks/loadgen.py open URL BODY_FILE --rate 200 --duration 10
    python benchmarks/loadgen.py closed URL BODY_FILE --clients 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

TIMEOUT = 10.0
"""Seconds an answer may take before the request counts as an error."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        start = head.find(b"content-length:")
        if start >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
        elif b"transfer-encoding: chunked" in head:
            tail = self.buffer.find(b"0\r\n\r\n", end + 4)
            if tail < 0:
                return
            del self.buffer[: tail + 5]
        else:
            del self.buffer[: end + 4]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def close(self) -> None:
        """Drop the connection (after a timeout its next answer would be misread)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write `request`; the future resolves to the answer's status code."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


def request_bytes(url: str, body: bytes) -> tuple[str, int, bytes]:
    """Host, port and the whole POST request (JSON body) for `url`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


class Tally:
    """Answers by kind, and latencies of the 2xx ones (seconds)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.service: list[float] = []
        self.ok = 0
        self.non_2xx = 0
        self.errors = 0

    def record(self, status: int | None, latency: float, service: float) -> None:
        """Count one answer (`status` None: socket error or timeout); `latency` from the
        scheduled send, `service` from the actual one."""
        if status is None:
            self.errors += 1
        elif 200 <= status < 300:
            self.ok += 1
            self.latencies.append(latency)
            self.service.append(service)
        else:
            self.non_2xx += 1

    def summary(self, seconds: float) -> dict[str, float]:
        """Counts, ok requests per second and latency percentiles in milliseconds."""
        lat = np.asarray(self.latencies or [np.nan]) * 1e3
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
        service = np.asarray(self.service or [np.nan]) * 1e3
        return {
            "service_p99_ms": float(np.percentile(service, 99)),
            "ok": self.ok,
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "ok_rps": self.ok / seconds,
            "p50_ms": float(p50),
            "p99_ms": float(p99),
            "p999_ms": float(p999),
            "max_ms": float(np.max(lat)),
        }


class Pool:
    """Idle keep-alive connections to one server, opened on demand up to a cap."""

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host, self.port, self.cap = host, port, cap
        self.idle: list[Connection] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def get(self) -> Connection:
        """An idle connection, a new one, or (at the cap) the next one freed."""
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
                self.opened -= 1
            if self.opened < self.cap:
                self.opened += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        Connection, self.host, self.port
                    )
                except OSError:
                    self.opened -= 1
                    raise
                return conn
            async with self.freed:
                await self.freed.wait()

    async def put(self, conn: Connection) -> None:
        """Give `conn` back (a closed one frees its slot)."""
        if conn.closed:
            self.opened -= 1
        else:
            self.idle.append(conn)
        async with self.freed:
            self.freed.notify()


async def one(pool: Pool, request: bytes, tally: Tally, since: float) -> float:
    """Send one request on a pooled connection; record its latency from `since`; the send
    time."""
    sent = time.perf_counter()
    conn: Connection | None = None
    status: int | None = None
    try:
        conn = await pool.get()
        sent = time.perf_counter()
        status = await asyncio.wait_for(conn.send(request), TIMEOUT)
    except (OSError, TimeoutError, ConnectionError):
        if conn is not None:
            conn.close()
    done = time.perf_counter()
    tally.record(status, done - since, done - sent)
    if conn is not None:
        await pool.put(conn)
    return sent


async def open_loop(
    url: str, body: bytes, rate: float, seconds: float, cap: int
) -> dict[str, float]:
    """Fixed arrival rate for `seconds`; latency from each request's scheduled time."""
    host, port, request = request_bytes(url, body)
    pool = Pool(host, port, cap)
    warm = [await pool.get() for _ in range(min(cap, max(4, int(rate / 50))))]
    for conn in warm:
        await pool.put(conn)
    tally = Tally()
    count = int(rate * seconds)
    lateness = np.zeros(count)
    tasks: list[asyncio.Task[float]] = []
    t0 = time.perf_counter() + 0.05
    for i in range(count):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness[i] = time.perf_counter() - scheduled
        tasks.append(asyncio.create_task(one(pool, request, tally, scheduled)))
    await asyncio.gather(*tasks)
    result = tally.summary(seconds)
    sends = np.asarray([t.result() for t in tasks]) - (t0 + np.arange(count) / rate)
    result.update(
        {
            "rate": rate,
            "sched_late_p50_ms": float(np.percentile(lateness, 50) * 1e3),
            "sched_late_p99_ms": float(np.percentile(lateness, 99) * 1e3),
            "sched_late_max_ms": float(lateness.max() * 1e3),
            "send_late_p99_ms": float(np.percentile(sends, 99) * 1e3),
            "connections": pool.opened,
        }
    )
    return result


async def closed_loop(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` connections sending back to back for `seconds`."""
    host, port, request = request_bytes(url, body)
    pool = Pool(host, port, clients)
    tally = Tally()
    end = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            await one(pool, request, tally, time.perf_counter())

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return tally.summary(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["open", "closed"])
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path)
    parser.add_argument("--rate", type=float, default=100.0, help="open: requests per second")
    parser.add_argument("--clients", type=int, default=1, help="closed: connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--max-connections", type=int, default=512, help="open: cap")
    args = parser.parse_args()
    import uvloop

    body = args.body_file.read_bytes()
    if args.mode == "open":
        work = open_loop(args.url, body, args.rate, args.duration, args.max_connections)
    else:
        work = closed_loop(args.url, body, args.clients, args.duration)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = uvloop.run(work)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["generator_cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result["load_average"] = os.getloadavg()[0]  # the machine is shared: how busy it was
    print(json.dumps(result))


if __name__ == "__main__":
    main()
